//! Corruption before the tail: `open` refuses with the segment and offset,
//! `verify` reports the same place without writing, and `repair` cuts the
//! log there after backing up everything it changes, after which `open`
//! succeeds with exactly the records before the cut.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{
    append_all, append_wait, config, frames_of, open, payload, replay_all, segment_files,
};
use settle_snapshots::wal::faults::FaultyStorage;
use settle_snapshots::wal::{self, FsStorage, ProblemKind, Storage, Wal, WalError};

fn fs() -> Arc<dyn Storage> {
    Arc::new(FsStorage)
}

/// A log of 100 records of 200 bytes in 4 KiB segments (several segments).
fn build(dir: &Path) -> Vec<Vec<u8>> {
    let payloads: Vec<_> = (0..100).map(|i| payload(i, 200)).collect();
    let (wal, _) = open(fs(), config(dir));
    assert!(append_all(&wal, &payloads).iter().all(Result::is_ok));
    wal.close().unwrap();
    assert!(segment_files(dir).len() >= 5);
    payloads
}

/// Where the record at `lsn` is: (segment, frame offset).
fn locate(dir: &Path, lsn: u64) -> (PathBuf, usize) {
    for path in segment_files(dir) {
        let first: u64 = first_lsn_of(&path);
        let frames = frames_of(&std::fs::read(&path).unwrap());
        if lsn >= first && lsn < first + frames.len() as u64 {
            return (path, frames[usize::try_from(lsn - first).unwrap()].0);
        }
    }
    panic!("LSN {lsn} not found");
}

/// The first LSN of a segment, from its file name.
fn first_lsn_of(segment: &Path) -> u64 {
    segment
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn damage(path: &Path, at: usize, f: impl FnOnce(&mut u8)) {
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes[at]);
    std::fs::write(path, bytes).unwrap();
}

fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect()
}

