//! The write-ahead log: append throughput under group commit, with fsync
//! and without, at 1, 16, 64 and 256 concurrent appenders (each waits for
//! its record to be durable before appending the next, like a client
//! waiting for its answer), and replay speed over 1,000,000 records of
//! about 100 bytes.
//!
//! `cargo bench -p settle-snapshots --bench wal -- --measurement-time 3 --warm-up-time 1`
//!
//! "1 thread, N in flight" measures the log itself: one thread keeps N
//! records in flight, so no OS scheduling of hundreds of threads gets in
//! the way. After each group, a line per bench gives records per fsync
//! (batch size) and mean fsync time from `Wal::stats()`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::float_arithmetic,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss
)]

use std::hint::black_box;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_channel::{Receiver, Sender};
use settle_snapshots::wal::{FsStorage, FsyncPolicy, Wal, WalConfig, WalStats};

const PAYLOAD: usize = 100;

/// `n` threads, each appending records one at a time (append, wait for the
/// callback, append the next) when told how many.
struct Appenders {
    go: Vec<Sender<u64>>,
    done: Receiver<()>,
    threads: Vec<JoinHandle<()>>,
}

impl Appenders {
    fn new(wal: &Arc<Wal>, n: usize) -> Self {
        let (done_tx, done) = crossbeam_channel::unbounded();
        let mut go = Vec::new();
        let mut threads = Vec::new();
        for t in 0..n {
            let (go_tx, go_rx) = crossbeam_channel::unbounded::<u64>();
            let wal = Arc::clone(wal);
            let done_tx = done_tx.clone();
            threads.push(std::thread::spawn(move || {
                let (ack_tx, ack_rx) = crossbeam_channel::bounded(1);
                let payload = vec![u8::try_from(t % 251).unwrap() + 1; PAYLOAD];
                while let Ok(count) = go_rx.recv() {
                    for _ in 0..count {
                        let ack = ack_tx.clone();
                        wal.append(payload.clone(), Box::new(move |r| ack.send(r).unwrap()));
                        ack_rx.recv().unwrap().unwrap();
                    }
                    done_tx.send(()).unwrap();
                }
            }));
            go.push(go_tx);
        }
        Appenders { go, done, threads }
    }

    /// Appends about `total` records spread over the threads; returns the
    /// time per record times `total`.
    fn run(&self, total: u64) -> Duration {
        let n = self.go.len() as u64;
        let per_thread = total.div_ceil(n).max(1);
        let start = Instant::now();
        for go in &self.go {
            go.send(per_thread).unwrap();
        }
        for _ in 0..n {
            self.done.recv().unwrap();
        }
        let elapsed = start.elapsed().as_nanos();
        Duration::from_nanos((elapsed * u128::from(total) / u128::from(per_thread * n)) as u64)
    }

