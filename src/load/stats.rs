//! Counting: each connection records into its own `Recorder` (no locks on
//! the request path); live counters for the progress bar are atomics; each
//! completed second of a connection's timeline goes to a collector, which
//! merges the seconds of all connections for the chart. At the end the
//! recorders merge into `Totals`.

use super::args::OpKind;
use hdrhistogram::Histogram;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Latencies are recorded in microseconds, 1 µs to 1 hour.
const MAX_MICROS: u64 = 3_600_000_000;

/// Full precision (3 significant digits) for the run's percentiles.
pub fn histogram() -> Histogram<u64> {
    hist(3)
}

/// 2 significant digits for each second of the chart (a tenth of the memory).
fn second_histogram() -> Histogram<u64> {
    hist(2)
}

#[allow(
    clippy::expect_used,
    reason = "constant bounds (1 <= low, high >= 2 * low, digits <= 5) that cannot be refused"
)]
fn hist(digits: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, digits).expect("valid histogram bounds")
}

/// Counters the progress display reads while the run goes on.
#[derive(Debug, Default)]
pub struct Live {
    pub requests: AtomicU64,
    pub ops: AtomicU64,
    /// Operations answered with an error status.
    pub errors: AtomicU64,
    /// Requests that got no answer.
    pub transport: AtomicU64,
}

/// The latency histograms of all connections: the run's, and one per
/// second. Shared rather than one per connection: a full-precision
/// histogram is ~190 KB, so 10,000 connections each with their own took
/// ~2 GB, and allocating them took longer than a 2 s run (which then
/// measured nothing). One short lock per recorded request instead.
#[derive(Debug)]
pub struct Latencies {
    total: Histogram<u64>,
    seconds: BTreeMap<u64, Histogram<u64>>,
}

pub type SharedLatencies = Arc<Mutex<Latencies>>;

pub fn latencies() -> SharedLatencies {
    Arc::new(Mutex::new(Latencies {
        total: histogram(),
        seconds: BTreeMap::new(),
    }))
}

/// The histograms, whatever a panicking holder left (counts stay valid).
fn lock(l: &SharedLatencies) -> MutexGuard<'_, Latencies> {
    l.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One second (since the measured start) of one or all connections.
#[derive(Debug, Clone)]
pub struct Second {
    pub index: u64,
    pub requests: u64,
    pub ops: u64,
    pub errors: u64,
    pub transport: u64,
    pub latency: Histogram<u64>,
}

/// The counts of one second of one connection (its latencies go straight
/// to the shared histograms).
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub index: u64,
    pub requests: u64,
    pub ops: u64,
    pub errors: u64,
    pub transport: u64,
}

impl Counts {
    fn merge(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.ops += other.ops;
        self.errors += other.errors;
        self.transport += other.transport;
    }
}

/// Error answers, per operation: (status, code) → count.
pub type ErrorCounts = HashMap<(u16, String), u64>;

/// What one connection saw.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    live: Arc<Live>,
    latencies: SharedLatencies,
    seconds: mpsc::UnboundedSender<Counts>,
    current: Option<Counts>,
    pub requests: u64,
    pub ops: u64,
    pub ops_by_kind: [u64; 5],
    pub errors: ErrorCounts,
    pub transport: u64,
    /// Requests that got no answer within the timeout (also in `transport`).
    pub timed_out: u64,
    /// Open loop: requests due before the end that were never sent.
    pub unsent: u64,
    pub transport_samples: Vec<String>,
}

fn micros(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros())
        .unwrap_or(MAX_MICROS)
        .clamp(1, MAX_MICROS)
}

impl Recorder {
    pub fn new(
        start: Instant,
        live: Arc<Live>,
        latencies: SharedLatencies,
        seconds: mpsc::UnboundedSender<Counts>,
    ) -> Self {
        Recorder {
            start,
            live,
            latencies,
            seconds,
            current: None,
            requests: 0,
            ops: 0,
            ops_by_kind: [0; 5],
            errors: HashMap::new(),
            transport: 0,
            timed_out: 0,
            unsent: 0,
            transport_samples: Vec::new(),
        }
    }

