//! Replays every input the fuzzers ever found a failure with (saved under
//! fuzz/regressions/TARGET/), plus a seeded batch of random inputs, through
//! the same target bodies `cargo fuzz` runs (fuzz/targets.rs).

use std::fs;
use std::path::Path;

#[path = "../../../fuzz/targets.rs"]
mod targets;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 4] = [
    ("mount_walk", targets::mount_walk),
    ("fsck_check", targets::fsck_check),
    ("fsck_repair", targets::fsck_repair),
    ("tar_load", targets::tar_load),
];

#[test]
fn saved_inputs_still_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions");
    let mut replayed = 0;
    for (name, target) in TARGETS {
        let dir = root.join(name);
        assert!(dir.is_dir(), "{} is missing", dir.display());
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                continue;
            }
            target(&fs::read(&path).unwrap());
            replayed += 1;
        }
    }
    println!("replayed {replayed} saved inputs");
}

#[test]
fn random_inputs_do_not_panic() {
    // xorshift: the same inputs every run.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for (_, target) in TARGETS {
        for round in 0..12 {
            let len = 5 * (1 + (next() % 60) as usize) + round % 3;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            target(&data);
        }
    }
}
