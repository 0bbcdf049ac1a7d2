//! The crash test: the real `settle serve` binary, concurrent transfers
//! over HTTP, SIGKILL at random moments, restarts on the same data
//! directory, and after every crash the promises of ENGINE.md "Durability
//! and recovery" and "Invariants". The load: 16 tasks sending transfers
//! between 20 USD wallets (some `onInsufficientFunds: reject`, the others
//! queueing), credits, and cancels of queued transfers, each request with
//! a fresh idempotency key; a kill 50 to 300 ms into each cycle. Then:
//!
//! - the state the server recovers (from its newest snapshot and the log
//!   after it) has the digest of `settle wal verify`'s replay (from the
//!   start of the log, or from the oldest kept snapshot once compaction
//!   removed the start), at the same log position, and both hold the
//!   wallets; the server snapshots every 300 records and keeps two, on
//!   1 MiB log segments, so kills also land amid snapshots and compaction;
//! - every acknowledged transaction is there, with its acknowledged status
//!   or one that may follow it (durability);
//! - a retry with the same idempotency key, path and body gets the very
//!   status and bytes first acknowledged, marked `Idempotent-Replayed`
//!   (a random sample, plus everything acknowledged in the last 200 ms
//!   before the kill);
//! - a request the kill cut off, retried with its key until it is answered,
//!   takes effect exactly once: the audit's external credits equal the sum
//!   of every credit the test asked for, to the cent;
//! - money is conserved: the audit is `ok`, `cash + inFlight` equals the
//!   external credits, and the wallets' own balances add up to the same;
//! - every tenth cycle stops the load first, waits until nothing is in
//!   flight and the digest holds still, kills, and expects exactly that
//!   digest back (from `wal verify`, the recovery line and the live API);
//! - at the end, a clean stop (SIGTERM) leaves a clean log with the last
//!   live digest.
//!
//! `SETTLE_CRASH_CYCLES` (default 20) sets the number of kill cycles, for a
//! soak run; `SETTLE_CRASH_SEED` repeats a run's choices (the kill moments
//! themselves depend on timing); `SETTLE_CRASH_VERBOSE` prints a line per
//! cycle. Every failure message names the seed and the cycle.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use hyper::Method;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{Endpoint, Resp, Rng, Server, dec, idem, live_digest, wait_quiet, wal_verify};

/// Wallets the load moves money between (all USD).
const WALLETS: usize = 20;
/// Each wallet's first credit, in cents (1000.00).
const FUNDING_CENTS: i64 = 100_000;
/// Tasks sending requests at once.
const TASKS: usize = 16;
const DEFAULT_CYCLES: usize = 20;

/// Snapshots every few hundred records, two kept, and 1 MiB log segments,
/// so that kills land before, during and after snapshots and compaction,
/// recovery starts from a snapshot in most cycles, and `wal verify` soon
/// has to start from the older kept snapshot (the log's start is gone).
const SNAPSHOTS: &[&str] = &[
    "--snapshot-every",
    "300",
    "--snapshot-keep",
    "2",
    "--segment-mib",
    "1",
];
/// Every this many cycles, one stops the load and kills a quiet server.
const QUIET_EVERY: usize = 10;
/// The load runs this long (ms, drawn uniformly) before the kill.
const KILL_AFTER_MS: (u64, u64) = (50, 300);
/// Each load task pauses up to this long (ms, drawn uniformly) after each
/// answer.
const THINK_MS: u64 = 6;
/// Requests acknowledged this close to the kill are all retried.
const RECENT: Duration = Duration::from_millis(200);
/// Older acknowledged requests retried after each crash.
const REPLAY_SAMPLE: usize = 20;
/// Acknowledged transactions looked up one by one after each crash (the
/// newest ones all, older ones sampled); all of them are checked through
/// the wallets' histories anyway.
const LOOKUP_SAMPLE: usize = 40;

// ---- randomness: seeded, so that a run's choices can be repeated ----

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={text:?}: not a number: {e}")))
}

fn cents(c: i64) -> String {
    format!("{}.{:02}", c / 100, c % 100)
}

