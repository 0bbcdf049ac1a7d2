//! Delivery: one dispatcher task takes ready queue heads from the outbox and
//! sends each in a task of its own, at most `concurrency` at once, each
//! attempt within `timeout`. Nothing here runs on a wallet's turn or the
//! log's writer: a slow or dead receiver holds a permit and a queue, never
//! money movement. A failure backs the queue off (exponential, capped); a
//! 2xx moves it on and logs the mark.
//!
//! The client speaks `http://` and `https://` (rustls, see `tls`; HTTP/2
//! when the receiver offers it through ALPN, else HTTP/1.1). A refused
//! certificate is a failed attempt like any other: logged with its cause,
//! shown on the webhook (`lastError`), retried with the same backoff.

use crate::funding::Funding;
use crate::webhooks::outbox::Job;
use crate::webhooks::{signing, tls};
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Starts delivering (`settle serve` does, once recovery is done), with
/// these TLS settings for `https://` receivers (`tls::client_config`).
/// Abort the handle to stop; what is undelivered stays in the outbox (and
/// the log), to go after the next start.
pub fn spawn(funding: Arc<Funding>, tls_config: tls::ClientConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(funding, tls_config))
}

async fn run(funding: Arc<Funding>, tls_config: tls::ClientConfig) {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(funding.config.timeout));
    connector.set_nodelay(true);
    // The TLS layer above it takes the https:// URLs.
    connector.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(connector);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    let permits = Arc::new(Semaphore::new(funding.config.concurrency.max(1)));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let job = loop {
            // Created before looking, so a wake-up in between is not lost.
            let woken = funding.outbox.wake.notified();
            match funding.outbox.next_job(Instant::now()) {
                Ok(job) => break job,
                Err(deadline) => {
                    let until = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
                    tokio::select! {
                        () = woken => {}
                        () = tokio::time::sleep_until(until.into()) => {}
                    }
                }
            }
        };
        let (funding, client) = (Arc::clone(&funding), client.clone());
        tokio::spawn(async move {
            deliver(&funding, &client, job).await;
            drop(permit);
        });
    }
}

async fn deliver(funding: &Funding, client: &HttpClient, job: Job) {
    let Some(hook) = funding.webhook(job.key.0) else {
        // Deleted meanwhile: its queues are gone (the outbox drops them).
        funding.outbox.drop_hook(job.key.0);
        return;
    };
    if hook.disabled.is_some() {
        funding.outbox.drop_hook(hook.id);
        return;
    }
    let body = job.notice.body();
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let outcome = match Request::post(hook.url.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, "settle-webhooks/1")
        .header("x-signature", signing::header(&hook.secret, t, &body))
        .header("x-webhook-id", hook.id.to_string())
        .body(Full::new(body))
    {
        Ok(req) => match tokio::time::timeout(funding.config.timeout, client.request(req)).await {
            Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
            Ok(Ok(resp)) => Err(format!("answered {}", resp.status())),
            Ok(Err(e)) => Err(format!("request failed: {}", tls::describe(&e))),
            Err(_) => Err(format!("no answer within {:?}", funding.config.timeout)),
        },
        Err(e) => Err(format!("cannot build the request: {e}")),
    };
    match outcome {
        Ok(()) => funding.delivered(job.key, job.notice.sequence),
        Err(why) => {
            let config = &funding.config;
            let attempts = funding.outbox.failed(job.key, |n| config.backoff(n));
            funding.attempt_failed(hook.id, &why);
            tracing::warn!(
                webhook = %hook.id,
                event = %job.notice.id(),
                attempts,
                retry_in_ms = u64::try_from(config.backoff(attempts).as_millis()).unwrap_or(u64::MAX),
                "webhook delivery failed: {why}"
            );
        }
    }
}
