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

    let o = load(&["--url", "https://127.0.0.1:1", "--admin-key", ADMIN_KEY]).await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("only plain http"), "{err}");
}

/// A server killed in the middle of a run: the requests it never answered
/// (refused connections fail fast, thousands a second) are counted apart,
/// not as throughput, and the run fails. Before, they were counted as
/// requests and operations, and most of the "throughput" was refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_a_dead_server_never_answered_are_not_throughput() {
    let mut srv = Server::start().await;
    let url = srv.url("");
    let run = tokio::spawn(async move {
        load(&[
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
        .await
    });
    // Killed once the measured run is under way (set-up takes well under 1 s).
    tokio::time::sleep(std::time::Duration::from_millis(2_000)).await;
    srv.kill9();
    let o = run.await.unwrap();
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(1), "{err}");
    let r: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {err}"));
    let requests = r["requests"].as_u64().unwrap();
    let unanswered = r["transportErrors"].as_u64().unwrap();
    assert!(requests > 0 && unanswered > 0, "{r}");
    // A refused connection is retried after a growing wait, not as fast as
    // the refusals come (that was ~50,000 attempts/s, a whole core): four
    // connections waiting 10 ms, doubling to 200 ms, try ~15 times each in
    // the 2 s left.
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