fn usd(c: i64) -> Decimal {
    Decimal::new(c, 2)
}

// ---- requests and what was acknowledged ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Wallet,
    Credit,
    Transfer { reject: bool },
    Cancel,
}

/// One idempotent request, kept byte for byte so that it can be retried.
#[derive(Debug, Clone)]
struct Req {
    kind: Kind,
    key: String,
    path: String,
    body: String,
    /// What a credit adds (cents); 0 otherwise.
    credit: i64,
}

/// A transaction as an answer showed it.
#[derive(Debug, Clone)]
struct TxnSeen {
    id: String,
    wallet: String,
    kind: String,
    status: String,
    /// A transfer's other wallet.
    counterparty: Option<String>,
}

/// A request the server answered (the whole answer arrived).
#[derive(Debug, Clone)]
struct Acked {
    req: Req,
    status: u16,
    body: Bytes,
    at: Instant,
    cycle: usize,
    txn: Option<TxnSeen>,
}

fn txn_seen(data: &Value) -> TxnSeen {
    let s = |f: &str| {
        data[f]
            .as_str()
            .unwrap_or_else(|| panic!("no {f} in {data}"))
            .to_owned()
    };
    TxnSeen {
        id: s("id"),
        wallet: s("walletId"),
        kind: s("type"),
        status: s("status"),
        counterparty: data["counterpartyWalletId"].as_str().map(str::to_owned),
    }
}

/// Whether a transaction seen with status `from` may later show `to`
/// (ENGINE.md "Operations and their rules"; a transfer is `settled` once
/// its source leg settles, and `returned` if the destination bounces it,
/// ARCHITECTURE.md "Decisions where ENGINE.md is silent").
fn may_become(kind: &str, from: &str, to: &str) -> bool {
    if from == to {
        return true;
    }
    let outbound = kind == "transfer" || kind == "debit";
    match from {
        "awaiting_funds" if outbound => {
            matches!(to, "settled" | "cancelled" | "expired")
                || (kind == "transfer" && to == "returned")
        }
        "settled" => kind == "transfer" && to == "returned",
        "pending" => matches!(to, "settled" | "rejected"),
        "held" => matches!(to, "captured" | "released"),
        _ => false,
    }
}

/// Checks an answer against what the request may get, and records it.
fn accept(ctx: &str, req: Req, resp: &Resp, cycle: usize) -> Acked {
    let what = format!(
        "{ctx}: {:?} POST {} {} answered {}",
        req.kind,
        req.path,
        req.body,
        resp.text()
    );
    let txn = match (req.kind, resp.status) {
        (Kind::Wallet, 201) => {
            assert!(
                resp.json["data"]["id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("wal_")),
                "{what}"
            );
            None
        }
        (Kind::Credit, 201) => {
            let t = txn_seen(&resp.json["data"]);
            assert_eq!(
                (t.kind.as_str(), t.status.as_str()),
                ("credit", "settled"),
                "{what}"
            );
            assert_eq!(dec(&resp.json["data"]["amount"]), usd(req.credit), "{what}");
            Some(t)
        }
        (Kind::Transfer { .. }, 201) => {
            let t = txn_seen(&resp.json["data"]);
            assert_eq!(t.kind, "transfer", "{what}");
            assert!(
                t.status == "settled" || t.status == "awaiting_funds",
                "{what}"
            );
            Some(t)
        }
        (Kind::Transfer { reject: true }, 409) => {
            assert_eq!(resp.code(), "insufficient_funds", "{what}");
            None
        }
        (Kind::Cancel, 200) => {
            let t = txn_seen(&resp.json["data"]);
            assert_eq!(
                (t.kind.as_str(), t.status.as_str()),
                ("transfer", "cancelled"),
                "{what}"
            );
            Some(t)
        }
        (Kind::Cancel, 409) => {
            assert_eq!(resp.code(), "invalid_state", "{what}");
            None
        }
        _ => panic!("{what}: not an answer this request may get"),
    };
    Acked {
        req,
        status: resp.status,
        body: resp.body.clone(),
        at: Instant::now(),
        cycle,
        txn,
    }
}

async fn send(ep: &Endpoint, key: &str, req: &Req) -> Result<Resp, support::NoAnswer> {
    ep.try_send(
        Method::POST,
        &req.path,
        &[
            ("x-api-key", key),
            ("x-idempotency-key", &req.key),
            ("content-type", "application/json"),
        ],
        Bytes::from(req.body.clone()),
    )
    .await
}

/// Sends a request to a server that must answer it.
async fn send_ok(ctx: &str, ep: &Endpoint, key: &str, req: &Req) -> Resp {
    send(ep, key, req)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: POST {} got no answer: {e:?}", req.path))
}

// ---- the load ----

/// What the load tasks of one cycle share.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    /// Set just before the kill: a request that fails before this is a bug.
    killing: AtomicBool,
    acked: Mutex<Vec<Acked>>,
    unacked: Mutex<Vec<Req>>,
}

