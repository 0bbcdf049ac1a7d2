//! `settle wal show`: the log's records, one per line, with their positions
//! and instants. What an operator reads to choose where a point-in-time
//! restore stops (`settle restore --until POSITION` or `--until-time`), or
//! to find what happened to one wallet or transaction in a bad hour.
//!
//! Offline, like the other log tools: it takes the data directory's lock
//! to read (so it works on a backup mounted read-only) and never writes.

use crate::offline;
use clap::Args;
use serde_json::{Value, json};
use settle_gateway::directory::DirectoryRecord;
use settle_gateway::funding::FundingRecord;
use settle_gateway::journal::{self, Record};
use settle_gateway::webhooks::signing::hex;
use settle_snapshots::{FsStorage, Lsn, Recovery, ReplayError};
use std::io::{BufWriter, ErrorKind, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// The server's data directory (the log is its `wal/`).
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// The first position to show (default: the log's first record).
    #[arg(long)]
    pub from: Option<Lsn>,
    /// The last position to show, inclusive (default: the log's last).
    #[arg(long)]
    pub until: Option<Lsn>,
    /// Only records that name this id in their fields: a wallet, a
    /// transaction, a client, a webhook... (a request's stored answer is not
    /// searched).
    #[arg(long)]
    pub id: Option<String>,
    /// Show at most this many records.
    #[arg(long)]
    pub limit: Option<u64>,
    /// One JSON object per line: `position`, `time` (null for a record
    /// that carries none), `kind` and the `record` itself.
    #[arg(long)]
    pub json: bool,
}

/// Why the walk through the log stopped early.
enum Stop {
    /// `--limit` records were shown.
    Enough,
    /// The reader went away (`| head`).
    ClosedPipe,
    Failed(String),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Enough => f.write_str("enough records shown"),
            Stop::ClosedPipe => f.write_str("standard output was closed"),
            Stop::Failed(why) => f.write_str(why),
        }
    }
}

/// The status a shell reports for a process ended by SIGPIPE (as `say!`).
const CLOSED_PIPE: u8 = 128 + 13;

