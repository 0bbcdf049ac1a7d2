//! Faults under the whole engine (log, actors, front door), injected through
//! the log's storage: a full disk refuses new writes with 503 and loses
//! nothing acknowledged; a failed fsync stops the log for good and nothing
//! after it is acknowledged; a restart recovers exactly what was
//! acknowledged. Requests go through `App::handle`, the path an HTTP
//! request takes after its socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use hyper::Method;
use serde_json::{Value, json};
use settle_engine::actor::SystemClock;
use settle_gateway::boot::{BootConfig, Booted, boot};
use settle_gateway::http::Request;
use settle_gateway::http::app::{App, Outcome};
use settle_gateway::http::auth::Keys;
use settle_gateway::snapshotter::SnapshotPolicy;
use settle_snapshots::wal::faults::FaultyStorage;
use settle_snapshots::{FsStorage, Storage, WalConfig, WalStatus};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const ADMIN: &str = "admin-key-for-the-durability-tests";

async fn start(dir: &Path, storage: Arc<dyn Storage>) -> Booted {
    start_with(dir, storage, 1 << 20).await
}

/// Starts with snapshots on demand only (`POST /v1/admin/snapshots`), two
/// kept, and log segments of `segment_size` bytes.
async fn start_with(dir: &Path, storage: Arc<dyn Storage>, segment_size: u64) -> Booted {
    let mut wal = WalConfig::new(dir.join("wal"));
    wal.segment_size = segment_size;
    let policy = SnapshotPolicy {
        interval: None,
        every_records: None,
        keep: 2,
        ..SnapshotPolicy::new(dir.join("snapshots"))
    };
    let booted = boot(
        storage,
        BootConfig::new(wal).with_snapshots(policy),
        Keys::new(ADMIN),
        Arc::new(SystemClock),
        None,
        None,
    )
    .await
    .unwrap();
    booted.app.set_ready(true);
    booted
}

/// Stops an engine as a crash would, as far as one process can: the actors
/// stop at once and nothing more is committed. (The log's writer closes when
/// the last handle on the app goes: tests drop theirs before starting again
/// on the same directory.)
fn crash(booted: Booted) {
    booted.app.gateway.shutdown();
}

static KEYS: AtomicU64 = AtomicU64::new(1);

async fn call(app: &Arc<App>, method: Method, path: &str, key: &str, body: Value) -> Outcome {
    let idem = format!("k-{}", KEYS.fetch_add(1, Ordering::Relaxed));
    call_with(app, method, path, key, &idem, body).await
}

async fn call_with(
    app: &Arc<App>,
    method: Method,
    path: &str,
    key: &str,
    idem: &str,
    body: Value,
) -> Outcome {
    let body = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    app.handle(Request {
        method,
        path: path.to_owned(),
        query: None,
        api_key: Some(key.to_owned()),
        idempotency_key: Some(idem.to_owned()),
        content_type: Some("application/json".to_owned()),
        body,
    })
    .await
}

fn json(o: &Outcome) -> Value {
    serde_json::from_slice(&o.reply.body).unwrap()
}

fn status(o: &Outcome) -> u16 {
    o.reply.status.as_u16()
}

/// A client with one USD wallet holding 100.00.
async fn client_with_wallet(app: &Arc<App>) -> (String, String) {
    let c = call(
        app,
        Method::POST,
        "/v1/admin/clients",
        ADMIN,
        json!({"name": "c"}),
    )
    .await;
    assert_eq!(status(&c), 201, "{:?}", json(&c));
    let key = json(&c)["data"]["apiKey"].as_str().unwrap().to_owned();
    let w = call(
        app,
        Method::POST,
        "/v1/wallets",
        &key,
        json!({"ccyCode": "USD"}),
    )
    .await;
    assert_eq!(status(&w), 201);
    let wallet = json(&w)["data"]["id"].as_str().unwrap().to_owned();
    let credit = call(
        app,
        Method::POST,
        &format!("/v1/wallets/{wallet}/credits"),
        &key,
        json!({"asset": "USD", "amount": "100.00"}),
    )
    .await;
    assert_eq!(status(&credit), 201);
    (key, wallet)
}

