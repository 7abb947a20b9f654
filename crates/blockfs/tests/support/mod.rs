//! Pieces shared by the integration tests that build thousands of images:
//! a device that records its writes, a copy-on-write device over one base
//! image, and a seeded generator.

#![allow(dead_code)] // each test binary uses its own subset

pub mod stress;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use blockfs::error::DeviceError;
use blockfs::format::{Block, BLOCK_SIZE};
use blockfs::{BlockDevice, MemDevice};

/// What a recorded device saw.
#[derive(Clone)]
pub enum Event {
    Write(u32, Arc<Block>),
    Flush,
}

/// A device that applies writes to memory and logs them, with flushes.
pub struct Recording {
    pub inner: MemDevice,
    pub log: Arc<Mutex<Vec<Event>>>,
}

impl BlockDevice for Recording {
    fn block_count(&self) -> u32 {
        self.inner.block_count()
    }
    fn read_block(&self, index: u32, buf: &mut Block) -> Result<(), DeviceError> {
        self.inner.read_block(index, buf)
    }
    fn write_block(&self, index: u32, buf: &Block) -> Result<(), DeviceError> {
        self.inner.write_block(index, buf)?;
        self.log.lock().unwrap().push(Event::Write(index, Arc::new(*buf)));
        Ok(())
    }
    fn flush(&self) -> Result<(), DeviceError> {
        self.log.lock().unwrap().push(Event::Flush);
        Ok(())
    }
}

/// A device over a shared base image that keeps its writes to itself, so
/// many variants of one image cost only the blocks they change.
pub struct CowDevice<B> {
    pub base: B,
    pub changed: Mutex<HashMap<u32, Arc<Block>>>,
}

impl<B: AsRef<[u8]>> CowDevice<B> {
    pub fn new(base: B) -> Self {
        CowDevice { base, changed: Mutex::new(HashMap::new()) }
    }

    /// The block as the device currently holds it.
    pub fn current(&self, index: u32) -> Block {
        match self.changed.lock().unwrap().get(&index) {
            Some(block) => **block,
            None => {
                let start = index as usize * BLOCK_SIZE;
                self.base.as_ref()[start..start + BLOCK_SIZE].try_into().expect("one block")
            }
        }
    }
}

impl<B: AsRef<[u8]> + Send + Sync> BlockDevice for CowDevice<B> {
    fn block_count(&self) -> u32 {
        (self.base.as_ref().len() / BLOCK_SIZE) as u32
    }

    fn read_block(&self, index: u32, buf: &mut Block) -> Result<(), DeviceError> {
        if index >= self.block_count() {
            return Err(DeviceError::eio(Some(index)));
        }
        *buf = self.current(index);
        Ok(())
    }

    fn write_block(&self, index: u32, buf: &Block) -> Result<(), DeviceError> {
        if index >= self.block_count() {
            return Err(DeviceError::eio(Some(index)));
        }
        self.changed.lock().unwrap().insert(index, Arc::new(*buf));
        Ok(())
    }

    fn flush(&self) -> Result<(), DeviceError> {
        Ok(())
    }
}

impl CowDevice<Arc<[u8]>> {
    /// The image a crash leaves when of a recorded run over `base` only
    /// the writes at `writes` (indexes into `events`) reached the device.
    pub fn after_writes(base: &Arc<[u8]>, events: &[Event], writes: impl IntoIterator<Item = usize>) -> Self {
        let mut changed = HashMap::new();
        for index in writes {
            if let Event::Write(block, data) = &events[index] {
                changed.insert(*block, data.clone());
            }
        }
        CowDevice { base: base.clone(), changed: changed.into() }
    }
}

/// A device that stops persisting anything after `flushes` flushes, as a
/// power cut would (writes after it fail).
pub struct CutAfter<D> {
    pub inner: D,
    flushes: AtomicUsize,
}

impl<D> CutAfter<D> {
    pub fn new(inner: D, flushes: usize) -> Self {
        CutAfter { inner, flushes: flushes.into() }
    }
}

impl<D: BlockDevice> BlockDevice for CutAfter<D> {
    fn block_count(&self) -> u32 {
        self.inner.block_count()
    }
    fn read_block(&self, index: u32, buf: &mut Block) -> Result<(), DeviceError> {
        self.inner.read_block(index, buf)
    }
    fn write_block(&self, index: u32, buf: &Block) -> Result<(), DeviceError> {
        if self.flushes.load(Ordering::SeqCst) == 0 {
            return Err(DeviceError::eio(Some(index)));
        }
        self.inner.write_block(index, buf)
    }
    fn flush(&self) -> Result<(), DeviceError> {
        let _ = self.flushes.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        self.inner.flush()
    }
}

/// Deterministic xorshift, so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
