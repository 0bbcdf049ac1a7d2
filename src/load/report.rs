//! The final report: for people (text) or machines (`--json`, one object).

use super::args::{Bound, Plan};
use super::host::HostShare;
use super::progress::thousands;
use super::stats::{Second, Totals};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::time::Duration;

/// Everything the report says.
#[derive(Debug)]
pub struct Outcome<'a> {
    pub plan: &'a Plan,
    pub client_id: &'a str,
    pub setup_took: Duration,
    pub elapsed: Duration,
    pub totals: &'a Totals,
    pub seconds: &'a [Second],
    /// The audit's `data`, or why it could not be had.
    pub audit: &'a Result<Value, String>,
    /// This machine's CPUs over the measured run (Linux only).
    pub host_cpu: Option<HostShare>,
    /// The exit status of the signal that stopped the run early (130:
    /// SIGINT, 143: SIGTERM).
    pub interrupted: Option<u8>,
}

fn signal_name(status: u8) -> &'static str {
    if status == 130 { "SIGINT" } else { "SIGTERM" }
}

/// Steal above this share of the machine's CPU time gets a warning in the
/// text report: latency figures from such a run are the hypervisor's.
const STEAL_WARNING_PERCENT: f64 = 5.0;

impl Outcome<'_> {
    /// Whether the audit said money was conserved.
    pub fn conserved(&self) -> bool {
        self.audit
            .as_ref()
            .is_ok_and(|a| a["ok"].as_bool() == Some(true))
    }

    /// What the audit said, or `null` when it could not be read: a run
    /// whose server died must not read as "money was lost".
    fn conserved_json(&self) -> Value {
        match self.audit {
            Ok(_) => json!(self.conserved()),
            Err(_) => Value::Null,
        }
    }

    #[allow(
        clippy::float_arithmetic,
        reason = "rates per second are reported as floats"
    )]
    fn per_sec(&self, n: u64) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
            let n = n as f64;
            (n / secs * 10.0).round() / 10.0
        } else {
            0.0
        }
    }

    fn mode(&self) -> &'static str {
        if self.plan.rate.is_some() {
            "open"
        } else {
            "closed"
        }
    }
}

