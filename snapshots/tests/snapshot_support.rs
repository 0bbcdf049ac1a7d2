//! What snapshots need from the log: a log that starts at a chosen LSN (a
//! data directory restored from a snapshot), a reader of the durable
//! records while the writer goes on appending, and replay that stops at a
//! position (point-in-time recovery).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{append_all, config, open, payload, replay_all};
use settle_snapshots::wal::{FsStorage, Lsn, Recovery, Storage, WalConfig, WalError};

fn fs() -> Arc<dyn Storage> {
    Arc::new(FsStorage)
}

fn records(recovery: &Recovery, from: Lsn, until: Lsn) -> Vec<(Lsn, Vec<u8>)> {
    let mut out = Vec::new();
    recovery
        .replay_range(from, until, |lsn, p| {
            out.push((lsn, p.to_vec()));
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap();
    out
}

#[test]
fn an_empty_log_starts_at_the_configured_lsn_and_keeps_it_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig {
        first_lsn: 1_001,
        ..config(dir.path())
    };
    let (wal, recovery) = open(fs(), cfg.clone());
    assert_eq!((recovery.first_lsn, recovery.next_lsn), (1_001, 1_001));
    let lsns: Vec<_> = append_all(&wal, &[payload(1, 10), payload(2, 10)])
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(lsns, vec![1_001, 1_002]);
    wal.close().unwrap();
    // Reopened (with the default first LSN): the segments decide.
    let (wal, recovery) = open(fs(), config(dir.path()));
    assert_eq!((recovery.first_lsn, recovery.next_lsn), (1_001, 1_003));
    assert_eq!(replay_all(&recovery).len(), 2);
    wal.close().unwrap();

    let zero = WalConfig {
        first_lsn: 0,
        ..config(dir.path())
    };
    assert!(matches!(
        settle_snapshots::Wal::open(fs(), zero),
        Err(WalError::Config(_))
    ));
}

#[test]
fn replay_range_stops_at_the_position_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(fs(), config(dir.path()));
    let payloads: Vec<_> = (0..300).map(|i| payload(i, 100)).collect();
    append_all(&wal, &payloads);
    wal.close().unwrap();
    let (wal, recovery) = open(fs(), config(dir.path()));
    for (from, until) in [(1, 0), (1, 1), (1, 150), (40, 41), (299, 300), (1, 10_000)] {
        let got = records(&recovery, from, until);
        let want: Vec<_> = (from..=until.min(300))
            .map(|lsn| (lsn, payloads[usize::try_from(lsn - 1).unwrap()].clone()))
            .collect();
        assert_eq!(got, want, "from {from} until {until}");
    }
    wal.close().unwrap();
}

#[test]
fn a_reader_sees_exactly_the_durable_records_while_appends_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(fs(), config(dir.path()));
    let first: Vec<_> = (0..500).map(|i| payload(i, 90)).collect();
    append_all(&wal, &first);
    // More appends run while the reader reads; it must see the first 500
    // (all durable when it was made) and nothing past its bound.
    let reader = wal.reader(500).unwrap();
    let more: Vec<_> = (500..1_500).map(|i| payload(i, 90)).collect();
    let pending: Vec<_> = more
        .iter()
        .map(|p| common::append_async(&wal, p.clone()))
        .collect();
    let got = records(&reader, reader.first_lsn, 500);
    assert_eq!(got.len(), 500);
    for (lsn, p) in &got {
        assert_eq!(p, &first[usize::try_from(lsn - 1).unwrap()]);
    }
    for rx in pending {
        rx.recv().unwrap().unwrap();
    }
    // A bound past the durable LSN is cut to it.
    let reader = wal.reader(u64::MAX - 1).unwrap();
    assert_eq!(reader.next_lsn, 1_501);
    assert_eq!(records(&reader, 1, u64::MAX).len(), 1_500);
    // After compaction the reader starts later, and says so.
    wal.remove_segments_before(1_000).unwrap();
    let reader = wal.reader(1_500).unwrap();
    assert!(
        reader.first_lsn > 1 && reader.first_lsn <= 1_000,
        "{}",
        reader.first_lsn
    );
    assert!(reader.replay(1, |_, _| Ok::<(), ()>(())).is_err());
    assert_eq!(records(&reader, 1_000, 1_500).len(), 501);
    wal.close().unwrap();
}