#[derive(Debug, Clone)]
struct World {
    key: String,
    wallets: Arc<Vec<String>>,
    /// Transfers acknowledged as `awaiting_funds`: what a cancel may name.
    cancellable: Arc<Mutex<Vec<String>>>,
}

fn next_req(world: &World, rng: &mut Rng, tag: &str) -> Req {
    let roll = rng.below(100);
    if roll >= 92 {
        let picked = {
            let mut c = world.cancellable.lock().unwrap();
            if c.is_empty() {
                None
            } else {
                let i = rng.below(c.len());
                Some(c.swap_remove(i))
            }
        };
        if let Some(id) = picked {
            return Req {
                kind: Kind::Cancel,
                key: idem(),
                path: format!("/v1/transactions/{id}/cancel"),
                body: "{}".to_owned(),
                credit: 0,
            };
        }
    }
    let mut extra = serde_json::Map::new();
    if rng.chance(25) {
        extra.insert("reference".into(), json!(format!("crash-{tag}")));
    }
    if rng.chance(15) {
        extra.insert(
            "metadata".into(),
            json!({ "tag": tag, "n": rng.below(1000) }),
        );
    }
    // The first wallet only sends (after its first funding): its queued
    // transfers stay queued, or are cancelled, at rest, so the lists of
    // their destinations are checked with them (check 1b).
    if roll >= 78 {
        let wallet = &world.wallets[1 + rng.below(world.wallets.len() - 1)];
        let amount = i64::try_from(rng.range(100, 5_000)).unwrap();
        let mut body = json!({ "asset": "USD", "amount": cents(amount) });
        body.as_object_mut().unwrap().extend(extra);
        return Req {
            kind: Kind::Credit,
            key: idem(),
            path: format!("/v1/wallets/{wallet}/credits"),
            body: body.to_string(),
            credit: amount,
        };
    }
    let n = world.wallets.len();
    let from = rng.below(n);
    let to = match from {
        0 => 1 + rng.below(n - 1),
        _ => 1 + (from + rng.below(n - 2)) % (n - 1),
    };
    let amount = i64::try_from(rng.range(1, 4_000)).unwrap();
    let reject = rng.chance(30);
    let mut body = json!({
        "fromWalletId": world.wallets[from],
        "toWalletId": world.wallets[to],
        "asset": "USD",
        "amount": cents(amount),
    });
    let obj = body.as_object_mut().unwrap();
    if reject {
        obj.insert("onInsufficientFunds".into(), json!("reject"));
    } else if rng.chance(50) {
        obj.insert("onInsufficientFunds".into(), json!("queue"));
    }
    obj.extend(extra);
    Req {
        kind: Kind::Transfer { reject },
        key: idem(),
        path: "/v1/transfers".to_owned(),
        body: body.to_string(),
        credit: 0,
    }
}

