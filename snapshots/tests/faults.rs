//! Failures while running: a failed fsync stops the log for good (nothing
//! after it is reported durable, and it is never retried); a full disk
//! pauses it, and the same records are written, in order and without
//! garbage, once space is freed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    append_all, append_async, append_wait, config, frames_of, open, payload, replay_all,
    segment_files, spare_files, wait_until,
};
use settle_snapshots::wal::faults::FaultyStorage;
use settle_snapshots::wal::{self, FsStorage, Lsn, Storage, WalConfig, WalError, WalStatus};

fn fs() -> Arc<dyn Storage> {
    Arc::new(FsStorage)
}

#[test]
fn a_failed_fsync_stops_the_log_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyStorage::new());
    let (wal, _) = open(faulty.clone(), config(dir.path()));
    assert_eq!(append_wait(&wal, b"one".to_vec()).unwrap(), 1);

    // Fails once: later syncs would succeed, but the log must not retry.
    faulty.fail_next_sync();
    let syncs = faulty.syncs();
    let error = append_wait(&wal, b"two".to_vec()).unwrap_err();
    match &error {
        WalError::Failed(reason) => {
            assert!(
                reason.contains("fsync of") && reason.contains("00000000000000000001.wal"),
                "{reason}"
            );
        }
        other => panic!("expected Failed, got {other}"),
    }
    assert!(matches!(wal.status(), WalStatus::Failed(_)));
    assert_eq!(wal.durable_lsn(), 1);
    assert!(matches!(
        append_wait(&wal, b"three".to_vec()),
        Err(WalError::Failed(_))
    ));
    assert_eq!(faulty.syncs(), syncs + 1, "no sync after the failed one");
    assert!(matches!(wal.close(), Err(WalError::Failed(_))));

    // After a restart, the acknowledged record is there.
    let (_wal, recovery) = open(fs(), config(dir.path()));
    let replayed = replay_all(&recovery);
    assert_eq!(replayed[0], (1, b"one".to_vec()));
    assert!(
        replayed.len() <= 2,
        "the unacknowledged record may or may not have reached the disk"
    );
}

#[test]
fn nothing_after_a_failed_fsync_is_reported_durable_under_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyStorage::new());
    let (wal, _) = open(faulty.clone(), config(dir.path()));
    faulty.fail_syncs_from(6);
    let results: Vec<(usize, Result<Lsn, WalError>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let wal = &wal;
                s.spawn(move || {
                    (0..100)
                        .map(|i| (t, append_wait(wal, payload(t as u64 * 1000 + i, 64))))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut ok: Vec<Lsn> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().copied())
        .collect();
    ok.sort_unstable();
    let durable = wal.durable_lsn();
    assert!(durable > 0, "some batches were durable before the failure");
    assert_eq!(
        ok,
        (1..=durable).collect::<Vec<_>>(),
        "exactly the records before the failure"
    );
    assert!(
        results
            .iter()
            .filter(|(_, r)| r.is_err())
            .all(|(_, r)| matches!(r, Err(WalError::Failed(_))))
    );
    assert_eq!(
        results.iter().filter(|(_, r)| r.is_err()).count(),
        400 - ok.len()
    );
    assert!(matches!(wal.status(), WalStatus::Failed(_)));
}

#[test]
fn a_write_error_other_than_a_full_disk_fails_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyStorage::new());
    let (wal, _) = open(faulty.clone(), config(dir.path()));
    faulty.tear_next_write(3);
    assert!(matches!(
        append_wait(&wal, b"torn".to_vec()),
        Err(WalError::Failed(_))
    ));
    assert!(matches!(wal.status(), WalStatus::Failed(_)));
    drop(wal);
    let (_wal, recovery) = open(fs(), config(dir.path()));
    assert_eq!(recovery.next_lsn, 1);
    assert_eq!(recovery.torn_tail.map(|t| t.offset), Some(32));
}