async fn cash(app: &Arc<App>, key: &str, wallet: &str) -> String {
    let b = call(
        app,
        Method::GET,
        &format!("/v1/wallets/{wallet}/balance"),
        key,
        Value::Null,
    )
    .await;
    json(&b)["data"]["balances"][0]["cash"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_new_writes_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyStorage::new());
    let booted = start(dir.path(), faulty.clone()).await;
    let app = Arc::clone(&booted.app);
    let (key, wallet) = client_with_wallet(&app).await;

    // The disk fills up while a debit is applied in memory but not yet in
    // the log. To make that moment certain, the writer is first held inside
    // the sync of an earlier credit; the debit (its claim and its events)
    // queues behind it; the disk fills; the writer goes on and cannot write.
    // The debit is not refused (its change must reach the log in order), and
    // it is not acknowledged.
    let credits = format!("/v1/wallets/{wallet}/credits");
    faulty.pause_syncs();
    let holder = {
        let (app, key, credits) = (Arc::clone(&app), key.clone(), credits.clone());
        tokio::spawn(async move {
            call(
                &app,
                Method::POST,
                &credits,
                &key,
                json!({"asset": "USD", "amount": "5.00"}),
            )
            .await
        })
    };
    let paused = {
        let faulty = Arc::clone(&faulty);
        tokio::task::spawn_blocking(move || faulty.wait_for_paused_sync(Duration::from_secs(10)))
    };
    assert!(paused.await.unwrap(), "the writer reached the held sync");
    let debits = format!("/v1/wallets/{wallet}/debits");
    let waiting = {
        let (app, key, debits) = (Arc::clone(&app), key.clone(), debits.clone());
        tokio::spawn(async move {
            call_with(
                &app,
                Method::POST,
                &debits,
                &key,
                "the-debit",
                json!({"asset": "USD", "amount": "30.00"}),
            )
            .await
        })
    };
    for _ in 0..500 {
        if cash(&app, &key, &wallet).await == "75.00" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        cash(&app, &key, &wallet).await,
        "75.00",
        "credit and debit applied"
    );
    faulty.disk_full_after(0);
    faulty.resume_syncs();
    for _ in 0..500 {
        if booted.journal.wal().status() == WalStatus::DiskFull {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(booted.journal.wal().status(), WalStatus::DiskFull);
    assert!(
        !waiting.is_finished(),
        "nothing is acknowledged before it is durable"
    );

    // Meanwhile new writes are refused at once with 503, and do nothing.
    let refused = call(
        &app,
        Method::POST,
        &credits,
        &key,
        json!({"asset": "USD", "amount": "5.00"}),
    )
    .await;
    assert_eq!(status(&refused), 503, "{:?}", json(&refused));
    assert_eq!(json(&refused)["error"]["code"], "unavailable");
    // Reads wait too: the balance holds the debit, which is not durable and
    // which a crash now would take back. The operator's audit answers.
    let read = call(
        &app,
        Method::GET,
        &format!("/v1/wallets/{wallet}/balance"),
        &key,
        Value::Null,
    )
    .await;
    assert_eq!(status(&read), 503, "{:?}", json(&read));
    assert!(
        json(&read)["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not yet durable")),
        "{:?}",
        json(&read)
    );
    let audit = call(&app, Method::GET, "/v1/admin/audit", ADMIN, Value::Null).await;
    assert_eq!(status(&audit), 200, "{:?}", json(&audit));

    // Space is freed: the waiting debit lands and is acknowledged.
    faulty.free_space();
    let debit = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status(&debit), 201, "{:?}", json(&debit));
    assert_eq!(json(&debit)["data"]["status"], "settled");
    let held = tokio::time::timeout(Duration::from_secs(10), holder)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status(&held), 201, "{:?}", json(&held));
    let later = call(
        &app,
        Method::POST,
        &credits,
        &key,
        json!({"asset": "USD", "amount": "1.00"}),
    )
    .await;
    assert_eq!(status(&later), 201);

    // A crash now: everything acknowledged is recovered, and the retry of
    // the debit gets its original answer.
    crash(booted);
    drop(app);
    let again = start(dir.path(), Arc::new(FsStorage)).await;
    assert_eq!(cash(&again.app, &key, &wallet).await, "76.00");
    let retry = call_with(
        &again.app,
        Method::POST,
        &debits,
        &key,
        "the-debit",
        json!({"asset": "USD", "amount": "30.00"}),
    )
    .await;
    assert!(retry.replayed);
    assert_eq!(retry.reply.body, debit.reply.body);
    assert_eq!(cash(&again.app, &key, &wallet).await, "76.00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_stops_the_log_and_nothing_after_it_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyStorage::new());
    let booted = start(dir.path(), faulty.clone()).await;
    let app = Arc::clone(&booted.app);
    let (key, wallet) = client_with_wallet(&app).await;
    let credits = format!("/v1/wallets/{wallet}/credits");

    faulty.fail_next_sync();
    let failed = call(
        &app,
        Method::POST,
        &credits,
        &key,
        json!({"asset": "USD", "amount": "7.00"}),
    )
    .await;
    assert_eq!(status(&failed), 503, "{:?}", json(&failed));
    assert!(matches!(
        booted.journal.wal().status(),
        WalStatus::Failed(_)
    ));

    // Fail-stop: no retry, every later write refused, even once syncs work.
    for _ in 0..3 {
        let later = call(
            &app,
            Method::POST,
            &credits,
            &key,
            json!({"asset": "USD", "amount": "1.00"}),
        )
        .await;
        assert_eq!(status(&later), 503);
        assert_eq!(json(&later)["error"]["code"], "unavailable");
    }

    // After a restart the log holds what was acknowledged: the 100.00, and
    // never the later credits (the failed one may or may not have reached
    // the disk; it was not acknowledged, and is all or nothing).
    crash(booted);
    drop(app);
    let again = start(dir.path(), Arc::new(FsStorage)).await;
    let c = cash(&again.app, &key, &wallet).await;
    assert!(c == "100.00" || c == "107.00", "cash {c}");
    let audit = call(
        &again.app,
        Method::GET,
        "/v1/admin/audit",
        ADMIN,
        Value::Null,
    )
    .await;
    assert_eq!(json(&audit)["data"]["ok"], true);
}