/// p50, p90, p99, p99.9 and max of a histogram, in microseconds.
fn percentiles(h: &Histogram<u64>) -> [(&'static str, u64); 5] {
    [
        ("p50", h.value_at_quantile(0.50)),
        ("p90", h.value_at_quantile(0.90)),
        ("p99", h.value_at_quantile(0.99)),
        ("p999", h.value_at_quantile(0.999)),
        ("max", h.max()),
    ]
}

pub fn json(o: &Outcome<'_>) -> Value {
    let p = o.plan;
    let t = o.totals;
    let mut latency = serde_json::Map::new();
    for (name, v) in percentiles(&t.latency) {
        latency.insert(name.to_owned(), json!(v));
    }
    latency.insert("min".into(), json!(t.latency.min()));
    #[allow(clippy::float_arithmetic, reason = "a mean in microseconds, rounded")]
    let mean = (t.latency.mean() * 10.0).round() / 10.0;
    latency.insert("mean".into(), json!(mean));
    let by_type: serde_json::Map<String, Value> = t
        .by_kind()
        .map(|(k, n)| (k.name().to_owned(), json!(n)))
        .collect();
    let errors: Vec<Value> = t
        .errors
        .iter()
        .map(|(status, code, n)| json!({"status": status, "code": code, "count": n}))
        .collect();
    let timeline: Vec<Value> = o
        .seconds
        .iter()
        .map(|s| {
            json!({
                "second": s.index,
                "requests": s.requests,
                "operations": s.ops,
                "errors": s.errors,
                "transportErrors": s.transport,
                "p50Micros": s.latency.value_at_quantile(0.5),
                "p99Micros": s.latency.value_at_quantile(0.99),
                "maxMicros": s.latency.max(),
                // The last second is usually cut short by the end of the
                // run: its counts are not a whole second's.
                "partial": Duration::from_secs(s.index.saturating_add(1)) > o.elapsed,
            })
        })
        .collect();
    let bound = match p.bound {
        Bound::Duration(d) => json!({ "durationSecs": d.as_secs_f64() }),
        Bound::Requests(n) => json!({ "requests": n }),
    };
    let (audit, audit_error) = match o.audit {
        Ok(a) => (a.clone(), Value::Null),
        Err(e) => (Value::Null, json!(e)),
    };
    json!({
        "url": p.url.shown,
        "mode": o.mode(),
        "connections": p.connections,
        "threads": p.threads,
        "targetRate": p.rate,
        "batch": p.batch,
        "wallets": p.wallets,
        "mix": p.mix.to_string(),
        "zipf": p.zipf,
        "seed": p.seed,
        "warmupSecs": p.warmup.as_secs_f64(),
        "bound": bound,
        "clientId": o.client_id,
        "setupSecs": o.setup_took.as_secs_f64(),
        "elapsedSecs": o.elapsed.as_secs_f64(),
        "interrupted": o.interrupted.map(signal_name),
        "requests": t.requests,
        "operations": t.ops,
        "requestsPerSec": o.per_sec(t.requests),
        "opsPerSec": o.per_sec(t.ops),
        "operationsByType": by_type,
        "latencyMicros": latency,
        "errors": errors,
        "errorCount": t.errors_total(),
        "unsent": t.unsent,
        "transportErrors": t.transport,
        "timedOut": t.timed_out,
        "transportErrorSamples": t.transport_samples,
        "connectionsOpened": t.connections_opened,
        "timeline": timeline,
        "audit": audit,
        "auditError": audit_error,
        "conserved": o.conserved_json(),
        "hostCpu": o.host_cpu.map(|h| json!({
            "busyPercent": h.busy,
            "stealPercent": h.steal,
            "iowaitPercent": h.iowait,
        })),
    })
}

/// A rate per second: whole numbers, but a tenth where that is most of it
/// (0.5 requests/s must not read as 0).
fn rate_text(per_sec: f64) -> String {
    if per_sec < 100.0 {
        format!("{per_sec:.1}")
    } else {
        format!("{per_sec:.0}")
    }
}

/// Microseconds as milliseconds with 3 decimals (`1.234 ms`).
fn ms(us: u64) -> String {
    format!("{}.{:03} ms", us / 1_000, us % 1_000)
}

#[allow(
    clippy::float_arithmetic,
    reason = "rates per second are reported as floats"
)]
pub fn text(o: &Outcome<'_>) -> String {
    let p = o.plan;
    let t = o.totals;
    let mut out = String::new();
    let rate = p
        .rate
        .map(|r| format!(" at {r} requests/s"))
        .unwrap_or_default();
    out.push_str(&format!(
        "settle load: {} loop{rate}, {} connections, {} per request, mix {}, {} wallets, zipf {}, seed {}\n",
        o.mode(),
        p.connections,
        if p.batch > 1 {
            format!("batch of {}", p.batch)
        } else {
            "1 operation".to_owned()
        },
        p.mix,
        p.wallets,
        p.zipf,
        p.seed,
    ));
    if let Some(status) = o.interrupted {
        out.push_str(&format!(
            "  interrupted by {} after {:.2} s: the figures are of the part that ran\n",
            signal_name(status),
            o.elapsed.as_secs_f64()
        ));
    }
    out.push_str(&format!(
        "  set-up      client {}, {} wallets funded in {:.2} s\n",
        o.client_id,
        p.wallets,
        o.setup_took.as_secs_f64()
    ));
    out.push_str(&format!(
        "  requests    {:>12} answered in {:.2} s {:>10} requests/s\n",
        thousands(t.requests),
        o.elapsed.as_secs_f64(),
        rate_text(o.per_sec(t.requests))
    ));
    if t.unsent > 0 {
        out.push_str(&format!(
            "  unsent      {} scheduled requests not sent: the server fell behind the rate\n",
            thousands(t.unsent)
        ));
    }
    out.push_str(&format!(
        "  operations  {:>12}             {:>12} ops/s\n",
        thousands(t.ops),
        rate_text(o.per_sec(t.ops))
    ));
    let kinds: Vec<String> = t
        .by_kind()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{} {}", k.name(), thousands(n)))
        .collect();
    out.push_str(&format!("              {}\n", kinds.join(", ")));
    let lat: Vec<String> = percentiles(&t.latency)
        .iter()
        .map(|(name, v)| format!("{} {}", name.replace("p999", "p99.9"), ms(*v)))
        .collect();
    let from = if p.rate.is_some() {
        "from each request's due time"
    } else {
        "per request"
    };
    out.push_str(&format!(
        "  latency     ({from})\n              {}\n",
        lat.join("  ")
    ));
    if t.timed_out > 0 {
        out.push_str(&format!(
            "              with {} requests that timed out, each counted at its wait (at least --timeout {})\n",
            thousands(t.timed_out),
            humantime::format_duration(p.timeout)
        ));
    }
    if t.errors.is_empty() {
        out.push_str("  errors      none\n");
    } else {
        out.push_str(&format!(
            "  errors      {} operations answered with an error:\n",
            thousands(t.errors_total())
        ));
        for (status, code, n) in &t.errors {
            let code = if code.is_empty() { "(no code)" } else { code };
            out.push_str(&format!(
                "              {status} {code}: {}\n",
                thousands(*n)
            ));
        }
    }
    out.push_str(&format!(
        "  transport   {} requests without an answer; {} connections opened\n",
        thousands(t.transport),
        thousands(t.connections_opened)
    ));
    for s in &t.transport_samples {
        out.push_str(&format!("              e.g. {s}\n"));
    }
    if let Some(h) = o.host_cpu {
        out.push_str(&format!(
            "  host CPU    busy {:.1}%, steal {:.1}%, iowait {:.1}% (this machine, during the run)\n",
            h.busy, h.steal, h.iowait
        ));
        if h.steal > STEAL_WARNING_PERCENT {
            out.push_str(
                "              steal is high: the hypervisor kept CPUs from this machine, and the latency above includes it\n",
            );
        }
    }
    match o.audit {
        Ok(a) => {
            let assets: Vec<String> = a["assets"]
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .map(|r| {
                            format!(
                                "{} cash {} in flight {}",
                                r["asset"].as_str().unwrap_or("?"),
                                r["cash"].as_str().unwrap_or("?"),
                                r["inFlight"].as_str().unwrap_or("?")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let verdict = if o.conserved() {
                "money conserved"
            } else {
                "MONEY NOT CONSERVED"
            };
            out.push_str(&format!(
                "  audit       {verdict} ({})\n",
                assets.join("; ")
            ));
        }
        Err(e) => out.push_str(&format!("  audit       could not be read: {e}\n")),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_keep_microseconds() {
        assert_eq!(ms(0), "0.000 ms");
        assert_eq!(ms(1_234), "1.234 ms");
        assert_eq!(ms(56), "0.056 ms");
    }
}