/// ENOSPC in the middle of a batch: status DiskFull, callbacks wait, the
/// partial write is undone; once space is freed the same records are
/// written with consecutive LSNs, and a reopen finds exactly them.
#[test]
fn disk_full_in_the_middle_of_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyStorage::new());
    let (wal, _) = open(faulty.clone(), config(dir.path()));
    let records: Vec<_> = (0..8).map(|i| payload(i, 100)).collect();

    // Record 1 alone; hold the writer in its sync while records 2..=6 queue.
    faulty.pause_syncs();
    let first = append_async(&wal, records[0].clone());
    assert!(faulty.wait_for_paused_sync(Duration::from_secs(10)));
    let batch: Vec<_> = records[1..6]
        .iter()
        .map(|p| append_async(&wal, p.clone()))
        .collect();
    // The disk fills up 2.5 frames into that batch.
    faulty.disk_full_after(2 * 108 + 54);
    faulty.resume_syncs();
    assert_eq!(first.recv().unwrap().unwrap(), 1);

    wait_until("status DiskFull", || wal.status() == WalStatus::DiskFull);
    // New appends queue behind the stuck batch.
    let later: Vec<_> = records[6..]
        .iter()
        .map(|p| append_async(&wal, p.clone()))
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        batch.iter().chain(&later).all(|rx| rx.is_empty()),
        "no callback while the disk is full"
    );
    assert_eq!(wal.durable_lsn(), 1);
    // The partial write was undone: zeros right after record 1.
    let segment = segment_files(dir.path()).pop().unwrap();
    let bytes = std::fs::read(&segment).unwrap();
    assert_eq!(frames_of(&bytes).len(), 1);
    assert!(
        bytes[32 + 108..].iter().all(|b| *b == 0),
        "no half-written batch behind the end"
    );
    assert!(wal.stats().disk_full_retries >= 1);

    faulty.free_space();
    let lsns: Vec<_> = batch
        .iter()
        .chain(&later)
        .map(|rx| rx.recv().unwrap().unwrap())
        .collect();
    assert_eq!(lsns, (2..=8).collect::<Vec<_>>());
    assert_eq!(wal.status(), WalStatus::Ok);
    wal.close().unwrap();

    let (_wal, recovery) = open(fs(), config(dir.path()));
    assert!(recovery.torn_tail.is_none());
    let replayed = replay_all(&recovery);
    assert_eq!(
        replayed.into_iter().map(|(_, p)| p).collect::<Vec<_>>(),
        records
    );
    assert!(wal::verify(&FsStorage, dir.path()).is_clean());
}

/// A log of 256-byte segments on `FaultyStorage` whose first segment one
/// 200-byte record has filled: the next record needs a new segment.
fn a_full_first_segment() -> (tempfile::TempDir, Arc<FaultyStorage>, WalConfig, wal::Wal) {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyStorage::new());
    let cfg = WalConfig {
        segment_size: 256,
        ..WalConfig::new(dir.path())
    };
    let (wal, _) = open(faulty.clone(), cfg.clone());
    assert_eq!(append_wait(&wal, payload(0, 200)).unwrap(), 1);
    (dir, faulty, cfg, wal)
}

#[test]
fn disk_full_when_creating_a_segment() {
    let (dir, faulty, cfg, wal) = a_full_first_segment();
    faulty.disk_full_after(0);
    let pending = append_async(&wal, payload(1, 200));
    wait_until("status DiskFull", || wal.status() == WalStatus::DiskFull);
    assert!(pending.is_empty());
    faulty.free_space();
    assert_eq!(pending.recv().unwrap().unwrap(), 2);
    assert_eq!(wal.status(), WalStatus::Ok);
    wal.close().unwrap();
    assert_eq!(segment_files(dir.path()).len(), 2);
    let (_wal, recovery) = open(fs(), cfg);
    assert_eq!(replay_all(&recovery).len(), 2);
}

/// The disk fills between naming a new segment and recording it in
/// `NEWEST`: the log waits (`DiskFull`), then goes on in that segment, and
/// `NEWEST` names it.
#[test]
fn disk_full_when_recording_the_newest_segment() {
    let (dir, faulty, cfg, wal) = a_full_first_segment();
    // Room for the new segment's 32-byte header, none for `NEWEST`.
    faulty.disk_full_after(32);
    let pending = append_async(&wal, payload(1, 200));
    wait_until("status DiskFull", || wal.status() == WalStatus::DiskFull);
    assert!(pending.is_empty());
    let recorded = std::fs::read_to_string(dir.path().join("NEWEST")).unwrap();
    assert_eq!(recorded, "00000000000000000001.wal\n");
    faulty.free_space();
    assert_eq!(pending.recv().unwrap().unwrap(), 2);
    wal.close().unwrap();
    let recorded = std::fs::read_to_string(dir.path().join("NEWEST")).unwrap();
    assert_eq!(recorded, "00000000000000000002.wal\n");
    assert!(!dir.path().join("NEWEST.tmp").exists());
    let (_wal, recovery) = open(fs(), cfg);
    assert_eq!(replay_all(&recovery).len(), 2);
}

