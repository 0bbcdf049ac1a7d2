//! `settle load` against the real server: small closed-loop, open-loop and
//! batched runs, read through `--json`; options it must refuse; a server
//! that is not there. Counts and orderings only: no timed assertions.
// The helpers below are test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::Output;
use support::{ADMIN_KEY, Server};

/// Runs `settle load` with these arguments (and `SETTLE_ADMIN_KEY` unset,
/// so that each test says where its key comes from).
async fn load(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_settle"))
        .arg("load")
        .args(args)
        .env_remove("SETTLE_ADMIN_KEY")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run settle load")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A `settle load` running in the background, its standard error read as
/// it comes.
struct Running {
    child: tokio::process::Child,
    stderr: tokio::task::JoinHandle<String>,
}

impl Running {
    /// Starts `settle load` and returns once it is opening its connections
    /// (the set-up is over: a signal or a stall from then on hits the run
    /// itself, however slow the machine). Needs `--connections` above 1.
    async fn start(args: &[&str]) -> Running {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_settle"))
            .arg("load")
            .args(args)
            .env_remove("SETTLE_ADMIN_KEY")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run settle load");
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let (opening_tx, opening) = tokio::sync::oneshot::channel();
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let mut opening_tx = Some(opening_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("opening") {
                    opening_tx.take().map(|tx| tx.send(()));
                }
                text.push_str(&line);
                text.push('\n');
            }
            text
        });
        let mut running = Running { child, stderr };
        if tokio::time::timeout(std::time::Duration::from_secs(20), opening)
            .await
            .is_err()
        {
            let _ = running.child.start_kill();
            let (_, err) = running.finish(std::time::Duration::from_secs(5)).await;
            panic!("settle load did not get to its run: {err}");
        }
        running
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// Waits (at most `within`) for the end: exit status and standard error.
    async fn finish(self, within: std::time::Duration) -> (Output, String) {
        let o = tokio::time::timeout(within, self.child.wait_with_output())
            .await
            .expect("settle load ended in time")
            .unwrap();
        let err = self.stderr.await.unwrap();
        (o, err)
    }
}

/// Sends a signal (`-STOP`, `-INT`…) to a process.
fn signal(sig: &str, pid: u32) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// The `--json` report of a run that must have succeeded.
fn report(o: &Output) -> Value {
    let err = stderr(o);
    assert!(!err.contains("panicked"), "settle load panicked:\n{err}");
    assert!(
        o.status.success(),
        "settle load failed ({}):\n{err}\nstdout: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout)
    );
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "--json printed no JSON object ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

/// What every successful run's report must say.
#[allow(clippy::float_arithmetic, reason = "sums of reported percentages")]
fn check_run(r: &Value, requests: u64, batch: u64) {
    assert_eq!(r["requests"], requests, "{r}");
    assert_eq!(r["operations"], requests * batch, "{r}");
    let by_type: u64 = r["operationsByType"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(by_type, requests * batch, "{r}");
    assert_eq!(r["transportErrors"], 0, "{r}");
    assert_eq!(r["conserved"], true, "{r}");
    assert_eq!(r["audit"]["ok"], true, "{r}");
    let lat = &r["latencyMicros"];
    let (p50, p90, p99, p999, max) = (
        lat["p50"].as_u64().unwrap(),
        lat["p90"].as_u64().unwrap(),
        lat["p99"].as_u64().unwrap(),
        lat["p999"].as_u64().unwrap(),
        lat["max"].as_u64().unwrap(),
    );
    assert!(
        0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max,
        "{lat}"
    );
    // Errors are business refusals only (the wallets are well funded, so
    // even those are rare), never a 5xx or a malformed request.
    for e in r["errors"].as_array().unwrap() {
        let status = e["status"].as_u64().unwrap();
        assert!(
            status == 409 || status == 429,
            "unexpected error {e} in {r}"
        );
    }
    let timeline: u64 = r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["operations"].as_u64().unwrap())
        .sum();
    assert_eq!(timeline, requests * batch, "{r}");
    // The machine's CPU over the run: null only where there is no
    // /proc/stat or no tick passed; otherwise shares of one whole.
    let host = &r["hostCpu"];
    if !host.is_null() {
        let pct = |k: &str| host[k].as_f64().unwrap_or_else(|| panic!("{k} in {host}"));
        let (busy, steal, iowait) = (
            pct("busyPercent"),
            pct("stealPercent"),
            pct("iowaitPercent"),
        );
        for v in [busy, steal, iowait] {
            assert!((0.0..=100.0).contains(&v), "{host}");
        }
        assert!(busy + steal + iowait <= 100.2, "{host}");
    }
}

fn assert_svg(path: &Path) {
    let svg = std::fs::read_to_string(path).expect("the chart was written");
    assert!(
        svg.trim_start().starts_with("<svg"),
        "{}",
        &svg[..200.min(svg.len())]
    );
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("p99") && svg.contains("ops/s"));
}

