//! Webhooks on the real binary, with a real receiver (a small hyper server
//! in the test on 127.0.0.1:0): events arrive signed and verifiable, in
//! order per wallet; a receiver that fails the first attempts gets them
//! later; kill -9 of settle during delivery loses none (duplicates allowed,
//! with the same id); bad registrations get the API's codes.
//!
//! Over TLS (`https://`, a receiver with a certificate from a CA made in
//! the test with rcgen): with `--webhook-ca` the events arrive signed, over
//! HTTP/2; without it nothing is delivered, the attempts are retried and
//! `GET /v1/webhooks` says it is the certificate, until a restart that
//! trusts the CA delivers what waited.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use parking_lot_free::Mutex;
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::Server;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

mod parking_lot_free {
    /// std's mutex, unwrapping poison (a test thread that panicked fails the test anyway).
    #[derive(Debug, Default)]
    pub struct Mutex<T>(std::sync::Mutex<T>);
    impl<T> Mutex<T> {
        pub fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
    }
}

/// Fast retries for tests.
const FAST: &[&str] = &[
    "--webhook-retry-base-ms",
    "20",
    "--webhook-retry-cap-ms",
    "200",
    "--webhook-timeout-ms",
    "2000",
];

/// One delivery as the receiver got it.
#[derive(Clone, Debug)]
struct Got {
    signature: String,
    body: Bytes,
    json: Value,
    version: Version,
}

