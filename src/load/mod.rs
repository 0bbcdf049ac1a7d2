//! `settle load`: an HTTP load generator for settle (issue 7).
//!
//! It checks the options (`args`), makes a client and funded wallets
//! (`setup`), runs one task per connection (`driver`) that draws operations
//! from the mix (`workload`) and records what happened (`stats`), shows
//! progress (`progress`), then reports (`report`, `chart`) and checks the
//! conservation audit.
//!
//! Exit status: 0 when the run finished and money was conserved; 1 when the
//! server could not be reached, no request was answered, the audit failed
//! or said money was not conserved, or the chart could not be written; 2
//! for options that cannot run; 130 (SIGINT) or 143 (SIGTERM) when a signal
//! cut the run short (its report is still printed).

mod args;
mod chart;
mod client;
mod driver;
mod host;
mod progress;
mod report;
mod setup;
mod stats;
mod workload;

pub use args::LoadArgs;

use args::{Bound, Plan};
use client::Target;
use driver::{End, Schedule, Shared, Spec, Stop};
use stats::{Live, Recorder, Totals};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use workload::{ConnWork, Workload};

pub fn run(args: &LoadArgs) -> ExitCode {
    let plan = match args.plan() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("settle load: {e}");
            return ExitCode::from(2);
        }
    };
    // One thread by default: every task (request loops and hyper's
    // connection tasks) then wakes on the same thread, with no cross-thread
    // hand-off per request, which leaves more of a shared machine to the
    // server.
    let runtime = if plan.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(plan.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("settle load: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(plan)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("settle load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Unique to this process run: idempotency keys and the client's name.
fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("ld{nanos:x}p{}", std::process::id())
}

/// The measured run's length, which rates are per. Open loop: at least the
/// schedule's span (a low rate's last answer comes long before the end of
/// its schedule: 1 answer in 2 s is 0.5/s, not the 300/s of its 3 ms).
/// Else, and when answers come later than the schedule: to the last answer.
fn elapsed(plan: &Plan, to_last_answer: Duration) -> Duration {
    let span = match (plan.rate, plan.bound) {
        (None, _) => None,
        (Some(_), Bound::Duration(d)) => Some(d),
        (Some(rate), Bound::Requests(n)) => {
            #[allow(
                clippy::float_arithmetic,
                clippy::cast_precision_loss,
                reason = "a schedule's span from a count and a rate"
            )]
            let secs = n as f64 / rate;
            Duration::try_from_secs_f64(secs).ok()
        }
    };
    span.map_or(to_last_answer, |s| s.max(to_last_answer))
}

/// Each connection's schedule: open loop spreads the rate evenly over the
/// connections, staggered so that they do not all send at once.
fn schedule(plan: &Plan, index: usize) -> Schedule {
    let Some(rate) = plan.rate else {
        return Schedule::Closed;
    };
    #[allow(
        clippy::float_arithmetic,
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "the interval between a connection's requests, from a rate in requests/s"
    )]
    let interval_nanos = (plan.connections as f64 * 1e9 / rate).round().max(1.0) as u64;
    let offset = Duration::from_nanos(
        interval_nanos.saturating_mul(index as u64) / plan.connections.max(1) as u64,
    );
    Schedule::Open {
        interval_nanos,
        offset,
    }
}

/// Watches SIGINT and SIGTERM. The first stops the run (no new requests;
/// answers in flight get `driver::GRACE`), which then reports what it
/// measured and exits 130 (SIGINT) or 143 (SIGTERM); a second exits at
/// once. Without it, Ctrl-C killed the run with nothing printed.
fn watch_signals() -> Stop {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            // The default handlers stay: a signal ends the process.
            return;
        };
        let code: u8 = tokio::select! {
            _ = int.recv() => 130,
            _ = term.recv() => 143,
        };
        let _ = tx.send(Some(code));
        eprintln!(
            "\nsettle load: interrupted: no new requests; up to {} s for the answers in flight, \
             then the report (interrupt again to quit at once)",
            driver::GRACE.as_secs()
        );
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        eprintln!("settle load: interrupted again: quitting");
        std::process::exit(i32::from(code));
    });
    rx
}