    fn index(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_secs()
    }

    /// The second a completion at `at` falls into; earlier seconds of this
    /// connection go to the collector.
    fn second(&mut self, at: Instant) -> &mut Counts {
        let index = self.index(at);
        if self.current.as_ref().is_some_and(|s| s.index != index)
            && let Some(done) = self.current.take()
        {
            let _ = self.seconds.send(done);
        }
        self.current.get_or_insert_with(|| Counts {
            index,
            ..Counts::default()
        })
    }

    fn record_latency(&mut self, done: Instant, latency: Duration) {
        let us = micros(latency);
        let index = self.index(done);
        let mut l = lock(&self.latencies);
        l.total.saturating_record(us);
        l.seconds
            .entry(index)
            .or_insert_with(second_histogram)
            .saturating_record(us);
    }

    /// A request answered at `done`, `latency` after it was due (or sent).
    pub fn answered(&mut self, done: Instant, latency: Duration) {
        self.record_latency(done, latency);
        self.requests += 1;
        self.live.requests.fetch_add(1, Ordering::Relaxed);
        self.second(done).requests += 1;
    }

    /// One operation answered (whatever its outcome).
    pub fn op(&mut self, kind: OpKind, done: Instant) {
        self.ops += 1;
        self.ops_by_kind[kind.index()] += 1;
        self.live.ops.fetch_add(1, Ordering::Relaxed);
        self.second(done).ops += 1;
    }

    /// An operation answered with an error.
    pub fn op_error(&mut self, status: u16, code: &str, done: Instant) {
        match self.errors.get_mut(&(status, code.to_owned())) {
            Some(n) => *n += 1,
            None => {
                self.errors.insert((status, code.to_owned()), 1);
            }
        }
        self.live.errors.fetch_add(1, Ordering::Relaxed);
        self.second(done).errors += 1;
    }

    /// A request that got no answer. It counts apart from the requests and
    /// operations, which are what the server answered: a server that went
    /// away (refused connections fail fast) must not read as throughput.
    pub fn transport_error(&mut self, why: String, done: Instant) {
        self.transport += 1;
        self.live.transport.fetch_add(1, Ordering::Relaxed);
        if self.transport_samples.len() < 5 && !self.transport_samples.contains(&why) {
            self.transport_samples.push(why);
        }
        self.second(done).transport += 1;
    }

    /// A request given up after `waited` (the timeout, or more from its due
    /// time): a transport error whose wait also goes into the latency
    /// histograms, so that a server that stalls shows in the tail instead
    /// of vanishing from it.
    pub fn timed_out(&mut self, why: String, done: Instant, waited: Duration) {
        self.record_latency(done, waited);
        self.timed_out += 1;
        self.transport_error(why, done);
    }

    /// Open loop: `n` requests of the schedule were not sent.
    pub fn unsent(&mut self, n: u64) {
        self.unsent = self.unsent.saturating_add(n);
    }

    /// Sends the last second to the collector.
    pub fn flush(&mut self) {
        if let Some(done) = self.current.take() {
            let _ = self.seconds.send(done);
        }
    }
}

/// Merges the seconds of all connections until every sender is gone.
pub async fn collect_seconds(mut rx: mpsc::UnboundedReceiver<Counts>) -> BTreeMap<u64, Counts> {
    let mut seconds: BTreeMap<u64, Counts> = BTreeMap::new();
    while let Some(s) = rx.recv().await {
        seconds.entry(s.index).or_default().merge(&s);
    }
    seconds
}

/// Each second's counts with its latencies; seconds in which nothing
/// completed are zeros, not gaps.
pub fn timeline(mut counts: BTreeMap<u64, Counts>, latencies: &SharedLatencies) -> Vec<Second> {
    let mut l = lock(latencies);
    let last = counts
        .keys()
        .next_back()
        .copied()
        .max(l.seconds.keys().next_back().copied())
        .unwrap_or(0);
    (0..=last)
        .map(|i| {
            let c = counts.remove(&i).unwrap_or_default();
            Second {
                index: i,
                requests: c.requests,
                ops: c.ops,
                errors: c.errors,
                transport: c.transport,
                latency: l.seconds.remove(&i).unwrap_or_else(second_histogram),
            }
        })
        .collect()
}