/// A spare that cannot be prepared (full disk) changes nothing the log
/// holds: rotation creates the segment itself, and once space is back the
/// next spare is prepared and used.
#[test]
fn a_spare_the_full_disk_refuses_leaves_the_log_working() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyStorage::new());
    let cfg = WalConfig {
        segment_size: 256,
        spare_segments: true,
        ..WalConfig::new(dir.path())
    };
    let (wal, _) = open(
        fs(),
        WalConfig {
            spare_segments: false,
            ..cfg.clone()
        },
    );
    assert_eq!(append_wait(&wal, payload(0, 200)).unwrap(), 1);
    wal.close().unwrap();

    faulty.disk_full_after(0);
    let (wal, _) = open(faulty.clone(), cfg.clone());
    // The preparer fails (or has not run yet) and the segment for record 2
    // waits for space like any other.
    let pending = append_async(&wal, payload(1, 200));
    wait_until("status DiskFull", || wal.status() == WalStatus::DiskFull);
    faulty.free_space();
    assert_eq!(pending.recv().unwrap().unwrap(), 2);
    // With space back, spares are prepared and used again.
    let mut next = 2;
    wait_until("a spare is used", || {
        append_wait(&wal, payload(next, 200)).unwrap();
        next += 1;
        wal.stats().spares_used >= 1
    });
    wal.close().unwrap();
    assert_eq!(spare_files(dir.path()), []);
    let (_wal, recovery) = open(fs(), cfg);
    let replayed = replay_all(&recovery);
    assert!(replayed.len() >= 3);
    assert_eq!(replayed[1], (2, payload(1, 200)));
}

#[test]
fn closing_while_the_disk_is_full_reports_what_was_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyStorage::new());
    let (wal, _) = open(faulty.clone(), config(dir.path()));
    assert_eq!(append_wait(&wal, b"kept".to_vec()).unwrap(), 1);
    faulty.disk_full_after(10);
    let stuck = append_async(&wal, payload(1, 100));
    wait_until("status DiskFull", || wal.status() == WalStatus::DiskFull);
    let queued = append_async(&wal, payload(2, 100));
    assert!(matches!(wal.close(), Err(WalError::DiskFull { .. })));
    assert!(matches!(
        stuck.recv().unwrap(),
        Err(WalError::DiskFull { .. })
    ));
    assert!(matches!(
        queued.recv().unwrap(),
        Err(WalError::DiskFull { .. })
    ));

    faulty.free_space();
    let (wal, recovery) = open(fs(), config(dir.path()));
    assert!(recovery.torn_tail.is_none(), "the partial write was undone");
    assert_eq!(replay_all(&recovery), vec![(1, b"kept".to_vec())]);
    assert_eq!(append_wait(&wal, b"next".to_vec()).unwrap(), 2);
}

#[test]
fn many_appends_through_a_full_disk_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyStorage::new());
    let (wal, _) = open(faulty.clone(), config(dir.path()));
    let records: Vec<_> = (0..500)
        .map(|i| payload(i, 1 + usize::try_from(i * 37 % 300).unwrap()))
        .collect();
    faulty.disk_full_after(20_000);
    let freer = {
        let faulty = Arc::clone(&faulty);
        std::thread::spawn(move || {
            wait_until("disk full", || faulty.bytes_written() >= 19_000);
            std::thread::sleep(Duration::from_millis(30));
            faulty.free_space();
        })
    };
    let lsns: Vec<_> = append_all(&wal, &records)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    freer.join().unwrap();
    assert_eq!(lsns, (1..=500).collect::<Vec<_>>());
    wal.close().unwrap();
    let (_wal, recovery) = open(fs(), config(dir.path()));
    assert_eq!(
        replay_all(&recovery)
            .into_iter()
            .map(|(_, p)| p)
            .collect::<Vec<_>>(),
        records
    );
}
