//! One request, from its parsed parts to its answer: routing, auth,
//! content type, idempotency, then the handler. No sockets here (see
//! `server`), so that the whole path is testable without a listener.

use crate::answer_body::AnswerBody;
use crate::directory::Directory;
use crate::http::auth::{Keys, Principal};
use crate::http::handlers;
use crate::http::idempotency::{self, Begin, Fingerprint, IdempotencyStore};
use crate::http::reply::{ApiError, Reply};
use crate::http::router::{Matched, Route, Router};
use crate::journal::{Journal, Record};
use crate::{Gateway, GatewayError, Submitted, SubmittedMany};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use parking_lot::Mutex;
use settle_engine::actor::{Ack, Clock};
use settle_engine::{ClientId, Op, Timestamp};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};
use ulid::Ulid;

/// A request as the app sees it: the parts that matter, body read in full.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub api_key: Option<String>,
    pub idempotency_key: Option<String>,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// An answer and what the connection needs to know about it.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub reply: Reply,
    /// Answered again from the idempotency store.
    pub replayed: bool,
    /// For 405: the methods the path answers.
    pub allow: Option<String>,
    /// The route's template (or a fixed word), for logs and metrics.
    pub route: &'static str,
    /// Prometheus text rather than JSON.
    pub metrics: bool,
}

impl Outcome {
    fn plain(reply: Reply, route: &'static str) -> Self {
        Self {
            reply,
            replayed: false,
            allow: None,
            route,
            metrics: false,
        }
    }
}

/// Mints ids: ULIDs, monotonic within this process, so that ids sort in
/// the order they were made (history cursors rely on it).
pub struct IdMint(Mutex<ulid::Generator>);

impl std::fmt::Debug for IdMint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdMint")
    }
}

impl IdMint {
    pub fn new() -> Self {
        Self(Mutex::new(ulid::Generator::new()))
    }

    pub fn next(&self, at: Timestamp) -> Ulid {
        let ms = u64::try_from(at.millis()).unwrap_or(0);
        let t = UNIX_EPOCH + Duration::from_millis(ms);
        // Overflow of the random part within one millisecond is the only
        // error (2^80 ids): a fresh random id then is still unique.
        self.0
            .lock()
            .generate_from_datetime(t)
            .unwrap_or_else(|_| Ulid::from_datetime(t))
    }
}

impl Default for IdMint {
    fn default() -> Self {
        Self::new()
    }
}

/// One client request: who asks, and where its ids come from. An
/// idempotent request's ids are recorded in a claim before its first
/// command runs; a retry after a crash mints the claimed ids again, so a
/// command that did reach the log is recognised by its id, not run twice.
#[derive(Debug)]
pub struct Cx {
    pub client: ClientId,
    /// The idempotency key and fingerprint, for the claim.
    tag: Option<(String, Fingerprint)>,
    ids: Mutex<Ids>,
    /// Set once a command was sent with `Ack::Applied`.
    applied: AtomicBool,
}

#[derive(Debug, Default)]
struct Ids {
    claimed: Option<Arc<[u128]>>,
    minted: Vec<u128>,
    /// How many of `minted` a claim in the log covers.
    covered: usize,
}

impl Cx {
    pub fn new(client: ClientId) -> Self {
        Self {
            client,
            tag: None,
            ids: Mutex::new(Ids::default()),
            applied: AtomicBool::new(false),
        }
    }

    fn idempotent(
        client: ClientId,
        key: String,
        fingerprint: Fingerprint,
        claimed: Option<&[u128]>,
    ) -> Self {
        let claimed: Option<Arc<[u128]>> = claimed.map(Arc::from);
        let covered = claimed.as_ref().map_or(0, |c| c.len());
        Self {
            client,
            tag: Some((key, fingerprint)),
            ids: Mutex::new(Ids {
                claimed,
                minted: Vec::new(),
                covered,
            }),
            applied: AtomicBool::new(false),
        }
    }

