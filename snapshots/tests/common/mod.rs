//! Helpers shared by the log's integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use settle_snapshots::wal::{Lsn, Recovery, Storage, Wal, WalConfig, WalError};

/// Small segments, so tests rotate often.
pub fn config(dir: &Path) -> WalConfig {
    WalConfig {
        segment_size: 4096,
        ..WalConfig::new(dir)
    }
}

pub fn open(storage: Arc<dyn Storage>, config: WalConfig) -> (Wal, Recovery) {
    Wal::open(storage, config).expect("open")
}

/// Appends one record and waits for its callback.
pub fn append_wait(wal: &Wal, payload: Vec<u8>) -> Result<Lsn, WalError> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    wal.append(payload, Box::new(move |result| tx.send(result).unwrap()));
    rx.recv_timeout(Duration::from_secs(30))
        .expect("callback within 30 s")
}

/// A pending callback: the result arrives on the receiver.
pub type Pending = crossbeam_channel::Receiver<Result<Lsn, WalError>>;

/// Appends without waiting.
pub fn append_async(wal: &Wal, payload: Vec<u8>) -> Pending {
    let (tx, rx) = crossbeam_channel::bounded(1);
    wal.append(payload, Box::new(move |result| tx.send(result).unwrap()));
    rx
}

/// Appends all, pipelined, then waits for every callback.
pub fn append_all(wal: &Wal, payloads: &[Vec<u8>]) -> Vec<Result<Lsn, WalError>> {
    let pending: Vec<_> = payloads
        .iter()
        .map(|p| append_async(wal, p.clone()))
        .collect();
    pending
        .into_iter()
        .map(|rx| rx.recv_timeout(Duration::from_secs(30)).expect("callback"))
        .collect()
}

/// Every record of the log, from its first.
pub fn replay_all(recovery: &Recovery) -> Vec<(Lsn, Vec<u8>)> {
    let mut out = Vec::new();
    recovery
        .replay(recovery.first_lsn, |lsn, payload| {
            out.push((lsn, payload.to_vec()));
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap();
    out
}

/// A small deterministic generator (xorshift64*).
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// `len` pseudo-random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next().to_le_bytes()[3]).collect()
    }
}

/// A payload that names its index, padded to `len` bytes.
pub fn payload(index: u64, len: usize) -> Vec<u8> {
    let mut p = format!("record {index} ").into_bytes();
    let mut rng = Rng::new(index);
    while p.len() < len {
        p.push(rng.next().to_le_bytes()[0]);
    }
    p.truncate(len.max(1));
    p
}

/// The segment files of `dir`, sorted.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

/// The spare segments (`spare-{n}.wal.tmp`) in `dir`, with their sizes.
pub fn spare_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("spare-") && name.ends_with(".wal.tmp")
        })
        .map(|e| (e.path(), e.metadata().map_or(0, |m| m.len())))
        .collect();
    files.sort();
    files
}

/// Waits until `condition` holds (tests wait for conditions, not fixed sleeps).
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The frames (offset, length of the whole frame) of a segment file's bytes.
pub fn frames_of(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 32;
    while pos + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        out.push((pos, 8 + len));
        pos += 8 + len;
    }
    out
}