/// Open fails at (segment, offset); verify says the same; repair cuts there
/// with backups; the repaired log holds the first `kept` records.
fn check(dir: &Path, payloads: &[Vec<u8>], segment: &Path, offset: u64, kept: usize, reason: &str) {
    let error = Wal::open(fs(), config(dir)).expect_err("open must refuse a corrupt log");
    match &error {
        WalError::Corrupt {
            segment: s,
            offset: o,
            reason: r,
        } => {
            assert_eq!((s.as_path(), *o), (segment, offset), "{error}");
            assert!(r.contains(reason), "reason {r:?} should mention {reason:?}");
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    let text = error.to_string();
    assert!(
        text.contains(&segment.display().to_string()) && text.contains(&format!("offset {offset}")),
        "{text}"
    );

    let before = files(dir);
    let report = wal::verify(&FsStorage, dir);
    assert_eq!(files(dir), before, "verify never writes");
    let problem = report.problem.clone().expect("verify finds the problem");
    assert_eq!(
        (problem.kind, problem.segment.as_path(), problem.offset),
        (ProblemKind::Corrupt, segment, offset)
    );
    assert!(!report.opens());
    assert_eq!(report.next_lsn, kept as u64 + 1, "{report}");

    let backup_dir = dir.parent().unwrap().join("backup");
    let repaired = wal::repair(&FsStorage, dir, &backup_dir).unwrap();
    assert_eq!(repaired.cut.as_ref(), Some(&problem), "{repaired}");
    assert_eq!(repaired.next_lsn, kept as u64 + 1);
    assert!(!repaired.backups.is_empty());
    for backup in &repaired.backups {
        let original = dir.join(backup.file_name().unwrap());
        assert_eq!(
            &std::fs::read(backup).unwrap(),
            &before[&original],
            "backup of {}",
            original.display()
        );
    }
    for removed in &repaired.removed {
        assert!(!removed.exists());
    }
    // The report says what the cut costs: the records past it that the
    // removed segments' names account for, or the bytes cut.
    let said = repaired.to_string();
    let last_start = repaired
        .removed
        .iter()
        .filter_map(|p| p.file_stem()?.to_str()?.parse::<u64>().ok())
        .max();
    match last_start {
        Some(start) if start > kept as u64 + 1 => assert!(
            said.contains(&format!(
                "at least {} records past the cut",
                start - (kept as u64 + 1)
            )),
            "{said}"
        ),
        _ => assert!(said.contains("bytes cut (any records in them)"), "{said}"),
    }

    let (wal, recovery) = open(fs(), config(dir));
    assert!(recovery.torn_tail.is_none());
    let replayed = replay_all(&recovery);
    assert_eq!(replayed.len(), kept);
    for (i, (lsn, bytes)) in replayed.iter().enumerate() {
        assert_eq!((*lsn, bytes), (i as u64 + 1, &payloads[i]));
    }
    assert_eq!(
        append_wait(&wal, b"after repair".to_vec()).unwrap(),
        kept as u64 + 1
    );
    wal.close().unwrap();
    assert!(wal::verify(&FsStorage, dir).is_clean());
}

fn log_dir(root: &tempfile::TempDir) -> PathBuf {
    root.path().join("wal")
}

#[test]
fn bit_flip_in_a_payload_of_an_earlier_segment() {
    let root = tempfile::tempdir().unwrap();
    let dir = log_dir(&root);
    let payloads = build(&dir);
    // The group commit decides how many records the first segment holds
    // (one only, when the writer took the first record before the rest
    // were queued and the next batch needed a segment of its own): damage
    // its fourth record, or its last if it holds fewer.
    let first = segment_files(&dir)[0].clone();
    let held = frames_of(&std::fs::read(&first).unwrap()).len();
    let lsn = held.min(4) as u64;
    let (segment, at) = locate(&dir, lsn);
    assert_eq!(segment, first);
    damage(&segment, at + 8 + 100, |b| *b ^= 0x04);
    check(
        &dir,
        &payloads,
        &segment,
        at as u64,
        held.min(4) - 1,
        "not the last",
    );
}

#[test]
fn bit_flip_in_a_length_field_of_an_earlier_segment() {
    let root = tempfile::tempdir().unwrap();
    let dir = log_dir(&root);
    let payloads = build(&dir);
    let second = segment_files(&dir)[1].clone();
    let first_of_second: u64 = first_lsn_of(&second);
    let lsn = first_of_second + 5;
    let (segment, at) = locate(&dir, lsn);
    assert_eq!(segment, second);
    damage(&segment, at, |b| *b ^= 0x01);
    check(
        &dir,
        &payloads,
        &segment,
        at as u64,
        usize::try_from(lsn - 1).unwrap(),
        "not the last",
    );
}

#[test]
fn bit_flip_in_the_last_segment_followed_by_valid_records() {
    let root = tempfile::tempdir().unwrap();
    let dir = log_dir(&root);
    let payloads = build(&dir);
    let last = segment_files(&dir).pop().unwrap();
    let first_of_last: u64 = first_lsn_of(&last);
    assert!(100 - first_of_last >= 2, "records after the damaged one");
    let (segment, at) = locate(&dir, first_of_last);
    damage(&segment, at + 20, |b| *b ^= 0x80);
    check(
        &dir,
        &payloads,
        &segment,
        at as u64,
        usize::try_from(first_of_last - 1).unwrap(),
        "valid frame follows",
    );
}

#[test]
fn zeroed_frame_header_followed_by_valid_records() {
    // A lost write (zeros) in the middle of the last segment: not the end.
    let root = tempfile::tempdir().unwrap();
    let dir = log_dir(&root);
    let payloads = build(&dir);
    let last = segment_files(&dir).pop().unwrap();
    let first_of_last: u64 = first_lsn_of(&last);
    let (segment, at) = locate(&dir, first_of_last);
    for i in 0..8 {
        damage(&segment, at + i, |b| *b = 0);
    }
    check(
        &dir,
        &payloads,
        &segment,
        at as u64,
        usize::try_from(first_of_last - 1).unwrap(),
        "non-zero bytes follow",
    );
}

#[test]
fn bad_segment_header() {
    let root = tempfile::tempdir().unwrap();
    let dir = log_dir(&root);
    let payloads = build(&dir);
    let third = segment_files(&dir)[2].clone();
    let first_of_third: u64 = first_lsn_of(&third);
    damage(&third, 2, |b| *b ^= 0x20);
    check(
        &dir,
        &payloads,
        &third,
        0,
        usize::try_from(first_of_third - 1).unwrap(),
        "magic",
    );
}

#[test]
fn header_lsn_disagreeing_with_the_file_name() {
    let root = tempfile::tempdir().unwrap();
    let dir = log_dir(&root);
    let payloads = build(&dir);
    let third = segment_files(&dir)[2].clone();
    let first_of_third: u64 = first_lsn_of(&third);
    let renamed = dir.join(format!("{:020}.wal", first_of_third + 1));
    std::fs::rename(&third, &renamed).unwrap();
    // The previous segment now ends before the renamed one starts: the
    // header/name mismatch is found first.
    check(
        &dir,
        &payloads,
        &renamed,
        12,
        usize::try_from(first_of_third - 1).unwrap(),
        "file name says",
    );
}

#[test]
fn lsn_gap_between_segments() {
    let root = tempfile::tempdir().unwrap();
    let dir = log_dir(&root);
    let payloads = build(&dir);
    let segments = segment_files(&dir);
    let first_of_third: u64 = segments[2]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    std::fs::remove_file(&segments[2]).unwrap();
    check(
        &dir,
        &payloads,
        &segments[3],
        12,
        usize::try_from(first_of_third - 1).unwrap(),
        "are missing",
    );
}

#[test]
fn non_zero_bytes_after_the_end_of_an_earlier_segment() {
    let root = tempfile::tempdir().unwrap();
    let dir = log_dir(&root);
    let payloads = build(&dir);
    let first = segment_files(&dir)[0].clone();
    let bytes = std::fs::read(&first).unwrap();
    let frames = frames_of(&bytes);
    let end = frames.last().map(|(s, l)| s + l).unwrap();
    damage(&first, bytes.len() - 1, |b| *b = 1);
    check(
        &dir,
        &payloads,
        &first,
        end as u64,
        frames.len(),
        "not the last",
    );
}

#[test]
fn verify_never_writes_and_repair_of_a_clean_log_does_nothing() {
    let root = tempfile::tempdir().unwrap();
    let dir = log_dir(&root);
    build(&dir);
    let (segment, at) = locate(&dir, 2);
    damage(&segment, at + 30, |b| *b ^= 1);
    let faulty = FaultyStorage::new();
    let before = files(&dir);
    let report = wal::verify(&faulty, &dir);
    assert!(report.problem.is_some());
    assert_eq!((faulty.bytes_written(), faulty.syncs()), (0, 0));
    assert_eq!(files(&dir), before);
    let text = report.to_string();
    assert!(
        text.contains("problem: corruption in") && text.contains(&format!("offset {at}")),
        "{text}"
    );

    let clean = tempfile::tempdir().unwrap();
    let clean_dir = log_dir(&clean);
    build(&clean_dir);
    let before = files(&clean_dir);
    let repaired = wal::repair(&FsStorage, &clean_dir, &clean.path().join("backup")).unwrap();
    assert_eq!(
        (repaired.cut, repaired.backups.len(), repaired.next_lsn),
        (None, 0, 101)
    );
    assert_eq!(files(&clean_dir), before);
}

#[test]
fn repair_never_overwrites_an_earlier_backup() {
    let root = tempfile::tempdir().unwrap();
    let dir = log_dir(&root);
    build(&dir);
    let last = segment_files(&dir).pop().unwrap();
    let first_of_last: u64 = first_lsn_of(&last);
    let (segment, at) = locate(&dir, first_of_last);
    let damaged = {
        damage(&segment, at + 12, |b| *b ^= 2);
        std::fs::read(&segment).unwrap()
    };
    let backup_dir = root.path().join("backup");
    let first = wal::repair(&FsStorage, &dir, &backup_dir).unwrap();
    // The same damage again (say, the operator restored the file by hand).
    std::fs::write(&segment, &damaged).unwrap();
    let second = wal::repair(&FsStorage, &dir, &backup_dir).unwrap();
    assert_eq!(first.backups.len(), 1);
    assert_eq!(second.backups.len(), 1);
    assert_ne!(first.backups[0], second.backups[0]);
    assert_eq!(std::fs::read(&first.backups[0]).unwrap(), damaged);
    assert_eq!(std::fs::read(&second.backups[0]).unwrap(), damaged);
}

#[test]
fn repair_cuts_a_torn_tail_too() {
    let root = tempfile::tempdir().unwrap();
    let dir = log_dir(&root);
    build(&dir);
    let last = segment_files(&dir).pop().unwrap();
    let (segment, at) = locate(&dir, 100);
    assert_eq!(segment, last);
    damage(&segment, at + 50, |b| *b ^= 1);
    let report = wal::verify(&FsStorage, &dir);
    assert_eq!(
        report.problem.as_ref().map(|p| (p.kind, p.offset)),
        Some((ProblemKind::TornTail, at as u64))
    );
    assert!(report.opens());
    let repaired = wal::repair(&FsStorage, &dir, &root.path().join("backup")).unwrap();
    assert_eq!(
        repaired.truncated.as_ref().map(|t| (t.offset, t.bytes_cut)),
        Some((at as u64, 208))
    );
    assert_eq!(repaired.next_lsn, 100);
    let (_wal, recovery) = open(fs(), config(&dir));
    assert!(recovery.torn_tail.is_none());
    assert_eq!(recovery.next_lsn, 100);
}

#[test]
fn replay_notices_a_segment_changed_after_open() {
    let root = tempfile::tempdir().unwrap();
    let dir = log_dir(&root);
    build(&dir);
    let (_wal, recovery) = open(fs(), config(&dir));
    let (segment, at) = locate(&dir, 30);
    damage(&segment, at + 8, |b| *b ^= 1);
    let mut seen = 0;
    let result = recovery.replay(1, |_, _| {
        seen += 1;
        Ok::<(), ()>(())
    });
    match result {
        Err(wal::ReplayError::Wal(WalError::Corrupt {
            segment: s, offset, ..
        })) => {
            assert_eq!((s, offset), (segment, at as u64));
        }
        other => panic!("expected a corrupt replay, got {other:?}"),
    }
    assert_eq!(seen, 29);
}

/// What `NEWEST` holds: the newest segment's file name and a newline.
fn newest_names(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("NEWEST")).unwrap()
}

fn name_of(path: &Path) -> String {
    path.file_name().unwrap().to_str().unwrap().to_owned()
}

/// A missing newest segment leaves a log that looks whole and ends early:
/// only `NEWEST` tells. `open` refuses, naming the segment and where the
/// records stop; `verify` says the same without writing; `repair` accepts
/// the loss, after which the log opens with the records of the segments
/// left and goes on from there.
#[test]
fn a_missing_newest_segment_stops_open_until_repair_accepts_the_loss() {
    let root = tempfile::tempdir().unwrap();
    let dir = log_dir(&root);
    let payloads = build(&dir);
    let mut segments = segment_files(&dir);
    let newest = segments.pop().unwrap();
    let previous = segments.last().unwrap().clone();
    assert_eq!(newest_names(&dir), format!("{}\n", name_of(&newest)));
    let lost_from: u64 = first_lsn_of(&newest);
    std::fs::remove_file(&newest).unwrap();

    let error = Wal::open(fs(), config(&dir))
        .expect_err("open must refuse a log that lost its newest segment");
    match &error {
        WalError::Corrupt {
            segment, reason, ..
        } => {
            assert_eq!(segment, &dir.join("NEWEST"), "{error}");
            assert!(reason.contains(&name_of(&newest)), "{reason}");
            assert!(
                reason.contains(&format!("from LSN {lost_from} on")),
                "{reason}"
            );
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    let before = files(&dir);
    let report = wal::verify(&FsStorage, &dir);
    assert_eq!(files(&dir), before, "verify never writes");
    let problem = report.problem.clone().expect("verify finds the loss");
    assert_eq!(
        (problem.kind, problem.segment.as_path()),
        (ProblemKind::Corrupt, dir.join("NEWEST").as_path())
    );
    assert!(!report.opens());

    let repaired = wal::repair(&FsStorage, &dir, &root.path().join("backup")).unwrap();
    assert_eq!(repaired.cut.as_ref(), Some(&problem), "{repaired}");
    assert_eq!(repaired.next_lsn, lost_from);
    assert_eq!(newest_names(&dir), format!("{}\n", name_of(&previous)));
    assert!(wal::verify(&FsStorage, &dir).is_clean());
    let (wal, recovery) = open(fs(), config(&dir));
    let kept = usize::try_from(lost_from - 1).unwrap();
    let replayed = replay_all(&recovery);
    assert_eq!(replayed.len(), kept);
    assert!(
        replayed
            .iter()
            .zip(&payloads)
            .all(|((_, got), want)| got == want)
    );
    assert_eq!(
        append_wait(&wal, b"after the loss".to_vec()).unwrap(),
        lost_from
    );
}

/// A log from before `NEWEST` opens as it did and gets one; one naming an
/// older segment (a crash between naming a new segment and recording it)
/// is brought up to date; one that names no segment is refused as
/// corruption, and repair writes it again, losing nothing.
#[test]
fn newest_is_written_at_open_brought_up_to_date_and_checked() {
    let root = tempfile::tempdir().unwrap();
    let dir = log_dir(&root);
    let payloads = build(&dir);
    let segments = segment_files(&dir);
    let newest = format!("{}\n", name_of(segments.last().unwrap()));

    std::fs::remove_file(dir.join("NEWEST")).unwrap();
    assert!(wal::verify(&FsStorage, &dir).is_clean());
    let (wal, recovery) = open(fs(), config(&dir));
    assert_eq!(replay_all(&recovery).len(), payloads.len());
    wal.close().unwrap();
    assert_eq!(newest_names(&dir), newest);

    std::fs::write(dir.join("NEWEST"), format!("{}\n", name_of(&segments[0]))).unwrap();
    assert!(wal::verify(&FsStorage, &dir).is_clean());
    let (wal, _) = open(fs(), config(&dir));
    wal.close().unwrap();
    assert_eq!(newest_names(&dir), newest);

    for garbage in ["", "nonsense\n", "00000000000000000001.wal.tmp"] {
        std::fs::write(dir.join("NEWEST"), garbage).unwrap();
        // An interrupted replacement beside it is no obstacle either.
        std::fs::write(dir.join("NEWEST.tmp"), "0000").unwrap();
        let error = Wal::open(fs(), config(&dir)).expect_err("a NEWEST that names no segment");
        assert!(
            matches!(&error, WalError::Corrupt { segment, .. } if segment == &dir.join("NEWEST")),
            "{garbage:?}: {error}"
        );
        assert!(
            error.to_string().contains("not the name of a segment"),
            "{error}"
        );
        let repaired = wal::repair(&FsStorage, &dir, &root.path().join("backup")).unwrap();
        assert_eq!(repaired.next_lsn, payloads.len() as u64 + 1, "{repaired}");
        assert_eq!(newest_names(&dir), newest);
    }
    let (_wal, recovery) = open(fs(), config(&dir));
    assert_eq!(replay_all(&recovery).len(), payloads.len());
}