/// An idempotent request's commands are answered as soon as they are
/// applied (`Ack::Applied`); what is acknowledged still waits for the log:
/// a batch whose group commit fails is answered 503, and after a restart
/// none of it, or all of it, is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_commit_fails_is_not_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyStorage::new());
    let booted = start(dir.path(), faulty.clone()).await;
    let app = Arc::clone(&booted.app);
    let (key, wallet) = client_with_wallet(&app).await;
    let credit = json!({"op": "credit", "wallet": wallet, "asset": "USD", "amount": "1.00"});
    let ops: Vec<Value> = (0..50).map(|_| credit.clone()).collect();

    faulty.fail_next_sync();
    let failed = call(
        &app,
        Method::POST,
        "/v1/batch",
        &key,
        json!({"operations": ops}),
    )
    .await;
    assert_eq!(status(&failed), 503, "{:?}", json(&failed));

    crash(booted);
    drop(app);
    let again = start(dir.path(), Arc::new(FsStorage)).await;
    let c = cash(&again.app, &key, &wallet).await;
    assert!(c == "100.00" || c == "150.00", "cash {c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_recovers_clients_wallets_money_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let booted = start(dir.path(), Arc::new(FsStorage)).await;
    let app = Arc::clone(&booted.app);
    let (key, wallet) = client_with_wallet(&app).await;
    let other = call(
        &app,
        Method::POST,
        "/v1/wallets",
        &key,
        json!({"ccyCode": "USD"}),
    )
    .await;
    let other = json(&other)["data"]["id"].as_str().unwrap().to_owned();
    let transfer = call_with(
        &app,
        Method::POST,
        "/v1/transfers",
        &key,
        "t-1",
        json!({"fromWalletId": wallet, "toWalletId": other, "asset": "USD", "amount": "40.00"}),
    )
    .await;
    assert_eq!(status(&transfer), 201);
    let queued = call(
        &app,
        Method::POST,
        &format!("/v1/wallets/{wallet}/debits"),
        &key,
        json!({"asset": "USD", "amount": "500.00"}),
    )
    .await;
    assert_eq!(json(&queued)["data"]["status"], "awaiting_funds");
    // Crash with the transfer possibly still in flight to its destination.
    crash(booted);
    drop(app);

    let again = start(dir.path(), Arc::new(FsStorage)).await;
    let app = &again.app;
    // The client's key, its wallets, the queue and the transfer survive.
    assert_eq!(cash(app, &key, &wallet).await, "60.00");
    let queue = call(
        app,
        Method::GET,
        &format!("/v1/wallets/{wallet}/queue"),
        &key,
        Value::Null,
    )
    .await;
    assert_eq!(json(&queue)["data"][0]["queuePosition"], 1);
    let retry = call_with(
        app,
        Method::POST,
        "/v1/transfers",
        &key,
        "t-1",
        json!({"fromWalletId": wallet, "toWalletId": other, "asset": "USD", "amount": "40.00"}),
    )
    .await;
    assert!(retry.replayed);
    assert_eq!(retry.reply.body, transfer.reply.body);
    // The destination gets the money (delivered after the restart if the
    // crash caught it in flight).
    for _ in 0..200 {
        if cash(app, &key, &other).await == "40.00" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cash(app, &key, &other).await, "40.00");
    // Quiet now (nothing in flight): a second crash and restart rebuild
    // exactly the live state from the log.
    let live = app
        .gateway
        .with_cut(|c| {
            assert!(c.in_flight.is_empty());
            c.digest().unwrap()
        })
        .unwrap();
    let app = Arc::clone(app);
    crash(again);
    drop(app);
    let third = start(dir.path(), Arc::new(FsStorage)).await;
    assert_eq!(third.digest, live, "the log describes the memory");
}

