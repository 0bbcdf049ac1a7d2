//! The HTTP side of `settle load`: the target address, and one keep-alive
//! HTTP/1.1 connection per task on hyper's low-level client
//! (`client::conn::http1`), so the number of connections is exactly the
//! number asked for. A connection that fails is replaced on the next
//! request.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// A checked `--url`: `http://HOST[:PORT]`, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// `http://host:port`, for messages.
    pub shown: String,
    /// As written: a name, an IPv4 address, or `[v6]`.
    pub host: String,
    pub port: u16,
}

/// Checks `--url` before anything runs (a bad one is an option that cannot
/// run: exit 2). Messages never repeat a password written in the URL.
pub fn parse_base_url(text: &str) -> Result<BaseUrl, String> {
    let example = "http://HOST:PORT, e.g. http://127.0.0.1:8080";
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(format!("--url `{text}` needs a scheme: {example}"));
    };
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(format!(
            "--url: only plain http:// is supported, not {scheme}:// ({example})"
        ));
    }
    // Userinfo: refused, and never echoed back (it may hold a password).
    if let Some(at) = rest.find('@') {
        let after = &rest[at + 1..];
        return Err(format!(
            "--url http://…@{after}: a user or password in the URL is not supported (settle uses API keys)"
        ));
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return Err(format!(
            "--url `{text}`: give the server's base URL without a path or query ({example})"
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("--url `{text}`: an IPv6 address needs its closing `]`"))?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("--url `{text}`: `{addr}` is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| {
                format!("--url `{text}`: expected `:PORT` after the IPv6 address")
            })?),
        };
        (format!("[{addr}]"), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let ok = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.';
        if host.is_empty() || !host.bytes().all(ok) {
            return Err(format!(
                "--url `{text}`: `{host}` is not a host name or address ({example})"
            ));
        }
        (host.to_owned(), port)
    };
    let port = match port {
        None => 80,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|n| *n > 0 && p.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("--url `{text}`: `{p}` is not a port (1 to 65535)"))?,
    };
    Ok(BaseUrl {
        shown: format!("http://{host}:{port}"),
        host,
        port,
    })
}

/// Where the server is.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL, for messages.
    pub url: String,
    pub addr: SocketAddr,
    /// The `Host` header (`host:port`).
    pub host: HeaderValue,
}

impl Target {
    /// Resolves the (checked) host once.
    pub async fn resolve(url: &BaseUrl) -> Result<Target, String> {
        let bare = url.host.trim_start_matches('[').trim_end_matches(']');
        let addr = tokio::net::lookup_host((bare, url.port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", url.host))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", url.host))?;
        let host = HeaderValue::from_str(&format!("{}:{}", url.host, url.port))
            .map_err(|e| format!("--url `{}`: bad host: {e}", url.shown))?;
        Ok(Target {
            url: url.shown.clone(),
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
    /// The run was interrupted before the answer came.
    Interrupted,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "cannot connect: {e}"),
            SendError::Broken(e) => write!(f, "connection broken: {e}"),
            SendError::Timeout => f.write_str("no answer within the timeout"),
            SendError::Interrupted => f.write_str("no answer before the run was interrupted"),
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

    /// Opens the connection now if it is not open (before a run, so that
    /// its first request does not pay for the connect).
    pub async fn connect(&mut self) -> Result<(), SendError> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            self.sender = Some(self.open().await?);
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_passwords_never_echoed() {
        let u = parse_base_url("http://127.0.0.1:8080/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 8080));
        assert_eq!(u.shown, "http://127.0.0.1:8080");
        let u = parse_base_url("HTTP://[::1]:9").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("[::1]", 9));
        assert_eq!(parse_base_url("http://example.com").unwrap().port, 80);
        for (bad, says) in [
            ("127.0.0.1:8080", "needs a scheme"),
            ("not a url", "needs a scheme"),
            ("https://127.0.0.1:1", "only plain http"),
            ("ftp://x", "only plain http"),
            ("http://", "not a host"),
            ("http://[::1", "closing `]`"),
            ("http://[zz]:1", "not an IPv6"),
            ("http://h:1/v1", "without a path"),
            ("http://h:1?x=1", "without a path"),
            ("http://127.0.0.1:99999", "not a port"),
            ("http://127.0.0.1:0", "not a port"),
            ("http://127.0.0.1:+80", "not a port"),
            ("http://a b:1", "not a host"),
            ("http://user:s3cret@host:1", "user or password"),
        ] {
            let e = parse_base_url(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(!e.contains("s3cret"), "{bad}: {e}");
        }
    }
}
