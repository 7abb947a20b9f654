//! The host tools' logic, kept out of the binaries so it can be tested:
//! `mkfs-blockfs` ([`mkfs`]) and `blockfs` ([`inspect`] for looking,
//! [`commands`] for copying in and out and changing, [`mount`]).
//! Everything that touches the filesystem format goes through the
//! `blockfs` library; this crate only walks host directories, parses
//! command lines and prints.

pub mod archive;
pub mod attrs;
pub mod blockdev;
pub mod clock;
pub mod commands;
pub mod edit;
pub mod export;
pub mod extract;
pub mod fsck;
pub mod hosttree;
pub mod image;
pub mod import;
pub mod insert;
pub mod inspect;
pub mod lock;
pub mod mkfs;
pub mod mount;
pub mod output;
pub mod paths;
pub mod populate;
pub mod probe;
pub mod progress;
pub mod resize;
pub mod space;
mod sys;
pub mod tar;
pub mod text;
pub mod tune;
pub mod uuid;
pub mod walk;