/// Wallets start passivated after a restart. One whose hold is due to
/// expire must still be woken for it by the sweep, with no message from
/// anyone: recovered timers are kept apart from the wallets with none, so
/// that sweeps need not look at every wallet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_expires_after_a_restart_with_no_message_to_its_wallet() {
    let dir = tempfile::tempdir().unwrap();
    let booted = start(dir.path(), Arc::new(FsStorage)).await;
    let app = Arc::clone(&booted.app);
    let (key, wallet) = client_with_wallet(&app).await;
    let expires = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    // Whole seconds: the API takes milliseconds at most.
    let expires = expires
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let hold = call(
        &app,
        Method::POST,
        &format!("/v1/wallets/{wallet}/reservations"),
        &key,
        json!({"asset": "USD", "amount": "30.00", "expiresAt": expires}),
    )
    .await;
    assert_eq!(status(&hold), 201, "{:?}", json(&hold));
    let hold = json(&hold)["data"]["id"].as_str().unwrap().to_owned();
    crash(booted);
    drop(app);

    let again = start(dir.path(), Arc::new(FsStorage)).await;
    let app = &again.app;
    let status_of_hold = || async {
        let t = call(
            app,
            Method::GET,
            &format!("/v1/transactions/{hold}"),
            &key,
            Value::Null,
        )
        .await;
        json(&t)["data"]["status"]
            .as_str()
            .unwrap_or("?")
            .to_owned()
    };
    assert_eq!(status_of_hold().await, "held", "not due yet");
    let mut last = String::new();
    for _ in 0..300 {
        last = status_of_hold().await;
        if last != "held" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last, "released", "the hold expired while its wallet slept");
    let balance = call(
        app,
        Method::GET,
        &format!("/v1/wallets/{wallet}"),
        &key,
        Value::Null,
    )
    .await;
    assert_eq!(json(&balance)["data"]["balances"][0]["reserved"], "0.00");
}

