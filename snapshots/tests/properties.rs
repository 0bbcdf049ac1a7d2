//! Property: random interleavings of appends, clean close/reopen cycles,
//! crashes that tear the next write at a random byte, and crashes that
//! leave garbage after the end never lose a record whose callback reported
//! it durable, and never invent one: after every restart the log is a
//! prefix of what was appended, at least as long as what was acknowledged.
//!
//! `PROPTEST_CASES=n` runs `n` cases instead of the default.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{append_all, frames_of, payload, replay_all, segment_files};
use proptest::prelude::*;
use settle_snapshots::wal::faults::FaultyStorage;
use settle_snapshots::wal::{self, FsStorage, Recovery, Wal, WalConfig, WalError};

#[derive(Clone, Debug)]
enum Op {
    /// Append records of these sizes (pipelined) and wait for them.
    Append(Vec<usize>),
    /// Close cleanly and reopen.
    Reopen,
    /// The next write keeps only `keep` bytes and the process dies while
    /// appending these records; then restart.
    Tear { sizes: Vec<usize>, keep: usize },
    /// The process dies leaving garbage `gap` bytes after the end of the
    /// last segment; then restart.
    Garbage { gap: usize, bytes: Vec<u8> },
}

fn op() -> impl Strategy<Value = Op> {
    let sizes = || prop::collection::vec(1usize..300, 1..8);
    prop_oneof![
        4 => sizes().prop_map(Op::Append),
        1 => Just(Op::Reopen),
        2 => (sizes(), 0usize..1500).prop_map(|(sizes, keep)| Op::Tear { sizes, keep }),
        1 => (0usize..200, prop::collection::vec(1u8..=255, 1..64)).prop_map(|(gap, bytes)| Op::Garbage { gap, bytes }),
    ]
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(96)
}

fn config(dir: &Path) -> WalConfig {
    // Tiny segments: rotations happen in most cases.
    WalConfig {
        segment_size: 512,
        ..WalConfig::new(dir)
    }
}

fn restart(dir: &Path) -> (Arc<FaultyStorage>, Wal, Recovery) {
    let storage = Arc::new(FaultyStorage::new());
    let (wal, recovery) = Wal::open(storage.clone(), config(dir)).unwrap();
    (storage, wal, recovery)
}

fn records(recovery: &Recovery) -> Vec<Vec<u8>> {
    replay_all(recovery).into_iter().map(|(_, p)| p).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(cases()) })]

    #[test]
    fn acknowledged_records_survive_and_none_are_invented(ops in prop::collection::vec(op(), 1..24)) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("wal");
        let (mut storage, mut wal, _) = restart(&dir);
        // The log's records, in LSN order (LSN = index + 1).
        let mut model: Vec<Vec<u8>> = Vec::new();
        let mut serial = 0u64;
        let mut fresh = |sizes: &[usize]| -> Vec<Vec<u8>> {
            sizes.iter().map(|len| { serial += 1; payload(serial, *len) }).collect()
        };

        for op in ops {
            match op {
                Op::Append(sizes) => {
                    let payloads = fresh(&sizes);
                    let lsns: Vec<_> = append_all(&wal, &payloads).into_iter().map(Result::unwrap).collect();
                    let first = model.len() as u64 + 1;
                    prop_assert_eq!(lsns, (first..first + payloads.len() as u64).collect::<Vec<_>>());
                    model.extend(payloads);
                }
                Op::Reopen => {
                    wal.close().unwrap();
                    let (s, w, recovery) = restart(&dir);
                    (storage, wal) = (s, w);
                    prop_assert!(recovery.torn_tail.is_none());
                    prop_assert_eq!(records(&recovery), model.clone());
                }
                Op::Tear { sizes, keep } => {
                    let payloads = fresh(&sizes);
                    storage.tear_next_write(keep);
                    let results = append_all(&wal, &payloads);
                    let acked = results.iter().take_while(|r| r.is_ok()).count();
                    for (i, result) in results.iter().enumerate() {
                        match result {
                            Ok(lsn) => prop_assert_eq!(*lsn, (model.len() + i) as u64 + 1),
                            Err(e) => prop_assert!(i >= acked && matches!(e, WalError::Failed(_)), "{e}"),
                        }
                    }
                    prop_assert!(storage.is_dead());
                    drop(wal);
                    let acked = model.len() + acked;
                    let mut attempted = model.clone();
                    attempted.extend(payloads);

                    let (s, w, recovery) = restart(&dir);
                    (storage, wal) = (s, w);
                    let found = records(&recovery);
                    prop_assert!(found.len() >= acked, "lost acknowledged records: {} < {acked}", found.len());
                    prop_assert!(found.len() <= attempted.len(), "invented records");
                    prop_assert_eq!(&found[..], &attempted[..found.len()]);
                    prop_assert_eq!(recovery.next_lsn, found.len() as u64 + 1);
                    model = found;
                }
                Op::Garbage { gap, bytes } => {
                    wal.close().unwrap();
                    let last = segment_files(&dir).pop().unwrap();
                    let mut data = std::fs::read(&last).unwrap();
                    let end = frames_of(&data).last().map_or(32, |(s, l)| s + l);
                    let at = (end + gap).min(data.len().saturating_sub(bytes.len()));
                    let expect_torn = at >= end && data.len() >= end + bytes.len();
                    if expect_torn {
                        data[at..at + bytes.len()].copy_from_slice(&bytes);
                        std::fs::write(&last, &data).unwrap();
                    }
                    let (s, w, recovery) = restart(&dir);
                    (storage, wal) = (s, w);
                    prop_assert_eq!(recovery.torn_tail.is_some(), expect_torn);
                    if let Some(torn) = &recovery.torn_tail {
                        prop_assert_eq!(torn.offset, end as u64);
                    }
                    prop_assert_eq!(records(&recovery), model.clone());
                }
            }
        }

        wal.close().unwrap();
        let report = wal::verify(&FsStorage, &dir);
        prop_assert!(report.is_clean(), "{}", report);
        prop_assert_eq!(report.next_lsn, model.len() as u64 + 1);
        let (_s, _w, recovery) = restart(&dir);
        prop_assert_eq!(records(&recovery), model);
    }
}
