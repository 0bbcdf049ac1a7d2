//! Webhook endpoints (API.md "Funding rails and notifications").

use crate::funding::{AttemptFailure, FundingRecord};
use crate::http::app::{App, Cx};
use crate::http::auth::generate_key;
use crate::http::json::{format_time, parse_body};
use crate::http::reply::{ApiError, Reply};
use crate::journal::Record;
use crate::webhooks::{EventType, Webhook, check_url};
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use settle_engine::{ClientId, WebhookId};

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WebhookBody {
    url: String,
    events: Vec<String>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct WebhookView<'a> {
    id: String,
    url: &'a str,
    events: Vec<&'static str>,
    /// Shown only when the webhook is created.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    disabled_reason: Option<&'a str>,
    created_at: String,
    /// Why the latest delivery attempt failed, until one succeeds
    /// (`GET /v1/webhooks` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error_at: Option<String>,
}

impl<'a> WebhookView<'a> {
    fn new(w: &'a Webhook, with_secret: bool, status: &'static str) -> Self {
        Self {
            id: w.id.to_string(),
            url: &w.url,
            events: w.events.iter().map(|e| e.as_str()).collect(),
            secret: with_secret.then_some(w.secret.as_str()),
            status,
            disabled_reason: w.disabled.as_deref(),
            created_at: format_time(w.created_at),
            last_error: None,
            last_error_at: None,
        }
    }

    /// As listed: the status, and the latest failed attempt if any.
    fn of(w: &'a Webhook, failure: Option<AttemptFailure>) -> Self {
        let status = if w.disabled.is_some() {
            "disabled"
        } else {
            "active"
        };
        let mut view = Self::new(w, false, status);
        if let Some(f) = failure {
            view.last_error_at = Some(format_time(f.at));
            view.last_error = Some(f.error);
        }
        view
    }
}

#[derive(Serialize, Debug)]
struct Count {
    count: usize,
}

pub async fn create(app: &App, cx: &Cx, body: &[u8]) -> Result<Reply, ApiError> {
    let b: WebhookBody = parse_body(body)?;
    check_url(&b.url).map_err(ApiError::invalid_request)?;
    if b.events.is_empty() {
        return Err(ApiError::invalid_request(
            "events: list at least one event type",
        ));
    }
    let mut events = Vec::with_capacity(b.events.len());
    for text in &b.events {
        let Some(t) = EventType::parse(text) else {
            let shown: String = text.chars().take(64).collect();
            let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            return Err(ApiError::invalid_request(format!(
                "events: unknown event type '{shown}'; known: {}",
                known.join(", ")
            )));
        };
        if !events.contains(&t) {
            events.push(t);
        }
    }
    let id = WebhookId::from_ulid(cx.mint(app));
    // A retry after a crash, with the claimed id: answer what was created.
    if let Some(existing) = app.funding.webhook(id) {
        return Ok(Reply::data(
            StatusCode::CREATED,
            &WebhookView::new(&existing, true, "active"),
        ));
    }
    let max = app.funding.config.max_per_client;
    if app.funding.webhooks_of(cx.client).len() >= max {
        return Err(ApiError::invalid_request(format!(
            "a client may register at most {max} webhooks; delete one first"
        )));
    }
    let secret = generate_key("whsec_")
        .map_err(|e| ApiError::unavailable(format!("no randomness for a secret: {e}")))?;
    let webhook = Webhook {
        id,
        client: cx.client,
        url: b.url,
        events,
        secret,
        created_at: app.now(),
        disabled: None,
    };
    cx.claim(app)?;
    let record = FundingRecord::WebhookCreated {
        webhook: webhook.clone(),
    };
    app.log(&Record::Funding(record.clone())).await?;
    app.funding.apply(&record);
    Ok(Reply::data(
        StatusCode::CREATED,
        &WebhookView::new(&webhook, true, "active"),
    ))
}

pub fn list(app: &App, client: ClientId) -> Result<Reply, ApiError> {
    let hooks = app.funding.webhooks_of(client);
    let views: Vec<WebhookView<'_>> = hooks
        .iter()
        .map(|w| WebhookView::of(w, app.funding.last_failure(w.id)))
        .collect();
    Ok(Reply::list(&views, &Count { count: views.len() }))
}

pub async fn delete(app: &App, client: ClientId, id: &str) -> Result<Reply, ApiError> {
    let shown: String = id.chars().take(64).collect();
    let not_found = || ApiError::not_found(format!("webhook {shown}"));
    let whk: WebhookId = id.parse().map_err(|_| not_found())?;
    let webhook = match app.funding.webhook(whk) {
        Some(w) if w.client == client => w,
        _ => return Err(not_found()),
    };
    let record = FundingRecord::WebhookDeleted {
        webhook: whk,
        at: app.now(),
    };
    app.log(&Record::Funding(record.clone())).await?;
    app.funding.apply(&record);
    Ok(Reply::data(
        StatusCode::OK,
        &WebhookView::new(&webhook, false, "deleted"),
    ))
}
