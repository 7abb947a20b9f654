//! The host tools' logic, kept out of the binaries so it can be tested:
//! one module folder per binary ([`mkfs`], [`fsck`], [`blockfs`], the
//! last with one folder per command group), and the pieces they share:
//! opening and locking images ([`image`]), the host side of a copy
//! ([`host`]: scanning trees, writing output files), tar archives
//! ([`tar`]).
//! Everything that touches the filesystem format goes through the
//! `blockfs` library; this crate only walks host directories, parses
//! command lines and prints.

pub mod blockfs;
pub mod clock;
pub mod docs;
pub mod fsck;
pub mod host;
pub mod image;
pub mod interrupt;
pub mod mkfs;
pub mod paths;
pub mod progress;
mod sys;
pub mod tar;
pub mod uuid;
