//! The connection drivers: one task per connection, closed loop (the next
//! request as soon as the last is answered) or open loop (requests due on a
//! fixed schedule; latency counts from the due time, so a slow answer that
//! delays the next request shows in that request's latency too: no
//! coordinated omission).

use super::args::OpKind;
use super::client::{Answer, Conn, Target};
use super::stats::Recorder;
use super::workload::{ConnWork, Op, batch_body};
use bytes::Bytes;
use hyper::Method;
use hyper::header::HeaderValue;
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What every connection of a run shares.
#[derive(Debug)]
pub struct Shared {
    pub target: Arc<Target>,
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
}

struct Task {
    shared: Arc<Shared>,
    conn: Conn,
    work: ConnWork,
    index: usize,
    seq: u64,
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
    work: ConnWork,
    mut rec: Recorder,
    spec: Spec,
) -> Finished {
    let conn = Conn::new(shared.target.clone(), shared.timeout);
    let mut task = Task {
        shared,
        conn,
        work,
        index: spec.index,
        seq: 0,
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
    task.capture_leftovers().await;
    Finished {
        recorder: rec,
        opened: task.conn.opened,
        measured_end,
    }
}

/// Takes one ticket if any is left.
fn take_ticket(tickets: &AtomicU64) -> bool {
    tickets
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
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
            let due = match schedule {
                Schedule::Closed => None,
                Schedule::Open {
                    interval_nanos,
                    offset,
                } => Some(start + offset + Duration::from_nanos(interval_nanos.saturating_mul(k))),
            };
            let go = match end {
                End::At(t) => due.unwrap_or_else(Instant::now) < *t,
                End::Tickets(tickets) => take_ticket(tickets),
                End::Quota(q) => k < *q,
            };
            if !go {
                break;
            }
            if let Some(due) = due {
                wait_until(due).await;
            }
            self.exchange(rec.as_deref_mut(), due).await;
            k += 1;
        }
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
        let result = self
            .conn
            .send(method, &path, &self.shared.api_key, Some(&key), body)
            .await;
        let done = Instant::now();
        let outcomes = match &result {
            Ok(answer) => self.outcomes(answer, &ops),
            Err(_) => Vec::new(),
        };
        let Some(rec) = rec else { return };
        match result {
            Ok(_) => {
                // Open loop: from the due time, or from the send if it went
                // a little early. Closed loop: from the send.
                let from = due.map_or(sent, |d| d.min(sent));
                rec.answered(done, done.saturating_duration_since(from));
                for op in &ops {
                    rec.op(op.kind(), done);
                }
                for (status, code) in outcomes {
                    rec.op_error(status, &code, done);
                }
            }
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
