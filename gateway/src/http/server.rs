//! The socket side: accept, HTTP/1.1 and HTTP/2 (hyper-util's auto
//! builder), explicit limits, request logs and metrics, graceful shutdown.
//!
//! Limits: at most `max_connections` at once (past it the listener is not
//! polled, so new connections wait in the kernel's backlog); request
//! headers must arrive within `header_read_timeout`; a body of at most
//! `App::limits.max_body` bytes (`max_batch_body` for a batch) must arrive,
//! and the answer be ready, within `request_timeout` (else 503; nothing is
//! done if the body did not arrive; an operation already routed still finishes
//! and is recorded for its idempotency key). Routes whose work is bounded
//! elsewhere answer when it is done (`App::outlasts_request_timeout`).

use crate::http::app::{App, Outcome, Request};
use crate::http::reply::{ApiError, Reply};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    /// How long shutdown waits for accepted requests to finish.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    /// Serves `app` on `listener` until `shutdown`.
    pub fn start(
        app: Arc<App>,
        listener: TcpListener,
        config: ServerConfig,
    ) -> std::io::Result<Server> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(app, listener, Arc::new(config), stopped));
        Ok(Server { addr, stop, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets accepted requests finish (up to the grace
    /// period), and returns when the connections are closed.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the accept loop failed");
        }
    }
}

async fn accept_loop(
    app: Arc<App>,
    listener: TcpListener,
    config: Arc<ServerConfig>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(config.max_connections.max(1)));
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stopped.changed() => break,
        };
        let (stream, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors, a reset before accept: wait a
                    // moment rather than spin, and go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(&app);
        let cfg = Arc::clone(&config);
        let service = hyper::service::service_fn(move |req| {
            let app = Arc::clone(&app);
            let cfg = Arc::clone(&cfg);
            async move { Ok::<_, Infallible>(serve_one(app, cfg, req).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A client that hangs up or speaks bad HTTP ends its connection
            // only; nothing to report above debug.
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(config.shutdown_grace) => {
            tracing::warn!("shutdown: connections still open after the grace period; closing");
        }
    }
}

/// The most a request's body may hold: more for a batch, which holds up to
/// `max_batch` operations.
fn body_limit(app: &App, parts: &hyper::http::request::Parts) -> usize {
    if parts.uri.path() == "/v1/batch" {
        app.limits.max_batch_body
    } else {
        app.limits.max_body
    }
}

fn header(parts: &hyper::http::request::Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

async fn serve_one(
    app: Arc<App>,
    cfg: Arc<ServerConfig>,
    req: hyper::Request<Incoming>,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let deadline = tokio::time::Instant::now() + cfg.request_timeout;
    let timed_out = || {
        unrouted(ApiError::unavailable(format!(
            "the request did not finish within {} s; an operation it started is kept for its idempotency key",
            cfg.request_timeout.as_secs()
        )))
    };
    let outcome =
        match tokio::time::timeout_at(deadline, read_body(&parts, body, body_limit(&app, &parts)))
            .await
        {
            // Nothing has started: say so, rather than speak of an operation.
            Err(_) => unrouted(ApiError::unavailable(format!(
                "the request's body did not arrive within {} s; nothing was done",
                cfg.request_timeout.as_secs()
            ))),
            Ok(Err(e)) => unrouted(e),
            Ok(Ok(body)) => {
                let request = Request {
                    method: parts.method.clone(),
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().map(str::to_owned),
                    api_key: header(&parts, "x-api-key"),
                    idempotency_key: header(&parts, "x-idempotency-key"),
                    content_type: header(&parts, "content-type"),
                    body,
                };
                if app.outlasts_request_timeout(&request) {
                    app.handle(request).await
                } else {
                    tokio::time::timeout_at(deadline, app.handle(request))
                        .await
                        .unwrap_or_else(|_| timed_out())
                }
            }
        };
    let elapsed = started.elapsed();
    let status = outcome.reply.status;
    tracing::debug!(
        target: "settle::http",
        method = %method,
        route = outcome.route,
        status = status.as_u16(),
        micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        replayed = outcome.replayed,
    );
    metrics::counter!(
        "settle_http_requests_total",
        "route" => outcome.route,
        "method" => method_label(&method),
        "status" => status.as_str().to_owned()
    )
    .increment(1);
    metrics::histogram!("settle_http_request_duration_seconds", "route" => outcome.route)
        .record(elapsed.as_secs_f64());
    respond(outcome)
}

/// Methods as a metrics label: made-up methods share one value, so that a
/// client cannot grow the label set without end.
fn method_label(m: &hyper::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

fn unrouted(e: ApiError) -> Outcome {
    Outcome {
        reply: Reply::from(e),
        replayed: false,
        allow: None,
        route: "unmatched",
        metrics: false,
    }
}

/// The largest oversized body read and dropped before the 413 (see
/// `read_body`).
const DRAIN_LIMIT: u64 = 4 * 1024 * 1024;

async fn read_body(
    parts: &hyper::http::request::Parts,
    body: Incoming,
    max: usize,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {max} bytes"),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > max as u64) {
        // Read (and drop) a moderately oversized body before answering, so
        // that a client still writing it reads the 413 instead of a broken
        // pipe; past `DRAIN_LIMIT`, answer at once and let it break.
        if n <= DRAIN_LIMIT {
            let mut body = body;
            while let Some(Ok(_)) = body.frame().await {}
        }
        return Err(too_large());
    }
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::invalid_request(format!(
            "the body could not be read: {e}"
        ))),
    }
}

fn respond(outcome: Outcome) -> Response<Full<Bytes>> {
    let content_type = if outcome.metrics {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "application/json"
    };
    let mut response = Response::new(Full::new(outcome.reply.body));
    *response.status_mut() = outcome.reply.status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if outcome.replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if let Some(allow) = outcome.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
        headers.insert(header::ALLOW, allow);
    }
    response
}
