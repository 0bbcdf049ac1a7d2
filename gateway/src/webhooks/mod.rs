//! Webhooks: clients register URLs for the event types they want; the
//! wallets' committed events become notices in a durable outbox (see
//! `outbox`), delivered signed (`signing`) by tasks of their own
//! (`delivery`), in order per (webhook, wallet), retried with backoff.
//!
//! - `notices`: which events make which notice, and the JSON they carry.
//! - `outbox`: the queues, their bounds, durability gating, scheduling.
//! - `delivery`: the dispatcher and the HTTP(S) client.
//! - `signing`: `X-Signature` (HMAC-SHA256 over "t.body").
//! - `tls`: the client's TLS settings (roots, `--webhook-ca`), and errors
//!   said in full.

pub mod delivery;
pub mod notices;
pub mod outbox;
pub mod signing;
pub mod tls;

use serde::{Deserialize, Serialize};
use settle_engine::{ClientId, Timestamp, WebhookId};
use std::time::Duration;

/// The event types of API.md.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "wallet.status_changed")]
    WalletStatusChanged,
    #[serde(rename = "transaction.created")]
    TransactionCreated,
    #[serde(rename = "transaction.status_changed")]
    TransactionStatusChanged,
}

impl EventType {
    pub const ALL: [EventType; 3] = [
        EventType::WalletStatusChanged,
        EventType::TransactionCreated,
        EventType::TransactionStatusChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::WalletStatusChanged => "wallet.status_changed",
            EventType::TransactionCreated => "transaction.created",
            EventType::TransactionStatusChanged => "transaction.status_changed",
        }
    }

    pub fn parse(text: &str) -> Option<EventType> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// A client's endpoint. The secret is kept as is (not hashed, unlike API
/// keys): every delivery is signed with it, also after a restart.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Webhook {
    pub id: WebhookId,
    pub client: ClientId,
    pub url: String,
    pub events: Vec<EventType>,
    pub secret: String,
    pub created_at: Timestamp,
    /// Set when the outbox bound was reached for it (see `outbox`): it gets
    /// nothing more, and says why in `GET /v1/webhooks`.
    pub disabled: Option<String>,
}

impl Webhook {
    pub fn wants(&self, kind: EventType) -> bool {
        self.disabled.is_none() && self.events.contains(&kind)
    }
}

/// Delivery timings and the outbox's bounds.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// The first retry waits this long; each next one twice as long...
    pub retry_base: Duration,
    /// ...up to this.
    pub retry_cap: Duration,
    /// One attempt (connect, send, status line) may take this long.
    pub timeout: Duration,
    /// Deliveries on their way at once, across all endpoints.
    pub concurrency: usize,
    /// Undelivered notices one webhook may have; past it, it is disabled.
    pub max_pending_per_webhook: usize,
    /// Undelivered notices in all; past it, the webhook that would grow it
    /// is disabled.
    pub max_pending_total: usize,
    /// Webhooks one client may register.
    pub max_per_client: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
            concurrency: 64,
            max_pending_per_webhook: 100_000,
            max_pending_total: 1_000_000,
            max_per_client: 16,
        }
    }
}

impl WebhookConfig {
    /// The wait after the `attempts`-th failure in a row: exponential, capped.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempts.saturating_sub(1).min(30))
            .unwrap_or(u32::MAX);
        self.retry_base
            .checked_mul(factor)
            .unwrap_or(self.retry_cap)
            .min(self.retry_cap)
    }
}

/// The longest URL accepted.
pub const MAX_URL_LEN: usize = 2_048;

/// A delivery URL: absolute `https://` (production receivers) or `http://`
/// (development, loopback, or a private hop to a TLS-terminating proxy:
/// the body is signed, not encrypted), with a host, at most `MAX_URL_LEN`
/// bytes, no user info (credentials in a URL end up in logs).
pub fn check_url(url: &str) -> Result<hyper::Uri, String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("url: at most {MAX_URL_LEN} bytes"));
    }
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("url: not a valid URL ({e})"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err("url: must be an absolute https:// or http:// URL".into());
    }
    let Some(authority) = uri.authority() else {
        return Err("url: needs a host".into());
    };
    if authority.as_str().contains('@') {
        return Err("url: must not carry user info".into());
    }
    let host = authority.host();
    if host.is_empty() {
        return Err("url: needs a host".into());
    }
    // What TLS will check the certificate against: refused now rather than
    // at every attempt.
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if uri.scheme_str() == Some("https") && rustls::pki_types::ServerName::try_from(bare).is_err() {
        return Err("url: the host is not a valid name for TLS".into());
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_url("http://example.com").is_ok());
        assert!(check_url("https://example.com/hooks?x=1").is_ok());
        assert!(check_url("https://127.0.0.1:9443/hook").is_ok());
        assert!(check_url("https://[::1]:9443/hook").is_ok());
        for bad in [
            "",
            "ftp://x/y",
            "/relative",
            "http://user:pw@host/",
            "not a url",
            "https://user@example.com/",
            "https:///nohost",
            "wss://example.com/",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        assert!(check_url(&format!("http://h/{}", "a".repeat(MAX_URL_LEN))).is_err());
        // A host no certificate can be checked against: refused at once.
        assert_eq!(
            check_url("https://bad!name/x").unwrap_err(),
            "url: the host is not a valid name for TLS"
        );
        assert!(
            check_url("http://bad!name/x").is_ok(),
            "no TLS, no name check"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = WebhookConfig {
            retry_base: Duration::from_millis(100),
            retry_cap: Duration::from_millis(1_000),
            ..WebhookConfig::default()
        };
        let waits: Vec<u128> = (1..=6).map(|n| c.backoff(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(c.backoff(1_000), Duration::from_millis(1_000));
    }

    #[test]
    fn event_types_parse_by_their_api_names() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("wallet.created"), None);
    }
}
