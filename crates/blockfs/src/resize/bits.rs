//! A fixed-size bit set over block numbers.

use alloc::vec;
use alloc::vec::Vec;

pub(super) struct Bits {
    words: Vec<u64>,
    len: u32,
}

impl Bits {
    pub fn new(len: u32) -> Self {
        Bits { words: vec![0; (len as usize).div_ceil(64)], len }
    }

    pub fn contains(&self, index: u32) -> bool {
        index < self.len && self.words[index as usize / 64] & (1 << (index % 64)) != 0
    }

    /// Sets the bit; returns whether it was clear. Indexes past the end are ignored.
    pub fn insert(&mut self, index: u32) -> bool {
        if index >= self.len {
            return false;
        }
        let word = &mut self.words[index as usize / 64];
        let mask = 1 << (index % 64);
        let was_clear = *word & mask == 0;
        *word |= mask;
        was_clear
    }

    /// Set indexes, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(at, &word)| {
            let mut rest = word;
            core::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros();
                rest &= rest - 1;
                Some(at as u32 * 64 + bit)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_iterate_remove() {
        let mut bits = Bits::new(200);
        assert!(bits.insert(3));
        assert!(!bits.insert(3));
        assert!(bits.insert(130));
        assert!(!bits.insert(500));
        assert_eq!(bits.iter().collect::<Vec<_>>(), [3, 130]);
        assert!(bits.contains(130));
        assert!(!bits.contains(4));
    }
}
