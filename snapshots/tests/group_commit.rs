//! Group commit: many threads appending at once get distinct LSNs, each
//! thread's records keep their order, and one fsync serves many records.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{append_async, append_wait, config, open, payload, replay_all};
use settle_snapshots::wal::faults::FaultyStorage;
use settle_snapshots::wal::{FsStorage, Storage, WalConfig};

fn fs() -> Arc<dyn Storage> {
    Arc::new(FsStorage)
}

#[test]
fn concurrent_appenders_get_distinct_lsns_in_their_own_order() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 400;
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig {
        segment_size: 64 << 10,
        ..WalConfig::new(dir.path())
    };
    let (wal, _) = open(fs(), cfg.clone());
    let per_thread: Vec<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let wal = &wal;
                s.spawn(move || {
                    // Each thread pipelines its appends, then collects the answers.
                    let pending: Vec<_> = (0..PER_THREAD)
                        .map(|i| append_async(wal, payload(t * 1_000_000 + i, 80)))
                        .collect();
                    pending
                        .into_iter()
                        .map(|rx| rx.recv().unwrap().unwrap())
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<u64> = per_thread.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=THREADS * PER_THREAD).collect::<Vec<_>>(),
        "distinct and contiguous"
    );
    for lsns in &per_thread {
        assert!(
            lsns.windows(2).all(|w| w[0] < w[1]),
            "a thread's records keep their order"
        );
    }
    let stats = wal.stats();
    assert_eq!(stats.records, THREADS * PER_THREAD);
    assert!(stats.batches < stats.records, "{stats:?}");
    assert!(stats.max_batch > 1, "{stats:?}");
    wal.close().unwrap();

    // The log holds each payload at the LSN its callback reported.
    let (_wal, recovery) = open(fs(), cfg);
    let replayed = replay_all(&recovery);
    for (t, lsns) in per_thread.iter().enumerate() {
        for (i, lsn) in lsns.iter().enumerate() {
            let expected = payload(t as u64 * 1_000_000 + i as u64, 80);
            assert_eq!(replayed[usize::try_from(lsn - 1).unwrap()].1, expected);
        }
    }
}

#[test]
fn an_idle_log_flushes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(fs(), config(dir.path()));
    for i in 1..=20 {
        // One at a time: each is its own batch, with no timer in the way.
        assert_eq!(append_wait(&wal, payload(i, 10)).unwrap(), i);
    }
    let stats = wal.stats();
    assert_eq!((stats.batches, stats.max_batch), (20, 1));
}

#[test]
fn batches_respect_their_limits() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyStorage::new());
    let cfg = WalConfig {
        max_batch_records: 3,
        max_batch_bytes: 1 << 20,
        ..config(dir.path())
    };
    let (wal, _) = open(faulty.clone(), cfg);
    faulty.pause_syncs();
    let first = append_async(&wal, payload(0, 10));
    assert!(faulty.wait_for_paused_sync(Duration::from_secs(10)));
    let rest: Vec<_> = (1..10)
        .map(|i| append_async(&wal, payload(i, 10)))
        .collect();
    faulty.resume_syncs();
    assert_eq!(first.recv().unwrap().unwrap(), 1);
    let lsns: Vec<_> = rest.iter().map(|rx| rx.recv().unwrap().unwrap()).collect();
    assert_eq!(lsns, (2..=10).collect::<Vec<_>>());
    let stats = wal.stats();
    assert_eq!((stats.batches, stats.max_batch), (4, 3), "1 + 3 + 3 + 3");

    // The byte limit: 100-byte payloads (108-byte frames), at most 250 bytes a batch.
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyStorage::new());
    let cfg = WalConfig {
        max_batch_bytes: 250,
        ..config(dir.path())
    };
    let (wal, _) = open(faulty.clone(), cfg);
    faulty.pause_syncs();
    let first = append_async(&wal, payload(0, 100));
    assert!(faulty.wait_for_paused_sync(Duration::from_secs(10)));
    let rest: Vec<_> = (1..7)
        .map(|i| append_async(&wal, payload(i, 100)))
        .collect();
    faulty.resume_syncs();
    first.recv().unwrap().unwrap();
    for rx in rest {
        rx.recv().unwrap().unwrap();
    }
    let stats = wal.stats();
    assert_eq!((stats.batches, stats.max_batch), (4, 2), "1 + 2 + 2 + 2");
}
