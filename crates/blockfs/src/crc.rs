//! The two 32-bit CRCs on disk. Table-driven; the tables are built at
//! compile time so no_std users pay nothing at run time.
//!
//! CRC-32C (Castagnoli) seals records: the extension record, the journal's
//! superblock, descriptors and commit records. The body of a journal
//! transaction — the logged copies — is summed with CRC-32 (IEEE) instead:
//! a block that embeds a CRC-32C of part of itself (block 0 holds the
//! extension record and its CRC) is invisible to an outer CRC-32C, since
//! any message followed by its own CRC leaves the same remainder. Two
//! versions of block 0 would then sum alike, and a torn journal write
//! could pass for a whole one (docs/FORMAT.md §8).

const fn table(polynomial: u32) -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut index = 0;
    while index < 256 {
        let mut value = index as u32;
        let mut bit = 0;
        while bit < 8 {
            value = if value & 1 != 0 { (value >> 1) ^ polynomial } else { value >> 1 };
            bit += 1;
        }
        table[index] = value;
        index += 1;
    }
    table
}

/// Reflected 0x1EDC6F41.
const CASTAGNOLI: [u32; 256] = table(0x82F6_3B78);
/// Reflected 0x04C11DB7.
const IEEE: [u32; 256] = table(0xEDB8_8320);

fn append(table: &[u32; 256], crc: u32, bytes: &[u8]) -> u32 {
    let mut value = !crc;
    for &byte in bytes {
        value = table[((value ^ byte as u32) & 0xff) as usize] ^ (value >> 8);
    }
    !value
}

/// Continues a CRC-32C over `bytes`; start with `crc = 0`.
pub fn crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
    append(&CASTAGNOLI, crc, bytes)
}

pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c_append(0, bytes)
}

/// Continues a CRC-32 (IEEE 802.3) over `bytes`; start with `crc = 0`.
pub fn crc32_append(crc: u32, bytes: &[u8]) -> u32 {
    append(&IEEE, crc, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // RFC 3720 (iSCSI) appendix B.4 test vectors.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn ieee_known_vector() {
        assert_eq!(crc32_append(0, b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn a_message_followed_by_its_crc32c_is_invisible_to_crc32c_but_not_to_crc32() {
        // Two blocks differing in a sealed record: same outer CRC-32C.
        let sealed = |payload: u8| {
            let mut block = [0u8; 64];
            block[8..40].fill(payload);
            let seal = crc32c(&block[8..40]);
            block[40..44].copy_from_slice(&seal.to_le_bytes());
            block
        };
        let (one, two) = (sealed(1), sealed(2));
        assert_eq!(crc32c_append(7, &one), crc32c_append(7, &two));
        assert_ne!(crc32_append(7, &one), crc32_append(7, &two));
    }

    #[test]
    fn appending_equals_whole() {
        let data = b"the quick brown fox";
        assert_eq!(crc32c_append(crc32c(&data[..7]), &data[7..]), crc32c(data));
    }
}
