//! Admin (API.md "Admin"): clients, the conservation audit, snapshots;
//! and `/metrics`.

use crate::directory::{Client, DirectoryRecord, MAX_NAME_LEN};
use crate::http::app::{App, Request};
use crate::http::auth::{CLIENT_KEY_PREFIX, generate_key, hash_key};
use crate::http::json::format_time;
use crate::http::json::parse_body;
use crate::http::reply::{ApiError, Reply};
use crate::http::router::Route;
use crate::http::views::ClientView;
use crate::journal::Record;
use crate::snapshotter::{SnapshotInfo, Snapshotter};
use bytes::Bytes;
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use settle_engine::money::format_units;
use settle_engine::{AssetCode, ClientId, Timestamp};

pub async fn handle(app: &App, route: Route, req: &Request) -> Result<Reply, ApiError> {
    match route {
        Route::CreateClient => create_client(app, &req.body).await,
        Route::Audit => audit(app),
        Route::Digest => digest(app),
        Route::ListSnapshots => list_snapshots(app),
        Route::CreateSnapshot => create_snapshot(app).await,
        other => Err(ApiError::internal(format!(
            "route {other:?} reached the admin handlers"
        ))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientBody {
    name: String,
}

async fn create_client(app: &App, body: &[u8]) -> Result<Reply, ApiError> {
    let b: ClientBody = parse_body(body)?;
    if b.name.trim().is_empty() || b.name.len() > MAX_NAME_LEN {
        return Err(ApiError::invalid_request(format!(
            "name: 1 to {MAX_NAME_LEN} bytes, not blank"
        )));
    }
    let key = generate_key(CLIENT_KEY_PREFIX)
        .map_err(|e| ApiError::unavailable(format!("no randomness for a key: {e}")))?;
    let now = app.now();
    let client = Client {
        id: ClientId::from_ulid(app.ids.next(now)),
        name: b.name,
        created_at: now,
    };
    let record = DirectoryRecord::ClientCreated {
        client: client.clone(),
        key_hash: hash_key(&key),
    };
    app.log(&Record::Directory(record.clone())).await?;
    app.directory.apply(&record);
    tracing::info!(client = %client.id, "client created");
    Ok(Reply::data(
        StatusCode::CREATED,
        &ClientView::new(&client, key),
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SnapshotView {
    id: String,
    position: u64,
    size_bytes: u64,
    wallets: u64,
    created_at: String,
}

impl SnapshotView {
    fn new(s: &SnapshotInfo) -> Self {
        SnapshotView {
            id: s.id.clone(),
            position: s.position,
            size_bytes: s.size_bytes,
            wallets: s.wallets,
            created_at: format_time(Timestamp::from_millis(s.created_at_ms)),
        }
    }
}

fn snapshotter(app: &App) -> Result<&Snapshotter, ApiError> {
    app.snapshots.as_deref().ok_or_else(|| {
        ApiError::unavailable("snapshots are off on this server (it was started without them)")
    })
}

/// Takes a snapshot now; answers once it is durable.
async fn create_snapshot(app: &App) -> Result<Reply, ApiError> {
    let info = snapshotter(app)?.take().await.map_err(|e| {
        tracing::error!(%e, "snapshot on demand failed");
        ApiError::unavailable(format!("the snapshot failed: {e}"))
    })?;
    Ok(Reply::data(StatusCode::CREATED, &SnapshotView::new(&info)))
}

/// The snapshots on disk, newest first.
fn list_snapshots(app: &App) -> Result<Reply, ApiError> {
    let list = match app.snapshots.as_deref() {
        Some(s) => s.list().map_err(ApiError::unavailable)?,
        None => Vec::new(),
    };
    let views: Vec<SnapshotView> = list.iter().map(SnapshotView::new).collect();
    Ok(Reply::list(
        &views,
        &serde_json::json!({"count": views.len()}),
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AssetRow {
    asset: AssetCode,
    cash: String,
    in_flight: String,
    external_credits: String,
    external_debits: String,
    converted_in: String,
    converted_out: String,
    ok: bool,
}

#[derive(Serialize)]
struct AuditView {
    ok: bool,
    assets: Vec<AssetRow>,
}

/// The conservation check of ENGINE.md over a consistent cut of the engine.
fn audit(app: &App) -> Result<Reply, ApiError> {
    let survey = app.gateway.survey(false)?;
    let (rows, invariants) = (survey.audit, survey.invariants);
    if let Err(why) = &invariants {
        tracing::error!(%why, "audit: an invariant does not hold");
    }
    let assets: Vec<AssetRow> = rows
        .iter()
        // Assets nobody ever held would only be rows of zeros.
        .filter(|a| a.credited != 0 || a.cash != 0 || a.in_flight != 0 || a.converted_in != 0)
        .map(|a| AssetRow {
            asset: a.asset,
            cash: format_units(a.cash, a.scale),
            in_flight: format_units(a.in_flight, a.scale),
            external_credits: format_units(a.credited, a.scale),
            external_debits: format_units(a.debited, a.scale),
            converted_in: format_units(a.converted_in, a.scale),
            converted_out: format_units(a.converted_out, a.scale),
            ok: a.ok(),
        })
        .collect();
    let ok = invariants.is_ok() && rows.iter().all(|a| a.ok());
    Ok(Reply::data(StatusCode::OK, &AuditView { ok, assets }))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DigestView {
    digest: String,
    wallets: usize,
    in_flight: usize,
}

/// The state digest over a consistent cut (an extension of API.md): equal
/// digests mean equal states, which is how recovery is checked against a
/// replay from scratch.
fn digest(app: &App) -> Result<Reply, ApiError> {
    let survey = app.gateway.survey(true)?;
    let digest = survey
        .digest
        .ok_or_else(|| ApiError::internal("digest: not computed"))?;
    let view = DigestView {
        digest: digest.to_string(),
        wallets: survey.wallets,
        in_flight: survey.in_flight,
    };
    Ok(Reply::data(StatusCode::OK, &view))
}

/// Prometheus text: the recorded metrics plus the gateway's gauges.
pub fn metrics(app: &App) -> Reply {
    let stats = app.gateway.stats();
    metrics::gauge!("settle_wallets").set(stats.wallets as f64);
    metrics::gauge!("settle_wallets_active").set(stats.active as f64);
    metrics::gauge!("settle_wallets_passivated")
        .set(stats.wallets.saturating_sub(stats.active) as f64);
    metrics::gauge!("settle_commands_inflight").set(stats.inflight as f64);
    metrics::gauge!("settle_wallet_restarts").set(stats.restarts as f64);
    metrics::gauge!("settle_timers_filed").set(stats.filed_timers as f64);
    metrics::gauge!("settle_idempotency_records").set(app.idempotency.len() as f64);
    metrics::gauge!("settle_outbound_queued").set(stats.queued as f64);
    if let Some(journal) = &app.journal {
        metrics::gauge!("settle_wal_backlog_records").set(journal.backlog() as f64);
    }
    metrics::gauge!("settle_webhook_outbox_notices").set(app.funding.outbox.total() as f64);
    let text = app.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    Reply {
        status: StatusCode::OK,
        body: Bytes::from(text),
        retry: false,
    }
}