/// One load task: requests one after another until told to stop or until
/// the server stops answering (which must only happen once it is killed).
async fn load(
    ctx: String,
    ep: Endpoint,
    world: World,
    shared: Arc<Shared>,
    mut rng: Rng,
    cycle: usize,
    task: usize,
) {
    let mut n = 0;
    while !shared.stop.load(Ordering::Acquire) {
        n += 1;
        let req = next_req(&world, &mut rng, &format!("{cycle}-{task}-{n}"));
        match send(&ep, &world.key, &req).await {
            Ok(resp) => {
                let acked = accept(&ctx, req, &resp, cycle);
                if let Some(t) = &acked.txn
                    && t.kind == "transfer"
                    && t.status == "awaiting_funds"
                {
                    world.cancellable.lock().unwrap().push(t.id.clone());
                }
                shared.acked.lock().unwrap().push(acked);
                // A pause now and then, so that the history (which every
                // restart replays and every check reads) grows at a bounded
                // rate whatever the machine's speed.
                let pause = rng.range(0, THINK_MS);
                if pause > 0 {
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            }
            Err(e) => {
                assert!(
                    shared.killing.load(Ordering::Acquire),
                    "{ctx}: the live server did not answer POST {} {}: {e:?}",
                    req.path,
                    req.body
                );
                shared.unacked.lock().unwrap().push(req);
                return;
            }
        }
    }
}

// ---- the checks after a restart ----

/// How long each step after a kill took (for `SETTLE_CRASH_VERBOSE`).
#[derive(Debug)]
struct Phases(Vec<String>, Instant);

impl Default for Phases {
    fn default() -> Self {
        Phases(Vec::new(), Instant::now())
    }
}

impl Phases {
    fn lap(&mut self, name: &str) {
        self.0
            .push(format!("{name} {} ms", self.1.elapsed().as_millis()));
        self.1 = Instant::now();
    }
}

/// Splits `items` over `TASKS` tasks, each running `f` on its share, and
/// gathers the results.
async fn fan_out<T, R, F, Fut>(items: Vec<T>, f: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = R> + Send,
{
    let f = Arc::new(f);
    let mut shares: Vec<Vec<T>> = (0..TASKS).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        shares[i % TASKS].push(item);
    }
    let mut set = tokio::task::JoinSet::new();
    for share in shares {
        let f = Arc::clone(&f);
        set.spawn(async move {
            let mut out = Vec::with_capacity(share.len());
            for item in share {
                out.push(f(item).await);
            }
            out
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())));
    }
    all
}

/// Every transaction of every wallet, by (id, wallet), through the paged
/// histories: (type, status).
async fn histories(
    ctx: &str,
    srv: &Server,
    world: &World,
) -> HashMap<(String, String), (String, String)> {
    let ep = srv.endpoint();
    let key = world.key.clone();
    let ctx2 = ctx.to_owned();
    let pages = fan_out(world.wallets.to_vec(), move |wallet: String| {
        let ep = ep.clone();
        let key = key.clone();
        let ctx = ctx2.clone();
        async move {
            let mut rows = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let mut path = format!("/v1/wallets/{wallet}/transactions?limit=1000");
                if let Some(c) = &after {
                    path.push_str(&format!("&after={}", support::enc(c)));
                }
                let r = ep
                    .try_send(Method::GET, &path, &[("x-api-key", &key)], Bytes::new())
                    .await
                    .unwrap_or_else(|e| panic!("{ctx}: GET {path}: {e:?}"));
                assert_eq!(r.status, 200, "{ctx}: GET {path}: {}", r.text());
                for t in r.json["data"].as_array().expect("list") {
                    rows.push(txn_seen(t));
                }
                match r.json["meta"]["nextCursor"].as_str() {
                    Some(c) => after = Some(c.to_owned()),
                    None => break,
                }
            }
            rows
        }
    })
    .await;
    pages
        .into_iter()
        .flatten()
        .map(|t| ((t.id, t.wallet), (t.kind, t.status)))
        .collect()
}

