//! The connection drivers: one task per connection, closed loop (the next
//! request as soon as the last is answered) or open loop (requests due on a
//! fixed schedule; latency counts from the due time, so a slow answer that
//! delays the next request shows in that request's latency too: no
//! coordinated omission).

use super::args::OpKind;
use super::client::{Answer, Conn, SendError, Target};
use super::stats::Recorder;
use super::workload::{ConnWork, Op, batch_body};
use bytes::Bytes;
use hyper::Method;
use hyper::header::HeaderValue;
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Set (to the exit status) when the run is interrupted (SIGINT, SIGTERM).
pub type Stop = watch::Receiver<Option<u8>>;

/// How long an interrupted run waits for answers already in flight.
pub const GRACE: Duration = Duration::from_secs(2);

/// What every connection of a run shares.
#[derive(Debug)]
pub struct Shared {
    pub api_key: HeaderValue,
    /// Makes idempotency keys unique to this run.
    pub run_id: String,
    pub batch: usize,
    pub timeout: Duration,
}

/// When requests go.
#[derive(Debug, Clone, Copy)]
pub enum Schedule {
    /// The next request as soon as the last is answered.
    Closed,
    /// Request k of this connection is due at `start + offset + k * interval`.
    Open {
        interval_nanos: u64,
        offset: Duration,
    },
}

/// When a phase ends.
#[derive(Debug, Clone)]
pub enum End {
    /// No request starts (closed loop) or is due (open loop) at or after this.
    At(Instant),
    /// A shared count of requests left (closed loop).
    Tickets(Arc<AtomicU64>),
    /// This connection's own count of requests (open loop).
    Quota(u64),
}

/// One connection's part of the run.
#[derive(Debug)]
pub struct Spec {
    pub index: usize,
    pub schedule: Schedule,
    /// The warm-up starts at this instant and lasts until `measure_start`.
    pub warmup_start: Instant,
    pub measure_start: Instant,
    pub end: End,
    pub stop: Stop,
}

struct Task {
    shared: Arc<Shared>,
    conn: Conn,
    work: ConnWork,
    index: usize,
    seq: u64,
    stop: Stop,
}

/// What one connection task hands back.
#[derive(Debug)]
pub struct Finished {
    pub recorder: Recorder,
    /// Connections it opened (1, plus replacements).
    pub opened: u64,
    /// When its last measured request ended.
    pub measured_end: Instant,
}

/// Runs one connection through the warm-up and the measured phase, then
/// captures the reservations it left held (unmeasured).
pub async fn connection(
    shared: Arc<Shared>,
    conn: Conn,
    work: ConnWork,
    mut rec: Recorder,
    spec: Spec,
) -> Finished {
    let mut task = Task {
        shared,
        conn,
        work,
        index: spec.index,
        seq: 0,
        stop: spec.stop,
    };
    if spec.measure_start > spec.warmup_start {
        task.phase(
            None,
            spec.warmup_start,
            &End::At(spec.measure_start),
            spec.schedule,
        )
        .await;
    }
    task.phase(Some(&mut rec), spec.measure_start, &spec.end, spec.schedule)
        .await;
    let measured_end = Instant::now();
    rec.flush();
    // Interrupted: quit now (held reservations stay in the audit's "in
    // flight", not lost).
    if !task.interrupted() {
        task.capture_leftovers().await;
    }
    Finished {
        recorder: rec,
        opened: task.conn.opened,
        measured_end,
    }
}

/// Opens `n` connections to the target at once, before the run's clock
/// starts: else the first request of each paid for its connect inside the
/// measured run (with 10,000 connections, a storm of connects that took
/// a 2 s run's whole time). One that cannot open now opens on its first
/// request (and counts as a transport error if it cannot then either).
pub async fn open_all(target: &Arc<Target>, timeout: Duration, n: usize) -> Vec<Conn> {
    let mut set = tokio::task::JoinSet::new();
    for index in 0..n {
        let target = target.clone();
        set.spawn(async move {
            let mut conn = Conn::new(target, timeout);
            let _ = conn.connect().await;
            (index, conn)
        });
    }
    let mut conns: Vec<Option<Conn>> = (0..n).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        if let Ok((index, conn)) = joined
            && let Some(slot) = conns.get_mut(index)
        {
            *slot = Some(conn);
        }
    }
    conns
        .into_iter()
        .map(|c| c.unwrap_or_else(|| Conn::new(target.clone(), timeout)))
        .collect()
}