pub fn run(args: &ShowArgs) -> ExitCode {
    let (dir, _lock) =
        match crate::wal_cmd::locked_log(&args.data_dir, crate::wal_cmd::Access::Read) {
            Ok(found) => found,
            Err(code) => return code,
        };
    let log = match Recovery::read_only(Arc::new(FsStorage), &dir) {
        Ok(log) => log,
        Err(e) => {
            eprintln!(
                "settle: the log at {}: {e} (run `settle wal verify`)",
                dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let last = log.next_lsn.saturating_sub(1);
    let from = args.from.unwrap_or(log.first_lsn);
    if log.first_lsn == log.next_lsn {
        eprintln!("settle: the log at {} holds no records", dir.display());
        return ExitCode::SUCCESS;
    }
    if from < log.first_lsn || from > last {
        eprintln!(
            "settle: --from {from} is outside the log, which holds records {}..={last}{}",
            log.first_lsn,
            if from < log.first_lsn {
                " (older ones were removed once a snapshot covered them)"
            } else {
                ""
            }
        );
        return ExitCode::FAILURE;
    }
    let until = args.until.unwrap_or(last).min(last);
    if let Some(torn) = &log.torn_tail {
        eprintln!(
            "settle: the log ends in a torn record ({}, offset {}: {}); shown up to the last whole one",
            torn.segment.display(),
            torn.offset,
            torn.reason
        );
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut shown = 0u64;
    let walked = log.replay_range(from, until, |lsn, bytes| {
        if args.limit.is_some_and(|limit| shown >= limit) {
            return Err(Stop::Enough);
        }
        let record = journal::decode(bytes).map_err(|e| Stop::Failed(e.to_string()))?;
        let value = record_json(&record);
        if let Some(id) = &args.id
            && !names(&value, id)
        {
            return Ok(());
        }
        shown += 1;
        let line = if args.json {
            json!({
                "position": lsn,
                "time": record.time().map(|t| offline::rfc3339(t.millis())),
                "kind": record.kind(),
                "record": value,
            })
            .to_string()
        } else {
            format!(
                "{lsn:>10}  {:<24}  {:<9}  {}",
                record
                    .time()
                    .map_or_else(|| "-".to_owned(), |t| offline::rfc3339(t.millis())),
                record.kind(),
                summary(&record, &value)
            )
        };
        writeln!(out, "{line}").map_err(|e| match e.kind() {
            ErrorKind::BrokenPipe => Stop::ClosedPipe,
            _ => Stop::Failed(format!("cannot write to standard output: {e}")),
        })
    });
    let flushed = out.flush();
    match (walked, flushed) {
        (
            Err(ReplayError::Apply {
                source: Stop::ClosedPipe,
                ..
            }),
            _,
        ) => ExitCode::from(CLOSED_PIPE),
        (_, Err(e)) if e.kind() == ErrorKind::BrokenPipe => ExitCode::from(CLOSED_PIPE),
        (
            Ok(())
            | Err(ReplayError::Apply {
                source: Stop::Enough,
                ..
            }),
            Ok(()),
        ) => ExitCode::SUCCESS,
        (Err(ReplayError::Apply { lsn, source }), _) => {
            eprintln!("settle: log record {lsn}: {source} (run `settle wal verify`)");
            ExitCode::FAILURE
        }
        (Err(e), _) => {
            eprintln!("settle: reading the log: {e} (run `settle wal verify`)");
            ExitCode::FAILURE
        }
        (Ok(()), Err(e)) => {
            eprintln!("settle: cannot write to standard output: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The record as JSON, less what an operator's screen should not hold: a
/// stored answer's body (its size instead: it can be a whole batch's
/// answer, compressed), a client's key hash and a webhook's signing secret.
fn record_json(record: &Record) -> Value {
    if let Record::Claim {
        client,
        key,
        fingerprint,
        at,
        ids,
    } = record
    {
        // By hand: JSON numbers stop short of the ids' 128 bits.
        return json!({ "claim": {
            "client": client.to_string(),
            "key": key,
            "fingerprint": hex(fingerprint),
            "at": at,
            "ids": ids.iter().map(|id| ulid::Ulid(*id).to_string()).collect::<Vec<_>>(),
        }});
    }
    let mut value =
        serde_json::to_value(record).unwrap_or_else(|e| json!({ "unreadable": e.to_string() }));
    match record {
        Record::Answer {
            body, fingerprint, ..
        } => {
            if let Some(answer) = value.get_mut("answer").and_then(Value::as_object_mut) {
                answer.insert(
                    "body".to_owned(),
                    json!({ "storedBytes": body.stored_len() }),
                );
                answer.insert("fingerprint".to_owned(), json!(hex(fingerprint)));
            }
        }
        Record::Directory(DirectoryRecord::ClientCreated { .. }) => {
            if let Some(created) = value
                .pointer_mut("/directory/client_created")
                .and_then(Value::as_object_mut)
            {
                created.remove("key_hash");
            }
        }
        Record::Funding(FundingRecord::WebhookCreated { .. }) => {
            if let Some(webhook) = value
                .pointer_mut("/funding/webhook_created/webhook")
                .and_then(Value::as_object_mut)
            {
                webhook.remove("secret");
            }
        }
        _ => {}
    }
    value
}

/// Whether any string in `value` is `id`, or `id` less its prefix (a
/// claim keeps the ids it minted bare: `txn_X` was minted as `X`).
fn names(value: &Value, id: &str) -> bool {
    match value {
        Value::String(s) => s == id || id.split_once('_').is_some_and(|(_, bare)| s == bare),
        Value::Array(items) => items.iter().any(|v| names(v, id)),
        Value::Object(fields) => fields.values().any(|v| names(v, id)),
        _ => false,
    }
}

/// One line's worth of a record: who, what, how much.
fn summary(record: &Record, value: &Value) -> String {
    match record {
        Record::Events { wallet, .. } => {
            let events = value
                .pointer("/events/events")
                .and_then(Value::as_array)
                .map(|events| events.iter().map(event_summary).collect::<Vec<_>>())
                .unwrap_or_default();
            format!("{wallet}: {}", events.join(", "))
        }
        Record::Claim {
            client, key, ids, ..
        } => format!("{client}: key {key:?}, {} ids minted", ids.len()),
        Record::Forget { client, key } => format!("{client}: key {key:?} freed (request refused)"),
        Record::Answer {
            client,
            key,
            status,
            ..
        } => format!("{client}: key {key:?}, status {status}"),
        Record::Directory(d) => match d {
            DirectoryRecord::ClientCreated { client, .. } => {
                format!("client_created {} {:?}", client.id, client.name)
            }
            DirectoryRecord::CustomerCreated { customer } => format!(
                "customer_created {} for {}, wallet {}",
                customer.id, customer.client, customer.wallet
            ),
            DirectoryRecord::WalletOpened { wallet, client } => {
                format!("wallet_opened {wallet} for {client}")
            }
            DirectoryRecord::TxnCreated { txn, wallet } => format!("txn_created {txn} at {wallet}"),
        },
        Record::Funding(f) => match f {
            FundingRecord::AddressIssued { address } => {
                format!("address_issued {} for {}", address.id, address.wallet)
            }
            FundingRecord::WebhookCreated { webhook } => {
                format!("webhook_created {} for {}", webhook.id, webhook.client)
            }
            FundingRecord::WebhookDeleted { webhook, .. } => format!("webhook_deleted {webhook}"),
            FundingRecord::WebhookDisabled {
                webhook, reason, ..
            } => {
                format!("webhook_disabled {webhook}: {reason}")
            }
            FundingRecord::Delivered {
                webhook,
                wallet,
                sequence,
            } => format!("delivered {webhook}: {wallet} through sequence {sequence}"),
        },
    }
}

/// `transfer_received txn_… 1.25 USD`: an event's name, and its
/// transaction, amount and asset where it has them (or its leg has).
fn event_summary(event: &Value) -> String {
    let Some((name, fields)) = event.as_object().and_then(|o| o.iter().next()) else {
        return event.to_string();
    };
    let field = |key: &str| {
        fields
            .get(key)
            .or_else(|| fields.get("leg").and_then(|leg| leg.get(key)))
            .and_then(Value::as_str)
    };
    let mut text = name.clone();
    for part in [field("txn"), field("amount"), field("asset")]
        .into_iter()
        .flatten()
    {
        text.push(' ');
        text.push_str(part);
    }
    text
}
