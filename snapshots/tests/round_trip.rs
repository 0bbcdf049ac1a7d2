//! Appending, closing, reopening and replaying: the same payloads at the
//! same LSNs, across many segment rotations, and appends carry on at the
//! right LSN. Also limits, compaction, leftovers of interrupted creations.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{
    Rng, append_all, append_wait, config, open, payload, replay_all, segment_files, spare_files,
    wait_until,
};
use settle_snapshots::wal::{
    self, FsStorage, FsyncPolicy, MAX_RECORD, ReplayError, Storage, Wal, WalConfig, WalError,
    WalStatus,
};

fn fs() -> Arc<dyn Storage> {
    Arc::new(FsStorage)
}

#[test]
fn round_trip_across_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(1);
    // Mostly small records, some bigger than a whole 4 KiB segment.
    let payloads: Vec<Vec<u8>> = (0..2_000u64)
        .map(|i| {
            let len = if i % 250 == 7 {
                5_000 + rng.below(5_000)
            } else {
                1 + rng.below(600)
            };
            payload(i, usize::try_from(len).unwrap())
        })
        .collect();

    let (wal, recovery) = open(fs(), config(dir.path()));
    assert_eq!(
        (
            recovery.first_lsn,
            recovery.next_lsn,
            recovery.torn_tail.clone()
        ),
        (1, 1, None)
    );
    let lsns: Vec<_> = append_all(&wal, &payloads)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(lsns, (1..=2_000).collect::<Vec<_>>());
    assert_eq!(wal.durable_lsn(), 2_000);
    let stats = wal.stats();
    assert_eq!(stats.records, 2_000);
    assert!(stats.segments_created > 10, "{stats:?}");
    wal.close().unwrap();
    assert!(segment_files(dir.path()).len() > 10);

    let (wal, recovery) = open(fs(), config(dir.path()));
    assert_eq!(
        (
            recovery.first_lsn,
            recovery.next_lsn,
            recovery.torn_tail.clone()
        ),
        (1, 2_001, None)
    );
    let replayed = replay_all(&recovery);
    assert_eq!(replayed.len(), 2_000);
    for (i, (lsn, bytes)) in replayed.iter().enumerate() {
        assert_eq!(*lsn, i as u64 + 1);
        assert_eq!(bytes, &payloads[i], "LSN {lsn}");
    }
    // Appends continue with the right LSN.
    assert_eq!(append_wait(&wal, b"after reopen".to_vec()).unwrap(), 2_001);
    wal.close().unwrap();

    let report = wal::verify(&FsStorage, dir.path());
    assert!(report.is_clean(), "{report}");
    assert_eq!(
        (report.first_lsn, report.next_lsn, report.records),
        (1, 2_002, 2_001)
    );
    let (_wal, recovery) = open(fs(), config(dir.path()));
    let replayed = replay_all(&recovery);
    assert_eq!(replayed.last().unwrap(), &(2_001, b"after reopen".to_vec()));
}

#[test]
fn replay_from_the_middle_and_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(fs(), config(dir.path()));
    let payloads: Vec<_> = (0..300).map(|i| payload(i, 100)).collect();
    append_all(&wal, &payloads);
    wal.close().unwrap();

    let (_wal, recovery) = open(fs(), config(dir.path()));
    let mut seen = Vec::new();
    recovery
        .replay(250, |lsn, _| {
            seen.push(lsn);
            Ok::<(), ()>(())
        })
        .unwrap();
    assert_eq!(seen, (250..=300).collect::<Vec<_>>());
    assert!(
        recovery.replay(301, |_, _| Ok::<(), ()>(())).is_ok(),
        "from next_lsn: nothing to do"
    );
    assert!(matches!(
        recovery.replay(302, |_, _| Ok::<(), ()>(())),
        Err(ReplayError::OutOfRange {
            from: 302,
            first_lsn: 1,
            next_lsn: 301
        })
    ));
    assert!(matches!(
        recovery.replay(0, |_, _| Ok::<(), ()>(())),
        Err(ReplayError::OutOfRange { .. })
    ));
    // The caller's error stops the replay and names the LSN.
    let failed = recovery.replay(
        1,
        |lsn, _| if lsn == 42 { Err("bad event") } else { Ok(()) },
    );
    assert!(matches!(
        failed,
        Err(ReplayError::Apply {
            lsn: 42,
            source: "bad event"
        })
    ));
}

#[test]
fn empty_log_opens_reopens_and_starts_at_one() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("data/wal");
    let (wal, recovery) = open(fs(), config(&wal_dir));
    assert_eq!(
        (recovery.first_lsn, recovery.next_lsn, recovery.records()),
        (1, 1, 0)
    );
    assert_eq!(wal.durable_lsn(), 0);
    assert_eq!(wal.status(), WalStatus::Ok);
    wal.close().unwrap();
    assert_eq!(
        segment_files(&wal_dir).len(),
        1,
        "the first segment is created at open"
    );
    let (wal, recovery) = open(fs(), config(&wal_dir));
    assert_eq!((recovery.first_lsn, recovery.next_lsn), (1, 1));
    assert!(replay_all(&recovery).is_empty());
    assert_eq!(append_wait(&wal, vec![7]).unwrap(), 1);
}