/// A wallet actor that panics in the middle of a command leaves that
/// command's events applied in memory; they are committed (rolled forward)
/// by the wallet's next message, so the log keeps describing the memory:
/// after a crash, recovery rebuilds exactly the live state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_a_command_cut_short_by_a_panic_reach_the_log() {
    use settle_engine::actor::WalletMsg;
    use settle_engine::{AssetCode, Decimal, Op, TxnId, TxnInfo, WalletId};
    std::panic::set_hook(Box::new(|info| {
        if !info.to_string().contains("injected fault") {
            eprintln!("{info}");
        }
    }));
    let dir = tempfile::tempdir().unwrap();
    let booted = start(dir.path(), Arc::new(FsStorage)).await;
    let app = Arc::clone(&booted.app);
    let (key, wallet) = client_with_wallet(&app).await;
    let id: WalletId = wallet.parse().unwrap();
    let credit = Op::Credit {
        wallet: id,
        txn: TxnId::from_u128(77),
        asset: AssetCode::new("USD").unwrap(),
        amount: Decimal::new(700, 2),
        pending: false,
        info: TxnInfo::default(),
    };
    app.gateway
        .send_raw(id, WalletMsg::PanicAfter(Box::new(credit)))
        .unwrap();
    for _ in 0..200 {
        if app.gateway.stats().restarts >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(app.gateway.stats().restarts, 1);
    // The next command on the wallet commits the leftover events first.
    let more = call(
        &app,
        Method::POST,
        &format!("/v1/wallets/{wallet}/credits"),
        &key,
        json!({"asset": "USD", "amount": "1.00"}),
    )
    .await;
    assert_eq!(status(&more), 201);
    assert_eq!(cash(&app, &key, &wallet).await, "108.00");
    let live = app.gateway.with_cut(|c| c.digest().unwrap()).unwrap();
    crash(booted);
    drop(app);
    let again = start(dir.path(), Arc::new(FsStorage)).await;
    assert_eq!(again.digest, live, "the log describes the memory");
    assert_eq!(cash(&again.app, &key, &wallet).await, "108.00");
}

/// A request that ran (its claim and its events are in the log) but whose
/// answer never reached the log, because the process stopped first: its
/// retry with the same key runs it again with the claimed ids, so the
/// command that did run is recognised by its transaction id, not run twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_crash_between_run_and_answer_does_not_run_twice() {
    use settle_engine::{AssetCode, ClientId, Decimal, Op, TxnId, TxnInfo, WalletId};
    use settle_gateway::http::idempotency::fingerprint;
    use settle_gateway::journal::Record;
    let dir = tempfile::tempdir().unwrap();
    let booted = start(dir.path(), Arc::new(FsStorage)).await;
    let app = Arc::clone(&booted.app);
    let (key, wallet) = client_with_wallet(&app).await;
    let wallet_id: WalletId = wallet.parse().unwrap();
    let client: ClientId = app.gateway.client_of(wallet_id).unwrap();
    let path = format!("/v1/wallets/{wallet}/credits");
    let body = json!({"asset": "USD", "amount": "5.00"});
    // What the front door does for this request, up to its answer: the
    // claim with the minted id, then the command.
    let txn = TxnId::from_u128(0x0197_0000_0000_0000_0000_0000_0000_0001);
    booted
        .journal
        .write(&Record::Claim {
            client,
            key: "crashed".into(),
            fingerprint: fingerprint("POST", &path, body.to_string().as_bytes()),
            at: app.now().millis(),
            ids: vec![txn.ulid().0],
        })
        .await
        .unwrap();
    app.gateway
        .execute(Op::Credit {
            wallet: wallet_id,
            txn,
            asset: AssetCode::new("USD").unwrap(),
            amount: Decimal::new(500, 2),
            pending: false,
            info: TxnInfo::default(),
        })
        .await
        .unwrap();
    assert_eq!(cash(&app, &key, &wallet).await, "105.00");
    crash(booted);
    drop(app);

    let again = start(dir.path(), Arc::new(FsStorage)).await;
    let retry = call_with(
        &again.app,
        Method::POST,
        &path,
        &key,
        "crashed",
        body.clone(),
    )
    .await;
    assert_eq!(status(&retry), 201, "{:?}", json(&retry));
    assert_eq!(json(&retry)["data"]["id"], txn.to_string());
    assert_eq!(
        cash(&again.app, &key, &wallet).await,
        "105.00",
        "credited once"
    );
    // From now on the answer is stored: the next retry is a replay.
    let replay = call_with(&again.app, Method::POST, &path, &key, "crashed", body).await;
    assert!(replay.replayed);
    assert_eq!(replay.reply.body, retry.reply.body);
}