/// Check 1b: once the server is at rest (nothing in flight), every
/// acknowledged transfer is in its destination's list as well as its
/// source's, with the same status (API.md): the destination's own record
/// once the money arrived, else the source's record seen from there
/// (queued, cancelled or expired at the source).
async fn check_both_lists(ctx: &str, srv: &Server, world: &World, all: &[Acked]) {
    wait_quiet(ctx, srv).await;
    let seen = histories(ctx, srv, world).await;
    let mut checked = 0;
    for a in all {
        let Some(t) = &a.txn else { continue };
        let Some(to) = t.counterparty.as_ref().filter(|_| t.kind == "transfer") else {
            continue;
        };
        let at = |wallet: &String| seen.get(&(t.id.clone(), wallet.clone()));
        let source = at(&t.wallet)
            .unwrap_or_else(|| panic!("{ctx}: transfer {} is not in its source's list", t.id));
        let destination = at(to).unwrap_or_else(|| {
            panic!(
                "{ctx}: transfer {} ({} at its source {}) is not in its destination {to}'s list",
                t.id, source.1, t.wallet
            )
        });
        assert_eq!(
            destination, source,
            "{ctx}: transfer {} differs between its source {} and its destination {to}",
            t.id, t.wallet
        );
        checked += 1;
    }
    assert!(
        checked > 0
            || !all
                .iter()
                .any(|a| a.txn.as_ref().is_some_and(|t| t.kind == "transfer")),
        "{ctx}: no transfer checked"
    );
}

/// Check 1: every acknowledged transaction is there, with its acknowledged
/// status or a later one: all through the histories, and the newest (those
/// of the cycle just killed) plus a sample one by one through
/// `GET /v1/transactions/{id}`.
async fn check_present(
    ctx: &str,
    srv: &Server,
    world: &World,
    all: &[Acked],
    cycle: usize,
    rng: &mut Rng,
) {
    let seen = histories(ctx, srv, world).await;
    let mut checked = 0;
    for a in all {
        let Some(t) = &a.txn else { continue };
        let (kind, status) = seen
            .get(&(t.id.clone(), t.wallet.clone()))
            .unwrap_or_else(|| {
                panic!(
                    "{ctx}: acknowledged {} {} of cycle {} is not in {}'s history (answer was {})",
                    t.kind,
                    t.id,
                    a.cycle,
                    t.wallet,
                    String::from_utf8_lossy(&a.body)
                )
            });
        assert_eq!(kind, &t.kind, "{ctx}: {} changed type", t.id);
        assert!(
            may_become(kind, &t.status, status),
            "{ctx}: {} {} was acknowledged {} (cycle {}) and is now {status}",
            t.kind,
            t.id,
            t.status,
            a.cycle
        );
        checked += 1;
    }
    assert!(checked > 0 || all.is_empty(), "{ctx}: nothing to check");

    let mut lookups: Vec<Acked> = all
        .iter()
        .filter(|a| a.txn.is_some() && a.cycle == cycle)
        .cloned()
        .collect();
    let older: Vec<&Acked> = all
        .iter()
        .filter(|a| a.txn.is_some() && a.cycle != cycle)
        .collect();
    for _ in 0..LOOKUP_SAMPLE.min(older.len()) {
        lookups.push(older[rng.below(older.len())].clone());
    }
    let ep = srv.endpoint();
    let key = world.key.clone();
    let ctx2 = ctx.to_owned();
    fan_out(lookups, move |a: Acked| {
        let ep = ep.clone();
        let key = key.clone();
        let ctx = ctx2.clone();
        async move {
            let t = a.txn.as_ref().expect("txn");
            let path = format!("/v1/transactions/{}", t.id);
            let r = ep
                .try_send(Method::GET, &path, &[("x-api-key", &key)], Bytes::new())
                .await
                .unwrap_or_else(|e| panic!("{ctx}: GET {path}: {e:?}"));
            assert_eq!(
                r.status,
                200,
                "{ctx}: acknowledged {} {} (cycle {}) is gone: GET {path}: {}",
                t.kind,
                t.id,
                a.cycle,
                r.text()
            );
            let now = txn_seen(&r.json["data"]);
            assert_eq!(now.wallet, t.wallet, "{ctx}: {path}: {}", r.text());
            assert!(
                may_become(&t.kind, &t.status, &now.status),
                "{ctx}: {} {} was acknowledged {} (cycle {}) and is now {}",
                t.kind,
                t.id,
                t.status,
                a.cycle,
                now.status
            );
        }
    })
    .await;
}

