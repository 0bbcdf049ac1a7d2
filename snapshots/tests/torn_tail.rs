//! Torn tails: whatever a crash leaves of the last write is cut at `open`
//! (and reported with segment and offset), every earlier record survives,
//! and appending works after the cut, with nothing of the cut bytes left to
//! be misread later.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Rng, append_async, append_wait, config, frames_of, open, replay_all, segment_files};
use settle_snapshots::wal::faults::FaultyStorage;
use settle_snapshots::wal::{self, FsStorage, Storage, WalConfig, WalError};

fn fs() -> Arc<dyn Storage> {
    Arc::new(FsStorage)
}

/// Payloads without zero bytes, so "bytes cut" is exact.
fn record(i: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| b'a' + u8::try_from((i * 7 + j) % 26).unwrap())
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    /// The write reached only the bytes before `at`: zeros from there.
    ZerosFrom(usize),
    /// The file ends at `at`.
    TruncateAt(usize),
    /// The byte at `at` is garbled.
    Garble(usize),
}

/// Damages the last frame of the last segment at every byte offset, in
/// every way, and checks recovery each time.
fn torn_last_record_everywhere(cfg: &WalConfig, payloads: &[Vec<u8>]) {
    let dir = cfg.dir.clone();
    let (wal, _) = open(fs(), cfg.clone());
    for p in payloads {
        append_wait(&wal, p.clone()).unwrap();
    }
    wal.close().unwrap();
    let originals: Vec<_> = segment_files(&dir)
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    // The directory as it was, `NEWEST` too: a case that rotates names a
    // newer segment there, which the next case's restored files lack.
    let newest = std::fs::read(dir.join("NEWEST")).unwrap();
    let restore = || {
        std::fs::write(dir.join("NEWEST"), &newest).unwrap();
        for extra in segment_files(&dir) {
            std::fs::remove_file(extra).unwrap();
        }
        for (path, bytes) in &originals {
            std::fs::write(path, bytes).unwrap();
        }
    };
    let (segment, original) = originals.last().cloned().unwrap();
    let (start, len) = *frames_of(&original).last().unwrap();
    let kept = payloads.len() - 1;

    let mut cases = 0;
    for at in start..start + len {
        for damage in [
            Damage::ZerosFrom(at),
            Damage::TruncateAt(at),
            Damage::Garble(at),
        ] {
            cases += 1;
            let mut bytes = original.clone();
            match damage {
                Damage::ZerosFrom(at) => bytes[at..].fill(0),
                Damage::TruncateAt(at) => bytes.truncate(at),
                Damage::Garble(at) => bytes[at] ^= 0xFF,
            }
            restore();
            std::fs::write(&segment, &bytes).unwrap();
            // Cutting exactly at the frame's start leaves a clean log.
            let clean = at == start && !matches!(damage, Damage::Garble(_));

            let report = wal::verify(&FsStorage, &dir);
            assert_eq!(report.problem.is_none(), clean, "{damage:?}: {report}");
            assert!(report.opens(), "{damage:?}: {report}");

            let (wal, recovery) = open(fs(), cfg.clone());
            match (&recovery.torn_tail, clean) {
                (None, true) => {}
                (Some(torn), false) => {
                    assert_eq!(torn.segment, segment, "{damage:?}");
                    assert_eq!(torn.offset, start as u64, "{damage:?}");
                    // The data cut: up to the last non-zero byte of what was written.
                    let written = bytes[start..]
                        .iter()
                        .rposition(|b| *b != 0)
                        .map_or(0, |i| i + 1);
                    assert!(written > 0);
                    assert_eq!(torn.bytes_cut, written as u64, "{damage:?}");
                }
                (torn, _) => panic!("{damage:?}: torn tail {torn:?}, expected clean = {clean}"),
            }
            let replayed = replay_all(&recovery);
            assert_eq!(replayed.len(), kept, "{damage:?}");
            for (i, (lsn, bytes)) in replayed.iter().enumerate() {
                assert_eq!((*lsn, bytes), (i as u64 + 1, &payloads[i]), "{damage:?}");
            }

            // Appending works after the cut, and nothing of the cut remains.
            let fresh = b"written after the cut".to_vec();
            assert_eq!(
                append_wait(&wal, fresh.clone()).unwrap(),
                kept as u64 + 1,
                "{damage:?}"
            );
            wal.close().unwrap();
            let report = wal::verify(&FsStorage, &dir);
            assert!(report.is_clean(), "{damage:?}: {report}");
            let (_wal, recovery) = open(fs(), cfg.clone());
            assert!(recovery.torn_tail.is_none());
            let replayed = replay_all(&recovery);
            assert_eq!(replayed.len(), kept + 1, "{damage:?}");
            assert_eq!(replayed[kept].1, fresh, "{damage:?}");
        }
    }
    assert_eq!(cases, 3 * len);
    restore();
}

