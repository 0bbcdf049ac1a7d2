//! Snapshot files: what is written reads back; a file cut anywhere, or
//! with a flipped bit, is refused with the place; a writer that never
//! finishes leaves no snapshot; retention keeps the newest.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use settle_snapshots::snapshot::{
    self, SnapshotError, SnapshotFile, SnapshotHeader, SnapshotWriter, Summary,
};
use std::path::{Path, PathBuf};

fn header(position: u64, id: &str) -> SnapshotHeader {
    let mut summary = Summary {
        wallets: 3,
        ..Summary::default()
    };
    summary.counts.insert("clients".into(), 1);
    SnapshotHeader {
        version: snapshot::FORMAT_VERSION,
        id: id.to_owned(),
        position,
        created_at_ms: 1_700_000_000_000,
        summary,
    }
}

fn write(dir: &Path, position: u64, id: &str, sections: &[Vec<u8>]) -> PathBuf {
    let mut w = SnapshotWriter::create(dir, &header(position, id)).unwrap();
    for s in sections {
        w.section(s).unwrap();
    }
    let (path, size) = w.finish().unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
    path
}

fn sections() -> Vec<Vec<u8>> {
    (0..5u32)
        .map(|i| rmp_serde::to_vec_named(&vec![format!("section {i}"); i as usize * 7]).unwrap())
        .collect()
}

#[test]
fn a_snapshot_reads_back_with_its_header_and_sections() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        42,
        "snp_01JABCDEFGHJKMNPQRSTVWXYZ0",
        &sections(),
    );
    assert_eq!(
        path.file_name().unwrap().to_str().unwrap(),
        "00000000000000000042-snp_01JABCDEFGHJKMNPQRSTVWXYZ0.msgpack"
    );
    let file = SnapshotFile::open(&path).unwrap();
    assert_eq!(file.header, header(42, "snp_01JABCDEFGHJKMNPQRSTVWXYZ0"));
    assert_eq!(SnapshotFile::header_only(&path).unwrap(), file.header);
    assert_eq!(file.sections(), 5);
    for (i, want) in sections().iter().enumerate() {
        assert_eq!(file.section_bytes(i).unwrap(), &want[..]);
        let got: Vec<String> = file.section(i).unwrap();
        assert_eq!(got.len(), i * 7);
    }
    assert!(file.section::<Vec<String>>(5).is_err());
}

#[test]
fn every_cut_and_sampled_bit_flips_are_refused_with_a_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), 7, "snp_01JABCDEFGHJKMNPQRSTVWXYZ1", &sections());
    let good = std::fs::read(&path).unwrap();
    let bad = dir.path().join("bad.msgpack");
    for cut in 0..good.len() {
        std::fs::write(&bad, &good[..cut]).unwrap();
        match SnapshotFile::open(&bad) {
            Err(SnapshotError::Invalid { .. }) => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    // Every bit of the first 64 bytes and the last 64, and a stride through
    // the middle.
    let n = good.len();
    let positions: Vec<usize> = (0..64)
        .chain(n - 64..n)
        .chain((64..n - 64).step_by(13))
        .collect();
    for byte in positions {
        for bit in 0..8 {
            let mut flipped = good.clone();
            flipped[byte] ^= 1 << bit;
            std::fs::write(&bad, &flipped).unwrap();
            let err = SnapshotFile::open(&bad).expect_err("a flipped bit must be caught");
            assert!(err.to_string().contains("bad.msgpack"), "{err}");
        }
    }
    // Bytes appended after the footer.
    let mut longer = good.clone();
    longer.extend_from_slice(b"x");
    std::fs::write(&bad, &longer).unwrap();
    assert!(SnapshotFile::open(&bad).is_err());
}

#[test]
fn an_unfinished_writer_leaves_nothing_and_leftovers_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut w =
            SnapshotWriter::create(dir.path(), &header(9, "snp_01JABCDEFGHJKMNPQRSTVWXYZ2"))
                .unwrap();
        w.section(b"\x90").unwrap();
        // Dropped without finish.
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // A crash mid-write leaves a .tmp: not listed, and removed at start.
    let name = snapshot::file_name(9, "snp_01JABCDEFGHJKMNPQRSTVWXYZ2");
    std::fs::write(dir.path().join(format!("{name}.tmp")), b"partial").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"operator's").unwrap();
    assert!(snapshot::list(dir.path()).unwrap().is_empty());
    assert_eq!(snapshot::remove_temporaries(dir.path()).unwrap().len(), 1);
    assert!(dir.path().join("notes.txt").exists());
}

#[test]
fn a_finish_that_fails_leaves_no_temporary_file() {
    // The final name is taken by a directory, so the rename fails after
    // the footer, the flush and the fsync: the error is reported and the
    // temporary file goes (a failed on-demand snapshot left a .tmp behind
    // until the next start).
    let dir = tempfile::tempdir().unwrap();
    let id = "snp_01JABCDEFGHJKMNPQRSTVWXYZ3";
    let name = snapshot::file_name(11, id);
    std::fs::create_dir(dir.path().join(&name)).unwrap();
    let mut w = SnapshotWriter::create(dir.path(), &header(11, id)).unwrap();
    w.section(b"\x90").unwrap();
    assert!(dir.path().join(format!("{name}.tmp")).exists());
    let err = w.finish().unwrap_err();
    assert!(err.to_string().contains(&name), "{err}");
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, [name]);
}

#[test]
fn a_newer_format_version_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = header(1, "snp_01JABCDEFGHJKMNPQRSTVWXYZ3");
    h.version = snapshot::FORMAT_VERSION + 1;
    let w = SnapshotWriter::create(dir.path(), &h).unwrap();
    let (path, _) = w.finish().unwrap();
    let err = SnapshotFile::open(&path).unwrap_err().to_string();
    assert!(err.contains("format version"), "{err}");
}

#[test]
fn list_is_newest_first_and_prune_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    for (pos, id) in [
        (10, "snp_01JABCDEFGHJKMNPQRSTVWXY10"),
        (30, "snp_01JABCDEFGHJKMNPQRSTVWXY30"),
        (20, "snp_01JABCDEFGHJKMNPQRSTVWXY20"),
        (30, "snp_01JABCDEFGHJKMNPQRSTVWXY31"),
    ] {
        write(dir.path(), pos, id, &[]);
    }
    let positions = |v: &[snapshot::SnapshotEntry]| {
        v.iter()
            .map(|e| (e.position, e.id.clone()))
            .collect::<Vec<_>>()
    };
    let all = snapshot::list(dir.path()).unwrap();
    assert_eq!(
        positions(&all),
        vec![
            (30, "snp_01JABCDEFGHJKMNPQRSTVWXY31".to_owned()),
            (30, "snp_01JABCDEFGHJKMNPQRSTVWXY30".to_owned()),
            (20, "snp_01JABCDEFGHJKMNPQRSTVWXY20".to_owned()),
            (10, "snp_01JABCDEFGHJKMNPQRSTVWXY10".to_owned()),
        ]
    );
    let kept = snapshot::prune(dir.path(), 2).unwrap();
    assert_eq!(positions(&kept), positions(&all[..2]));
    assert_eq!(
        positions(&snapshot::list(dir.path()).unwrap()),
        positions(&all[..2])
    );
    // Keeping 0 still keeps one: a directory is never left without.
    assert_eq!(snapshot::prune(dir.path(), 0).unwrap().len(), 1);
}