/// Check 2: retries of acknowledged requests get the very same answer,
/// replayed.
async fn check_replays(ctx: &str, srv: &Server, world: &World, sample: Vec<Acked>) {
    let ep = srv.endpoint();
    let key = world.key.clone();
    let ctx2 = ctx.to_owned();
    fan_out(sample, move |a: Acked| {
        let ep = ep.clone();
        let key = key.clone();
        let ctx = ctx2.clone();
        async move {
            let r = send_ok(&ctx, &ep, &key, &a.req).await;
            let what = format!(
                "{ctx}: retry of {:?} POST {} (key {}, acknowledged in cycle {})",
                a.req.kind, a.req.path, a.req.key, a.cycle
            );
            assert_eq!(
                (r.status, &r.body),
                (a.status, &a.body),
                "{what}: a different answer.\nfirst:  {} {}\nretry:  {} {}",
                a.status,
                String::from_utf8_lossy(&a.body),
                r.status,
                r.text()
            );
            assert!(
                r.replayed(),
                "{what}: not marked Idempotent-Replayed: {:?}",
                r.headers
            );
        }
    })
    .await;
}

/// Check 3: conservation. Reads the audit and every wallet's balance
/// between two equal digests (so all from one state, though the engine may
/// be re-sending deliveries meanwhile).
async fn check_money(ctx: &str, srv: &Server, world: &World, credited: i64) {
    let mut tries = 0;
    let (audit, balances) = loop {
        tries += 1;
        let (before, ..) = live_digest(srv).await;
        let audit = srv.audit().await;
        let mut balances = Vec::new();
        for w in world.wallets.iter() {
            balances.push(srv.balance(&world.key, w, "USD").await);
        }
        let (after, ..) = live_digest(srv).await;
        if before == after {
            break (audit, balances);
        }
        assert!(
            tries < 200,
            "{ctx}: the state never held still for a whole read"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(audit["ok"], true, "{ctx}: the audit fails: {audit}");
    let rows = audit["assets"].as_array().expect("assets");
    assert_eq!(rows.len(), 1, "{ctx}: {audit}");
    let row = &rows[0];
    assert_eq!(row["asset"], "USD", "{ctx}: {audit}");
    let (cash, in_flight) = (dec(&row["cash"]), dec(&row["inFlight"]));
    let (credits, debits) = (dec(&row["externalCredits"]), dec(&row["externalDebits"]));
    assert_eq!(cash + in_flight, credits - debits, "{ctx}: {audit}");
    assert_eq!(
        credits,
        usd(credited),
        "{ctx}: the credits the server holds are not those asked for (each exactly once): {audit}"
    );
    assert!(debits.is_zero(), "{ctx}: {audit}");
    let mut sum = Decimal::ZERO;
    for b in &balances {
        let c = dec(&b["cash"]);
        assert!(c >= Decimal::ZERO, "{ctx}: {b}");
        assert!(
            dec(&b["reserved"]).is_zero() && dec(&b["pending"]).is_zero(),
            "{ctx}: {b}"
        );
        let want = (c - dec(&b["committed"])).max(Decimal::ZERO);
        assert_eq!(dec(&b["available"]), want, "{ctx}: {b}");
        sum += c;
    }
    assert_eq!(
        sum, cash,
        "{ctx}: the wallets' cash does not add up to the audit's: {audit}"
    );
    assert_eq!(
        sum + in_flight,
        usd(credited),
        "{ctx}: money was made or lost: {audit}"
    );
}

/// Runs the server's own replay from scratch on the stopped data directory.
fn verified(ctx: &str, data: &Path, torn: &mut usize) -> support::WalVerify {
    let v = wal_verify(data);
    assert!(
        v.clean || v.torn_tail,
        "{ctx}: settle wal verify found more than a torn tail:\n{}",
        v.output
    );
    if v.torn_tail {
        *torn += 1;
    }
    assert_eq!(
        v.wallets,
        u64::try_from(WALLETS).unwrap(),
        "{ctx}:\n{}",
        v.output
    );
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    let cycles =
        env_number("SETTLE_CRASH_CYCLES").map_or(DEFAULT_CYCLES, |n| usize::try_from(n).unwrap());
    let verbose = std::env::var_os("SETTLE_CRASH_VERBOSE").is_some();
    let seed = env_number("SETTLE_CRASH_SEED").unwrap_or_else(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        u64::try_from(nanos % u128::from(u64::MAX)).unwrap()
    });
    // Shown if the test fails (the harness keeps a passing test's output).
    eprintln!(
        "crash test: seed {seed} (SETTLE_CRASH_SEED={seed} repeats its choices), {cycles} cycles"
    );
    let began = Instant::now();
    let mut rng = Rng::new(seed);
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("data");

    // First start: a client, the wallets, their funding.
    let mut srv = Server::start_in_with(&data, SNAPSHOTS).await;
    let ctx = format!("seed {seed}, setup");
    assert_eq!(srv.recovered().records, 0, "{ctx}: a fresh data directory");
    let (_, key) = srv.admin_create_client("crash test").await;
    let ep = srv.endpoint();
    let mut all: Vec<Acked> = Vec::new();
    let mut wallets = Vec::new();
    for _ in 0..WALLETS {
        let req = Req {
            kind: Kind::Wallet,
            key: idem(),
            path: "/v1/wallets".to_owned(),
            body: json!({ "ccyCode": "USD" }).to_string(),
            credit: 0,
        };
        let r = send_ok(&ctx, &ep, &key, &req).await;
        wallets.push(r.ok(201)["id"].as_str().expect("id").to_owned());
        all.push(accept(&ctx, req, &r, 0));
    }
    let mut credited = 0;
    for w in &wallets {
        let req = Req {
            kind: Kind::Credit,
            key: idem(),
            path: format!("/v1/wallets/{w}/credits"),
            body: json!({ "asset": "USD", "amount": cents(FUNDING_CENTS) }).to_string(),
            credit: FUNDING_CENTS,
        };
        let r = send_ok(&ctx, &ep, &key, &req).await;
        credited += req.credit;
        all.push(accept(&ctx, req, &r, 0));
    }
    let world = World {
        key: key.clone(),
        wallets: Arc::new(wallets),
        cancellable: Arc::new(Mutex::new(Vec::new())),
    };
    let mut torn = 0;
    let mut quiet_cycles = 0;
    let mut retried_unacked = 0;
    let mut replayed = 0;

    for cycle in 1..=cycles {
        let ctx = format!("seed {seed}, cycle {cycle}");
        let quiet = cycle % QUIET_EVERY == 0 || (cycles < QUIET_EVERY && cycle == cycles);

        // Load, then the kill.
        let shared = Arc::new(Shared::default());
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let task_rng = Rng::new(rng.next());
            tasks.push(tokio::spawn(load(
                ctx.clone(),
                srv.endpoint(),
                world.clone(),
                Arc::clone(&shared),
                task_rng,
                cycle,
                task,
            )));
        }
        let kill_after = rng.range(KILL_AFTER_MS.0, KILL_AFTER_MS.1);
        tokio::time::sleep(Duration::from_millis(kill_after)).await;
        let mut noted = None;
        if quiet {
            shared.stop.store(true, Ordering::Release);
            for t in tasks.drain(..) {
                t.await
                    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            }
            noted = Some(wait_quiet(&ctx, &srv).await);
        }
        shared.killing.store(true, Ordering::Release);
        let killed_at = Instant::now();
        srv.kill9();
        shared.stop.store(true, Ordering::Release);
        for t in tasks {
            t.await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        }
        let acked_now = std::mem::take(&mut *shared.acked.lock().unwrap());
        let unacked = std::mem::take(&mut *shared.unacked.lock().unwrap());
        let recent: Vec<Acked> = acked_now
            .iter()
            .filter(|a| killed_at.saturating_duration_since(a.at) <= RECENT)
            .cloned()
            .collect();
        let acked_in_cycle = acked_now.len();
        for a in &acked_now {
            credited += a.req.credit;
        }
        all.extend(acked_now);

        // The replay from scratch, and the server's own recovery.
        let mut phases = Phases::default();
        let v = verified(&ctx, &data, &mut torn);
        phases.lap("verify");
        if let Some(d) = &noted {
            assert_eq!(
                &v.digest, d,
                "{ctx}: killed at rest, the log replays to another state:\n{}",
                v.output
            );
        }
        drop(srv);
        srv = Server::start_in_with(&data, SNAPSHOTS).await;
        phases.lap("restart");
        let rec = srv.recovered();
        if v.torn_tail {
            assert!(
                srv.log().contains("torn"),
                "{ctx}: verify found a torn tail, the server said nothing of it:\n{}",
                srv.log()
            );
        }
        // The server starts from its newest snapshot; verify replays as
        // much of the log as is left (from the oldest kept snapshot once
        // compaction removed the start): two paths, one state.
        assert_eq!(
            (rec.digest.as_str(), rec.position, rec.wallets),
            (v.digest.as_str(), v.position, v.wallets),
            "{ctx}: recovery and a replay from scratch disagree:\n{}\nserver log:\n{}",
            v.output,
            srv.log()
        );
        if let Some(d) = &noted {
            quiet_cycles += 1;
            let (live, wallets, in_flight) = live_digest(&srv).await;
            assert_eq!(
                (&live, in_flight),
                (d, 0),
                "{ctx}: after a kill at rest, the live state differs"
            );
            assert_eq!(wallets, u64::try_from(WALLETS).unwrap(), "{ctx}");
        }

        // 1. Everything acknowledged is there.
        check_present(&ctx, &srv, &world, &all, cycle, &mut rng).await;
        phases.lap("present");

        // 1b. At rest, every transfer is in both wallets' lists.
        check_both_lists(&ctx, &srv, &world, &all).await;
        phases.lap("both");

        // 2. Retries replay the first answer.
        let mut sample = recent;
        for _ in 0..REPLAY_SAMPLE {
            sample.push(all[rng.below(all.len())].clone());
        }
        replayed += sample.len();
        check_replays(&ctx, &srv, &world, sample).await;
        phases.lap("replays");

        // What the kill cut off, retried with its key until answered: once
        // answered it counts as acknowledged (and its credit as made).
        let ep = srv.endpoint();
        retried_unacked += unacked.len();
        for req in unacked {
            let r = send_ok(&ctx, &ep, &world.key, &req).await;
            let a = accept(&ctx, req, &r, cycle);
            credited += a.req.credit;
            all.push(a);
        }
        phases.lap("retries");

        // 3. Money is conserved, and every credit happened exactly once.
        check_money(&ctx, &srv, &world, credited).await;
        phases.lap("money");

        if verbose {
            eprintln!(
                "crash cycle {cycle:>3}: killed after {kill_after:>3} ms{}, {acked_in_cycle:>4} acknowledged ({} in all), {} records, {} torn tails, {:.1} s ({})",
                if quiet { " at rest" } else { "" },
                all.len(),
                v.records,
                torn,
                began.elapsed().as_secs_f64(),
                phases.0.join(" ")
            );
        }
    }

    // A clean stop keeps the last state, and leaves a clean log.
    let ctx = format!("seed {seed}, the clean stop");
    check_present(&ctx, &srv, &world, &all, cycles, &mut rng).await;
    let last = wait_quiet(&ctx, &srv).await;
    srv.sigterm();
    let status = srv.wait_exit(Duration::from_secs(20)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "{ctx}: SIGTERM: {status:?}; log:\n{}",
        srv.log()
    );
    let v = wal_verify(&data);
    assert!(
        v.clean && !v.torn_tail,
        "{ctx}: the log after a clean stop:\n{}",
        v.output
    );
    assert_eq!(
        v.digest, last,
        "{ctx}: the clean stop lost something:\n{}",
        v.output
    );
    drop(srv);

    assert!(
        quiet_cycles >= 1 || cycles == 0,
        "no cycle killed a server at rest"
    );
    assert!(
        all.len() > 2 * WALLETS || cycles == 0,
        "seed {seed}: the load was never acknowledged"
    );
    if verbose {
        eprintln!(
            "crash test: {cycles} kills ({quiet_cycles} at rest, {torn} torn tails), {} acknowledged, {retried_unacked} cut off and retried, {replayed} replays checked, {:.1} s",
            all.len(),
            began.elapsed().as_secs_f64()
        );
    }
}
