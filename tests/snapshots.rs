//! Snapshots from the outside, as an operator meets them: the real binary,
//! snapshots taken over HTTP between writes, `kill -9`, restarts, the
//! offline tools (`settle snapshot list|inspect|verify`, `settle wal
//! show`), and `settle restore`, plain and point-in-time (`--wal …
//! --until POSITION` or `--until-time TIME`).
//!
//! The reference for every state is the live engine's own digest
//! (`GET /v1/admin/digest`) read at rest just before each snapshot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use support::{Server, wait_quiet};

fn settle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_settle"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run settle")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `settle restore --from SNAPSHOT --data-dir TO --wal WAL`, then `more`
/// (`--until P`, `--until-time T`).
fn restore_through(from: &Path, to: &Path, wal: &Path, more: &[&str]) -> Output {
    let mut args = vec![
        "restore",
        "--from",
        p(from),
        "--data-dir",
        p(to),
        "--wal",
        p(wal),
    ];
    args.extend_from_slice(more);
    settle(&args)
}

/// A server on `data` started with `args`, a client named `name`, and `n`
/// USD wallets of that client: (server, the client's key, wallet ids).
async fn server_with_wallets(
    data: &Path,
    args: &[&str],
    name: &str,
    n: usize,
) -> (Server, String, Vec<String>) {
    let srv = Server::start_in_with(data, args).await;
    let (_, key) = srv.admin_create_client(name).await;
    let mut wallets = Vec::new();
    for _ in 0..n {
        wallets.push(srv.create_wallet(&key, "USD").await);
    }
    (srv, key, wallets)
}

/// Money moving among `wallets`: credits, and transfers around the ring.
async fn traffic(srv: &Server, key: &str, wallets: &[String], rounds: usize) {
    for r in 0..rounds {
        for (i, w) in wallets.iter().enumerate() {
            srv.credit(key, w, "USD", "3.00").await;
            let to = &wallets[(i + r + 1) % wallets.len()];
            if to != w {
                srv.post_json(
                    "/v1/transfers",
                    key,
                    &json!({"fromWalletId": w, "toWalletId": to, "asset": "USD", "amount": "1.25"}),
                )
                .await
                .ok(201);
            }
        }
    }
}

/// `POST /v1/admin/snapshots` answers once its snapshot is written, however
/// long that takes: the server's request timeout (here 0 s, so that any
/// request that has to wait at all runs past it) does not cut it off with
/// a 503 while the snapshot goes on being written. Other requests still
/// get the 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_snapshot_outlasts_the_request_timeout() {
    let srv = Server::start_with(&["--request-timeout", "0"]).await;
    let (id, _) = snapshot(&srv).await;
    assert!(id.starts_with("snp_"), "{id}");
    // A 0 s deadline fires at the timer's next tick (1 ms), and creating a
    // client waits only for its fsync (0.1 to 0.4 ms here): it can finish
    // first, and then it is created. One of a few tries must be cut off.
    let mut created = 0;
    for _ in 0..50 {
        let waits = srv
            .raw(
                "POST",
                "/v1/admin/clients",
                &[
                    ("x-api-key", support::ADMIN_KEY),
                    ("content-type", "application/json"),
                ],
                json!({ "name": "late" }).to_string(),
            )
            .await;
        if waits.status == 201 {
            created += 1;
            continue;
        }
        let why = waits.err(503, "unavailable");
        assert!(why.contains("did not finish within 0 s"), "{why}");
        return;
    }
    panic!("{created} of 50 client creations finished within a 0 s timeout");
}

/// Takes a snapshot over HTTP; returns (id, position).
async fn snapshot(srv: &Server) -> (String, u64) {
    let r = srv
        .raw(
            "POST",
            "/v1/admin/snapshots",
            &[("x-api-key", support::ADMIN_KEY)],
            bytes::Bytes::new(),
        )
        .await;
    let d = r.ok(201);
    assert!(support::is_timestamp(&d["createdAt"]), "{d}");
    assert!(d["sizeBytes"].as_u64().unwrap() > 0, "{d}");
    (
        d["id"].as_str().unwrap().to_owned(),
        d["position"].as_u64().unwrap(),
    )
}

fn snapshot_file(data: &Path, id: &str) -> PathBuf {
    let dir = data.join("snapshots");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_str().unwrap().contains(id) && p.extension().is_some_and(|e| e == "msgpack"))
        .unwrap_or_else(|| panic!("no file for {id} in {}", dir.display()))
}