/// A claimed request the engine refuses as invalid (400) ran nothing: its
/// key is free again for a corrected request, also after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_refused_as_invalid_is_free_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let booted = start(dir.path(), Arc::new(FsStorage)).await;
    let app = Arc::clone(&booted.app);
    let (key, wallet) = client_with_wallet(&app).await;
    let path = format!("/v1/wallets/{wallet}/debits");
    // Too many decimals: refused by the engine, after the claim was logged.
    let bad = call_with(
        &app,
        Method::POST,
        &path,
        &key,
        "fix-me",
        json!({"asset": "USD", "amount": "1.001"}),
    )
    .await;
    assert_eq!(status(&bad), 400, "{:?}", json(&bad));
    assert_eq!(json(&bad)["error"]["code"], "invalid_amount");
    crash(booted);
    drop(app);
    let again = start(dir.path(), Arc::new(FsStorage)).await;
    let good = call_with(
        &again.app,
        Method::POST,
        &path,
        &key,
        "fix-me",
        json!({"asset": "USD", "amount": "1.00"}),
    )
    .await;
    assert_eq!(status(&good), 201, "{:?}", json(&good));
    assert_eq!(cash(&again.app, &key, &wallet).await, "99.00");
}

/// The live state's digest once nothing is in flight between wallets.
async fn quiet_digest(app: &Arc<App>) -> settle_engine::StateDigest {
    // Quiet: nothing in flight, and no sender left to apply a receipt
    // (receipts are applied within two sweeps; applying one is an event).
    let cut = || {
        app.gateway
            .with_cut(|c| {
                let settled = c
                    .wallets
                    .values()
                    .all(|w| w.awaiting_receipt().next().is_none());
                (c.digest().unwrap(), c.in_flight.is_empty() && settled)
            })
            .unwrap()
    };
    for _ in 0..500 {
        let (digest, quiet) = cut();
        if quiet && app.gateway.stats().inflight == 0 {
            // Applied is not yet logged: the last receipt's record may be
            // on its way to the disk (a crash then loses it, and recovery
            // rightly differs). Quiet also means: durable, and nothing
            // applied meanwhile.
            app.sync().await.unwrap();
            if cut().0 == digest {
                return digest;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("transfers still in flight after 5 s");
}

/// Money moves between two wallets: credits to one, transfers both ways.
async fn some_traffic(app: &Arc<App>, key: &str, a: &str, b: &str, n: usize) {
    for i in 0..n {
        let (from, to) = if i % 2 == 0 { (a, b) } else { (b, a) };
        let r = call(
            app,
            Method::POST,
            &format!("/v1/wallets/{a}/credits"),
            key,
            json!({"asset": "USD", "amount": "1.00"}),
        )
        .await;
        assert_eq!(status(&r), 201);
        let r = call(
            app,
            Method::POST,
            "/v1/transfers",
            key,
            json!({"fromWalletId": from, "toWalletId": to, "asset": "USD", "amount": "0.50"}),
        )
        .await;
        assert_eq!(status(&r), 201, "{:?}", json(&r));
    }
}

fn segment_first_lsns(dir: &Path) -> Vec<u64> {
    let mut lsns: Vec<u64> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".wal")?.parse().ok()
        })
        .collect();
    lsns.sort_unstable();
    lsns
}