#[derive(Debug, Clone)]
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    /// Answer 500 to this many requests first.
    fail_first: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    /// Wait this long (ms) before answering each request.
    delay_ms: u64,
    /// Serves https with this, if set.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// TLS handshakes that failed (the client refused our certificate).
    handshakes_failed: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(fail_first: usize, delay_ms: u64) -> Receiver {
        Self::start_with(fail_first, delay_ms, None).await
    }

    /// An https receiver (HTTP/2 or HTTP/1.1, by ALPN).
    async fn start_tls(tls: Arc<rustls::ServerConfig>) -> Receiver {
        Self::start_with(0, 0, Some(tls)).await
    }

    async fn start_with(
        fail_first: usize,
        delay_ms: u64,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver {
            addr: listener.local_addr().unwrap(),
            got: Arc::default(),
            fail_first: Arc::new(AtomicUsize::new(fail_first)),
            failed: Arc::default(),
            delay_ms,
            tls,
            handshakes_failed: Arc::default(),
        };
        let shared = r.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let r = shared.clone();
                tokio::spawn(async move {
                    let Some(tls) = r.tls.clone() else {
                        return r.serve(stream).await;
                    };
                    match TlsAcceptor::from(tls).accept(stream).await {
                        Ok(stream) => r.serve(stream).await,
                        Err(_) => {
                            r.handshakes_failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        r
    }

    /// Serves one connection (HTTP/1.1, or HTTP/2 when TLS chose it).
    async fn serve<S>(self, stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let r = self.clone();
            async move {
                let version = req.version();
                let signature = req
                    .headers()
                    .get("x-signature")
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .unwrap_or_default();
                let body = req.into_body().collect().await.map(|b| b.to_bytes());
                let body = body.unwrap_or_default();
                if r.delay_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(r.delay_ms)).await;
                }
                let fail = r
                    .fail_first
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                let status = if fail {
                    r.failed.fetch_add(1, Ordering::SeqCst);
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    r.got.lock().push(Got {
                        signature,
                        body,
                        json,
                        version,
                    });
                    StatusCode::OK
                };
                Ok::<_, Infallible>(
                    Response::builder()
                        .status(status)
                        .body(Full::new(Bytes::from_static(b"{}")))
                        .unwrap(),
                )
            }
        });
        let _ = auto::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service)
            .await;
    }

    fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}/hooks", self.addr)
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().clone()
    }

    /// Waits (generously) until the distinct events received satisfy `done`.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let start = Instant::now();
        loop {
            let got = self.got();
            if done(&got) {
                return got;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{what}: not received within 60 s; got {} deliveries: {:?}",
                got.len(),
                got.iter().map(|g| g.json["id"].clone()).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Distinct event ids received.
fn distinct(got: &[Got]) -> BTreeSet<String> {
    got.iter()
        .map(|g| g.json["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Checks the signature as a receiver would: recompute the HMAC of "t.body".
fn verify(secret: &str, g: &Got) {
    let (t, v1) = g
        .signature
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
        .unwrap_or_else(|| panic!("bad X-Signature: {:?}", g.signature));
    let t: i64 = t.parse().unwrap();
    assert!((t - support::unix_now()).abs() < 600, "t is now-ish: {t}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&g.body);
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        v1,
        want,
        "signature of {}",
        String::from_utf8_lossy(&g.body)
    );
}

/// Per wallet, the first arrival of each event comes in increasing
/// `walletSequence` (redeliveries may repeat an earlier one).
fn assert_in_order(got: &[Got]) {
    let mut seen = BTreeSet::new();
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for g in got {
        let id = g.json["id"].as_str().unwrap().to_owned();
        let wallet = wallet_of(&g.json);
        let seq = g.json["walletSequence"].as_u64().unwrap();
        if !seen.insert(id.clone()) {
            continue;
        }
        let prev = last.insert(wallet.clone(), seq).unwrap_or(0);
        assert!(seq > prev, "{wallet}: event {seq} after {prev} ({id})");
    }
}

fn wallet_of(event: &Value) -> String {
    event["data"]["walletId"].as_str().unwrap().to_owned()
}

async fn register(srv: &Server, key: &str, url: &str, events: &[&str]) -> Value {
    srv.post_json(
        "/v1/webhooks",
        key,
        &json!({ "url": url, "events": events }),
    )
    .await
    .ok(201)
}

const ALL: &[&str] = &[
    "wallet.status_changed",
    "transaction.created",
    "transaction.status_changed",
];

#[tokio::test]
async fn events_arrive_signed_in_order_even_after_failed_attempts() {
    let srv = Server::start_with(FAST).await;
    // The first three attempts fail: the events come later, in order.
    let rx = Receiver::start(3, 0).await;
    let key = srv.client_key().await;
    let hook = register(&srv, &key, &rx.url(), ALL).await;
    let secret = hook["secret"].as_str().unwrap().to_owned();
    assert!(hook["id"].as_str().unwrap().starts_with("whk_"));
    assert_eq!(hook["url"], rx.url().as_str());

    let wallet = srv.create_wallet(&key, "USD").await;
    let other = srv.create_wallet(&key, "USD").await;
    let credit = srv.credit(&key, &wallet, "USD", "100.00").await;
    srv.credit(&key, &other, "USD", "5.00").await;
    let pia = srv
        .post_json(
            &format!("/v1/wallets/{wallet}/payin-addresses"),
            &key,
            &json!({ "type": "local_bank_transfer" }),
        )
        .await
        .ok(201);
    let payin = srv
        .post_json(
            &format!("/v1/payin-addresses/{}/payins", pia["id"].as_str().unwrap()),
            &key,
            &json!({ "amount": "7.50" }),
        )
        .await
        .ok(201);
    let payin_id = payin["id"].as_str().unwrap().to_owned();
    srv.post_empty(&format!("/v1/transactions/{payin_id}/settle"), &key)
        .await
        .ok(200);
    // A debit that settles as it is submitted is created `settled`, in one
    // notice; one that must wait is created `awaiting_funds`.
    let debit = |amount: &'static str| {
        let (srv, key, wallet) = (&srv, &key, &wallet);
        async move {
            srv.post_json(
                &format!("/v1/wallets/{wallet}/debits"),
                key,
                &json!({ "asset": "USD", "amount": amount }),
            )
            .await
            .ok(201)
        }
    };
    let paid = debit("10.00").await;
    assert_eq!(paid["status"], "settled");
    let waiting = debit("1000.00").await;
    assert_eq!(waiting["status"], "awaiting_funds");
    srv.put_json(
        &format!("/v1/wallets/{wallet}/status"),
        &key,
        &json!({ "status": "restricted", "reason": "review" }),
    )
    .await
    .ok(200);

    // wallet: credit created, pay-in created, pay-in settled, two debits
    // created, status; other: credit.
    let got = rx
        .wait_for("seven events", |g| distinct(g).len() >= 7)
        .await;
    assert!(
        rx.failed.load(Ordering::SeqCst) >= 3,
        "the failures happened"
    );
    for g in &got {
        verify(&secret, g);
        let e = &g.json;
        assert!(e["id"].as_str().unwrap().starts_with("evt_"), "{e}");
        assert!(support::is_timestamp(&e["createdAt"]), "{e}");
    }
    assert_in_order(&got);
    let mine: Vec<&Value> = {
        let mut seen = BTreeSet::new();
        got.iter()
            .map(|g| &g.json)
            .filter(|e| wallet_of(e) == wallet && seen.insert(e["id"].to_string()))
            .collect()
    };
    let kinds: Vec<(&str, &str)> = mine
        .iter()
        .map(|e| {
            let status = e["data"]["status"].as_str().unwrap();
            (e["type"].as_str().unwrap(), status)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("transaction.created", "settled"),
            ("transaction.created", "pending"),
            ("transaction.status_changed", "settled"),
            ("transaction.created", "settled"),
            ("transaction.created", "awaiting_funds"),
            ("wallet.status_changed", "restricted"),
        ],
        "{mine:?}"
    );
    assert_eq!(mine[0]["data"]["id"], credit["id"]);
    assert_eq!(mine[1]["data"]["id"], payin_id.as_str());
    assert_eq!(mine[3]["data"]["id"], paid["id"]);
    assert_eq!(mine[4]["data"]["id"], waiting["id"]);
    assert_eq!(mine[5]["data"]["reason"], "review");

    // Listed without its secret; deleted, it gets nothing more.
    let list = srv.get("/v1/webhooks", &key).await.ok(200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("secret").is_none(), "{list}");
    assert_eq!(list[0]["events"], json!(ALL));
    let id = hook["id"].as_str().unwrap();
    let other_key = srv.client_key().await;
    srv.send(
        hyper::Method::DELETE,
        &format!("/v1/webhooks/{id}"),
        &[("x-api-key", other_key.as_bytes())],
        "",
    )
    .await
    .err(404, "not_found");
    assert_eq!(srv.get("/v1/webhooks", &other_key).await.ok(200), json!([]));
    srv.send(
        hyper::Method::DELETE,
        &format!("/v1/webhooks/{id}"),
        &[("x-api-key", key.as_bytes())],
        "",
    )
    .await
    .ok(200);
    assert_eq!(srv.get("/v1/webhooks", &key).await.ok(200), json!([]));
    let before = distinct(&rx.got()).len();
    srv.credit(&key, &wallet, "USD", "1.00").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(distinct(&rx.got()).len(), before);
}

#[tokio::test]
async fn only_subscribed_types_and_only_own_wallets_are_sent() {
    let srv = Server::start_with(FAST).await;
    let rx = Receiver::start(0, 0).await;
    let key = srv.client_key().await;
    let stranger = srv.client_key().await;
    register(&srv, &key, &rx.url(), &["wallet.status_changed"]).await;
    let wallet = srv.create_wallet(&key, "USD").await;
    let theirs = srv.create_wallet(&stranger, "USD").await;
    srv.credit(&key, &wallet, "USD", "3.00").await;
    srv.credit(&stranger, &theirs, "USD", "3.00").await;
    for (k, w) in [(&stranger, &theirs), (&key, &wallet)] {
        srv.put_json(
            &format!("/v1/wallets/{w}/status"),
            k,
            &json!({ "status": "suspended" }),
        )
        .await
        .ok(200);
    }
    let got = rx.wait_for("one event", |g| !g.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = if got.len() < rx.got().len() {
        rx.got()
    } else {
        got
    };
    assert_eq!(distinct(&got).len(), 1, "{got:?}");
    assert_eq!(got[0].json["type"], "wallet.status_changed");
    assert_eq!(wallet_of(&got[0].json), wallet);
}

#[tokio::test]
async fn bad_registrations_get_the_api_codes() {
    let srv = Server::start().await;
    let key = srv.client_key().await;
    let too_long = format!("http://example.com/{}", "a".repeat(3000));
    for body in [
        json!({ "url": "ftp://example.com/x", "events": ["transaction.created"] }),
        json!({ "url": "wss://example.com/x", "events": ["transaction.created"] }),
        json!({ "url": "https://user:pw@example.com/x", "events": ["transaction.created"] }),
        json!({ "url": "not a url", "events": ["transaction.created"] }),
        json!({ "url": "/relative", "events": ["transaction.created"] }),
        json!({ "url": too_long, "events": ["transaction.created"] }),
        json!({ "url": "http://example.com/x", "events": ["wallet.exploded"] }),
        json!({ "url": "http://example.com/x", "events": [] }),
        json!({ "url": "http://example.com/x" }),
        json!({ "url": "http://example.com/x", "events": "transaction.created" }),
        json!({ "url": 5, "events": ["transaction.created"] }),
    ] {
        srv.post_json("/v1/webhooks", &key, &body)
            .await
            .err(400, "invalid_request");
    }
    srv.send(
        hyper::Method::DELETE,
        "/v1/webhooks/whk_01ARZ3NDEKTSV4RRFFQ69G5FAV",
        &[("x-api-key", key.as_bytes())],
        "",
    )
    .await
    .err(404, "not_found");
    srv.send(
        hyper::Method::DELETE,
        "/v1/webhooks/nonsense",
        &[("x-api-key", key.as_bytes())],
        "",
    )
    .await
    .err(404, "not_found");
    // Both schemes are accepted (https for production receivers).
    let hook = register(
        &srv,
        &key,
        "https://example.com/hooks",
        &["transaction.created"],
    )
    .await;
    assert_eq!(hook["url"], "https://example.com/hooks");
    // The limit per client.
    for _ in 0..15 {
        register(&srv, &key, "http://127.0.0.1:9/x", &["transaction.created"]).await;
    }
    srv.post_json(
        "/v1/webhooks",
        &key,
        &json!({ "url": "http://127.0.0.1:9/x", "events": ["transaction.created"] }),
    )
    .await
    .err(400, "invalid_request");
}

#[tokio::test]
async fn kill9_during_delivery_loses_no_event() {
    let data = tempfile::tempdir().unwrap();
    let mut srv = Server::start_in_with(data.path(), FAST).await;
    // A slow receiver: deliveries are still on their way at the crash.
    let rx = Receiver::start(0, 30).await;
    let key = srv.client_key().await;
    let hook = register(&srv, &key, &rx.url(), &["transaction.created"]).await;
    let secret = hook["secret"].as_str().unwrap().to_owned();
    let wallets = [
        srv.create_wallet(&key, "USD").await,
        srv.create_wallet(&key, "USD").await,
    ];
    const PER_WALLET: u64 = 15;
    for i in 0..PER_WALLET {
        for w in &wallets {
            srv.credit(&key, w, "USD", &format!("{}.00", i + 1)).await;
        }
    }
    // Some delivered, most not: crash now.
    rx.wait_for("a first delivery", |g| !g.is_empty()).await;
    srv.kill9();
    let before = distinct(&rx.got()).len();
    assert!(
        before < wallets.len() * 15,
        "the crash came during delivery ({before})"
    );
    let srv = Server::start_in_with(data.path(), FAST).await;
    // Every acknowledged credit's event arrives: sequences 2..=16 per wallet
    // (1 is the wallet's opening, which makes no event).
    let want = wallets.len() * usize::try_from(PER_WALLET).unwrap();
    let got = rx
        .wait_for("every event", |g| distinct(g).len() >= want)
        .await;
    for g in &got {
        verify(&secret, g);
    }
    assert_in_order(&got);
    let mut per_wallet: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for g in &got {
        per_wallet
            .entry(wallet_of(&g.json))
            .or_default()
            .insert(g.json["walletSequence"].as_u64().unwrap());
    }
    for w in &wallets {
        let seqs: Vec<u64> = per_wallet[w].iter().copied().collect();
        assert_eq!(seqs, (2..=PER_WALLET + 1).collect::<Vec<_>>(), "{w}");
    }
    // A duplicate, if any, carries the same id and body.
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    for g in &got {
        let id = g.json["id"].as_str().unwrap().to_owned();
        if let Some(first) = by_id.insert(id, g.json.clone()) {
            assert_eq!(first, g.json);
        }
    }
    drop(srv);
}

// ---- https receivers ----

/// A CA made for the test, and the settings of an https receiver whose
/// certificate (for 127.0.0.1 and localhost) that CA signed. Returns the
/// CA in PEM.
fn test_pki() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "settle test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf = leaf.signed_by(&leaf_key, &issuer).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (ca_pem, Arc::new(config))
}

/// `FAST` and `--webhook-ca <file>`.
fn trusting(ca: &std::path::Path) -> Vec<&str> {
    let mut args = FAST.to_vec();
    args.extend(["--webhook-ca", ca.to_str().unwrap()]);
    args
}

/// The client's only webhook as `GET /v1/webhooks` shows it.
async fn listed(srv: &Server, key: &str) -> Value {
    let list = srv.get("/v1/webhooks", key).await.ok(200);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    list[0].clone()
}

#[tokio::test]
async fn https_receivers_get_signed_events_when_their_ca_is_trusted() {
    let (ca_pem, tls) = test_pki();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let srv = Server::start_with(&trusting(&ca)).await;
    let rx = Receiver::start_tls(tls).await;
    assert!(rx.url().starts_with("https://127.0.0.1:"), "{}", rx.url());
    let key = srv.client_key().await;
    let hook = register(&srv, &key, &rx.url(), ALL).await;
    let secret = hook["secret"].as_str().unwrap().to_owned();
    assert_eq!(hook["url"], rx.url().as_str());

    let wallet = srv.create_wallet(&key, "USD").await;
    let credit = srv.credit(&key, &wallet, "USD", "10.00").await;
    srv.credit(&key, &wallet, "USD", "2.50").await;
    srv.put_json(
        &format!("/v1/wallets/{wallet}/status"),
        &key,
        &json!({ "status": "restricted", "reason": "review" }),
    )
    .await
    .ok(200);

    let got = rx
        .wait_for("three events over https", |g| distinct(g).len() >= 3)
        .await;
    for g in &got {
        verify(&secret, g);
        // The receiver offered h2 by ALPN, and the client took it.
        assert_eq!(g.version, Version::HTTP_2, "{:?}", g.json["id"]);
    }
    assert_in_order(&got);
    let first = got
        .iter()
        .map(|g| &g.json)
        .find(|e| e["walletSequence"] == 2);
    assert_eq!(first.unwrap()["data"]["id"], credit["id"]);
    assert_eq!(rx.handshakes_failed.load(Ordering::SeqCst), 0);
    assert!(listed(&srv, &key).await.get("lastError").is_none());
}

#[tokio::test]
async fn an_untrusted_certificate_gets_nothing_until_its_ca_is_trusted() {
    let (ca_pem, tls) = test_pki();
    let data = tempfile::tempdir().unwrap();
    let ca = data.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let db = data.path().join("db");
    // No --webhook-ca: the receiver's CA is unknown to settle.
    let mut srv = Server::start_in_with(&db, FAST).await;
    let rx = Receiver::start_tls(tls).await;
    let key = srv.client_key().await;
    let hook = register(&srv, &key, &rx.url(), &["transaction.created"]).await;
    let secret = hook["secret"].as_str().unwrap().to_owned();
    let wallet = srv.create_wallet(&key, "USD").await;
    srv.credit(&key, &wallet, "USD", "1.00").await;
    srv.credit(&key, &wallet, "USD", "2.00").await;

    // Attempt after attempt (backing off) is refused at the handshake, and
    // the webhook says why.
    let start = Instant::now();
    let shown = loop {
        let w = listed(&srv, &key).await;
        if rx.handshakes_failed.load(Ordering::SeqCst) >= 3 && w.get("lastError").is_some() {
            break w;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no failed attempts recorded within 30 s: {w}; log:\n{}",
            srv.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let why = shown["lastError"].as_str().unwrap();
    assert!(why.contains("TLS certificate error"), "{why}");
    assert!(why.contains("UnknownIssuer"), "{why}");
    assert!(support::is_timestamp(&shown["lastErrorAt"]), "{shown}");
    assert_eq!(shown["status"], "active");
    assert!(
        rx.got().is_empty(),
        "nothing passes an untrusted certificate"
    );
    assert!(srv.log().contains("TLS certificate error"), "{}", srv.log());

    // The operator trusts the CA (a restart with --webhook-ca): what waited
    // arrives, in order, and the error is gone.
    srv.sigterm();
    assert!(srv.wait_exit(Duration::from_secs(20)).await.is_some());
    let srv = Server::start_in_with(&db, &trusting(&ca)).await;
    let got = rx
        .wait_for("both credits", |g| distinct(g).len() >= 2)
        .await;
    for g in &got {
        verify(&secret, g);
    }
    assert_in_order(&got);
    assert!(listed(&srv, &key).await.get("lastError").is_none());
}
