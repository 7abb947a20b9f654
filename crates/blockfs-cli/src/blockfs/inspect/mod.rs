//! Looking inside an image or archive without changing it.

pub mod probe;
pub mod text;
