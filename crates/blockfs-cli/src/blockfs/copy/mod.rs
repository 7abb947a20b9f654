//! Copying between the host and an image: `get`, `put`, `export`, `import`.

pub mod export;
pub mod get;
pub mod import;
pub mod put;
pub mod walk;