/// The digest `settle snapshot verify` or `settle restore` printed.
fn printed_digest(out: &str) -> String {
    let at = out
        .find("state digest ")
        .unwrap_or_else(|| panic!("no digest in: {out}"));
    out[at + "state digest ".len()..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshots_survive_kill_9_and_restore_to_a_snapshot_or_a_position() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    // On demand only, so the test knows every snapshot's position.
    let args = ["--snapshot-interval", "0", "--snapshot-keep", "3"];
    let (mut srv, key, wallets) = server_with_wallets(&data, &args, "restore test", 6).await;
    traffic(&srv, &key, &wallets, 5).await;
    // A pay-in address: funding state, which snapshots carry too.
    let address = srv
        .post_json(
            &format!("/v1/wallets/{}/payin-addresses", wallets[0]),
            &key,
            &json!({"type": "local_bank_transfer"}),
        )
        .await
        .ok(201);
    let d1 = wait_quiet("first", &srv).await;
    let (s1, p1) = snapshot(&srv).await;
    traffic(&srv, &key, &wallets, 5).await;
    let d2 = wait_quiet("second", &srv).await;
    let (s2, p2) = snapshot(&srv).await;
    assert!(p2 > p1, "{p1} {p2}");
    traffic(&srv, &key, &wallets, 5).await;
    let d3 = wait_quiet("third", &srv).await;
    let balance_at_s1 = {
        // What the first wallet held at the first snapshot is checked
        // through the restored server below; here, what it holds now.
        srv.balance(&key, &wallets[0], "USD").await
    };
    srv.kill9();
    drop(srv);

    // kill -9 after snapshots plus more writes: everything is back, from
    // the newest snapshot and the log after it.
    let srv = Server::start_in_with(&data, &args).await;
    let rec = srv.recovered();
    assert_eq!(rec.digest, d3, "{}", srv.log());
    assert!(
        srv.log().contains(&s2) && srv.log().contains("recovery starts from a snapshot"),
        "the start-up log names the snapshot:\n{}",
        srv.log()
    );
    assert_eq!(srv.balance(&key, &wallets[0], "USD").await, balance_at_s1);
    let listed = srv.admin_get("/v1/admin/snapshots").await.ok(200);
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [s2.as_str(), s1.as_str()], "newest first");
    srv.sigterm();
    drop(srv);

    // The offline tools.
    let out = settle(&["snapshot", "list", "--data-dir", p(&data), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = list["snapshots"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{list}");
    assert!(rows.iter().all(|r| r["verified"] == true), "{list}");
    // camelCase, as inspect's and the API's.
    assert!(
        rows.iter()
            .all(|r| r["sizeBytes"].as_u64().is_some_and(|n| n > 0) && r["createdAt"].is_string()),
        "{list}"
    );
    assert_eq!(rows[0]["id"], s2.as_str());
    assert_eq!(rows[1]["position"], p1);
    let table = settle(&["snapshot", "list", "--data-dir", p(&data)]);
    assert!(
        text(&table).contains(&s1) && text(&table).contains("yes"),
        "{}",
        text(&table)
    );

    let f1 = snapshot_file(&data, &s1);
    let out = settle(&["snapshot", "inspect", p(&f1), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let inspected: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspected["header"]["position"], p1);
    assert_eq!(
        inspected["header"]["formatVersion"],
        settle_snapshots::snapshot::FORMAT_VERSION
    );
    assert_eq!(inspected["header"]["wallets"], 6);
    assert_eq!(inspected["header"]["assets"][0]["asset"], "USD");
    assert_eq!(inspected["header"]["assets"][0]["conserved"], true);
    assert_eq!(inspected["verified"], true);
    // The table shows every term of the conservation check.
    let table = text(&settle(&["snapshot", "inspect", p(&f1)]));
    assert!(
        table.contains("converted in") && table.contains("converted out"),
        "{table}"
    );

    let out = settle(&["snapshot", "verify", p(&f1)]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        printed_digest(&text(&out)),
        d1,
        "the snapshot holds the state at its position"
    );

    // restore: exactly the state at the snapshot, served by a new server
    // that the client's old API key still opens.
    let new1 = root.path().join("restored-1");
    let out = settle(&["restore", "--from", p(&f1), "--data-dir", p(&new1)]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(printed_digest(&text(&out)), d1);
    let srv = Server::start_in_with(&new1, &args).await;
    assert_eq!(srv.recovered().digest, d1);
    assert_eq!(srv.recovered().position, p1);
    srv.wallet(&key, &wallets[0]).await;
    let listed = srv
        .get(&format!("/v1/wallets/{}/payin-addresses", wallets[0]), &key)
        .await
        .ok(200);
    assert_eq!(
        listed,
        json!([address]),
        "the snapshot kept the pay-in address"
    );
    // It takes writes, its log going on from the snapshot's position.
    srv.credit(&key, &wallets[0], "USD", "1.00").await;
    let (_, p_new) = snapshot(&srv).await;
    assert!(p_new > p1, "{p_new} after {p1}");
    srv.sigterm();
    drop(srv);

    // Point in time: the first snapshot rolled forward through the old
    // log to the second snapshot's position is the state then.
    let new2 = root.path().join("restored-2");
    let out = restore_through(&f1, &new2, &data.join("wal"), &["--until", &p2.to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(printed_digest(&text(&out)), d2, "{}", text(&out));
    let srv = Server::start_in_with(&new2, &args).await;
    assert_eq!(
        (srv.recovered().digest, srv.recovered().position),
        (d2.clone(), p2)
    );
    drop(srv);
    // To the end of the log: the state at the crash.
    let new3 = root.path().join("restored-3");
    let out = restore_through(&f1, &new3, &data.join("wal"), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(printed_digest(&text(&out)), d3);

    // Refusals: a non-empty directory, a position before the snapshot or
    // past the log, --until without --wal.
    for (args, says) in [
        (
            vec!["restore", "--from", p(&f1), "--data-dir", p(&new1)],
            "not empty",
        ),
        (
            vec![
                "restore",
                "--from",
                p(&f1),
                "--data-dir",
                p(&root.path().join("x1")),
                "--wal",
                p(&data.join("wal")),
                "--until",
                "1",
            ],
            "before the snapshot",
        ),
        (
            vec![
                "restore",
                "--from",
                p(&f1),
                "--data-dir",
                p(&root.path().join("x2")),
                "--wal",
                p(&data.join("wal")),
                "--until",
                "999999999",
            ],
            "past the end of the log",
        ),
        (
            // The data directory, not its `wal/`: no records there; said
            // as such, not as a --until the operator did not give.
            vec![
                "restore",
                "--from",
                p(&f1),
                "--data-dir",
                p(&root.path().join("x4")),
                "--wal",
                p(&data),
            ],
            "is not the log that goes on from this snapshot",
        ),
        (
            vec![
                "restore",
                "--from",
                p(&f1),
                "--data-dir",
                p(&root.path().join("x3")),
                "--until",
                "5",
            ],
            "--wal",
        ),
    ] {
        let out = settle(&args);
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
        assert!(!text(&out).contains("panicked"), "{}", text(&out));
    }
    // A refused restore leaves nothing behind.
    assert!(!root.path().join("x1").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_snapshot_is_refused_by_the_tools_and_passed_over_at_start() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let args = ["--snapshot-interval", "0"];
    let mut srv = Server::start_in_with(&data, &args).await;
    let (_, key) = srv.admin_create_client("damage test").await;
    let wallets = vec![
        srv.create_wallet(&key, "USD").await,
        srv.create_wallet(&key, "USD").await,
    ];
    traffic(&srv, &key, &wallets, 4).await;
    let (older, _) = snapshot(&srv).await;
    traffic(&srv, &key, &wallets, 4).await;
    let (newest, _) = snapshot(&srv).await;
    traffic(&srv, &key, &wallets, 2).await;
    let live = wait_quiet("damage", &srv).await;
    srv.kill9();
    drop(srv);

    let file = snapshot_file(&data, &newest);
    let good = std::fs::read(&file).unwrap();
    let copy = root.path().join("copy.msgpack");
    // A flipped bit, and a file cut short: verify says no, with the place.
    let mut flipped = good.clone();
    let at = good.len() * 2 / 3;
    flipped[at] ^= 0x01;
    for (bytes, says) in [
        (flipped.clone(), "checksum"),
        (good[..good.len() - 10].to_vec(), ""),
    ] {
        std::fs::write(&copy, &bytes).unwrap();
        let out = settle(&["snapshot", "verify", p(&copy)]);
        assert!(!out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains("NOT sound") && text(&out).contains(says),
            "{}",
            text(&out)
        );
        let out = settle(&["snapshot", "inspect", p(&copy)]);
        assert!(!out.status.success(), "{}", text(&out));
    }
    // Garbage, with --json: the verdict is JSON on stdout even when the
    // header does not read.
    std::fs::write(&copy, b"not a snapshot at all").unwrap();
    let out = settle(&["snapshot", "inspect", p(&copy), "--json"]);
    assert!(!out.status.success(), "{}", text(&out));
    let doc: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(doc["verified"], false, "{doc}");
    assert!(doc["problem"].is_string(), "{doc}");
    // Sound bytes under a name for another position: a server passes it
    // over, and the tools say so rather than call it sound.
    let name = file.file_name().unwrap().to_str().unwrap().to_owned();
    let renamed = root.path().join(format!("{:020}{}", 999_999, &name[20..]));
    std::fs::write(&renamed, &good).unwrap();
    for tool in ["verify", "inspect"] {
        let out = settle(&["snapshot", tool, p(&renamed)]);
        assert!(!out.status.success(), "{tool}: {}", text(&out));
        assert!(text(&out).contains("its name"), "{tool}: {}", text(&out));
    }
    let out = settle(&["snapshot", "verify", p(&root.path().join("absent.msgpack"))]);
    assert!(
        !out.status.success() && !text(&out).contains("panicked"),
        "{}",
        text(&out)
    );
    let out = settle(&[
        "restore",
        "--from",
        p(&copy),
        "--data-dir",
        p(&root.path().join("r")),
    ]);
    assert!(!out.status.success(), "{}", text(&out));

    // The damaged newest snapshot at start: passed over with a warning, the
    // older one and a longer tail give the same state. It leaves the
    // snapshots directory (kept beside it), so that it never counts as one
    // of the snapshots kept.
    std::fs::write(&file, &flipped).unwrap();
    // The listing shows both, says which does not verify, and exits 1.
    for json in [false, true] {
        let mut args = vec!["snapshot", "list", "--data-dir", p(&data)];
        if json {
            args.push("--json");
        }
        let out = settle(&args);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(1), "{said}");
        assert!(said.contains(&older) && said.contains(&newest), "{said}");
        if json {
            let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
            let verified: Vec<bool> = doc["snapshots"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["verified"].as_bool().unwrap())
                .collect();
            assert_eq!(verified, [false, true], "{doc}");
        } else {
            assert!(said.contains("NO: "), "{said}");
        }
    }
    let keep2 = ["--snapshot-interval", "0", "--snapshot-keep", "2"];
    let srv = Server::start_in_with(&data, &keep2).await;
    assert_eq!(srv.recovered().digest, live);
    assert!(
        srv.log().contains("passed over") && srv.log().contains(&older),
        "{}",
        srv.log()
    );
    assert!(srv.log().contains("was moved out"), "{}", srv.log());
    let ids = |list: Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(srv.admin_get("/v1/admin/snapshots").await.ok(200)),
        std::slice::from_ref(&older)
    );
    let set_aside: Vec<PathBuf> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("snapshots-damaged-"))
        .collect();
    assert_eq!(set_aside.len(), 1, "{set_aside:?}");
    assert_eq!(std::fs::read_dir(&set_aside[0]).unwrap().count(), 1);
    // Damaged while the server runs: the next snapshot finds it, sets it
    // aside, and keeps the older good one (with keep 2 it used to remove
    // the good one and keep the damaged).
    traffic(&srv, &key, &wallets, 1).await;
    let (third, _) = snapshot(&srv).await;
    let third_file = snapshot_file(&data, &third);
    let mut bytes = std::fs::read(&third_file).unwrap();
    let at = bytes.len() * 2 / 3;
    bytes[at] ^= 0x01;
    std::fs::write(&third_file, &bytes).unwrap();
    traffic(&srv, &key, &wallets, 1).await;
    let (fourth, _) = snapshot(&srv).await;
    assert_eq!(
        ids(srv.admin_get("/v1/admin/snapshots").await.ok(200)),
        [fourth, older]
    );
    assert!(!third_file.exists());
    drop(srv);
}

/// The log's segment files, by name.
fn wal_files(data: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".wal"))
        .collect();
    names.sort();
    names
}

/// `settle serve` on `data`, which must refuse to start: what it said, and
/// its exit status.
async fn refused_start(data: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_settle"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", p(data)])
        .env("SETTLE_ADMIN_KEY", support::ADMIN_KEY)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("settle serve kept running on a state it cannot rebuild");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    child.wait_with_output().unwrap()
}

/// Batches of 1,000 credits to `wallet` until the log has more than
/// `segments` segment files (1 MiB segments: a batch is ~100 KB of log).
async fn fill_log(srv: &Server, key: &str, wallet: &str, data: &Path, segments: usize) {
    let credits: Vec<Value> = (0..1_000)
        .map(|_| json!({"op": "credit", "walletId": wallet, "asset": "USD", "amount": "1.00"}))
        .collect();
    for _ in 0..60 {
        if wal_files(data).len() > segments {
            return;
        }
        srv.post_json("/v1/batch", key, &json!({"operations": credits}))
            .await
            .ok(200);
    }
    panic!(
        "the log did not pass {segments} segments: {:?}",
        wal_files(data)
    );
}

/// When the only snapshot is damaged and the log before it was compacted
/// away, nothing can rebuild the state: the server must refuse to start,
/// say why (the file and the damage, once) and what to do, and touch
/// nothing. Starting empty would lose every balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_sole_snapshot_over_a_compacted_log_stops_the_start() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let args = ["--snapshot-interval", "0", "--segment-mib", "1"];
    let (mut srv, key, wallets) = server_with_wallets(&data, &args, "compacted", 1).await;
    fill_log(&srv, &key, &wallets[0], &data, 2).await;
    // Each segment past the first was started by a rotation, from a
    // prepared spare or new, and counted so.
    let m = srv
        .raw("GET", "/metrics", &[], bytes::Bytes::new())
        .await
        .text();
    let started: usize = m
        .lines()
        .filter(|l| l.starts_with("settle_wal_segments_total{from="))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(
        started + 1 >= wal_files(&data).len() && started >= 2,
        "{started} segments counted, files {:?}:\n{m}",
        wal_files(&data)
    );
    let before = wal_files(&data);
    let (id, _) = snapshot(&srv).await;
    let files = wal_files(&data);
    assert!(
        files.len() < before.len() && files.first() != before.first(),
        "the snapshot did not compact the log: {before:?} then {files:?}"
    );
    srv.kill9();
    drop(srv);

    let file = snapshot_file(&data, &id);
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();

    let out = refused_start(&data).await;
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(out.stdout.is_empty(), "it said it listens: {said}");
    for words in [
        "no snapshot can start recovery",
        "checksum",
        "settle restore",
    ] {
        assert!(said.contains(words), "expected {words:?} in:\n{said}");
    }
    assert!(!said.contains("panicked"), "{said}");
    // The refusal names the file once (the log line and the exit message
    // are two lines, each naming it once).
    let name = file.file_name().unwrap().to_str().unwrap();
    for line in said.lines().filter(|l| l.contains("no snapshot can start")) {
        assert_eq!(line.matches(name).count(), 1, "{line}");
    }
    // Nothing touched: the damaged file and the log stay for the operator.
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
    assert_eq!(wal_files(&data), files);
}

/// A retry of a batch gets `want` again, marked replayed.
async fn replays_as(srv: &Server, key: &str, k: &str, body: &str, want: &support::Resp) {
    let again = srv.write("POST", "/v1/batch", key, k, body).await;
    assert_eq!(
        (again.status, &again.body),
        (want.status, &want.body),
        "a different answer: {}",
        again.text()
    );
    assert!(again.replayed(), "{:?}", again.headers);
}

/// A batch's answer is kept compressed (it is large); a retry after
/// `kill -9` gets it byte for byte, whether it comes back from the log or
/// from a snapshot.
#[tokio::test(flavor = "multi_thread")]
async fn large_batch_answers_replay_byte_for_byte_after_kill_9_from_the_log_and_a_snapshot() {
    let data = tempfile::tempdir().unwrap();
    let data = data.path().to_path_buf();
    let mut srv = Server::start_in(&data).await;
    let key = srv.client_key().await;
    let a = srv.create_wallet(&key, "USD").await;
    let b = srv.create_wallet(&key, "USD").await;
    srv.credit(&key, &a, "USD", "1000.00").await;
    // 40 transfers answer ~14 KB, well past the 2 KiB from which answers are
    // compressed.
    let batch = |cents: u32| {
        let ops: Vec<Value> = (0..40)
            .map(|i| {
                json!({"op": "transfer", "fromWalletId": a, "toWalletId": b,
                       "asset": "USD", "amount": format!("0.{:02}", cents + i % 3)})
            })
            .collect();
        json!({ "operations": ops }).to_string()
    };
    let (first, second) = (batch(1), batch(11));
    let k1 = support::idem();
    let one = srv.write("POST", "/v1/batch", &key, &k1, &first).await;
    one.ok(200);
    assert!(one.body.len() > 4 * 2048, "{} bytes", one.body.len());

    // From the log.
    srv.kill9();
    let mut srv = Server::start_in(&data).await;
    replays_as(&srv, &key, &k1, &first, &one).await;

    // From a snapshot (the first), and from the log after it (the second).
    snapshot(&srv).await;
    let k2 = support::idem();
    let two = srv.write("POST", "/v1/batch", &key, &k2, &second).await;
    two.ok(200);
    srv.kill9();
    let srv = Server::start_in(&data).await;
    replays_as(&srv, &key, &k1, &first, &one).await;
    replays_as(&srv, &key, &k2, &second, &two).await;
    // Each batch moved its money once.
    let moved: u32 =
        (0..40).map(|i| 1 + i % 3).sum::<u32>() + (0..40).map(|i| 11 + i % 3).sum::<u32>();
    assert_eq!(
        srv.balance(&key, &b, "USD").await["cash"],
        format!("{}.{:02}", moved / 100, moved % 100)
    );
}

/// Stops a server with SIGTERM and waits for it to exit.
async fn stop(mut srv: Server) {
    srv.sigterm();
    assert!(
        srv.wait_exit(std::time::Duration::from_secs(30))
            .await
            .is_some()
    );
}

/// Damages the first segment early (records any snapshot holds) and runs
/// `settle wal repair`, which cuts the log there.
fn cut_the_log_early(data: &Path) -> Output {
    let segment = data.join("wal").join(&wal_files(data)[0]);
    let mut bytes = std::fs::read(&segment).unwrap();
    for b in &mut bytes[20_000..20_004] {
        *b ^= 0xFF;
    }
    std::fs::write(&segment, &bytes).unwrap();
    settle(&["wal", "repair", "--data-dir", p(data)])
}

/// The directories the start set aside beside `data`'s own, by prefix.
fn set_aside(data: &Path, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(prefix))
        .collect()
}