/// Everything the connections saw, merged.
#[derive(Debug)]
pub struct Totals {
    pub latency: Histogram<u64>,
    pub requests: u64,
    pub ops: u64,
    pub ops_by_kind: [u64; 5],
    /// Sorted by status, then code.
    pub errors: Vec<(u16, String, u64)>,
    pub transport: u64,
    pub timed_out: u64,
    pub unsent: u64,
    pub transport_samples: Vec<String>,
    pub connections_opened: u64,
}

impl Totals {
    pub fn merge(recorders: Vec<(Recorder, u64)>, latencies: &SharedLatencies) -> Totals {
        let mut t = Totals {
            latency: lock(latencies).total.clone(),
            requests: 0,
            ops: 0,
            ops_by_kind: [0; 5],
            errors: Vec::new(),
            transport: 0,
            timed_out: 0,
            unsent: 0,
            transport_samples: Vec::new(),
            connections_opened: 0,
        };
        let mut errors: BTreeMap<(u16, String), u64> = BTreeMap::new();
        for (r, opened) in recorders {
            t.requests += r.requests;
            t.ops += r.ops;
            for (i, n) in r.ops_by_kind.iter().enumerate() {
                t.ops_by_kind[i] += n;
            }
            for (k, n) in r.errors {
                *errors.entry(k).or_insert(0) += n;
            }
            t.transport += r.transport;
            t.timed_out += r.timed_out;
            t.unsent = t.unsent.saturating_add(r.unsent);
            for s in r.transport_samples {
                if t.transport_samples.len() < 5 && !t.transport_samples.contains(&s) {
                    t.transport_samples.push(s);
                }
            }
            t.connections_opened += opened;
        }
        t.errors = errors.into_iter().map(|((s, c), n)| (s, c, n)).collect();
        t
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.iter().map(|(_, _, n)| n).sum()
    }

    pub fn by_kind(&self) -> impl Iterator<Item = (OpKind, u64)> + '_ {
        OpKind::ALL
            .into_iter()
            .map(|k| (k, self.ops_by_kind[k.index()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn recorders_merge_and_seconds_fill_gaps() {
        let live = Arc::new(Live::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let start = Instant::now();
        let lat = latencies();
        let mut a = Recorder::new(start, live.clone(), lat.clone(), tx.clone());
        let mut b = Recorder::new(start, live.clone(), lat.clone(), tx);
        a.answered(start, Duration::from_micros(100));
        a.op(OpKind::Transfer, start);
        a.op_error(409, "insufficient_funds", start);
        let later = start + Duration::from_millis(2_500);
        b.answered(later, Duration::from_millis(3));
        b.op(OpKind::Credit, later);
        b.transport_error("cannot connect: refused".into(), later);
        a.flush();
        b.flush();
        let collector = tokio::spawn(collect_seconds(rx));
        let t = Totals::merge(vec![(a, 1), (b, 2)], &lat);
        let seconds = timeline(collector.await.unwrap(), &lat);
        assert_eq!(seconds.len(), 3);
        assert_eq!(seconds[0].ops, 1);
        assert_eq!(seconds[1].requests, 0);
        assert_eq!(seconds[2].transport, 1);
        // Answered requests only: the one without an answer is apart.
        assert_eq!(t.requests, 2);
        assert_eq!(seconds[2].requests, 1);
        assert_eq!(t.ops, 2);
        assert_eq!(t.errors, vec![(409, "insufficient_funds".into(), 1)]);
        assert_eq!(t.transport, 1);
        assert_eq!(t.connections_opened, 3);
        assert_eq!(t.latency.len(), 2);
        assert!(t.latency.max() >= 3_000);
        assert_eq!(live.ops.load(Ordering::Relaxed), 2);
    }
}