#[tokio::test]
async fn closed_open_and_batched_runs_count_every_operation_and_conserve_money() {
    let server = Server::start().await;
    let url = server.url("");
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("run.svg");

    // Closed loop, the full mix (reservations then captures), hot wallets,
    // a short warm-up, the key from --admin-key.
    let o = load(&[
        "--url",
        &url,
        "--admin-key",
        ADMIN_KEY,
        "--requests",
        "300",
        "--connections",
        "4",
        "--wallets",
        "8",
        "--mix",
        "transfer=70,credit=10,debit=10,reserve=10",
        "--zipf",
        "1.1",
        "--seed",
        "7",
        "--warmup",
        "100ms",
        "--json",
        "--chart",
        chart.to_str().unwrap(),
    ])
    .await;
    let r = report(&o);
    check_run(&r, 300, 1);
    assert_eq!(r["mode"], "closed");
    assert_eq!(r["connectionsOpened"], 4, "{r}");
    assert_eq!(r["seed"], 7);
    assert!(
        r["operationsByType"]["capture"].as_u64().unwrap() > 0,
        "{r}"
    );
    assert_svg(&chart);

    // Open loop at a low rate; the key from the data directory's file.
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("admin.key"), format!("{ADMIN_KEY}\n")).unwrap();
    let o = load(&[
        "--url",
        &url,
        "--data-dir",
        data.to_str().unwrap(),
        "--requests",
        "60",
        "--rate",
        "300",
        "--connections",
        "3",
        "--wallets",
        "4",
        "--json",
    ])
    .await;
    let r = report(&o);
    check_run(&r, 60, 1);
    assert_eq!(r["mode"], "open");
    assert_eq!(r["targetRate"], 300.0);
    assert_eq!(r["operationsByType"]["transfer"], 60);
    // 200 ms at 300 requests/s: ticks passed, so Linux reports the host.
    if cfg!(target_os = "linux") {
        assert!(r["hostCpu"]["busyPercent"].is_f64(), "{r}");
    }

    // Batches of 50 through POST /v1/batch, with reservations.
    let o = load(&[
        "--url",
        &url,
        "--admin-key",
        ADMIN_KEY,
        "--requests",
        "8",
        "--batch",
        "50",
        "--connections",
        "2",
        "--wallets",
        "20",
        "--mix",
        "transfer=80,reserve=20",
        "--json",
    ])
    .await;
    let r = report(&o);
    check_run(&r, 8, 50);
    assert_eq!(r["batch"], 50);

    // The text report, for people, by default.
    let o = load(&[
        "--url",
        &url,
        "--admin-key",
        ADMIN_KEY,
        "--duration",
        "300ms",
        "--connections",
        "2",
        "--wallets",
        "3",
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("money conserved"), "{text}");
    assert!(text.contains("p99.9"), "{text}");
    if cfg!(target_os = "linux") {
        assert!(text.contains("host CPU    busy"), "{text}");
    }

    // A wrong admin key: a clear refusal, exit 1.
    let o = load(&[
        "--url",
        &url,
        "--admin-key",
        "not-the-admin-key-at-all",
        "--requests",
        "5",
    ])
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("admin key was refused"),
        "{}",
        stderr(&o)
    );

    // The server agrees money was conserved.
    let audit = server.audit().await;
    assert_eq!(audit["ok"], true, "{audit}");
}

