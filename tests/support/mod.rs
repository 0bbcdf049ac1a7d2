//! The shared harness of the HTTP integration tests: the real `settle`
//! binary on a free port with its own data directory, and a small HTTP/1.1
//! client over hyper.
//!
//! Every answer the tests see goes through `Server::send`, which checks
//! what holds for every request of the API (API.md "Conventions"):
//!
//! - never a 500;
//! - `Content-Type: application/json` and a JSON body (except `GET /metrics`,
//!   which is Prometheus text, and the body-less answers to `HEAD`);
//! - errors are exactly `{"error": {"code", "message"}}`; other answers are
//!   in the `{"data": …}` envelope (except `/healthz`).
//!
//! When a `Server` is dropped, the process is killed; if the test has not
//! failed already, the server's log must hold no panic and no ERROR line.
//!
//! For the crash test: `Server::start_in` runs on a data directory that
//! outlives the process (each run with a log of its own, checked as
//! above), `kill9` crashes it, `recovered` reads what it recovered at
//! start, `wal_verify` replays its log from scratch offline, and an
//! `Endpoint` sends requests that may go unanswered.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tempfile::TempDir;

/// The admin key every test server runs with.
pub const ADMIN_KEY: &str = "test-admin-key-0123456789-abcdefghijklmnop";

/// How long a single request may take before the test fails (a hang is a
/// failure, not a wait).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

pub type HttpClient = Client<HttpConnector, BoxBody<Bytes, Infallible>>;

/// An answer: status, headers, raw body, and the body parsed as JSON
/// (`Value::Null` for `/metrics` and `HEAD`).
#[derive(Debug, Clone)]
pub struct Resp {
    pub method: Method,
    pub path: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub json: Value,
}

/// At most `max` characters of a text, for messages.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let head: String = s.chars().take(max).collect();
    format!("{head}… ({} bytes in all)", s.len())
}

impl Resp {
    /// The body as text, clipped to 2,000 characters (for messages).
    pub fn text(&self) -> String {
        clip(&String::from_utf8_lossy(&self.body), 2_000)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// `data` of a success envelope, asserting the status first.
    pub fn ok(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "{} {}: expected {status}, got {}: {}",
            self.method,
            self.path,
            self.status,
            self.text()
        );
        self.json["data"].clone()
    }

    /// Asserts an error answer with this status and code; returns the message.
    pub fn err(&self, status: u16, code: &str) -> String {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "{} {}: expected {status} {code}, got: {}",
            self.method,
            self.path,
            self.text()
        );
        self.json["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The error code, or "" for a success.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }

    pub fn replayed(&self) -> bool {
        self.header("idempotent-replayed").as_deref() == Some("true")
    }
}

/// A streaming request body fed through a channel: no length is known, so
/// HTTP/1.1 sends it chunked, and the sender decides when each part goes.
#[derive(Debug)]
pub struct ChannelBody(pub tokio::sync::mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// A fresh idempotency key, unique in this process and across processes.
pub fn idem() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("idem-{}-{nanos}-{n}", std::process::id())
}

/// Percent-encodes a query parameter value (everything but unreserved).
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string from pairs, each value percent-encoded.
pub fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 3339 UTC (`2026-11-21T10:00:00Z`) of a Unix time in seconds.
pub fn rfc3339(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

pub fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    i64::try_from(secs).unwrap()
}

/// RFC 3339 of now plus `secs` (negative: in the past).
pub fn rfc3339_in(secs: i64) -> String {
    rfc3339(unix_now() + secs)
}

/// Whether a text is an RFC 3339 UTC timestamp as the API prints them.
pub fn is_timestamp(v: &Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    let b = s.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && s.ends_with('Z')
}

/// An exact decimal from a JSON string.
pub fn dec(v: &Value) -> rust_decimal::Decimal {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("not an amount string: {v}"));
    s.parse()
        .unwrap_or_else(|e| panic!("not a decimal: {s}: {e}"))
}