/// A repair that cuts the log below a snapshot (damage in records the
/// snapshot already holds) loses nothing the snapshot holds, and the
/// snapshot is never taken again for a different history.
///
/// Before: the start passed over the snapshot as "past the end of the log",
/// recovered the shorter log, and wrote new records at the positions the
/// snapshot had covered; once the log grew past it, the next start took the
/// stale snapshot for the new records' state. Acknowledged writes were lost
/// without a word, and a retried key was credited twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_below_a_snapshot_starts_from_the_snapshot_and_loses_nothing() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let args = ["--snapshot-interval", "0"];
    let srv = Server::start_in_with(&data, &args).await;
    let (_, key) = srv.admin_create_client("repair").await;
    let wallet = srv.create_wallet(&key, "USD").await;
    let credit = |i: usize| (format!("before-{i}"), r#"{"asset":"USD","amount":"1.00"}"#);
    let path = format!("/v1/wallets/{wallet}/credits");
    let mut first = String::new();
    for i in 0..150 {
        let (k, body) = credit(i);
        let t = srv.post(&path, &key, &k, body).await.ok(201);
        if i == 0 {
            first = t["id"].as_str().unwrap().to_owned();
        }
    }
    let digest = wait_quiet("before the snapshot", &srv).await;
    let (id, position) = snapshot(&srv).await;
    stop(srv).await;

    // Damage early in the first segment: records the snapshot holds.
    let out = cut_the_log_early(&data);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&id) && said.contains("past the log's new end"),
        "repair names the snapshot past the cut:\n{said}"
    );
    // verify then says what the start will do: take that snapshot (it used
    // to replay the few records left, or tell the operator to restore).
    let out = settle(&["wal", "verify", "--data-dir", p(&data)]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!("snapshot {id}"))
            && said.contains("past the log's end")
            && said.contains(&digest),
        "{said}"
    );

    // The start takes the snapshot, sets the short log aside, and goes on
    // after the snapshot's position.
    let srv = Server::start_in_with(&data, &args).await;
    assert_eq!(srv.recovered().digest, digest, "{}", srv.log());
    assert_eq!(srv.recovered().position, position, "{}", srv.log());
    assert!(srv.log().contains("set aside"), "{}", srv.log());
    let aside = set_aside(&data, "wal-behind-snapshot-");
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(srv.balance(&key, &wallet, "USD").await["cash"], "150.00");
    srv.get(&format!("/v1/transactions/{first}"), &key)
        .await
        .ok(200);
    let after = srv
        .post(&path, &key, "after-0", r#"{"asset":"USD","amount":"2.00"}"#)
        .await
        .ok(201);
    let after_id = after["id"].as_str().unwrap().to_owned();
    // Past the snapshot's positions, so that a stale reading would show.
    for i in 1..150 {
        srv.post(
            &path,
            &key,
            &format!("after-{i}"),
            r#"{"asset":"USD","amount":"1.00"}"#,
        )
        .await
        .ok(201);
    }
    let digest = wait_quiet("after the repair", &srv).await;
    srv.sigterm();
    drop(srv);

    // And again: the snapshot and the new log, not the old history.
    let srv = Server::start_in_with(&data, &args).await;
    assert_eq!(srv.recovered().digest, digest, "{}", srv.log());
    assert_eq!(srv.balance(&key, &wallet, "USD").await["cash"], "301.00");
    srv.get(&format!("/v1/transactions/{after_id}"), &key)
        .await
        .ok(200);
    let again = srv
        .post(&path, &key, "after-0", r#"{"asset":"USD","amount":"2.00"}"#)
        .await;
    assert!(again.replayed(), "a retry is replayed, not run again");
    assert_eq!(again.ok(201)["id"], after_id.as_str());
    let (k, body) = credit(0);
    assert!(srv.post(&path, &key, &k, body).await.replayed());
    assert_eq!(srv.balance(&key, &wallet, "USD").await["cash"], "301.00");
    srv.sigterm();
    drop(srv);

    // The offline check agrees with the server.
    let out = settle(&["wal", "verify", "--data-dir", p(&data)]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(printed_digest(&text(&out)), digest, "{}", text(&out));
}

/// The offline tools, as an operator mistypes or pipes them: a data
/// directory that does not exist is said to be missing, and none is created
/// (a created one read as empty: "no snapshots"); output to a reader that
/// went away (`| head -1`) ends the command quietly with the status a shell
/// shows for SIGPIPE, not with a panic.
#[test]
fn offline_tools_refuse_a_missing_data_dir_and_stop_quietly_at_a_closed_pipe() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("mistyped");
    for tool in [
        ["snapshot", "list"],
        ["wal", "verify"],
        ["wal", "repair"],
        ["wal", "show"],
    ] {
        let out = settle(&[tool[0], tool[1], "--data-dir", p(&missing)]);
        let said = text(&out);
        assert!(!out.status.success(), "{tool:?}: {said}");
        assert!(
            said.contains("no data directory at") || said.contains("no log at"),
            "{tool:?}: {said}"
        );
        assert!(!missing.exists(), "{tool:?} created {}", missing.display());
    }

    ends_quietly_at_a_closed_pipe(&["assets"]);
}

/// `settle args` with its standard output a pipe nobody reads: it ends
/// with the status a shell shows for SIGPIPE (141), without a panic.
fn ends_quietly_at_a_closed_pipe(args: &[&str]) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_settle"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{args:?}: {said}");
    assert!(!said.contains("panicked"), "{args:?}: {said}");
}

