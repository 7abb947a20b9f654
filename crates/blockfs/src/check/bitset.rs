//! A fixed-size set of block numbers, one bit each: the checker's memory
//! for "which blocks are claimed" costs `block_count / 8` bytes.

use alloc::vec;
use alloc::vec::Vec;

pub(super) struct Bitset {
    words: Vec<u64>,
    len: u32,
    ones: u32,
}

impl Bitset {
    pub fn new(len: u32) -> Self {
        Bitset { words: vec![0; (len as usize).div_ceil(64)], len, ones: 0 }
    }

    /// Bits set.
    pub fn ones(&self) -> u32 {
        self.ones
    }

    pub fn contains(&self, index: u32) -> bool {
        index < self.len && self.words[(index / 64) as usize] & (1 << (index % 64)) != 0
    }

    /// Sets bit `index`; returns whether it was clear. Indexes past the
    /// end are ignored (and reported as not newly set).
    pub fn insert(&mut self, index: u32) -> bool {
        if index >= self.len || self.contains(index) {
            return false;
        }
        self.words[(index / 64) as usize] |= 1 << (index % 64);
        self.ones += 1;
        true
    }

    pub fn remove(&mut self, index: u32) {
        if self.contains(index) {
            self.words[(index / 64) as usize] &= !(1 << (index % 64));
            self.ones -= 1;
        }
    }

    pub fn clear(&mut self) {
        self.words.fill(0);
        self.ones = 0;
    }

    /// The first clear bit in `from..to`.
    pub fn first_clear(&self, from: u32, to: u32) -> Option<u32> {
        let to = to.min(self.len);
        let mut index = from;
        while index < to {
            let word = self.words[(index / 64) as usize];
            if index % 64 == 0 && word == u64::MAX {
                index = index.saturating_add(64);
                continue;
            }
            if word & (1 << (index % 64)) == 0 {
                return Some(index);
            }
            index += 1;
        }
        None
    }

    /// Writes the bits `start..start + 8 * out.len()` as bitmap bytes
    /// (bit `b % 8` of byte `b / 8`, least significant first); bits past
    /// the end read as zero. `start` must be a multiple of 64.
    pub fn copy_to_bytes(&self, start: u32, out: &mut [u8]) {
        let first_word = (start / 64) as usize;
        for (index, chunk) in out.chunks_mut(8).enumerate() {
            let word = self.words.get(first_word + index).copied().unwrap_or(0);
            let bytes = word.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_and_search() {
        let mut set = Bitset::new(200);
        assert!(set.insert(3));
        assert!(!set.insert(3));
        assert!(!set.insert(200));
        for bit in 0..130 {
            set.insert(bit);
        }
        assert_eq!(set.ones(), 130);
        assert_eq!(set.first_clear(0, 200), Some(130));
        assert_eq!(set.first_clear(0, 100), None);
        set.remove(64);
        assert_eq!(set.first_clear(0, 200), Some(64));
        set.clear();
        assert_eq!(set.ones(), 0);
    }

    #[test]
    fn bytes_follow_the_bitmap_order() {
        let mut set = Bitset::new(80);
        set.insert(0);
        set.insert(9);
        set.insert(79);
        let mut bytes = [0xffu8; 12];
        set.copy_to_bytes(0, &mut bytes);
        assert_eq!(bytes, [1, 2, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0]);
    }
}