    /// The next id of this request: the claimed one in its place, if any.
    pub fn mint(&self, app: &App) -> Ulid {
        let mut ids = self.ids.lock();
        let i = ids.minted.len();
        let id = match ids.claimed.as_ref().and_then(|c| c.get(i)) {
            Some(&n) => Ulid(n),
            None => app.ids.next(app.now()),
        };
        ids.minted.push(id.0);
        id
    }

    /// Routes one command of this request. An idempotent request with a
    /// log makes its answer (or a sync point) durable before it is
    /// acknowledged, which covers its commands' events: they are answered as
    /// soon as they are applied (`Ack::Applied`), and the request waits for
    /// one group commit, not two. A command refused at the door (full disk,
    /// overload) ran nothing and does not count as answered early.
    pub fn submit(&self, app: &App, op: Op) -> Result<Submitted, GatewayError> {
        self.routed(app, |ack| app.gateway.submit(op, ack))
    }

    /// Routes several commands of this request for one wallet in one
    /// message (`Gateway::submit_many`), acknowledged as `submit` does.
    pub fn submit_many(&self, app: &App, ops: Vec<Op>) -> Result<SubmittedMany, GatewayError> {
        self.routed(app, |ack| app.gateway.submit_many(ops, ack))
    }

    /// Routes with this request's kind of acknowledgement, and remembers
    /// when a routed command will be answered before it is durable.
    fn routed<T>(
        &self,
        app: &App,
        route: impl FnOnce(Ack) -> Result<T, GatewayError>,
    ) -> Result<T, GatewayError> {
        let early = self.tag.is_some() && app.journal.is_some();
        let ack = if early { Ack::Applied } else { Ack::Durable };
        let routed = route(ack)?;
        if early {
            self.applied.store(true, Ordering::Relaxed);
        }
        Ok(routed)
    }

    /// Whether a command of this request was answered before its events
    /// were durable (the request must then wait for them).
    fn answered_early(&self) -> bool {
        self.applied.load(Ordering::Relaxed)
    }

    /// The ids a claim in the log holds for this request, if one does.
    fn logged_claim(&self) -> Option<Vec<u128>> {
        let ids = self.ids.lock();
        match (&ids.claimed, ids.covered) {
            (_, 0) => None,
            (Some(claimed), _) if claimed.len() >= ids.minted.len() => Some(claimed.to_vec()),
            _ => Some(ids.minted.clone()),
        }
    }

    /// Records the ids minted so far in a claim, before the first command
    /// runs. Not waited for: the claim precedes the commands' events in the
    /// log, so any log that holds them holds it.
    pub fn claim(&self, app: &App) -> Result<(), ApiError> {
        let (Some((key, fingerprint)), Some(journal)) = (&self.tag, &app.journal) else {
            return Ok(());
        };
        let mut ids = self.ids.lock();
        if ids.minted.len() <= ids.covered {
            return Ok(());
        }
        if let Some(why) = journal.refusal() {
            return Err(ApiError::unavailable(why));
        }
        journal.append(
            &Record::Claim {
                client: self.client,
                key: key.clone(),
                fingerprint: *fingerprint,
                at: app.now().millis(),
                ids: ids.minted.clone(),
            },
            |r| {
                if let Err(e) = r {
                    tracing::error!(error = %e, "a claim did not reach the log");
                }
            },
        );
        ids.covered = ids.minted.len();
        Ok(())
    }
}

/// Explicit limits of the front door.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    pub max_body: usize,
    /// `POST /v1/batch`'s body: room for `max_batch` operations of ~1 KiB
    /// (a transfer written plainly is ~140 bytes; 8,192 of them did not
    /// fit in `max_body`).
    pub max_batch_body: usize,
    pub max_batch: usize,
    /// Commands of one batch on their way at once.
    pub batch_window: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body: 1024 * 1024,
            max_batch_body: 8 * 1024 * 1024,
            max_batch: 8_192,
            batch_window: 512,
        }
    }
}