#[test]
fn torn_last_record_at_every_byte_offset() {
    let dir = tempfile::tempdir().unwrap();
    let payloads: Vec<_> = [10, 1, 57, 40]
        .iter()
        .enumerate()
        .map(|(i, len)| record(i, *len))
        .collect();
    torn_last_record_everywhere(&config(dir.path()), &payloads);
}

#[test]
fn torn_first_record_of_a_fresh_segment_at_every_byte_offset() {
    // Segments of 128 bytes: each 60-byte record rotates into a new segment,
    // so the torn record is alone in the last segment.
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig {
        segment_size: 128,
        ..WalConfig::new(dir.path())
    };
    let payloads: Vec<_> = (0..4).map(|i| record(i, 60)).collect();
    torn_last_record_everywhere(&cfg, &payloads);
    assert!(segment_files(dir.path()).len() >= 4);
}

#[test]
fn garbage_after_the_last_record_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(fs(), config(dir.path()));
    for i in 0..3 {
        append_wait(&wal, record(i, 30)).unwrap();
    }
    wal.close().unwrap();
    let segment = segment_files(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let end = frames_of(&bytes).last().map(|(s, l)| s + l).unwrap();
    let mut rng = Rng::new(9);
    let garbage: Vec<u8> = rng.bytes(500).into_iter().map(|b| b | 1).collect();
    bytes[end..end + 500].copy_from_slice(&garbage);
    std::fs::write(&segment, &bytes).unwrap();

    let (wal, recovery) = open(fs(), config(dir.path()));
    let torn = recovery.torn_tail.clone().expect("torn tail");
    assert_eq!((torn.offset, torn.bytes_cut), (end as u64, 500));
    assert_eq!(recovery.next_lsn, 4);
    assert_eq!(append_wait(&wal, b"x".to_vec()).unwrap(), 4);
    wal.close().unwrap();
    let bytes = std::fs::read(&segment).unwrap();
    assert!(
        bytes[end + 9..].iter().all(|b| *b == 0),
        "the cut bytes are zeros"
    );
}

/// The process dies in the middle of writing a batch of three records, at
/// every byte: the records wholly written survive (they were never
/// acknowledged, which is allowed), the partial one is cut, every
/// acknowledged record survives.
#[test]
fn torn_write_at_every_byte_of_a_batch() {
    let batch: Vec<_> = (0..3).map(|i| record(10 + i, 20 + 5 * i)).collect();
    let frame_ends: Vec<usize> = batch
        .iter()
        .scan(0, |end, p| {
            *end += 8 + p.len();
            Some(*end)
        })
        .collect();
    let batch_len = *frame_ends.last().unwrap();

    for keep in 0..batch_len {
        let dir = tempfile::tempdir().unwrap();
        let faulty = Arc::new(FaultyStorage::new());
        let (wal, _) = open(faulty.clone(), config(dir.path()));
        assert_eq!(append_wait(&wal, record(0, 33)).unwrap(), 1);

        // Hold the writer inside the sync of record 2, queue the batch behind it.
        faulty.pause_syncs();
        let second = append_async(&wal, record(1, 44));
        assert!(faulty.wait_for_paused_sync(Duration::from_secs(10)));
        let pending: Vec<_> = batch
            .iter()
            .map(|p| append_async(&wal, p.clone()))
            .collect();
        faulty.tear_next_write(keep);
        faulty.resume_syncs();

        assert_eq!(second.recv().unwrap().unwrap(), 2);
        for rx in pending {
            assert!(
                matches!(rx.recv().unwrap(), Err(WalError::Failed(_))),
                "keep {keep}"
            );
        }
        assert!(faulty.is_dead());
        assert_eq!(wal.durable_lsn(), 2);
        drop(wal);

        // Restart: a fresh process on the same directory.
        let (wal, recovery) = open(fs(), config(dir.path()));
        let whole = frame_ends.iter().filter(|end| **end <= keep).count();
        let at_boundary = keep == 0 || frame_ends.contains(&keep);
        assert_eq!(
            recovery.torn_tail.is_none(),
            at_boundary,
            "keep {keep}: {:?}",
            recovery.torn_tail
        );
        let replayed = replay_all(&recovery);
        assert_eq!(replayed.len(), 2 + whole, "keep {keep}");
        assert_eq!(replayed[0].1, record(0, 33));
        assert_eq!(replayed[1].1, record(1, 44));
        for (i, (_, bytes)) in replayed[2..].iter().enumerate() {
            assert_eq!(bytes, &batch[i], "keep {keep}");
        }
        assert_eq!(
            append_wait(&wal, b"after".to_vec()).unwrap(),
            3 + whole as u64
        );
        wal.close().unwrap();
        assert!(wal::verify(&FsStorage, dir.path()).is_clean());
        check_no_temp_files(dir.path());
    }
}

fn check_no_temp_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name();
        let name = name.to_str().unwrap();
        assert!(
            name.ends_with(".wal") || name == "NEWEST",
            "unexpected file {name:?}"
        );
    }
}
