//! Before the run: the server answers, a new client (admin API), its
//! wallets, each funded (credits sent through `POST /v1/batch`). After the
//! run: the conservation audit.

use super::client::{Answer, Conn, SendError, Target};
use super::workload::ASSET;
use bytes::Bytes;
use hyper::Method;
use hyper::header::HeaderValue;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Credits per funding batch.
const FUND_BATCH: usize = 1_000;

/// Says how far the set-up got every few seconds (making 100,000 wallets
/// one request each takes a while, and silence reads as a hang); stops
/// when dropped.
struct SetupProgress(tokio::task::JoinHandle<()>);

impl SetupProgress {
    fn start(n: usize, created: Arc<AtomicUsize>, funded: Arc<AtomicUsize>) -> SetupProgress {
        let every = Duration::from_secs(5);
        SetupProgress(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                eprintln!(
                    "settle load: set-up: {} of {n} wallets created, {} funded",
                    created.load(Ordering::Relaxed),
                    funded.load(Ordering::Relaxed)
                );
            }
        }))
    }
}

impl Drop for SetupProgress {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A client of our own and its funded wallets.
#[derive(Debug)]
pub struct Setup {
    pub client_id: String,
    pub api_key: HeaderValue,
    pub wallets: Vec<String>,
    pub took: Duration,
}

fn unreachable(target: &Target, e: &SendError) -> String {
    format!(
        "cannot reach the server at {} ({e}); is `settle serve` running there?",
        target.url
    )
}

fn refused(what: &str, a: &Answer) -> String {
    let hint = if a.status == 401 {
        " (the admin key was refused: check --admin-key, SETTLE_ADMIN_KEY or --data-dir)"
    } else {
        ""
    };
    format!(
        "{what}: the server answered {}{hint}: {}",
        a.status,
        a.excerpt()
    )
}

/// A header value from a key, or why it cannot be one.
pub fn key_header(key: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(key).map_err(|_| "the admin key holds characters a header cannot".into())
}

/// Sends a request, retrying (same idempotency key) while the server says
/// "later" (429, 503).
async fn send_retrying(
    conn: &mut Conn,
    method: Method,
    path: &str,
    key: &HeaderValue,
    idem: Option<&str>,
    body: &Bytes,
) -> Result<Answer, SendError> {
    let mut tries = 0;
    loop {
        let a = conn
            .send(method.clone(), path, key, idem, body.clone())
            .await?;
        tries += 1;
        if !(a.status == 429 || a.status == 503) || tries >= 20 {
            return Ok(a);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /healthz` answers 200.
pub async fn check_health(
    target: &Arc<Target>,
    admin: &HeaderValue,
    timeout: Duration,
) -> Result<(), String> {
    let mut conn = Conn::new(target.clone(), timeout);
    let a = conn
        .send(Method::GET, "/healthz", admin, None, Bytes::new())
        .await
        .map_err(|e| unreachable(target, &e))?;
    if a.status != 200 {
        return Err(refused(&format!("GET {}/healthz", target.url), &a));
    }
    Ok(())
}

/// Creates the client and `n` wallets funded with `fund` each, on up to
/// `workers` connections at once.
pub async fn prepare(
    target: &Arc<Target>,
    admin: &HeaderValue,
    run_id: &str,
    n: usize,
    fund: &str,
    workers: usize,
    timeout: Duration,
) -> Result<Setup, String> {
    let started = Instant::now();
    let mut conn = Conn::new(target.clone(), timeout);
    let body = Bytes::from(json!({ "name": format!("settle load {run_id}") }).to_string());
    let a = send_retrying(
        &mut conn,
        Method::POST,
        "/v1/admin/clients",
        admin,
        None,
        &body,
    )
    .await
    .map_err(|e| unreachable(target, &e))?;
    if a.status != 201 {
        return Err(refused("creating a client (POST /v1/admin/clients)", &a));
    }
    let v = a.json();
    let client_id = v["data"]["id"].as_str().unwrap_or_default().to_owned();
    let api_key = v["data"]["apiKey"]
        .as_str()
        .ok_or_else(|| format!("POST /v1/admin/clients: no apiKey in {}", a.excerpt()))
        .and_then(key_header)?;

    // The wallets, one request each (the API has no batch for them).
    let created = Arc::new(AtomicUsize::new(0));
    let funded = Arc::new(AtomicUsize::new(0));
    let _progress = SetupProgress::start(n, created.clone(), funded.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for w in 0..workers.clamp(1, 32).min(n) {
        let (target, key, next, run_id, created) = (
            target.clone(),
            api_key.clone(),
            next.clone(),
            run_id.to_owned(),
            created.clone(),
        );
        set.spawn(async move {
            let mut conn = Conn::new(target.clone(), timeout);
            let mut made: Vec<(usize, String)> = Vec::new();
            let body = Bytes::from(json!({ "ccyCode": ASSET }).to_string());
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, String>(made);
                }
                let idem = format!("{run_id}-w{w}-{i}");
                let a = send_retrying(
                    &mut conn,
                    Method::POST,
                    "/v1/wallets",
                    &key,
                    Some(&idem),
                    &body,
                )
                .await
                .map_err(|e| unreachable(&target, &e))?;
                let id = (a.status == 201)
                    .then(|| a.json()["data"]["id"].as_str().map(str::to_owned))
                    .flatten()
                    .ok_or_else(|| refused("creating a wallet (POST /v1/wallets)", &a))?;
                made.push((i, id));
                created.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let mut wallets: Vec<String> = vec![String::new(); n];
    while let Some(joined) = set.join_next().await {
        let made = joined.map_err(|e| format!("a setup task failed: {e}"))??;
        for (i, id) in made {
            wallets[i] = id;
        }
    }

    // Funding: one credit per wallet, FUND_BATCH credits per request.
    let chunks: Arc<Vec<Vec<String>>> =
        Arc::new(wallets.chunks(FUND_BATCH).map(<[String]>::to_vec).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for w in 0..workers.clamp(1, 8).min(chunks.len()) {
        let (target, key, next, chunks, run_id, fund, funded) = (
            target.clone(),
            api_key.clone(),
            next.clone(),
            chunks.clone(),
            run_id.to_owned(),
            fund.to_owned(),
            funded.clone(),
        );
        set.spawn(async move {
            let mut conn = Conn::new(target.clone(), timeout);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(chunk) = chunks.get(i) else {
                    return Ok::<_, String>(());
                };
                let ops: Vec<Value> = chunk
                    .iter()
                    .map(|id| json!({"op": "credit", "walletId": id, "asset": ASSET, "amount": fund}))
                    .collect();
                let body = Bytes::from(json!({ "operations": ops }).to_string());
                let idem = format!("{run_id}-f{w}-{i}");
                let a = send_retrying(&mut conn, Method::POST, "/v1/batch", &key, Some(&idem), &body)
                    .await
                    .map_err(|e| unreachable(&target, &e))?;
                if a.status != 200 {
                    return Err(refused("funding the wallets (POST /v1/batch)", &a));
                }
                let v = a.json();
                let results = v["data"]["results"].as_array().cloned().unwrap_or_default();
                let ok = results.len() == chunk.len()
                    && results.iter().all(|r| r["status"].as_u64() == Some(201));
                if !ok {
                    let first = results
                        .iter()
                        .find(|r| r["status"].as_u64() != Some(201))
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| format!("{} results for {} credits", results.len(), chunk.len()));
                    return Err(format!("funding the wallets: a credit failed: {first}"));
                }
                funded.fetch_add(chunk.len(), Ordering::Relaxed);
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        joined.map_err(|e| format!("a setup task failed: {e}"))??;
    }
    Ok(Setup {
        client_id,
        api_key,
        wallets,
        took: started.elapsed(),
    })
}

/// `GET /v1/admin/audit`: the `data` object (`ok`, `assets`).
pub async fn audit(
    target: &Arc<Target>,
    admin: &HeaderValue,
    timeout: Duration,
) -> Result<Value, String> {
    let mut conn = Conn::new(target.clone(), timeout);
    let a = send_retrying(
        &mut conn,
        Method::GET,
        "/v1/admin/audit",
        admin,
        None,
        &Bytes::new(),
    )
    .await
    .map_err(|e| format!("the audit after the run: {}", unreachable(target, &e)))?;
    if a.status != 200 {
        return Err(refused("the audit (GET /v1/admin/audit)", &a));
    }
    let v = a.json();
    if !v["data"]["ok"].is_boolean() {
        return Err(format!("the audit answered without `ok`: {}", a.excerpt()));
    }
    Ok(v["data"].clone())
}
