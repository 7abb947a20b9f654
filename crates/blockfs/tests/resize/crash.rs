//! Crash states of resizes: every prefix of the writes, random subsets of
//! each flush epoch's writes on top of everything flushed before, and
//! crashes while a mount finishes an interrupted resize. Each state must
//! mount, check clean and hold every file intact, in the old geometry or
//! the new one. A state whose block 0 names no resize log must also read
//! correctly *as it is*, without recovery, by the independent reader (an
//! older driver sees the old or the new image, nothing between).
//!
//! `BLOCKFS_RESIZE_SUBSETS` sets the random subsets per epoch (default 24).

use std::sync::{Arc, Mutex};

use crate::support::{CowDevice, Event, Recording, Rng};
use blockfs::check::{check, CheckOptions};
use blockfs::format::extension::Extension;
use blockfs::resize::{plan, Summary, Target};
use blockfs::{BlockDevice, FileSystem, MemDevice};

use crate::image::{self, tree_of, Tree, MB};

type Image = CowDevice<Arc<[u8]>>;

struct Run {
    base: Arc<[u8]>,
    events: Vec<Event>,
    before: Tree,
    geometries: [(u32, u32); 2],
    summary: Option<Summary>,
}

fn record(base: Vec<u8>, run: impl FnOnce(&mut Recording)) -> Vec<Event> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut device = Recording { inner: MemDevice::from_bytes(base), log: log.clone() };
    run(&mut device);
    let events = log.lock().unwrap().clone();
    events
}

fn resize_run(mut device: MemDevice, target: Target) -> Run {
    let before = tree_of(device.as_bytes());
    let old = {
        let reader = image::Reader::new(device.as_bytes());
        (reader.blocks, reader.inodes)
    };
    let base: Vec<u8> = device.into_bytes();
    let mut summary = None;
    let events = record(base.clone(), |device| {
        summary = Some(plan(device, target).unwrap().execute(device).unwrap());
    });
    let geometries = [old, (target.block_count, target.inode_count)];
    Run { base: base.into(), events, before, geometries, summary }
}

fn image_of(run: &Run, writes: impl IntoIterator<Item = usize>) -> Image {
    CowDevice::after_writes(&run.base, &run.events, writes)
}

/// The independent reader's view of a crash image: geometry and tree.
fn read_independently(image: &Image) -> ((u32, u32), Tree) {
    let reader = image::Reader::over(image.block_count(), |n| image.current(n).to_vec());
    ((reader.blocks, reader.inodes), reader.tree())
}

fn bytes_of(image: &Image, blocks: u32) -> Vec<u8> {
    let mut bytes = image.base[..blocks as usize * 4096].to_vec();
    for (&block, data) in image.changed.lock().unwrap().iter() {
        if block < blocks {
            bytes[block as usize * 4096..(block as usize + 1) * 4096].copy_from_slice(&data[..]);
        }
    }
    bytes
}

fn resize_pending(image: &Image) -> bool {
    Extension::decode_block(&image.current(0)).is_ok_and(|e| e.resize_pending())
}

/// The properties every crash state must have.
fn verify(run: &Run, image: Image) -> Result<(), String> {
    let raw = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        (!resize_pending(&image)).then(|| read_independently(&image))
    }))
    .map_err(|e| format!("independent reader on the raw state: {}", panic_text(e)))?;
    if let Some((geometry, tree)) = raw {
        if !run.geometries.contains(&geometry) {
            return Err(format!("raw state in geometry {geometry:?}"));
        }
        if tree != run.before {
            return Err("raw state: files differ".into());
        }
    }
    let fs = FileSystem::mount(image, image::mount_options()).map_err(|e| format!("mount: {e}"))?;
    let geometry = fs.info().geometry;
    if !run.geometries.contains(&(geometry.block_count, geometry.inode_count)) {
        return Err(format!("mounted in geometry {geometry:?}"));
    }
    let mut image = fs.unmount().map_err(|e| format!("unmount: {e}"))?;
    let report = check(&mut image, &CheckOptions::default()).map_err(|e| format!("check: {e}"))?;
    if !report.is_clean() {
        let problems: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
        return Err(format!("checker: {problems:?}"));
    }
    let (_, tree) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_independently(&image)))
        .map_err(|e| format!("independent reader after recovery: {}", panic_text(e)))?;
    if tree != run.before {
        return Err("files differ after recovery".into());
    }
    Ok(())
}