#[tokio::test]
async fn bad_options_are_refused_with_a_message_and_no_panic() {
    let empty = tempfile::tempdir().unwrap();
    let no_key_dir = empty.path().to_str().unwrap();
    let key = ["--admin-key", ADMIN_KEY];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--mix", "transfer=70,teleport=30"],
            "unknown operation `teleport`",
        ),
        (vec!["--mix", "transfer70"], "NAME=WEIGHT"),
        (vec!["--mix", "transfer=0"], "no operation has a weight"),
        (vec!["--rate", "0"], "--rate must be"),
        (vec!["--rate=-5"], "--rate must be"),
        (vec!["--batch", "0"], "--batch must be"),
        (vec!["--batch", "9000"], "--batch must be"),
        (vec!["--connections", "0"], "--connections must be"),
        (vec!["--requests", "0"], "--requests must be"),
        (vec!["--zipf=-1"], "--zipf must be"),
        // A negative value written apart reaches the same check, not clap's
        // "unexpected argument".
        (vec!["--zipf", "-1"], "--zipf must be"),
        (vec!["--rate", "-5"], "--rate must be"),
        (vec!["--fund", "-5"], "--fund"),
        (vec!["--wallets", "1"], "at least 2"),
        (vec!["--fund", "1.234"], "--fund"),
        (vec!["--duration", "0s"], "--duration must be"),
        (vec!["--duration", "ten"], "--duration"),
        (
            vec!["--duration", "5s", "--requests", "10"],
            "cannot be used with",
        ),
        // The server would refuse these after the client and wallets were
        // made (400 invalid_amount); refused before anything runs.
        (vec!["--fund", "5."], "--fund"),
        (vec!["--fund", "1e15"], "too large"),
        // URLs that cannot be a server's base URL are options that cannot
        // run (2), not an unreachable server (1).
        (vec!["--url", "127.0.0.1:8080"], "needs a scheme"),
        (vec!["--url", "not a url"], "needs a scheme"),
        (vec!["--url", "https://127.0.0.1:1"], "only plain http"),
        (vec!["--url", "ftp://x"], "only plain http"),
        (vec!["--url", "http://"], "not a host"),
        (vec!["--url", "http://[::1"], "closing `]`"),
        (vec!["--url", "http://127.0.0.1:8080/v1"], "without a path"),
        (vec!["--url", "http://127.0.0.1:99999"], "not a port"),
        (
            vec!["--url", "http://user:s3cret@127.0.0.1:1"],
            "user or password",
        ),
        // The chart is checked before the run, not after it.
        (vec!["--chart", "/nonexistent/dir/x.svg"], "cannot write"),
        (vec!["--chart", "x.png"], ".svg"),
    ];
    for (args, says) in cases {
        let mut all = key.to_vec();
        all.extend(&args);
        let o = load(&all).await;
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} was accepted");
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: expected {says:?} in:\n{err}");
        assert!(!err.contains("panicked"), "{args:?}:\n{err}");
        assert!(o.stdout.is_empty(), "{args:?} printed a report");
        assert!(!err.contains("s3cret"), "{args:?} echoed a password: {err}");
    }
    // No key anywhere: says where it looked.
    let o = load(&["--data-dir", no_key_dir, "--requests", "5"]).await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no admin key") && err.contains("admin.key"),
        "{err}"
    );
}

#[tokio::test]
async fn a_server_that_is_not_there_is_a_clear_failure() {
    // Port 1 on loopback: nothing listens there.
    let o = load(&[
        "--url",
        "http://127.0.0.1:1",
        "--admin-key",
        ADMIN_KEY,
        "--requests",
        "5",
    ])
    .await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot reach the server at http://127.0.0.1:1"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(o.stdout.is_empty());
}