/// Snapshots on demand between writes, with small log segments: each
/// answers with its id and position; only the newest two are kept; the log
/// keeps every segment the older of them needs (and no more than that
/// after the first); a crash after more writes recovers from the newest
/// snapshot plus the log tail to exactly the live state; a corrupted newest
/// snapshot is passed over for the older one, to the same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_compact_the_log_and_recovery_starts_from_the_newest_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let booted = start_with(dir.path(), Arc::new(FsStorage), 4096).await;
    assert!(booted.snapshot.is_none());
    let app = Arc::clone(&booted.app);
    let (key, a) = client_with_wallet(&app).await;
    let b = call(
        &app,
        Method::POST,
        "/v1/wallets",
        &key,
        json!({"ccyCode": "USD"}),
    )
    .await;
    let b = json(&b)["data"]["id"].as_str().unwrap().to_owned();
    let mut taken: Vec<(String, u64)> = Vec::new();
    for round in 0..4 {
        some_traffic(&app, &key, &a, &b, 15).await;
        quiet_digest(&app).await;
        let s = call(
            &app,
            Method::POST,
            "/v1/admin/snapshots",
            ADMIN,
            Value::Null,
        )
        .await;
        assert_eq!(status(&s), 201, "{:?}", json(&s));
        let s = &json(&s)["data"];
        let id = s["id"].as_str().unwrap().to_owned();
        let position = s["position"].as_u64().unwrap();
        assert!(id.starts_with("snp_"), "{s}");
        assert_eq!(s["wallets"], 2);
        assert!(s["sizeBytes"].as_u64().unwrap() > 0);
        assert!(
            taken.last().is_none_or(|(_, p)| *p < position),
            "round {round}: {s}"
        );
        taken.push((id, position));
        // Compaction: the oldest kept snapshot's successor record is in the log.
        let oldest_kept = taken[taken.len().saturating_sub(2)].1;
        let segments = segment_first_lsns(dir.path());
        assert!(
            segments[0] <= oldest_kept + 1,
            "round {round}: {segments:?}"
        );
        if round >= 2 {
            assert!(
                segments[0] > 1,
                "round {round}: nothing was compacted: {segments:?}"
            );
        }
    }
    let listed = call(&app, Method::GET, "/v1/admin/snapshots", ADMIN, Value::Null).await;
    let ids: Vec<String> = json(&listed)["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids,
        [taken[3].0.clone(), taken[2].0.clone()],
        "newest first, two kept"
    );
    // More writes after the last snapshot, then a crash.
    some_traffic(&app, &key, &a, &b, 10).await;
    let live = quiet_digest(&app).await;
    crash(booted);
    drop(app);

    let again = start_with(dir.path(), Arc::new(FsStorage), 4096).await;
    let used = again.snapshot.clone().expect("started from a snapshot");
    assert_eq!(
        (used.id.as_str(), used.position),
        (taken[3].0.as_str(), taken[3].1)
    );
    assert!(
        again.records > 0,
        "the tail after the snapshot was replayed"
    );
    assert_eq!(again.digest, live, "snapshot + tail = the live state");
    let app = Arc::clone(&again.app);
    crash(again);
    drop(app);

    // The newest snapshot corrupted: the older one and a longer tail.
    let mut bytes = std::fs::read(&used.path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&used.path, bytes).unwrap();
    let third = start_with(dir.path(), Arc::new(FsStorage), 4096).await;
    let used = third.snapshot.clone().expect("started from a snapshot");
    assert_eq!(used.id, taken[2].0, "the older snapshot");
    assert_eq!(third.skipped.len(), 1, "{:?}", third.skipped);
    assert!(
        third.skipped[0].1.contains("checksum"),
        "{:?}",
        third.skipped
    );
    assert_eq!(
        third.digest, live,
        "older snapshot + longer tail = the same state"
    );
    crash(third);
}