fn panic_text(error: Box<dyn std::any::Any + Send>) -> String {
    error
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| error.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Checks every crash state of `run`; returns how many.
fn crash_states(name: &str, run: &Run) -> usize {
    let subsets: usize =
        std::env::var("BLOCKFS_RESIZE_SUBSETS").ok().and_then(|v| v.parse().ok()).unwrap_or(24);
    let fail = |what: String, error: String| -> ! { panic!("{name}: {what}: {error}") };
    let mut checked = 0;
    for cut in 0..=run.events.len() {
        if let Err(error) = verify(run, image_of(run, 0..cut)) {
            fail(format!("prefix of {cut} events"), error);
        }
        checked += 1;
    }
    let flushes: Vec<usize> =
        run.events.iter().enumerate().filter(|(_, e)| matches!(e, Event::Flush)).map(|(i, _)| i).collect();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D ^ name.len() as u64);
    let mut epoch_start = 0;
    for &flush in flushes.iter().chain(std::iter::once(&run.events.len())) {
        let epoch: Vec<usize> =
            (epoch_start..flush).filter(|&i| matches!(run.events[i], Event::Write(..))).collect();
        if epoch.len() > 1 {
            for _ in 0..subsets {
                let chosen: Vec<usize> = epoch.iter().copied().filter(|_| rng.next() % 2 == 0).collect();
                let image = image_of(run, (0..epoch_start).chain(chosen.iter().copied()));
                if let Err(error) = verify(run, image) {
                    fail(format!("subset {chosen:?} of epoch {epoch_start}..{flush}"), error);
                }
                checked += 1;
            }
        }
        epoch_start = flush + 1;
    }
    // Crashes while a mount finishes the resize: the state right after the
    // commit point, then every prefix and epoch subsets of the replay.
    let commit = flushes.iter().copied().find(|&f| resize_pending(&image_of(run, 0..f + 1)));
    let commit = commit.unwrap_or_else(|| fail("commit".into(), "no state names the resize log".into()));
    let state = image_of(run, 0..commit + 1);
    let blocks = state.block_count();
    let replay = record(bytes_of(&state, blocks), |device| {
        blockfs::resize::finish_interrupted(device, false).unwrap();
    });
    let replay_run = Run {
        base: bytes_of(&state, blocks).into(),
        events: replay,
        before: run.before.clone(),
        geometries: run.geometries,
        summary: None,
    };
    for cut in 0..=replay_run.events.len() {
        if let Err(error) = verify(&replay_run, image_of(&replay_run, 0..cut)) {
            fail(format!("replay cut after {cut} events"), error);
        }
        checked += 1;
    }
    let mut epoch_start = 0;
    for index in 0..replay_run.events.len() {
        if matches!(replay_run.events[index], Event::Flush) {
            let epoch: Vec<usize> = (epoch_start..index).collect();
            for _ in 0..subsets.min(8) {
                let chosen: Vec<usize> = epoch.iter().copied().filter(|_| rng.next() % 2 == 0).collect();
                let image = image_of(&replay_run, (0..epoch_start).chain(chosen.iter().copied()));
                if let Err(error) = verify(&replay_run, image) {
                    fail(format!("replay subset {chosen:?}"), error);
                }
                checked += 1;
            }
            epoch_start = index + 1;
        }
    }
    eprintln!("{name}: {} writes, {checked} crash states", run.events.len());
    checked
}

#[test]
fn crash_while_growing_across_a_bitmap_block() {
    // 120 MB has one bitmap block, 136 MB two: the inode table shifts.
    let device = image::populate(image::formatted(120 * MB, Some(1500), 136 * MB, true), 5 << 20, 700);
    let run = resize_run(device, Target { block_count: 136 * MB, inode_count: 1500 });
    let summary = run.summary.unwrap();
    assert!(summary.moved_blocks > 0, "{summary:?}");
    assert!(crash_states("grow 120 -> 136 MB", &run) > 100);
}

#[test]
fn crash_while_shrinking_with_relocation() {
    let device = image::populate(image::formatted(48 * MB, Some(1500), 48 * MB, true), 5 << 20, 700);
    let device = image::data_near_the_end(device, 30 * MB, 600 << 10);
    let run = resize_run(device, Target { block_count: 20 * MB, inode_count: 1500 });
    assert!(run.summary.unwrap().moved_blocks > 100, "{:?}", run.summary);
    assert!(crash_states("shrink 48 -> 20 MB", &run) > 100);
}

#[test]
fn crash_while_growing_the_inode_table() {
    let device = image::populate(image::formatted(32 * MB, Some(1000), 32 * MB, true), 1 << 20, 700);
    let run = resize_run(device, Target { block_count: 32 * MB, inode_count: 4000 });
    let summary = run.summary.unwrap();
    assert!(summary.moved_blocks > 0 && summary.journal_moved, "{summary:?}");
    assert!(crash_states("inodes 1000 -> 4000", &run) > 50);
}

#[test]
fn crash_while_shrinking_the_inode_table_with_renumbering() {
    let device = image::populate(image::formatted(32 * MB, Some(3000), 32 * MB, true), 1 << 20, 50);
    let device = image::high_inodes(device, 2000);
    let run = resize_run(device, Target { block_count: 24 * MB, inode_count: 700 });
    assert!(run.summary.unwrap().renumbered_inodes > 5, "{:?}", run.summary);
    assert!(crash_states("inodes 3000 -> 700, 32 -> 24 MB", &run) > 50);
}

#[test]
fn crash_while_resizing_an_image_without_a_journal() {
    let device = image::populate(image::formatted(16 * MB, None, 40 * MB, false), 1 << 20, 100);
    let run = resize_run(device, Target { block_count: 40 * MB, inode_count: 2000 });
    assert!(crash_states("no journal: 16 -> 40 MB, 2000 inodes", &run) > 50);
}

/// The example: 100 MB (4 bitmap blocks) to 300 MB (10), default
/// inode count; the inode table moves down 6 blocks and the journal with it.
#[test]
fn crash_while_growing_100_to_300_mb() {
    let mut device = image::populate(image::formatted(100 * MB, None, 300 * MB, true), 5 << 20, 700);
    let inodes = image::Reader::new(device.as_bytes()).inodes;
    let run = resize_run(device, Target { block_count: 300 * MB, inode_count: inodes });
    let summary = run.summary.unwrap();
    assert!(summary.moved_blocks > 0 && summary.journal_moved, "{summary:?}");
    assert!(crash_states("grow 100 -> 300 MB", &run) > 100);
}