/// `settle serve` with a port already taken fails at once and creates no
/// data directory (it used to create one with a new admin key, open the log
/// and replay it all before it found the port taken); sizes and counts
/// that mean nothing are refused by the flag, not quietly raised.
#[test]
fn serve_refuses_a_taken_port_before_touching_the_data_dir() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("fresh");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let out = settle(&["serve", "--listen", &port, "--data-dir", p(&data)]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("cannot listen on"), "{said}");
    assert!(!data.exists(), "a data directory was created: {said}");
    for flag in [
        ["--segment-mib", "0"],
        ["--segment-mib", "4096"],
        ["--max-connections", "0"],
        ["--header-timeout", "0"],
        ["--request-timeout", "18446744073709551615"],
    ] {
        let out = settle(&["serve", flag[0], flag[1], "--data-dir", p(&data)]);
        assert_eq!(out.status.code(), Some(2), "{flag:?}: {}", text(&out));
        assert!(text(&out).contains(flag[0]), "{flag:?}: {}", text(&out));
        assert!(!data.exists(), "{flag:?}");
    }
}

/// Two processes never share a data directory, even when an operator
/// deleted `LOCK` as a stale leftover: a second server, and the offline
/// tools, are refused while the first runs (the lock is on the directory;
/// it used to be on the file, and a second server then started and wrote
/// over the first one's log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_lock_file_does_not_let_a_second_process_in() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let srv = Server::start_in(&data).await;
    let lock = data.join("LOCK");
    let said = std::fs::read_to_string(&lock).unwrap();
    assert!(
        said.contains(&format!("settle process {}", srv.pid())),
        "{said}"
    );
    std::fs::remove_file(&lock).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let free = port.local_addr().unwrap().to_string();
    drop(port);
    let runs: [&[&str]; 4] = [
        &["serve", "--listen", &free, "--data-dir", p(&data)],
        &["wal", "verify", "--data-dir", p(&data)],
        &["wal", "repair", "--data-dir", p(&data)],
        &["snapshot", "list", "--data-dir", p(&data)],
    ];
    for args in runs {
        let out = settle(args);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        assert!(
            said.contains("in use by another settle process"),
            "{args:?}: {said}"
        );
    }
    srv.assert_healthy().await;
}