/// A server killed in the middle of a run: the requests it never answered
/// (refused connections fail fast, thousands a second) are counted apart,
/// not as throughput, and the run fails. Before, they were counted as
/// requests and operations, and most of the "throughput" was refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_a_dead_server_never_answered_are_not_throughput() {
    let mut srv = Server::start().await;
    let url = srv.url("");
    let run = Running::start(&[
        "--url",
        &url,
        "--admin-key",
        ADMIN_KEY,
        "--duration",
        "4s",
        "--wallets",
        "20",
        "--connections",
        "4",
        "--json",
    ])
    .await;
    // Killed once the measured run is under way.
    tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    srv.kill9();
    let (o, err) = run.finish(std::time::Duration::from_secs(60)).await;
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(1), "{err}");
    let r: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {err}"));
    // The audit could not be read: nobody knows whether money was
    // conserved, which is not "false".
    assert!(r["conserved"].is_null(), "{r}");
    assert!(r["auditError"].is_string(), "{r}");
    let requests = r["requests"].as_u64().unwrap();
    let unanswered = r["transportErrors"].as_u64().unwrap();
    assert!(requests > 0 && unanswered > 0, "{r}");
    // A refused connection is retried after a growing wait, not as fast as
    // the refusals come (that was ~50,000 attempts/s, a whole core): four
    // connections waiting 10 ms, doubling to 200 ms, try ~15 times each in
    // the 3 s left.
    assert!(
        unanswered < 1_000,
        "refused connections are retried with a backoff: {r}"
    );
    assert_eq!(
        r["operations"], requests,
        "only answered operations count: {r}"
    );
    // Each second counts what was answered in it, apart from what was not.
    let seconds = r["timeline"].as_array().unwrap();
    let answered: u64 = seconds
        .iter()
        .map(|s| s["requests"].as_u64().unwrap())
        .sum();
    let failed: u64 = seconds
        .iter()
        .map(|s| s["transportErrors"].as_u64().unwrap())
        .sum();
    assert_eq!((answered, failed), (requests, unanswered), "{r}");
    let last = seconds.last().unwrap();
    assert_eq!(
        last["requests"], 0,
        "nothing is answered after the kill: {r}"
    );
}

/// An open loop the server cannot keep up with stops sending at the end
/// of `--duration` and says how many scheduled requests it did not send.
/// Before, it sent every request of the schedule however late (a 3 s run at
/// 200,000/s took 28 s; at 1e8/s it would have run for hours).
#[tokio::test]
async fn an_open_loop_that_falls_behind_stops_at_the_deadline() {
    let server = Server::start().await;
    let url = server.url("");
    let started = std::time::Instant::now();
    let o = load(&[
        "--url",
        &url,
        "--admin-key",
        ADMIN_KEY,
        "--rate",
        "100000000",
        "--duration",
        "1s",
        "--connections",
        "2",
        "--wallets",
        "4",
        "--json",
    ])
    .await;
    let took = started.elapsed();
    let r = report(&o);
    assert!(
        took < std::time::Duration::from_secs(15),
        "took {took:?}: {r}"
    );
    let (sent, failed, unsent) = (
        r["requests"].as_u64().unwrap(),
        r["transportErrors"].as_u64().unwrap(),
        r["unsent"].as_u64().unwrap(),
    );
    assert!(sent > 0 && unsent > 0, "{r}");
    // Every request of the schedule was either sent or counted as unsent.
    assert_eq!(sent + failed + unsent, 100_000_000, "{r}");
    assert_eq!(r["conserved"], true, "{r}");

    // A low rate: the rate is over the schedule's span (2 s), not over the
    // few milliseconds to its only answer.
    let o = load(&[
        "--url",
        &url,
        "--admin-key",
        ADMIN_KEY,
        "--rate",
        "0.5",
        "--duration",
        "2s",
        "--connections",
        "1",
        "--wallets",
        "2",
        "--json",
    ])
    .await;
    let r = report(&o);
    assert_eq!(r["requests"], 1, "{r}");
    assert_eq!(r["unsent"], 0, "{r}");
    assert!(r["elapsedSecs"].as_f64().unwrap() >= 2.0, "{r}");
    assert!(r["requestsPerSec"].as_f64().unwrap() <= 0.5, "{r}");
}