/// Returns when the run is interrupted (never, if it is not).
pub async fn stopped(stop: &mut Stop) {
    if stop.wait_for(Option::is_some).await.is_err() {
        // No one can interrupt any more (the sender is gone): wait forever.
        std::future::pending::<()>().await;
    }
}

/// Returns `GRACE` after the run is interrupted (never, if it is not).
async fn after_stop(stop: &mut Stop) {
    stopped(stop).await;
    tokio::time::sleep(GRACE).await;
}

/// Takes one ticket if any is left.
fn take_ticket(tickets: &AtomicU64) -> bool {
    tickets
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// How many requests of an open-loop schedule (`offset + k * interval`)
/// are due within `span` of its start.
fn due_before(span: Duration, offset: Duration, interval_nanos: u64) -> u64 {
    let Some(left) = span.checked_sub(offset).filter(|d| !d.is_zero()) else {
        return 0;
    };
    let interval = u128::from(interval_nanos.max(1));
    u64::try_from(left.as_nanos().div_ceil(interval)).unwrap_or(u64::MAX)
}

/// Sleeps until about `due`: tokio's timer rounds up to the millisecond, so
/// it wakes up to 1 ms early instead of up to 1 ms late (an early request's
/// latency counts from when it was sent).
async fn wait_until(due: Instant) {
    let margin = Duration::from_millis(1);
    if let Some(wake) = due.checked_sub(margin)
        && wake > Instant::now()
    {
        tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
    }
}

#[derive(Deserialize)]
struct DataId {
    data: IdOnly,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Deserialize)]
struct BatchAnswer {
    data: BatchResults,
}

#[derive(Deserialize)]
struct BatchResults {
    results: Vec<BatchResult>,
}

#[derive(Deserialize)]
struct BatchResult {
    status: u16,
    #[serde(default)]
    data: Option<IdOnly>,
    #[serde(default)]
    error: Option<ErrorCode>,
}

#[derive(Deserialize)]
struct ErrorCode {
    code: String,
}

impl Task {
    async fn phase(
        &mut self,
        mut rec: Option<&mut Recorder>,
        start: Instant,
        end: &End,
        schedule: Schedule,
    ) {
        let mut k: u64 = 0;
        loop {
            if self.interrupted() {
                break;
            }
            let due = match schedule {
                Schedule::Closed => None,
                Schedule::Open {
                    interval_nanos,
                    offset,
                } => Some(start + offset + Duration::from_nanos(interval_nanos.saturating_mul(k))),
            };
            let go = match (end, due) {
                (End::At(t), None) => Instant::now() < *t,
                (End::At(t), Some(due)) if due >= *t => false,
                (End::At(t), Some(_)) if Instant::now() >= *t => {
                    // Behind the schedule at the deadline: what is still
                    // due is not sent (else a server slower than the rate
                    // would stretch the run to rate × duration requests),
                    // and the report says how many.
                    if let (
                        Some(rec),
                        Schedule::Open {
                            interval_nanos,
                            offset,
                        },
                    ) = (rec.as_deref_mut(), schedule)
                    {
                        let span = t.saturating_duration_since(start);
                        rec.unsent(due_before(span, offset, interval_nanos).saturating_sub(k));
                    }
                    false
                }
                (End::At(_), Some(_)) => true,
                (End::Tickets(tickets), _) => take_ticket(tickets),
                (End::Quota(q), _) => k < *q,
            };
            if !go {
                break;
            }
            if let Some(due) = due {
                let mut stop = self.stop.clone();
                tokio::select! {
                    () = wait_until(due) => {}
                    () = stopped(&mut stop) => break,
                }
            }
            self.exchange(rec.as_deref_mut(), due).await;
            k += 1;
        }
    }

    fn interrupted(&self) -> bool {
        self.stop.borrow().is_some()
    }