/// A snapshot past the end of the log that cannot start recovery (here,
/// damaged as well) leaves the snapshots directory before the server
/// appends: the log is about to reuse its positions, so it must never be
/// read as their state, nor count as the newest snapshot to keep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_past_the_log_that_does_not_load_is_moved_out_before_appending() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let args = ["--snapshot-interval", "0"];
    let srv = Server::start_in_with(&data, &args).await;
    let (_, key) = srv.admin_create_client("past").await;
    let wallet = srv.create_wallet(&key, "USD").await;
    for _ in 0..100 {
        srv.credit(&key, &wallet, "USD", "1.00").await;
    }
    let (id, _) = snapshot(&srv).await;
    stop(srv).await;

    // The log cut early, and the snapshot past the cut damaged too.
    assert!(cut_the_log_early(&data).status.success());
    let file = snapshot_file(&data, &id);
    let mut snap = std::fs::read(&file).unwrap();
    let at = snap.len() / 2;
    snap[at] ^= 0x01;
    std::fs::write(&file, &snap).unwrap();

    let srv = Server::start_in_with(&data, &args).await;
    assert!(!file.exists(), "still in snapshots/: {}", srv.log());
    let moved: Vec<PathBuf> = set_aside(&data, "snapshots-past-the-log-")
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()))
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(std::fs::read(&moved[0]).unwrap(), snap, "moved as it was");
    assert!(
        srv.log().contains("moved out of the snapshots directory"),
        "{}",
        srv.log()
    );
    srv.sigterm();
}

