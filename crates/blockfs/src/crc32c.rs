//! CRC-32C (Castagnoli), the checksum of the extension record and, later,
//! of journal commit records. Table-driven; the table is built at compile
//! time so no_std users pay nothing at run time.

const POLYNOMIAL: u32 = 0x82F6_3B78; // reflected 0x1EDC6F41

const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut index = 0;
    while index < 256 {
        let mut value = index as u32;
        let mut bit = 0;
        while bit < 8 {
            value = if value & 1 != 0 { (value >> 1) ^ POLYNOMIAL } else { value >> 1 };
            bit += 1;
        }
        table[index] = value;
        index += 1;
    }
    table
};

/// Continues a CRC-32C over `bytes`; start with `crc = 0`.
pub fn crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
    let mut value = !crc;
    for &byte in bytes {
        value = TABLE[((value ^ byte as u32) & 0xff) as usize] ^ (value >> 8);
    }
    !value
}

pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c_append(0, bytes)
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
    fn appending_equals_whole() {
        let data = b"the quick brown fox";
        assert_eq!(crc32c_append(crc32c(&data[..7]), &data[7..]), crc32c(data));
    }
}