    fn idempotency_key(&mut self) -> String {
        self.seq += 1;
        format!("{}-{}-{}", self.shared.run_id, self.index, self.seq)
    }

    /// Sends one request of `batch` operations and records its outcome.
    async fn exchange(&mut self, rec: Option<&mut Recorder>, due: Option<Instant>) {
        let batch = self.shared.batch.max(1);
        let ops: Vec<Op> = (0..batch).map(|_| self.work.next_op()).collect();
        let (method, path, body) = if batch == 1 {
            self.work.request(&ops[0])
        } else {
            (
                Method::POST,
                "/v1/batch".to_owned(),
                batch_body(&self.work, &ops),
            )
        };
        let key = self.idempotency_key();
        let sent = Instant::now();
        let mut stop = self.stop.clone();
        let result = tokio::select! {
            r = self.conn.send(method, &path, &self.shared.api_key, Some(&key), body) => r,
            // Interrupted: the answer in flight gets `GRACE`, not the
            // whole timeout.
            () = after_stop(&mut stop) => Err(SendError::Interrupted),
        };
        let done = Instant::now();
        let outcomes = match &result {
            Ok(answer) => self.outcomes(answer, &ops),
            Err(_) => Vec::new(),
        };
        let Some(rec) = rec else { return };
        // Open loop: from the due time, or from the send if it went a
        // little early. Closed loop: from the send.
        let from = due.map_or(sent, |d| d.min(sent));
        match result {
            Ok(_) => {
                rec.answered(done, done.saturating_duration_since(from));
                for op in &ops {
                    rec.op(op.kind(), done);
                }
                for (status, code) in outcomes {
                    rec.op_error(status, &code, done);
                }
            }
            // A stall must show in the tail: it waited at least the timeout.
            Err(e @ SendError::Timeout) => rec.timed_out(
                e.to_string(),
                done,
                done.saturating_duration_since(from)
                    .max(self.shared.timeout),
            ),
            Err(e) => rec.transport_error(e.to_string(), done),
        }
    }

    /// The error of each failed operation; notes reservations that were
    /// made, so that their captures come next.
    fn outcomes(&mut self, answer: &Answer, ops: &[Op]) -> Vec<(u16, String)> {
        if ops.len() == 1 && self.shared.batch <= 1 {
            if answer.is_success() {
                if ops[0].kind() == OpKind::Reserve
                    && let Ok(d) = serde_json::from_slice::<DataId>(&answer.body)
                {
                    self.work.held(d.data.id);
                }
                return Vec::new();
            }
            return vec![(answer.status, answer.error_code())];
        }
        if answer.status != 200 {
            let code = answer.error_code();
            return ops.iter().map(|_| (answer.status, code.clone())).collect();
        }
        let Ok(parsed) = serde_json::from_slice::<BatchAnswer>(&answer.body) else {
            return ops
                .iter()
                .map(|_| (answer.status, "unreadable_batch_answer".to_owned()))
                .collect();
        };
        let results = parsed.data.results;
        let mut errors = Vec::new();
        if results.len() != ops.len() {
            errors.extend(
                ops.iter()
                    .skip(results.len())
                    .map(|_| (answer.status, "missing_batch_result".to_owned())),
            );
        }
        for (op, r) in ops.iter().zip(results) {
            if (200..300).contains(&r.status) {
                if op.kind() == OpKind::Reserve
                    && let Some(d) = r.data
                {
                    self.work.held(d.id);
                }
            } else {
                errors.push((r.status, r.error.map(|e| e.code).unwrap_or_default()));
            }
        }
        errors
    }

    /// Captures the reservations still held once the run is over (not
    /// measured), in batches, so that a run leaves no money reserved.
    async fn capture_leftovers(&mut self) {
        let held = self.work.take_held();
        for chunk in held.chunks(1_000) {
            let ops: Vec<Op> = chunk
                .iter()
                .map(|txn| Op::Capture { txn: txn.clone() })
                .collect();
            let body: Bytes = batch_body(&self.work, &ops);
            let key = self.idempotency_key();
            let _ = self
                .conn
                .send(
                    Method::POST,
                    "/v1/batch",
                    &self.shared.api_key,
                    Some(&key),
                    body,
                )
                .await;
        }
    }
}