#[test]
fn record_size_limits() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(fs(), config(dir.path()));
    assert!(matches!(
        append_wait(&wal, Vec::new()),
        Err(WalError::RecordSize { len: 0 })
    ));
    let too_big = MAX_RECORD + 1;
    assert!(
        matches!(append_wait(&wal, vec![1; too_big]), Err(WalError::RecordSize { len }) if len == too_big)
    );
    // The largest record gets a segment of its own size.
    assert_eq!(append_wait(&wal, vec![0xA5; MAX_RECORD]).unwrap(), 1);
    assert_eq!(append_wait(&wal, b"small".to_vec()).unwrap(), 2);
    wal.close().unwrap();
    let (_wal, recovery) = open(fs(), config(dir.path()));
    let replayed = replay_all(&recovery);
    assert_eq!(replayed.len(), 2);
    assert_eq!(replayed[0].1.len(), MAX_RECORD);
    assert_eq!(replayed[1].1, b"small");
}

#[test]
fn config_limits_are_checked_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let bad = WalConfig {
        segment_size: 10,
        ..WalConfig::new(dir.path())
    };
    assert!(matches!(Wal::open(fs(), bad), Err(WalError::Config(_))));
    let bad = WalConfig {
        max_batch_records: 0,
        ..WalConfig::new(dir.path())
    };
    assert!(matches!(Wal::open(fs(), bad), Err(WalError::Config(_))));
}

#[test]
fn compaction_removes_only_whole_segments_before_the_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(fs(), config(dir.path()));
    let payloads: Vec<_> = (0..400).map(|i| payload(i, 200)).collect();
    append_all(&wal, &payloads);
    let before = segment_files(dir.path());
    assert!(before.len() > 5);

    assert_eq!(wal.remove_segments_before(1).unwrap(), 0);
    // Segment boundaries from the names: remove everything wholly before LSN 150.
    let firsts: Vec<u64> = before
        .iter()
        .map(|p| p.file_stem().unwrap().to_str().unwrap().parse().unwrap())
        .collect();
    let keep_from = *firsts.iter().filter(|f| **f <= 150).max().unwrap();
    let removed = wal.remove_segments_before(150).unwrap();
    assert_eq!(removed, firsts.iter().filter(|f| **f < keep_from).count());
    assert_eq!(segment_files(dir.path()).len(), before.len() - removed);
    // Never the segment being written, whatever the LSN.
    wal.remove_segments_before(u64::MAX).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(append_wait(&wal, b"next".to_vec()).unwrap(), 401);
    wal.close().unwrap();

    let (_wal, recovery) = open(fs(), config(dir.path()));
    assert_eq!(recovery.next_lsn, 402);
    assert!(recovery.first_lsn > 150);
    assert!(matches!(
        recovery.replay(1, |_, _| Ok::<(), ()>(())),
        Err(ReplayError::OutOfRange { .. })
    ));
    let replayed = replay_all(&recovery);
    assert_eq!(replayed.last().unwrap().1, b"next");
    for (lsn, bytes) in &replayed[..replayed.len() - 1] {
        assert_eq!(bytes, &payloads[usize::try_from(lsn - 1).unwrap()]);
    }
}

#[test]
fn interrupted_segment_creation_and_foreign_files_are_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(fs(), config(dir.path()));
    append_wait(&wal, b"one".to_vec()).unwrap();
    wal.close().unwrap();
    // A crash between creating a segment and renaming it leaves a temp file.
    std::fs::write(dir.path().join("00000000000000000002.wal.tmp"), [0u8; 100]).unwrap();
    std::fs::write(dir.path().join("README"), b"not a segment").unwrap();
    let report = wal::verify(&FsStorage, dir.path());
    assert!(report.is_clean());
    assert_eq!(report.other_files.len(), 2);

    let (wal, recovery) = open(fs(), config(dir.path()));
    assert_eq!(recovery.next_lsn, 2);
    assert!(!dir.path().join("00000000000000000002.wal.tmp").exists());
    assert!(dir.path().join("README").exists());
    assert_eq!(append_wait(&wal, b"two".to_vec()).unwrap(), 2);
}