/// Everything a request may touch.
pub struct App {
    pub gateway: Gateway,
    pub directory: Arc<Directory>,
    pub keys: Keys,
    pub idempotency: Arc<IdempotencyStore>,
    pub ids: IdMint,
    pub limits: HttpLimits,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The write-ahead log; `None` keeps the directory and idempotency
    /// records in memory only.
    pub journal: Option<Arc<Journal>>,
    /// Takes and lists snapshots; `None`: snapshots are off.
    pub snapshots: Option<Arc<crate::snapshotter::Snapshotter>>,
    /// Pay-in addresses and webhooks.
    pub funding: Arc<crate::funding::Funding>,
    router: Router,
    clock: Arc<dyn Clock>,
    ready: AtomicBool,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

/// What an `App` is made of.
#[allow(missing_debug_implementations)]
pub struct Parts {
    pub gateway: Gateway,
    pub directory: Arc<Directory>,
    pub keys: Keys,
    pub idempotency: Arc<IdempotencyStore>,
    pub clock: Arc<dyn Clock>,
    pub limits: HttpLimits,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub journal: Option<Arc<Journal>>,
    pub snapshots: Option<Arc<crate::snapshotter::Snapshotter>>,
    pub funding: Arc<crate::funding::Funding>,
}

impl App {
    pub fn new(p: Parts) -> Result<Self, matchit::InsertError> {
        Ok(Self {
            gateway: p.gateway,
            directory: p.directory,
            keys: p.keys,
            idempotency: p.idempotency,
            ids: IdMint::new(),
            limits: p.limits,
            metrics: p.metrics,
            journal: p.journal,
            snapshots: p.snapshots,
            funding: p.funding,
            router: Router::new()?,
            clock: p.clock,
            ready: AtomicBool::new(false),
        })
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Writes a record to the log and waits until it is durable (a no-op
    /// without a log). A change is acknowledged only after this.
    pub async fn log(&self, record: &Record) -> Result<(), ApiError> {
        if let Some(why) = self.journal.as_ref().and_then(|j| j.refusal()) {
            return Err(ApiError::unavailable(why));
        }
        self.log_always(record).await
    }

    /// Waits until everything appended to the log so far is durable (a
    /// no-op without a log, and at once if it already is).
    pub async fn sync(&self) -> Result<(), ApiError> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        journal.sync_point(move |r| {
            let _ = tx.send(r);
        });
        match rx.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(ApiError::unavailable(format!(
                "the change could not be made durable: {e}"
            ))),
            Err(_) => Err(ApiError::unavailable("the log stopped before answering")),
        }
    }

    /// Writes a record even while the disk is full (the log retries until
    /// there is space): for what must follow a change that already ran.
    pub async fn log_always(&self, record: &Record) -> Result<(), ApiError> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        journal.write(record).await.map(|_| ()).map_err(|e| {
            ApiError::unavailable(format!("the change could not be made durable: {e}"))
        })
    }

    /// Recovery has finished: `/healthz` says ok.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Answers one request. The handler runs in its own task: once a
    /// command has been sent to a wallet, its answer is recorded for the
    /// idempotency key even if the client hangs up or the request times out.
    /// Whether `req` answers when its work is done rather than within the
    /// server's request timeout: creating a snapshot. Its work is bounded
    /// by the snapshot itself (it waits behind one being written, then
    /// writes its own: tens of seconds with a million wallets), and a 503
    /// while the snapshot goes on to be written would tell the operator it
    /// failed.
    pub fn outlasts_request_timeout(&self, req: &Request) -> bool {
        // Only admin paths are routed twice.
        req.path.starts_with("/v1/admin/")
            && matches!(
                self.router.at(&req.method, &req.path),
                Matched::Found(Route::CreateSnapshot, _)
            )
    }