/// RFC 3339 of the wall clock now, to the millisecond (the server's clock:
/// the same machine).
fn now_rfc3339_ms() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let ms = i64::try_from(ms).unwrap();
    let whole = support::rfc3339(ms.div_euclid(1000));
    format!(
        "{}.{:03}Z",
        whole.trim_end_matches('Z'),
        ms.rem_euclid(1000)
    )
}

/// An operator after a bad night: `settle wal show` lists the log with
/// positions and times (and follows one wallet), and `settle restore
/// --until-time` rolls a snapshot forward to the state of a moment, cut at
/// the position `wal show` shows for it: the same state as `--until` that
/// position, and the live state read at that moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_show_lists_the_log_and_restore_until_a_time_gives_that_moment() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let args = ["--snapshot-interval", "0", "--snapshot-keep", "3"];
    let (mut srv, key, wallets) = server_with_wallets(&data, &args, "wal show test", 4).await;
    traffic(&srv, &key, &wallets, 2).await;
    wait_quiet("before the snapshot", &srv).await;
    let before_snapshot = now_rfc3339_ms();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (s1, p1) = snapshot(&srv).await;
    traffic(&srv, &key, &wallets, 2).await;
    let at_the_moment = wait_quiet("the moment", &srv).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let moment = now_rfc3339_ms();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    traffic(&srv, &key, &wallets, 2).await;
    let at_the_end = wait_quiet("the end", &srv).await;
    assert_ne!(at_the_moment, at_the_end);
    srv.kill9();
    drop(srv);

    // Every record, in order, one line each; as JSON, the same records.
    let out = settle(&["wal", "show", "--data-dir", p(&data)]);
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let out = settle(&["wal", "show", "--data-dir", p(&data), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let records: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), records.len());
    assert!(records.len() > 40, "{} records", records.len());
    for (i, (line, r)) in lines.iter().zip(&records).enumerate() {
        let position = r["position"].as_u64().unwrap();
        assert_eq!(position, i as u64 + 1, "{r}");
        assert!(
            line.trim_start().starts_with(&format!("{position} ")),
            "{line}"
        );
        let kind = r["kind"].as_str().unwrap();
        assert!(line.contains(kind), "{line}");
        assert!(r["record"].get(kind).is_some(), "{r}");
        assert!(
            r["time"].is_null() || support::is_timestamp(&r["time"]),
            "{r}"
        );
    }
    let transfer = lines
        .iter()
        .find(|l| l.contains("outbound_settled_at_once") && l.contains("1.25 USD"))
        .unwrap_or_else(|| panic!("no transfer in:\n{}", lines.join("\n")));
    assert!(transfer.contains(" events "), "{transfer}");
    // Nothing secret on the screen: no key hash, no stored answer's body.
    let all = records.iter().map(Value::to_string).collect::<String>();
    assert!(!all.contains("key_hash"), "{all}");
    assert!(
        records
            .iter()
            .filter(|r| r["kind"] == "answer")
            .all(|r| r["record"]["answer"]["body"]["storedBytes"].is_u64()),
        "{all}"
    );

    // One wallet's records: each names it (a claim, by the bare id it
    // minted for it), and they include its opening.
    let out = settle(&["wal", "show", "--data-dir", p(&data), "--id", &wallets[1]]);
    assert!(out.status.success(), "{}", text(&out));
    let mine = String::from_utf8(out.stdout).unwrap();
    assert!(mine.contains("wallet_opened"), "{mine}");
    let bare = wallets[1].split_once('_').unwrap().1;
    let from_json = records
        .iter()
        .filter(|r| r.to_string().contains(bare))
        .count();
    assert_eq!(mine.lines().count(), from_json, "{mine}");
    // A window of positions, and a limit.
    let out = settle(&[
        "wal",
        "show",
        "--data-dir",
        p(&data),
        "--from",
        "3",
        "--until",
        "9",
        "--limit",
        "4",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .collect::<Vec<_>>(),
        lines[2..6].iter().map(String::as_str).collect::<Vec<_>>()
    );
    // A reader that went away ends it quietly, as a shell expects.
    ends_quietly_at_a_closed_pipe(&["wal", "show", "--data-dir", p(&data)]);
    let out = settle(&["wal", "show", "--data-dir", p(&data), "--from", "100000"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("outside the log"), "{}", text(&out));

    // The cut for the moment: just before the first record stamped later.
    let first_later = records
        .iter()
        .find(|r| r["time"].as_str().is_some_and(|t| t > moment.as_str()))
        .unwrap_or_else(|| panic!("nothing after {moment}"));
    let cut = first_later["position"].as_u64().unwrap() - 1;
    assert!(cut > p1, "{cut} {p1}");
    let f1 = snapshot_file(&data, &s1);
    let wal = data.join("wal");
    let by_time = root.path().join("by-time");
    let out = restore_through(&f1, &by_time, &wal, &["--until-time", &moment]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("to position {cut} (the last at or before")),
        "{}",
        text(&out)
    );
    assert_eq!(printed_digest(&text(&out)), at_the_moment, "{}", text(&out));
    let by_position = root.path().join("by-position");
    let out = restore_through(&f1, &by_position, &wal, &["--until", &cut.to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(printed_digest(&text(&out)), at_the_moment, "{}", text(&out));
    // The restored server serves that moment.
    let srv = Server::start_in(&by_time).await;
    assert_eq!(srv.recovered().digest, at_the_moment, "{}", srv.log());
    srv.sigterm();
    drop(srv);

    // Refused, leaving nothing behind: a snapshot written after the time
    // (it may hold later changes), a time that is not one, and both kinds
    // of --until at once.
    let refused = root.path().join("refused");
    let out = restore_through(&f1, &refused, &wal, &["--until-time", &before_snapshot]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("was written at"), "{}", text(&out));
    let out = restore_through(&f1, &refused, &wal, &["--until-time", "yesterday"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("RFC 3339"), "{}", text(&out));
    let out = restore_through(
        &f1,
        &refused,
        &wal,
        &["--until-time", &moment, "--until", "5"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!refused.exists(), "a refused restore leaves nothing");
}

/// `kill -9`, then the log's newest segment goes missing (a copy of the
/// data directory that missed it): the server refuses to start, naming the
/// segment and the first record lost, rather than serve a state short of
/// records it acknowledged; `wal verify` says the same; `wal repair`
/// accepts the loss, and the server then starts on what the older segments
/// hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_newest_log_segment_stops_the_start_until_repair_accepts_it() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let args = ["--snapshot-interval", "0", "--segment-mib", "1"];
    let (mut srv, key, wallets) = server_with_wallets(&data, &args, "lost segment", 1).await;
    let wallet = &wallets[0];
    fill_log(&srv, &key, wallet, &data, 1).await;
    srv.kill9();
    drop(srv);

    let files = wal_files(&data);
    let newest = files.last().unwrap().clone();
    let lost_from: u64 = newest.trim_end_matches(".wal").parse().unwrap();
    std::fs::remove_file(data.join("wal").join(&newest)).unwrap();

    let out = refused_start(&data).await;
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(out.stdout.is_empty(), "it said it listens: {said}");
    for words in [
        format!("the newest segment, {newest}, is missing"),
        format!("from LSN {lost_from} on are lost"),
        "settle wal repair".to_owned(),
    ] {
        assert!(said.contains(&words), "expected {words:?} in:\n{said}");
    }
    assert!(!said.contains("panicked"), "{said}");

    let out = settle(&["wal", "verify", "--data-dir", p(&data)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is missing"), "{}", text(&out));
    let out = settle(&["wal", "repair", "--data-dir", p(&data)]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("is missing"), "{}", text(&out));

    let srv = Server::start_in_with(&data, &args).await;
    assert_eq!(srv.recovered().position, lost_from - 1, "{}", srv.log());
    let audit = srv.quiet_audit().await;
    assert_eq!(audit["ok"], true, "{audit}");
    srv.credit(&key, wallet, "USD", "1.00").await;
    srv.sigterm();
}