async fn execute(plan: Plan) -> Result<ExitCode, String> {
    let stop = watch_signals();
    let target = Arc::new(Target::resolve(&plan.url).await?);
    let admin = setup::key_header(&plan.admin_key)?;
    let run_id = run_id();
    let prepare = async {
        setup::check_health(&target, &admin, plan.timeout).await?;
        eprintln!(
            "settle load: creating a client and {} funded wallets at {}",
            plan.wallets, target.url
        );
        setup::prepare(
            &target,
            &admin,
            &run_id,
            plan.wallets,
            &plan.fund,
            plan.connections,
            plan.timeout,
        )
        .await
    };
    let mut stopped = stop.clone();
    let made = tokio::select! {
        made = prepare => made?,
        () = driver::stopped(&mut stopped) => {
            eprintln!("settle load: interrupted during the set-up: nothing was measured");
            return Ok(ExitCode::from(stop.borrow().unwrap_or(130)));
        }
    };
    let workload = Arc::new(Workload::new(made.wallets, &plan.mix, plan.zipf)?);
    let shared = Arc::new(Shared {
        api_key: made.api_key,
        run_id,
        batch: plan.batch,
        timeout: plan.timeout,
    });

    if plan.connections > 1 {
        eprintln!("settle load: opening {} connections", plan.connections);
    }
    let mut stopped = stop.clone();
    let conns = tokio::select! {
        conns = driver::open_all(&target, plan.timeout, plan.connections) => conns,
        () = driver::stopped(&mut stopped) => {
            eprintln!("settle load: interrupted while opening connections: nothing was measured");
            return Ok(ExitCode::from(stop.borrow().unwrap_or(130)));
        }
    };
    let mut conns = conns.into_iter();

    let live = Arc::new(Live::default());
    let (seconds_tx, seconds_rx) = mpsc::unbounded_channel();
    let collector = tokio::spawn(stats::collect_seconds(seconds_rx));
    let latencies = stats::latencies();
    let warmup_start = Instant::now();
    let measure_start = warmup_start + plan.warmup;
    let tickets = Arc::new(AtomicU64::new(match plan.bound {
        Bound::Requests(n) => n,
        Bound::Duration(_) => 0,
    }));
    let c = plan.connections as u64;
    let mut tasks = Vec::with_capacity(plan.connections);
    for index in 0..plan.connections {
        let end = match (plan.bound, plan.rate) {
            (Bound::Duration(d), _) => End::At(measure_start + d),
            (Bound::Requests(_), None) => End::Tickets(tickets.clone()),
            (Bound::Requests(n), Some(_)) => End::Quota(n / c + u64::from((index as u64) < n % c)),
        };
        let spec = Spec {
            index,
            schedule: schedule(&plan, index),
            warmup_start,
            measure_start,
            end,
            stop: stop.clone(),
        };
        let work = ConnWork::new(workload.clone(), plan.seed, index);
        let recorder = Recorder::new(
            measure_start,
            live.clone(),
            latencies.clone(),
            seconds_tx.clone(),
        );
        let conn = conns
            .next()
            .unwrap_or_else(|| client::Conn::new(target.clone(), plan.timeout));
        tasks.push(tokio::spawn(driver::connection(
            shared.clone(),
            conn,
            work,
            recorder,
            spec,
        )));
    }
    drop(seconds_tx);
    // The machine's CPU times from the start of the measured run.
    let host_before = tokio::spawn(async move {
        tokio::time::sleep_until(measure_start.into()).await;
        host::sample()
    });
    let progress = progress::start(live, plan.bound, measure_start);
    let mut finished = Vec::with_capacity(tasks.len());
    let mut measured_end = measure_start;
    for t in tasks {
        let f = t
            .await
            .map_err(|e| format!("a connection task failed: {e}"))?;
        measured_end = measured_end.max(f.measured_end);
        finished.push((f.recorder, f.opened));
    }
    let host_after = host::sample();
    progress.finish().await;
    let host_cpu = match (host_before.await, host_after) {
        (Ok(Some(before)), Some(after)) => host::share(before, after),
        _ => None,
    };
    let totals = Totals::merge(finished, &latencies);
    let counts = collector
        .await
        .map_err(|e| format!("the timeline collector failed: {e}"))?;
    let seconds = stats::timeline(counts, &latencies);
    let interrupted = *stop.borrow();
    // The audit waits behind whatever the server still has queued from the
    // run: a short --timeout (50ms, to find the point requests start timing
    // out) is no bound for it, or its verdict would be "could not be read".
    // Interrupted: 5 s, not the whole wait.
    let audit_timeout = match interrupted {
        Some(_) => Duration::from_secs(5),
        None => plan.timeout.max(Duration::from_secs(10)),
    };
    let audit = setup::audit(&target, &admin, audit_timeout).await;
    let to_last_answer = measured_end.saturating_duration_since(measure_start);

    let outcome = report::Outcome {
        plan: &plan,
        client_id: &made.client_id,
        setup_took: made.took,
        // Interrupted: up to when it stopped, not the whole schedule.
        elapsed: match interrupted {
            Some(_) => to_last_answer,
            None => elapsed(&plan, to_last_answer),
        },
        interrupted,
        totals: &totals,
        seconds: &seconds,
        audit: &audit,
        host_cpu,
    };
    if plan.json {
        say!("{}", report::json(&outcome));
    } else {
        print!("{}", report::text(&outcome));
    }
    let mut code = ExitCode::SUCCESS;
    if let Some(path) = &plan.chart {
        let title = format!(
            "settle load: {} connections, {}, mix {}",
            plan.connections,
            match plan.rate {
                Some(r) => format!("open loop at {r} requests/s"),
                None => "closed loop".to_owned(),
            },
            plan.mix
        );
        if let Err(e) = chart::write(path, &seconds, &title) {
            eprintln!("settle load: {e}");
            code = ExitCode::FAILURE;
        }
    }
    // A run that measured nothing must not pass, whatever the reason.
    if totals.requests == 0 {
        match totals.transport_samples.first() {
            Some(_) if totals.timed_out == totals.transport => eprintln!(
                "settle load: no request was answered within --timeout {}: the server at {} is \
                 slower than that, or stalled",
                humantime::format_duration(plan.timeout),
                target.url
            ),
            Some(why) => eprintln!(
                "settle load: no request was answered ({why}); the server at {} stopped answering",
                target.url
            ),
            None => eprintln!(
                "settle load: no request was answered: the measured run ended before any answer came"
            ),
        }
        code = ExitCode::FAILURE;
    }
    match &audit {
        Err(e) => {
            eprintln!("settle load: {e}");
            code = ExitCode::FAILURE;
        }
        Ok(_) if !outcome.conserved() => {
            eprintln!("settle load: the audit says money was NOT conserved");
            code = ExitCode::FAILURE;
        }
        Ok(_) => {}
    }
    // Interrupted: the signal's status, whatever else (the report says it).
    Ok(interrupted.map_or(code, ExitCode::from))
}