    pub async fn handle(self: &Arc<Self>, req: Request) -> Outcome {
        let (route, template) = match self.router.at(&req.method, &req.path) {
            Matched::Found(route, template) => (route, template),
            Matched::MethodNotAllowed(methods) => {
                let e = ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!(
                        "{} is not allowed on {}; allowed: {}",
                        req.method,
                        req.path,
                        methods.join(", ")
                    ),
                );
                let mut o = Outcome::plain(e.into(), "unmatched");
                o.allow = Some(methods.join(", "));
                return o;
            }
            Matched::NotFound => {
                let e = ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no route for {} {}", req.method, req.path),
                );
                return Outcome::plain(e.into(), "unmatched");
            }
        };
        match route {
            Route::Healthz => return Outcome::plain(self.healthz(), template),
            Route::Metrics => {
                let mut o = Outcome::plain(handlers::admin::metrics(self), template);
                o.metrics = true;
                return o;
            }
            _ => {}
        }
        let principal = match self.authenticate(&req) {
            Ok(p) => p,
            Err(e) => return Outcome::plain(e.into(), template),
        };
        let admin_route = req.path.starts_with("/v1/admin/");
        let client = match (principal, admin_route) {
            (Principal::Admin, true) => None,
            (Principal::Client(c), false) => Some(c),
            (Principal::Client(_), true) => {
                let e = ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "this path needs the admin key",
                );
                return Outcome::plain(e.into(), template);
            }
            (Principal::Admin, false) => {
                let e = ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "the admin key manages clients; use a client's key for wallets and money",
                );
                return Outcome::plain(e.into(), template);
            }
        };
        if let Err(e) = check_content_type(&req) {
            return Outcome::plain(e.into(), template);
        }
        let writes = matches!(req.method, Method::POST | Method::PUT);
        if client.is_some()
            && !writes
            && let Some(why) = self.journal.as_ref().and_then(|j| j.refusal())
        {
            // While the log cannot write (a full disk stalls it for as long
            // as it lasts), the state holds changes that are not durable and
            // that a crash would take back: a client must not read them as
            // settled. (Outside a stall, what is applied is durable within
            // one group commit.) The admin routes still answer: an operator
            // needs the audit and the snapshots list to decide what to do.
            let e = ApiError::unavailable(format!(
                "{why}; reads wait too, since the state holds changes that are not yet durable"
            ));
            return Outcome::plain(e.into(), template);
        }
        match client {
            Some(client) if writes => self.idempotent(client, route, template, req).await,
            // A write runs in its own task (see `handle`); a read needs not.
            _ if writes => Outcome::plain(self.spawn(client, route, req).await, template),
            _ => Outcome::plain(self.dispatch(client, route, &req).await, template),
        }
    }

    fn healthz(&self) -> Reply {
        if self.is_ready() {
            // Not in the `data` envelope: load balancers read this as is.
            Reply {
                status: StatusCode::OK,
                body: Bytes::from_static(br#"{"status":"ok"}"#),
                retry: false,
            }
        } else {
            ApiError::unavailable("recovering; not ready yet").into()
        }
    }

    fn authenticate(&self, req: &Request) -> Result<Principal, ApiError> {
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let key = req
            .api_key
            .as_deref()
            .ok_or_else(|| unauthorized("the X-API-KEY header is missing"))?;
        self.keys
            .principal(&self.directory, key)
            .ok_or_else(|| unauthorized("the API key is not valid"))
    }

    async fn idempotent(
        self: &Arc<Self>,
        client: ClientId,
        route: Route,
        template: &'static str,
        req: Request,
    ) -> Outcome {
        let key = match req.idempotency_key.as_deref() {
            Some(k) if idempotency::valid_key(k) => k.to_owned(),
            Some(_) => {
                let e = ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "idempotency_key_required",
                    "X-IDEMPOTENCY-KEY must be 1 to 255 printable ASCII characters",
                );
                return Outcome::plain(e.into(), template);
            }
            None => {
                let e = ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "idempotency_key_required",
                    "this request needs an X-IDEMPOTENCY-KEY header",
                );
                return Outcome::plain(e.into(), template);
            }
        };
        let fp = idempotency::fingerprint(req.method.as_str(), &req.path, &req.body);
        let now = self.now().millis();
        match self.idempotency.begin(client, &key, fp, now).await {
            Begin::Replay(answer) => {
                let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
                let body = match answer.body.bytes() {
                    Ok(body) => body,
                    Err(why) => {
                        let e = ApiError::internal(format_args!("idempotency key {key}: {why}"));
                        return Outcome::plain(e.into(), template);
                    }
                };
                let mut o = Outcome::plain(
                    Reply {
                        status,
                        body,
                        retry: false,
                    },
                    template,
                );
                o.replayed = true;
                o
            }
            Begin::Reused => {
                let e = ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "this idempotency key was used for a different request",
                );
                Outcome::plain(e.into(), template)
            }
            Begin::Conflict => {
                let e = ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_conflict",
                    "a request with this idempotency key is still running; retry later",
                );
                Outcome::plain(e.into(), template)
            }
            Begin::Run(running) => {
                let app = Arc::clone(self);
                let task = tokio::spawn(async move {
                    let cx = Cx::idempotent(client, key.clone(), fp, running.claimed());
                    let mut reply = match handlers::client(&app, &cx, route, &req).await {
                        Ok(r) => r,
                        Err(e) => Reply::from(e),
                    };
                    if idempotency::remembered(reply.status) && !reply.retry {
                        // Acknowledged only once the answer is durable, so
                        // that a retry after a crash gets this very answer.
                        // (Not refused on a full disk: what ran must be
                        // answered; the log retries until there is space.)
                        // One body, compressed once, for the log and the store.
                        let body = AnswerBody::new(reply.body.clone());
                        // The log writes a body compressed against the
                        // dictionary as its text: hand it the text, rather
                        // than have the encoder expand what was just packed.
                        let logged = match body {
                            AnswerBody::Dict(_) => AnswerBody::Plain(reply.body.clone()),
                            ref kept => kept.clone(),
                        };
                        let record = Record::Answer {
                            client,
                            key: key.clone(),
                            fingerprint: fp,
                            at: app.now().millis(),
                            status: reply.status.as_u16(),
                            body: logged,
                        };
                        match app.log_always(&record).await {
                            Ok(()) => {
                                running.store(reply.status, body);
                                return reply;
                            }
                            Err(e) => reply = Reply::from(e),
                        }
                    }
                    // No answer record covers the events of commands
                    // answered early (see `Cx::submit`): wait for them before
                    // answering. (A request refused before any command ran
                    // answers at once, even while the disk is full.)
                    if cx.answered_early()
                        && let Err(e) = app.sync().await
                    {
                        reply = Reply::from(e);
                    }
                    match cx.logged_claim() {
                        // Nothing ran with a claim in the log: forget the key.
                        None => running.finish(&reply),
                        // Refused by validation: nothing ran; the key is free
                        // again, in the log too.
                        Some(_) if reply.status == StatusCode::BAD_REQUEST => {
                            let forget = Record::Forget { client, key };
                            if let Err(e) = app.log_always(&forget).await {
                                tracing::warn!(error = %e.message, "a forgotten key may come back after a restart");
                            }
                            running.finish(&reply);
                        }
                        // It may have partly run: a retry runs it again with
                        // the same ids, so what did run is recognised.
                        Some(ids) => running.keep_claim(ids),
                    }
                    reply
                });
                Outcome::plain(join(task).await, template)
            }
        }
    }

    async fn spawn(
        self: &Arc<Self>,
        client: Option<ClientId>,
        route: Route,
        req: Request,
    ) -> Reply {
        let app = Arc::clone(self);
        join(tokio::spawn(async move {
            app.dispatch(client, route, &req).await
        }))
        .await
    }

    async fn dispatch(&self, client: Option<ClientId>, route: Route, req: &Request) -> Reply {
        let result = match client {
            None => handlers::admin::handle(self, route, req).await,
            Some(client) => handlers::client(self, &Cx::new(client), route, req).await,
        };
        result.unwrap_or_else(Reply::from)
    }
}

async fn join(task: tokio::task::JoinHandle<Reply>) -> Reply {
    task.await
        .unwrap_or_else(|e| ApiError::internal(format!("handler failed: {e}")).into())
}

/// Bodies are JSON: a request that says it sends something else is told so.
/// No Content-Type at all is accepted (the body must still be JSON).
fn check_content_type(req: &Request) -> Result<(), ApiError> {
    let Some(ct) = req.content_type.as_deref() else {
        return Ok(());
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") || req.body.is_empty() {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("bodies are JSON: send Content-Type: application/json (got '{essence}')"),
    ))
}