/// A run in which nothing was answered fails, whatever the reason (here:
/// over before the first answer), instead of exiting 0 with percentiles of
/// nothing.
#[tokio::test]
async fn a_run_with_no_answer_fails() {
    let server = Server::start().await;
    let o = load(&[
        "--url",
        &server.url(""),
        "--admin-key",
        ADMIN_KEY,
        "--duration",
        "1ns",
        "--wallets",
        "2",
    ])
    .await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("no request was answered"), "{err}");
}

/// A server that stalls (SIGSTOP) longer than `--timeout`: the requests
/// given up count in the latency at their wait, so the tail shows the
/// stall. Before, they were left out and max read ~20 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_shows_in_the_latency_tail() {
    let server = Server::start().await;
    let url = server.url("");
    let run = Running::start(&[
        "--url",
        &url,
        "--admin-key",
        ADMIN_KEY,
        "--duration",
        "3s",
        "--timeout",
        "300ms",
        "--connections",
        "2",
        "--wallets",
        "4",
        "--json",
    ])
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    signal("-STOP", server.pid());
    tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    signal("-CONT", server.pid());
    let (o, err) = run.finish(std::time::Duration::from_secs(20)).await;
    assert_eq!(o.status.code(), Some(0), "{err}");
    let r: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {err}"));
    assert!(r["timedOut"].as_u64().unwrap() > 0, "{r}");
    assert!(
        r["latencyMicros"]["max"].as_u64().unwrap() >= 300_000,
        "{r}"
    );
}

/// Ctrl-C (or SIGTERM) stops the run and still reports what it measured,
/// with the audit; a second signal quits at once. Before, the first signal
/// killed the run with nothing printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_reports_what_it_measured() {
    let server = Server::start().await;
    let url = server.url("");
    let args = [
        "--url",
        &url,
        "--admin-key",
        ADMIN_KEY,
        "--duration",
        "60s",
        "--connections",
        "2",
        "--wallets",
        "4",
        "--json",
    ];

    let run = Running::start(&args).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    signal("-INT", run.pid());
    let (o, err) = run.finish(std::time::Duration::from_secs(15)).await;
    assert_eq!(o.status.code(), Some(130), "{err}");
    let r: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {err}"));
    assert_eq!(r["interrupted"], "SIGINT", "{r}");
    assert!(r["requests"].as_u64().unwrap() > 0, "{r}");
    assert!(r["elapsedSecs"].as_f64().unwrap() < 30.0, "{r}");
    assert_eq!(r["conserved"], true, "{r}");

    // SIGTERM twice while the server is stalled (its answers in flight
    // would be waited for): the second quits at once.
    let run = Running::start(&args).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    signal("-STOP", server.pid());
    signal("-TERM", run.pid());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    signal("-TERM", run.pid());
    let ended = tokio::time::timeout(
        std::time::Duration::from_millis(1_500),
        run.finish(std::time::Duration::from_secs(20)),
    )
    .await;
    signal("-CONT", server.pid());
    let (o, err) = ended.expect("settle load quits at the second SIGTERM");
    assert_eq!(o.status.code(), Some(143), "{err}");
    assert!(err.contains("interrupted again"), "{err}");
}
/// Fewer requests than `--connections`: one connection per request, and
/// the report says so (it said 64 connections and opened 5). The JSON
/// timeline marks its last, cut-short second.
#[tokio::test]
async fn a_run_of_few_requests_says_how_many_connections_it_used() {
    let server = Server::start().await;
    let o = load(&[
        "--url",
        &server.url(""),
        "--admin-key",
        ADMIN_KEY,
        "--requests",
        "5",
        "--wallets",
        "4",
        "--json",
    ])
    .await;
    let r = report(&o);
    check_run(&r, 5, 1);
    assert_eq!(r["connections"], 5, "{r}");
    assert_eq!(r["connectionsOpened"], 5, "{r}");
    let timeline = r["timeline"].as_array().unwrap();
    assert_eq!(timeline.last().unwrap()["partial"], true, "{r}");
}
