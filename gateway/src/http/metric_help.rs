//! The `# HELP` text of every metric family `/metrics` shows, and the
//! families that must show before their first event.
//!
//! One place, so that an operator reading the scrape learns what each
//! family counts without the source, and so that a dashboard or alert on
//! the snapshot families finds them (at zero) before the first snapshot
//! rather than "no data".

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Describes every family. Called once, right after the recorder is
/// installed.
pub fn describe() {
    describe_counter!(
        "settle_http_requests_total",
        "HTTP requests answered, by route template, method and status"
    );
    describe_histogram!(
        "settle_http_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's head to its answer, by route template"
    );
    describe_counter!(
        "settle_operations_total",
        "Client operations by op (credit, debit, transfer, ...) and outcome (its status, or the error code)"
    );
    describe_gauge!("settle_wallets", "Wallets, open or closed");
    describe_gauge!("settle_wallets_active", "Wallets with a running actor");
    describe_gauge!(
        "settle_wallets_passivated",
        "Wallets whose actor is stopped, their state kept packed"
    );
    describe_gauge!(
        "settle_commands_inflight",
        "Client commands routed to wallet actors and not yet handled: the mailboxes' depth (bounded: past it, 429/503)"
    );
    describe_gauge!(
        "settle_outbound_queued",
        "Outbound payments waiting in the wallets' FIFO queues for funds, all wallets together"
    );
    describe_gauge!(
        "settle_wal_backlog_records",
        "Log records appended and not yet durable: the write-ahead log's queue"
    );
    describe_gauge!(
        "settle_webhook_outbox_notices",
        "Webhook notices not yet delivered, all webhooks together"
    );
    describe_gauge!(
        "settle_wallet_restarts",
        "Wallet actors restarted after a failure since the process started"
    );
    describe_gauge!(
        "settle_timers_filed",
        "Entries in the sweeper's heap of passivated wallets with a timer"
    );
    describe_gauge!(
        "settle_idempotency_records",
        "Idempotency keys remembered, with their answers"
    );
    describe_histogram!(
        "settle_sweep_seconds",
        Unit::Seconds,
        "One pass of the sweeper over the registry (passivation, timers)"
    );
    describe_histogram!(
        "settle_wal_fsync_seconds",
        Unit::Seconds,
        "One fdatasync of the write-ahead log (one per group commit)"
    );
    describe_histogram!(
        "settle_wal_batch_records",
        "Log records per group commit (one write and one fsync each)"
    );
    describe_counter!("settle_wal_records_total", "Log records written");
    describe_counter!(
        "settle_wal_bytes_total",
        Unit::Bytes,
        "Log bytes written, framing included"
    );
    describe_counter!(
        "settle_wal_segments_total",
        "Log segments started, by where from (a prepared spare or new)"
    );
    describe_counter!(
        "settle_snapshots_total",
        "Snapshots attempted, by outcome (ok or error)"
    );
    describe_histogram!(
        "settle_snapshot_duration_seconds",
        Unit::Seconds,
        "Time to write one snapshot"
    );
    describe_gauge!(
        "settle_snapshot_size_bytes",
        Unit::Bytes,
        "Size of the newest snapshot written by this process (0: none yet)"
    );
    describe_gauge!(
        "settle_snapshot_position",
        "Log position the newest snapshot written by this process covers (0: none yet)"
    );
    describe_gauge!(
        "settle_heap_live_bytes",
        Unit::Bytes,
        "Bytes the allocator holds for live objects"
    );
    // Shown from the start, at zero: "no snapshot yet" is a value.
    for outcome in ["ok", "error"] {
        metrics::counter!("settle_snapshots_total", "outcome" => outcome).absolute(0);
    }
    metrics::gauge!("settle_snapshot_size_bytes").set(0.0);
    metrics::gauge!("settle_snapshot_position").set(0.0);
    let _ = metrics::histogram!("settle_snapshot_duration_seconds");
}