/// The running server and a client for it.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// Holds the log (`stderr.log`), and the data for `start`.
    dir: TempDir,
    data: PathBuf,
    client: HttpClient,
    /// Set when the test stopped the process itself (SIGTERM).
    stopped: bool,
}

impl Server {
    /// Starts `settle serve` on a free port and waits for its line
    /// `settle listening on http://…`.
    pub async fn start() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        Self::spawn(dir, data, "warn", &[]).await
    }

    /// Starts `settle serve` on a data directory the caller keeps (created
    /// on first start; restarts reuse it, with the same admin key). The
    /// log is at `info` (it holds the `recovered from the log` line, see
    /// `recovered`) and is this run's own: every start gets a fresh log
    /// file, checked for panics and ERROR lines when the `Server` drops.
    pub async fn start_in(data: &Path) -> Server {
        Self::start_in_with(data, &[]).await
    }

    /// `start_in` with more arguments for `settle serve`.
    pub async fn start_in_with(data: &Path, args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::spawn(dir, data.to_path_buf(), "info", args).await
    }

    /// `start` with more arguments for `settle serve`.
    pub async fn start_with(args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        Self::spawn(dir, data, "warn", args).await
    }

    /// Spawns the server on `data`, its standard error in `dir/stderr.log`.
    async fn spawn(dir: TempDir, data: PathBuf, rust_log: &str, extra: &[&str]) -> Server {
        let log = std::fs::File::create(dir.path().join("stderr.log")).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_settle"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .args(extra)
            .env("SETTLE_ADMIN_KEY", ADMIN_KEY)
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn settle");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            // Keep draining so that the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(20)))
            .await
            .expect("join");
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let log =
                    std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
                panic!("settle did not say where it listens within 20 s ({e}); its log:\n{log}");
            }
        };
        let addr: SocketAddr = line
            .strip_prefix("settle listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
        let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        Server {
            child: Some(child),
            addr,
            dir,
            data,
            client,
            stopped: false,
        }
    }

    /// The data directory this server runs on.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Kills the process with SIGKILL (through `kill -9`) and waits for it
    /// to be gone: a crash, with no chance to flush anything. Its log is
    /// still checked when the `Server` drops.
    pub fn kill9(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if child.try_wait().expect("try_wait").is_none() {
            let status = Command::new("kill")
                .args(["-KILL", &child.id().to_string()])
                .status()
                .expect("run kill");
            assert!(status.success(), "kill -KILL failed: {status}");
        }
        child.wait().expect("wait for the killed server");
        self.stopped = true;
    }

    /// The fields of the `recovered from the log` line the server logs at
    /// start (at INFO; `start_in` runs with that level).
    pub fn recovered(&self) -> Recovered {
        let log = self.log();
        log.lines()
            .map(strip_ansi)
            .find(|l| l.contains("recovered from the log"))
            .map(|l| Recovered::parse(&l))
            .unwrap_or_else(|| panic!("no `recovered from the log` line in the log:\n{log}"))
    }

    /// A handle for requests from other tasks, which fails instead of
    /// panicking when the server does not answer (see `Endpoint::try_send`).
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            addr: self.addr,
            client: self.client.clone(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// What the server wrote to standard error so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Sends SIGTERM (through `kill`: no libc here).
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// The process's exit status if it has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().expect("try_wait"))
    }

    /// Waits up to `within` for the process to exit.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.try_exit() {
                self.stopped = true;
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends one request with exactly these headers and body, and checks the
    /// answer against the conventions every answer must follow.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &[u8])],
        body: impl Into<Bytes>,
    ) -> Resp {
        let body: Bytes = body.into();
        self.send_body(method, path, headers, Full::new(body).boxed())
            .await
    }

    /// As `send`, with any body (e.g. a `ChannelBody`).
    pub async fn send_body(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &[u8])],
        body: BoxBody<Bytes, Infallible>,
    ) -> Resp {
        let shown = clip(path, 200);
        let mut req = Request::builder()
            .method(method.clone())
            .uri(self.url(path))
            .body(body)
            .unwrap_or_else(|e| panic!("cannot build {method} {shown}: {e}"));
        for (name, value) in headers {
            req.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_bytes(value).expect("header value"),
            );
        }
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let resp = self
                .client
                .request(req)
                .await
                .unwrap_or_else(|e| panic!("{method} {shown}: no answer: {e:?}"));
            let (parts, body) = resp.into_parts();
            let bytes = body
                .collect()
                .await
                .unwrap_or_else(|e| panic!("{method} {shown}: body: {e}"))
                .to_bytes();
            (parts, bytes)
        })
        .await;
        let (parts, bytes) = answer
            .unwrap_or_else(|_| panic!("{method} {shown}: no answer within {REQUEST_TIMEOUT:?}"));
        check_answer(method, path, parts.status.as_u16(), parts.headers, bytes)
    }

    /// `send` with `&str` headers.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let headers: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        self.send(method, path, &headers, body).await
    }

    pub async fn get(&self, path: &str, key: &str) -> Resp {
        self.raw("GET", path, &[("x-api-key", key)], Bytes::new())
            .await
    }

    /// A write with a JSON body (`Content-Type: application/json`).
    pub async fn write(
        &self,
        method: &str,
        path: &str,
        key: &str,
        idem_key: &str,
        body: &str,
    ) -> Resp {
        self.raw(
            method,
            path,
            &[
                ("x-api-key", key),
                ("x-idempotency-key", idem_key),
                ("content-type", "application/json"),
            ],
            Bytes::from(body.to_owned()),
        )
        .await
    }

    pub async fn post(&self, path: &str, key: &str, idem_key: &str, body: &str) -> Resp {
        self.write("POST", path, key, idem_key, body).await
    }

    pub async fn put(&self, path: &str, key: &str, idem_key: &str, body: &str) -> Resp {
        self.write("PUT", path, key, idem_key, body).await
    }

    /// POST with a fresh idempotency key.
    pub async fn post_json(&self, path: &str, key: &str, body: &Value) -> Resp {
        self.post(path, key, &idem(), &body.to_string()).await
    }

    /// PUT with a fresh idempotency key.
    pub async fn put_json(&self, path: &str, key: &str, body: &Value) -> Resp {
        self.put(path, key, &idem(), &body.to_string()).await
    }

    /// POST with a fresh idempotency key and no body (the actions).
    pub async fn post_empty(&self, path: &str, key: &str) -> Resp {
        let k = idem();
        self.raw(
            "POST",
            path,
            &[("x-api-key", key), ("x-idempotency-key", &k)],
            Bytes::new(),
        )
        .await
    }

    // ---- admin ----

    pub async fn admin_get(&self, path: &str) -> Resp {
        self.get(path, ADMIN_KEY).await
    }

    /// Creates a client; returns (client id, API key).
    pub async fn admin_create_client(&self, name: &str) -> (String, String) {
        let r = self
            .raw(
                "POST",
                "/v1/admin/clients",
                &[
                    ("x-api-key", ADMIN_KEY),
                    ("content-type", "application/json"),
                ],
                json!({ "name": name }).to_string(),
            )
            .await;
        let d = r.ok(201);
        (
            d["id"].as_str().expect("id").to_owned(),
            d["apiKey"].as_str().expect("apiKey").to_owned(),
        )
    }

    /// A new client's API key.
    pub async fn client_key(&self) -> String {
        self.admin_create_client("test client").await.1
    }

    pub async fn audit(&self) -> Value {
        self.admin_get("/v1/admin/audit").await.ok(200)
    }

    // ---- client ----

    /// A single-asset wallet in `ccy`; returns its id.
    pub async fn create_wallet(&self, key: &str, ccy: &str) -> String {
        let r = self
            .post_json("/v1/wallets", key, &json!({ "ccyCode": ccy }))
            .await;
        r.ok(201)["id"].as_str().expect("wallet id").to_owned()
    }

    /// A wallet holding several assets; returns its id.
    pub async fn create_multi_wallet(&self, key: &str, assets: &[&str]) -> String {
        let r = self
            .post_json("/v1/wallets", key, &json!({ "assets": assets }))
            .await;
        r.ok(201)["id"].as_str().expect("wallet id").to_owned()
    }

    pub async fn wallet(&self, key: &str, wallet: &str) -> Value {
        self.get(&format!("/v1/wallets/{wallet}"), key)
            .await
            .ok(200)
    }

    /// A settled credit; returns the transaction.
    pub async fn credit(&self, key: &str, wallet: &str, asset: &str, amount: &str) -> Value {
        let r = self
            .post_json(
                &format!("/v1/wallets/{wallet}/credits"),
                key,
                &json!({ "asset": asset, "amount": amount }),
            )
            .await;
        let t = r.ok(201);
        assert_eq!(t["status"], "settled", "{t}");
        t
    }

    /// A debit (queued if it does not fit); returns the answer.
    pub async fn debit(&self, key: &str, wallet: &str, asset: &str, amount: &str) -> Resp {
        self.post_json(
            &format!("/v1/wallets/{wallet}/debits"),
            key,
            &json!({ "asset": asset, "amount": amount }),
        )
        .await
    }

    /// The balance of one asset of a wallet.
    pub async fn balance(&self, key: &str, wallet: &str, asset: &str) -> Value {
        let b = self
            .get(&format!("/v1/wallets/{wallet}/balance"), key)
            .await
            .ok(200);
        b["balances"]
            .as_array()
            .expect("balances")
            .iter()
            .find(|x| x["asset"] == asset)
            .cloned()
            .unwrap_or_else(|| panic!("no {asset} in {b}"))
    }

    /// Waits (up to 10 s) until a balance field has this value, and
    /// asserts it. Transfers and conversions answer once the source has
    /// paid; the destination is credited a moment later (the money is in
    /// flight meanwhile, ARCHITECTURE.md "The transfer protocol").
    pub async fn wait_balance(
        &self,
        key: &str,
        wallet: &str,
        asset: &str,
        field: &str,
        want: &str,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let b = self.balance(key, wallet, asset).await;
            if b[field] == want {
                return b;
            }
            if Instant::now() >= deadline {
                panic!("{asset} {field} of {wallet} is still not {want} after 10 s: {b}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The audit once nothing is in flight (waits up to 10 s).
    pub async fn quiet_audit(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let a = self.audit().await;
            let quiet = a["assets"].as_array().is_some_and(|rows| {
                rows.iter().all(|r| {
                    r["inFlight"]
                        .as_str()
                        .is_some_and(|s| dec(&json!(s)).is_zero())
                })
            });
            if quiet {
                return a;
            }
            if Instant::now() >= deadline {
                panic!("money still in flight after 10 s: {a}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn txn(&self, key: &str, id: &str) -> Value {
        self.get(&format!("/v1/transactions/{id}"), key)
            .await
            .ok(200)
    }

    /// Asserts the server still answers `/healthz`.
    pub async fn assert_healthy(&self) {
        let r = self.raw("GET", "/healthz", &[], Bytes::new()).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(&r.body[..], br#"{"status":"ok"}"#);
    }
}

/// The checks every answer must pass (see the module's comment).
fn check_answer(method: Method, path: &str, status: u16, headers: HeaderMap, body: Bytes) -> Resp {
    let shown = clip(&String::from_utf8_lossy(&body), 2_000);
    assert!(status != 500, "{method} {path}: 500 is a defect: {shown}");
    let ct = headers
        .get("content-type")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let bare_path = path.split('?').next().unwrap_or(path);
    let path = clip(path, 200);
    let path = path.as_str();
    let mut resp = Resp {
        method: method.clone(),
        path: path.to_owned(),
        status,
        headers,
        body,
        json: Value::Null,
    };
    if method == Method::GET && bare_path == "/metrics" && status == 200 {
        assert!(
            ct.starts_with("text/plain"),
            "GET /metrics: content-type {ct:?}"
        );
        return resp;
    }
    assert_eq!(
        ct, "application/json",
        "{method} {path} answered {status} with content-type {ct:?}: {shown}"
    );
    if method == Method::HEAD {
        assert!(resp.body.is_empty(), "HEAD {path}: a body: {shown}");
        return resp;
    }
    let json: Value = serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("{method} {path} answered {status}, not JSON ({e}): {shown}"));
    let obj = json
        .as_object()
        .unwrap_or_else(|| panic!("{method} {path}: not a JSON object: {shown}"));
    if status >= 400 {
        let err = obj
            .get("error")
            .and_then(Value::as_object)
            .unwrap_or_else(|| {
                panic!("{method} {path}: {status} without an error envelope: {shown}")
            });
        assert_eq!(
            obj.len(),
            1,
            "{method} {path}: extra top-level keys: {shown}"
        );
        assert!(
            err.get("code").is_some_and(Value::is_string)
                && err.get("message").is_some_and(Value::is_string),
            "{method} {path}: error without code and message: {shown}"
        );
    } else if bare_path == "/healthz" {
        assert_eq!(&resp.body[..], br#"{"status":"ok"}"#, "{shown}");
    } else {
        assert!(
            obj.contains_key("data"),
            "{method} {path}: {status} without a data envelope: {shown}"
        );
        assert!(
            obj.keys().all(|k| k == "data" || k == "meta"),
            "{method} {path}: unexpected top-level keys: {shown}"
        );
    }
    resp.json = json;
    resp
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if !self.stopped {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            if !log.is_empty() {
                eprintln!("---- settle's log ----\n{log}");
            }
            return;
        }
        let log = self.log();
        assert!(
            !log.contains("panicked"),
            "the server panicked; its log:\n{log}"
        );
        assert!(
            !log.contains("ERROR"),
            "the server logged an error; its log:\n{log}"
        );
    }
}

// ---- crashes and recovery (tests/crash.rs) ----

/// `GET /v1/admin/digest`: (digest, wallets, messages in flight).
pub async fn live_digest(srv: &Server) -> (String, u64, u64) {
    let d = srv.admin_get("/v1/admin/digest").await.ok(200);
    (
        d["digest"].as_str().expect("digest").to_owned(),
        d["wallets"].as_u64().expect("wallets"),
        d["inFlight"].as_u64().expect("inFlight"),
    )
}

/// Waits until nothing is in flight and the digest holds still across two
/// reads 200 ms apart; returns that digest.
pub async fn wait_quiet(ctx: &str, srv: &Server) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (a, _, in_flight) = live_digest(srv).await;
        if in_flight == 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (b, _, in_flight) = live_digest(srv).await;
            if in_flight == 0 && a == b {
                return a;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{ctx}: the server did not come to rest within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A log line without its ANSI colour codes (the server colours its log
/// even into a file).
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC '[' parameters, ended by a byte in '@'..='~'.
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The value of `name=value` among the words of a log line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
}

/// What the server says it recovered at start:
/// `recovered from the log records=N wallets=W digest=<hex> …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Records replayed (after the snapshot recovery started from, if any).
    pub records: u64,
    /// The log position the state was recovered to.
    pub position: u64,
    pub wallets: u64,
    pub digest: String,
}

impl Recovered {
    fn parse(line: &str) -> Recovered {
        let num = |name: &str| -> u64 {
            field(line, name)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no number {name}= in {line:?}"))
        };
        Recovered {
            records: num("records"),
            position: num("position"),
            wallets: num("wallets"),
            digest: field(line, "digest")
                .unwrap_or_else(|| panic!("no digest= in {line:?}"))
                .to_owned(),
        }
    }
}

/// What `settle wal verify --data-dir D` found: its exit, its output, and
/// its last line `replay: N records, W wallets, state digest <hex>` (the
/// state a replay from scratch rebuilds).
#[derive(Debug, Clone)]
pub struct WalVerify {
    /// Exit 0: the log is clean.
    pub clean: bool,
    /// The report names a torn tail (which the server cuts by itself, so
    /// the log still opens; verify then exits 1).
    pub torn_tail: bool,
    pub records: u64,
    pub wallets: u64,
    pub digest: String,
    /// The log position the replay reached.
    pub position: u64,
    pub output: String,
}

/// Runs `settle wal verify --data-dir D` (the server must be stopped) and
/// parses its replay line; panics if there is none.
pub fn wal_verify(data: &Path) -> WalVerify {
    let out = Command::new(env!("CARGO_BIN_EXE_settle"))
        .args(["wal", "verify", "--data-dir"])
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .expect("run settle wal verify");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let parse = || -> Option<(u64, u64, String, u64)> {
        // replay: N records, W wallets, state digest <hex>, position P, from …
        let rest = last.strip_prefix("replay: ")?;
        let mut parts = rest.split(", ");
        let records = parts.next()?.strip_suffix(" records")?.parse().ok()?;
        let wallets = parts.next()?.strip_suffix(" wallets")?.parse().ok()?;
        let digest = parts
            .next()?
            .strip_prefix("state digest ")?
            .trim()
            .to_owned();
        let position = parts.next()?.strip_prefix("position ")?.parse().ok()?;
        let hex = digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit());
        hex.then_some((records, wallets, digest, position))
    };
    let (records, wallets, digest, position) = parse().unwrap_or_else(|| {
        panic!(
            "settle wal verify ({}) printed no replay line; its output:\n{output}",
            out.status
        )
    });
    WalVerify {
        clean: out.status.success(),
        torn_tail: output.contains("torn tail"),
        records,
        wallets,
        digest,
        position,
        output,
    }
}

/// Why `Endpoint::try_send` got no answer.
#[derive(Debug, Clone)]
pub enum NoAnswer {
    /// No connection, or it broke before the whole answer arrived.
    Connection(String),
    /// No answer within `REQUEST_TIMEOUT`.
    Timeout,
}

/// The server's address and a client, cheap to clone into tasks. Unlike
/// `Server::send`, `try_send` returns an error when no answer comes (the
/// server may have been killed meanwhile); answers that do come are
/// checked as every answer is.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    client: HttpClient,
}

impl Endpoint {
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Resp, NoAnswer> {
        let body: Bytes = body.into();
        let shown = clip(path, 200);
        let mut req = Request::builder()
            .method(method.clone())
            .uri(format!("http://{}{path}", self.addr))
            .body(Full::new(body).boxed())
            .unwrap_or_else(|e| panic!("cannot build {method} {shown}: {e}"));
        for (name, value) in headers {
            req.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_str(value).expect("header value"),
            );
        }
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| NoAnswer::Connection(format!("{e:?}")))?;
            let (parts, body) = resp.into_parts();
            let bytes = body
                .collect()
                .await
                .map_err(|e| NoAnswer::Connection(format!("body: {e}")))?
                .to_bytes();
            Ok((parts, bytes))
        })
        .await
        .map_err(|_| NoAnswer::Timeout)?;
        let (parts, bytes) = answer?;
        Ok(check_answer(
            method,
            path,
            parts.status.as_u16(),
            parts.headers,
            bytes,
        ))
    }
}

/// A small deterministic random source for tests (xorshift64*, seeded
/// through splitmix64 so that nearby seeds give unrelated streams).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        let n64 = u64::try_from(n).unwrap_or(u64::MAX).max(1);
        usize::try_from(self.next() % n64).unwrap_or(0)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}