    fn stop(self) {
        drop(self.go);
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

fn append_throughput(c: &mut Criterion) {
    for (policy, name) in [
        (FsyncPolicy::Always, "fsync always"),
        (FsyncPolicy::Never, "fsync never"),
    ] {
        let mut group = c.benchmark_group(format!("wal append, {name}"));
        group.sample_size(10);
        group.throughput(Throughput::Elements(1));
        let mut summary = Vec::new();
        for appenders in [1usize, 16, 64, 256] {
            let dir = tempfile::tempdir().unwrap();
            let config = WalConfig {
                fsync: policy,
                ..WalConfig::new(dir.path())
            };
            let (wal, _) = Wal::open(Arc::new(FsStorage), config).unwrap();
            let wal = Arc::new(wal);
            let pool = Appenders::new(&wal, appenders);
            let before = wal.stats();
            let started = Instant::now();
            group.bench_function(format!("{appenders} appenders"), |b| {
                b.iter_custom(|iters| pool.run(iters))
            });
            let elapsed = started.elapsed();
            summary.push((
                format!("{appenders} appenders"),
                delta(before, wal.stats()),
                elapsed,
            ));
            pool.stop();
            Arc::try_unwrap(wal).unwrap().close().unwrap();
        }
        // The log's own capacity, without hundreds of threads to schedule:
        // one thread keeps `window` records in flight.
        for window in [256u64, 4096] {
            let dir = tempfile::tempdir().unwrap();
            let config = WalConfig {
                fsync: policy,
                ..WalConfig::new(dir.path())
            };
            let (wal, _) = Wal::open(Arc::new(FsStorage), config).unwrap();
            let before = wal.stats();
            let started = Instant::now();
            group.bench_function(format!("1 thread, {window} in flight"), |b| {
                b.iter_custom(|iters| pipelined(&wal, iters, window))
            });
            summary.push((
                format!("1 thread, {window} in flight"),
                delta(before, wal.stats()),
                started.elapsed(),
            ));
            wal.close().unwrap();
        }
        group.finish();
        for (label, stats, elapsed) in summary {
            println!(
                "  {name}, {label:<24} {:>9.0} records/s overall, {:>6.1} records per batch \
                 (max {}), mean fsync {:.3} ms, {} batches",
                stats.records as f64 / elapsed.as_secs_f64(),
                stats.records as f64 / stats.batches.max(1) as f64,
                stats.max_batch,
                stats.fsync_time.as_secs_f64() * 1e3 / stats.batches.max(1) as f64,
                stats.batches,
            );
        }
    }
}

/// Appends `total` records from this thread, keeping `window` in flight.
fn pipelined(wal: &Wal, total: u64, window: u64) -> Duration {
    let (tx, rx) = crossbeam_channel::unbounded();
    let append = |tx: &Sender<()>| {
        let tx = tx.clone();
        wal.append(
            vec![7u8; PAYLOAD],
            Box::new(move |r| {
                r.unwrap();
                tx.send(()).unwrap();
            }),
        );
    };
    let start = Instant::now();
    let mut sent = 0;
    while sent < total.min(window) {
        append(&tx);
        sent += 1;
    }
    for _ in 0..total {
        rx.recv().unwrap();
        if sent < total {
            append(&tx);
            sent += 1;
        }
    }
    start.elapsed()
}

fn delta(before: WalStats, after: WalStats) -> WalStats {
    WalStats {
        records: after.records - before.records,
        bytes: after.bytes - before.bytes,
        batches: after.batches - before.batches,
        max_batch: after.max_batch,
        fsync_time: after.fsync_time - before.fsync_time,
        segments_created: after.segments_created - before.segments_created,
        spares_used: after.spares_used - before.spares_used,
        disk_full_retries: after.disk_full_retries - before.disk_full_retries,
    }
}

fn replay_speed(c: &mut Criterion) {
    const RECORDS: u64 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig::new(dir.path());
    {
        let (wal, _) = Wal::open(
            Arc::new(FsStorage),
            WalConfig {
                fsync: FsyncPolicy::Never,
                ..config.clone()
            },
        )
        .unwrap();
        for i in 0..RECORDS {
            // 80..=120 bytes, about 100 on average.
            let len = 80 + (i * 7919 % 41) as usize;
            wal.append(
                vec![u8::try_from(i % 255).unwrap() + 1; len],
                Box::new(|r| assert!(r.is_ok())),
            );
        }
        wal.close().unwrap();
    }

    let mut group = c.benchmark_group("wal recovery, 1M records of ~100 bytes");
    group.sample_size(10);
    group.throughput(Throughput::Elements(RECORDS));
    let (wal, recovery) = Wal::open(Arc::new(FsStorage), config.clone()).unwrap();
    assert_eq!(recovery.records(), RECORDS);
    group.bench_function("replay", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            recovery
                .replay(recovery.first_lsn, |_, payload| {
                    bytes += payload.len();
                    Ok::<(), ()>(())
                })
                .unwrap();
            black_box(bytes)
        });
    });
    wal.close().unwrap();
    group.bench_function("open (scan, checksums, ready to append)", |b| {
        b.iter(|| {
            let (wal, recovery) = Wal::open(Arc::new(FsStorage), config.clone()).unwrap();
            wal.close().unwrap();
            black_box(recovery.next_lsn)
        });
    });
    group.finish();
}

criterion_group!(benches, append_throughput, replay_speed);
criterion_main!(benches);
