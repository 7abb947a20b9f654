//! The host tools' logic, kept out of the binaries so it can be tested:
//! `mkfs-blockfs` ([`mkfs`]) and `blockfs` ([`inspect`]). Everything that
//! touches the filesystem format goes through the `blockfs` library; this
//! crate only walks host directories, parses command lines and prints.

pub mod attrs;
pub mod clock;
pub mod hosttree;
pub mod inspect;
pub mod mkfs;
pub mod output;
pub mod populate;
pub mod progress;
pub mod space;
pub mod text;
pub mod uuid;