/// Spares (zero-filled ahead of time) become the next segments: the log
/// reads back the same, and nothing but segments is left after close; a
/// spare left by a crash is removed at open.
#[test]
fn spare_segments_become_segments_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig {
        spare_segments: true,
        ..config(dir.path())
    };
    let spare_is_written = || spare_files(dir.path()).iter().any(|(_, len)| *len == 4096);
    let (wal, _) = open(fs(), cfg.clone());
    let mut payloads = Vec::new();
    // Waiting for a whole spare before each append lets most rotations (one
    // every five records here) find one ready.
    for i in 0..300u64 {
        wait_until("a spare segment", spare_is_written);
        let p = payload(i, 700);
        assert_eq!(append_wait(&wal, p.clone()).unwrap(), i + 1);
        payloads.push(p);
    }
    // A record bigger than a segment gets a segment of its own size (not the spare).
    let big = payload(300, 6_000);
    append_wait(&wal, big.clone()).unwrap();
    payloads.push(big);
    let stats = wal.stats();
    assert!(stats.segments_created >= 50, "{stats:?}");
    assert!(
        stats.spares_used > 0 && stats.spares_used < stats.segments_created,
        "{stats:?}"
    );
    wal.close().unwrap();
    assert_eq!(
        spare_files(dir.path()),
        [],
        "a closed log leaves only segments"
    );
    let report = wal::verify(&FsStorage, dir.path());
    assert!(
        report.is_clean() && report.other_files.is_empty(),
        "{report}"
    );

    // A crash leaves spares (here: one half written) behind; open removes them.
    std::fs::write(dir.path().join("spare-0.wal.tmp"), [0u8; 1000]).unwrap();
    std::fs::write(dir.path().join("spare-7.wal.tmp"), [0u8; 4096]).unwrap();
    let (wal, recovery) = open(fs(), cfg);
    let replayed: Vec<_> = replay_all(&recovery).into_iter().map(|(_, b)| b).collect();
    assert_eq!(replayed, payloads);
    assert_eq!(append_wait(&wal, b"after".to_vec()).unwrap(), 302);
    wal.close().unwrap();
    assert_eq!(spare_files(dir.path()), []);
}

#[test]
fn a_panicking_callback_does_not_stop_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(fs(), config(dir.path()));
    wal.append(
        b"boom".to_vec(),
        Box::new(|_| panic!("caller bug (expected in this test)")),
    );
    assert_eq!(append_wait(&wal, b"fine".to_vec()).unwrap(), 2);
    assert_eq!(wal.status(), WalStatus::Ok);
    wal.close().unwrap();
}

#[test]
fn fsync_never_round_trips_and_syncs_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig {
        fsync: FsyncPolicy::Never,
        ..config(dir.path())
    };
    let (wal, _) = open(fs(), cfg.clone());
    let payloads: Vec<_> = (0..500).map(|i| payload(i, 50)).collect();
    assert!(append_all(&wal, &payloads).iter().all(Result::is_ok));
    assert_eq!(wal.stats().fsync_time, std::time::Duration::ZERO);
    wal.close().unwrap();
    let (_wal, recovery) = open(fs(), cfg);
    assert_eq!(replay_all(&recovery).len(), 500);
}

#[test]
fn callbacks_run_in_append_order_and_close_flushes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(fs(), config(dir.path()));
    let counter = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = crossbeam_channel::unbounded();
    for i in 0..1_000usize {
        let counter = Arc::clone(&counter);
        let tx = tx.clone();
        wal.append(
            payload(i as u64, 20),
            Box::new(move |result| {
                let seen = counter.fetch_add(1, Ordering::SeqCst);
                tx.send((i, seen, result.unwrap())).unwrap();
            }),
        );
    }
    // close writes and syncs everything already appended.
    wal.close().unwrap();
    drop(tx);
    let results: Vec<_> = rx.iter().collect();
    assert_eq!(results.len(), 1_000);
    for (i, seen, lsn) in results {
        assert_eq!((seen, lsn), (i, i as u64 + 1));
    }
}

#[test]
fn replay_reads_records_across_read_chunks() {
    // Replay reads 1 MiB at a time: records straddle chunk boundaries, and
    // some are larger than a chunk.
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig {
        segment_size: 8 << 20,
        ..WalConfig::new(dir.path())
    };
    let mut rng = Rng::new(5);
    let payloads: Vec<Vec<u8>> = (0..200u64)
        .map(|i| {
            let len = if i % 40 == 3 {
                1_500_000 + rng.below(100_000)
            } else {
                1 + rng.below(60_000)
            };
            payload(i, usize::try_from(len).unwrap())
        })
        .collect();
    let (wal, _) = open(fs(), cfg.clone());
    assert!(append_all(&wal, &payloads).iter().all(Result::is_ok));
    wal.close().unwrap();
    let (_wal, recovery) = open(fs(), cfg);
    let replayed = replay_all(&recovery);
    assert_eq!(replayed.len(), payloads.len());
    for ((lsn, bytes), (i, expected)) in replayed.iter().zip(payloads.iter().enumerate()) {
        assert_eq!((*lsn, bytes.len()), (i as u64 + 1, expected.len()));
        assert_eq!(bytes, expected, "LSN {lsn}");
    }
    // From the middle of a later segment, too.
    let mut seen = 0u64;
    recovery
        .replay(150, |lsn, bytes| {
            assert_eq!(bytes, &payloads[usize::try_from(lsn - 1).unwrap()][..]);
            seen += 1;
            Ok::<(), ()>(())
        })
        .unwrap();
    assert_eq!(seen, 51);
}
