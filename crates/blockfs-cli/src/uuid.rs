//! Volume UUIDs made from a hash of their inputs, so a reproducible build
//! gets the same UUID every time. The hash is FNV-1a with a SplitMix64
//! finish, written out here rather than taken from `std` because `std`'s
//! hasher may change between Rust releases and the UUID must not.

use std::fmt::Write;

const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Two different offset bases give the two independent halves.
const FNV_BASES: [u64; 2] = [0xcbf2_9ce4_8422_2325, 0x6c62_272e_07bb_0142];

fn fnv1a(basis: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(basis, |hash, &byte| (hash ^ byte as u64).wrapping_mul(FNV_PRIME))
}

/// SplitMix64's finaliser: spreads FNV's weak low-entropy inputs over all bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A UUID determined by `parts` (each length-prefixed, so ("ab","c") and
/// ("a","bc") differ), marked as RFC 9562 version 8 ("custom").
pub fn from_parts(parts: &[&[u8]]) -> [u8; 16] {
    let mut input = Vec::new();
    for part in parts {
        input.extend_from_slice(&(part.len() as u64).to_le_bytes());
        input.extend_from_slice(part);
    }
    let mut uuid = [0u8; 16];
    for (half, basis) in uuid.chunks_exact_mut(8).zip(FNV_BASES) {
        half.copy_from_slice(&mix(fnv1a(basis, &input)).to_be_bytes());
    }
    uuid[6] = (uuid[6] & 0x0f) | 0x80;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    uuid
}

/// A UUID from the moment and the process: unique enough for a volume id
/// when the build need not be reproducible.
pub fn unique() -> [u8; 16] {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    from_parts(&[&nanos.to_le_bytes(), &std::process::id().to_le_bytes()])
}

/// The canonical 8-4-4-4-12 lowercase form.
pub fn to_string(uuid: &[u8; 16]) -> String {
    let mut text = String::with_capacity(36);
    for (index, byte) in uuid.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        write!(text, "{byte:02x}").expect("writing to a String cannot fail");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_input_sensitive() {
        let a = from_parts(&[b"256", b"label"]);
        assert_eq!(a, from_parts(&[b"256", b"label"]));
        assert_ne!(a, from_parts(&[b"256", b"labek"]));
        assert_ne!(from_parts(&[b"ab", b"c"]), from_parts(&[b"a", b"bc"]));
    }

    #[test]
    fn version_and_variant_bits() {
        let uuid = from_parts(&[b"x"]);
        assert_eq!(uuid[6] >> 4, 8);
        assert_eq!(uuid[8] >> 6, 0b10);
    }

    #[test]
    fn canonical_text() {
        let uuid: [u8; 16] = core::array::from_fn(|i| i as u8);
        assert_eq!(to_string(&uuid), "00010203-0405-0607-0809-0a0b0c0d0e0f");
    }
}
