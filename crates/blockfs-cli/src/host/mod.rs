//! The host side of a copy: scanning a host tree and checking it fits
//! ([`tree`], [`space`]), the `--attrs` file, copying the scanned tree
//! into an image ([`populate`]), and writing host output files safely
//! ([`output`]), keeping holes both ways ([`sparse`]).

pub mod attrs;
pub mod output;
pub mod populate;
pub mod space;
pub mod sparse;
pub mod tree;
