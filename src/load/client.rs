//! The HTTP side of `settle load`: the target address, and one keep-alive
//! HTTP/1.1 connection per task on hyper's low-level client
//! (`client::conn::http1`), so the number of connections is exactly the
//! number asked for. A connection that fails is replaced on the next
//! request.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// Where the server is.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given, for messages.
    pub url: String,
    pub addr: SocketAddr,
    /// The `Host` header (`host:port`).
    pub host: HeaderValue,
}

impl Target {
    /// Parses `http://host[:port]` and resolves the host once.
    pub async fn resolve(url: &str) -> Result<Target, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("--url `{url}` is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "--url `{url}`: only plain http is supported, not {other}"
                ));
            }
            None => return Err(format!("--url `{url}` needs a scheme: http://HOST:PORT")),
        }
        let host = uri
            .host()
            .ok_or_else(|| format!("--url `{url}` has no host"))?;
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(format!(
                "--url `{url}`: give the server's base URL without a path (http://HOST:PORT)"
            ));
        }
        let port = uri.port_u16().unwrap_or(80);
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addr = tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} resolves to no address"))?;
        let host = HeaderValue::from_str(&format!("{host}:{port}"))
            .map_err(|e| format!("--url `{url}`: bad host: {e}"))?;
        Ok(Target {
            url: url.trim_end_matches('/').to_owned(),
            addr,
            host,
        })
    }
}

/// A request that got no answer.
#[derive(Debug, Clone)]
pub enum SendError {
    /// No connection could be opened.
    Connect(String),
    /// The connection broke before the whole answer arrived.
    Broken(String),
    /// No answer within the timeout.
    Timeout,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "cannot connect: {e}"),
            SendError::Broken(e) => write!(f, "connection broken: {e}"),
            SendError::Timeout => f.write_str("no answer within the timeout"),
        }
    }
}

/// An answer: status and the whole body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The `error.code` of an error answer, or `""`.
    pub fn error_code(&self) -> String {
        #[derive(serde::Deserialize)]
        struct Envelope {
            error: Code,
        }
        #[derive(serde::Deserialize)]
        struct Code {
            code: String,
        }
        serde_json::from_slice::<Envelope>(&self.body)
            .map(|e| e.error.code)
            .unwrap_or_default()
    }

    /// The first 300 characters of the body, for messages.
    pub fn excerpt(&self) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .take(300)
            .collect()
    }
}

/// Headers every request of a run carries.
pub static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
pub static X_IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("x-idempotency-key");
static JSON: HeaderValue = HeaderValue::from_static("application/json");

/// One HTTP/1.1 connection, opened on first use and reopened after a
/// failure.
#[derive(Debug)]
pub struct Conn {
    target: Arc<Target>,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// The wait after a failed attempt to connect, before the next request
    /// (zero while connecting works).
    backoff: Duration,
    /// Connections opened (the first, and any replacement).
    pub opened: u64,
}

/// The first wait after a refused connection, and the longest. Without it,
/// a connection to a dead server retried as fast as the refusals came
/// (~50,000 attempts/s), burning a core of the machine it measures on.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(200);

impl Conn {
    pub fn new(target: Arc<Target>, timeout: Duration) -> Conn {
        Conn {
            target,
            timeout,
            sender: None,
            backoff: Duration::ZERO,
            opened: 0,
        }
    }

    async fn open(&mut self) -> Result<SendRequest<Full<Bytes>>, SendError> {
        let stream = tokio::time::timeout(self.timeout, TcpStream::connect(self.target.addr))
            .await
            .map_err(|_| SendError::Connect("timed out".into()))?
            .map_err(|e| SendError::Connect(e.to_string()))?;
        // Small requests, one at a time: do not let Nagle hold them back.
        stream
            .set_nodelay(true)
            .map_err(|e| SendError::Connect(e.to_string()))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Connect(e.to_string()))?;
        // The connection's I/O runs in its own task; it ends when the
        // sender is dropped or the peer closes.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        self.opened += 1;
        Ok(sender)
    }

    /// Sends one request and reads its whole answer. On any failure the
    /// connection is dropped (the next request opens a new one). A request
    /// that could not connect returns after a wait that doubles with each
    /// such failure in a row (`FIRST_BACKOFF` to `MAX_BACKOFF`).
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        api_key: &HeaderValue,
        idempotency_key: Option<&str>,
        body: Bytes,
    ) -> Result<Answer, SendError> {
        let result = tokio::time::timeout(
            self.timeout,
            self.exchange(method, path, api_key, idempotency_key, body),
        )
        .await
        .unwrap_or(Err(SendError::Timeout));
        match &result {
            Ok(_) => self.backoff = Duration::ZERO,
            Err(e) => {
                self.sender = None;
                if let SendError::Connect(_) = e {
                    self.backoff = (self.backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
                    tokio::time::sleep(self.backoff).await;
                }
            }
        }
        result
    }

    async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        api_key: &HeaderValue,
        idempotency_key: Option<&str>,
        body: Bytes,
    ) -> Result<Answer, SendError> {
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.open().await?,
        };
        sender
            .ready()
            .await
            .map_err(|e| SendError::Broken(e.to_string()))?;
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.target.host.clone())
            .header(&X_API_KEY, api_key.clone());
        if !body.is_empty() {
            builder = builder.header(CONTENT_TYPE, JSON.clone());
        }
        if let Some(key) = idempotency_key {
            builder = builder.header(&X_IDEMPOTENCY_KEY, key);
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| SendError::Broken(format!("cannot build the request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| SendError::Broken(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| SendError::Broken(e.to_string()))?
            .to_bytes();
        self.sender = Some(sender);
        Ok(Answer { status, body })
    }
}
