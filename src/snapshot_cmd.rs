//! `settle snapshot list|inspect|verify`: the operator's view of snapshot
//! files, offline.

use crate::offline::{self, rfc3339};
use clap::{Args, Subcommand};
use serde::Serialize;
use settle_gateway::image::Image;
use settle_snapshots::snapshot::{self, SnapshotFile, SnapshotHeader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// The snapshots of a data directory, newest first: id, position,
    /// time, wallets, size, and whether each verifies; exit 1 if one does
    /// not (so that a script or a cron job notices).
    List(ListArgs),
    /// What a snapshot file holds: position, format version, counts and
    /// totals per asset.
    Inspect(FileArgs),
    /// Check a snapshot file to the byte and its state for consistency;
    /// exit 0 if sound, 1 with the reason if not.
    Verify(FileArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// The server's data directory (snapshots are in its `snapshots/`).
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// One JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct FileArgs {
    /// The snapshot file (`<position>-<snp_id>.msgpack`).
    pub file: PathBuf,
    /// One JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: SnapshotCommand) -> ExitCode {
    match command {
        SnapshotCommand::List(args) => list(&args),
        SnapshotCommand::Inspect(args) => inspect(&args),
        SnapshotCommand::Verify(args) => verify(&args),
    }
}

/// Reads and checks a snapshot completely: every checksum, the state it
/// decodes to, the header's counts and totals, the engine's invariants.
fn check(path: &Path) -> Result<(SnapshotFile, Image), String> {
    let file = SnapshotFile::open(path).map_err(|e| e.to_string())?;
    // A server finds a snapshot by its name's position and passes over one
    // whose header says otherwise (a renamed file): so does the check. A
    // file not named as a snapshot (a copy) is checked by its header only.
    if let Some((position, id)) = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(snapshot::parse_name)
        && (position != file.header.position || id != file.header.id)
    {
        return Err(format!(
            "{}: its header says {} at {}, its name {id} at {position}; a server passes it over",
            path.display(),
            file.header.id,
            file.header.position
        ));
    }
    let mut image =
        Image::from_snapshot(&file, offline::engine_config()).map_err(|e| e.to_string())?;
    // Every wallet decoded and checked (the load kept them packed).
    image
        .check_invariants()
        .map_err(|e| format!("{}: an invariant does not hold: {e}", path.display()))?;
    Ok((file, image))
}

/// camelCase, as `inspect --json`, `verify --json` and the HTTP API.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    id: String,
    position: u64,
    created_at: Option<String>,
    wallets: Option<u64>,
    size_bytes: u64,
    verified: bool,
    problem: Option<String>,
    file: String,
}

fn list(args: &ListArgs) -> ExitCode {
    let dir = snapshot::snapshot_dir(&args.data_dir);
    let _lock = match offline::lock_to_read(&args.data_dir) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("settle: {e}");
            return ExitCode::FAILURE;
        }
    };
    let entries = match snapshot::list(&dir) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("settle: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rows: Vec<Row> = entries
        .into_iter()
        .map(|e| {
            let header = SnapshotFile::header_only(&e.path).ok();
            let checked = check(&e.path);
            Row {
                id: e.id,
                position: e.position,
                created_at: header.as_ref().map(|h| rfc3339(h.created_at_ms)),
                wallets: header.as_ref().map(|h| h.summary.wallets),
                size_bytes: e.size,
                verified: checked.is_ok(),
                problem: checked.err(),
                file: e.path.display().to_string(),
            }
        })
        .collect();
    // Listed either way; the status says whether every one verified.
    let status = if rows.iter().all(|r| r.verified) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if args.json {
        say!("{}", serde_json::json!({ "snapshots": rows }));
        return status;
    }
    if rows.is_empty() {
        say!("no snapshots in {}", dir.display());
        return ExitCode::SUCCESS;
    }
    say!(
        "{:<30} {:>12} {:<24} {:>10} {:>12}  verified",
        "id",
        "position",
        "created",
        "wallets",
        "bytes"
    );
    for r in &rows {
        say!(
            "{:<30} {:>12} {:<24} {:>10} {:>12}  {}",
            r.id,
            r.position,
            r.created_at.as_deref().unwrap_or("?"),
            r.wallets.map_or_else(|| "?".to_owned(), |w| w.to_string()),
            r.size_bytes,
            match &r.problem {
                None => "yes".to_owned(),
                Some(p) => format!("NO: {p}"),
            }
        );
    }
    status
}

fn inspect(args: &FileArgs) -> ExitCode {
    let header = match SnapshotFile::header_only(&args.file) {
        Ok(h) => h,
        // With --json, a machine still reads the verdict on stdout.
        Err(e) if args.json => {
            let doc = serde_json::json!({
                "file": args.file.display().to_string(),
                "verified": false,
                "problem": e.to_string(),
            });
            say!("{doc}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("settle: {e}");
            return ExitCode::FAILURE;
        }
    };
    let size = std::fs::metadata(&args.file).map_or(0, |m| m.len());
    let checked = check(&args.file).map(|_| ());
    if args.json {
        let doc = serde_json::json!({
            "file": args.file.display().to_string(),
            "sizeBytes": size,
            "header": header_json(&header),
            "verified": checked.is_ok(),
            "problem": checked.as_ref().err(),
        });
        say!("{doc}");
    } else {
        print_header(&args.file, size, &header);
        match &checked {
            Ok(()) => say!("verified:    yes"),
            Err(e) => say!("verified:    NO: {e}"),
        }
    }
    if checked.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn header_json(h: &SnapshotHeader) -> serde_json::Value {
    serde_json::json!({
        "id": h.id,
        "formatVersion": h.version,
        "position": h.position,
        "createdAt": rfc3339(h.created_at_ms),
        "wallets": h.summary.wallets,
        "transactions": h.summary.transactions,
        "walletStatuses": h.summary.wallet_statuses,
        "counts": h.summary.counts,
        "assets": h.summary.assets.iter().map(|a| serde_json::json!({
            "asset": a.asset,
            "cash": a.cash.to_string(),
            "inFlight": a.in_flight.to_string(),
            "externalCredits": a.external_credits.to_string(),
            "externalDebits": a.external_debits.to_string(),
            "convertedIn": a.converted_in.to_string(),
            "convertedOut": a.converted_out.to_string(),
            "conserved": a.conserved,
        })).collect::<Vec<_>>(),
    })
}

fn print_header(path: &Path, size: u64, h: &SnapshotHeader) {
    say!("file:        {}", path.display());
    say!("id:          {}", h.id);
    say!("format:      version {}", h.version);
    say!(
        "position:    {} (log records 1..={} are in it)",
        h.position,
        h.position
    );
    say!("created:     {}", rfc3339(h.created_at_ms));
    say!("size:        {size} bytes");
    say!("wallets:     {}", h.summary.wallets);
    for (status, n) in &h.summary.wallet_statuses {
        say!("  {status:<11}{n}");
    }
    say!("transactions: {}", h.summary.transactions);
    for (name, n) in &h.summary.counts {
        say!("{:<13}{n}", format!("{name}:"));
    }
    if !h.summary.assets.is_empty() {
        // Every term of the conservation check, so that a row adds up:
        // cash + in flight = credits - debits + converted in - converted out.
        say!(
            "{:<6} {:>20} {:>16} {:>20} {:>20} {:>16} {:>16}  conserved",
            "asset",
            "cash",
            "in flight",
            "external credits",
            "external debits",
            "converted in",
            "converted out"
        );
    }
    for a in &h.summary.assets {
        say!(
            "{:<6} {:>20} {:>16} {:>20} {:>20} {:>16} {:>16}  {}",
            a.asset,
            a.cash,
            a.in_flight,
            a.external_credits,
            a.external_debits,
            a.converted_in,
            a.converted_out,
            if a.conserved { "yes" } else { "NO" }
        );
    }
}

fn verify(args: &FileArgs) -> ExitCode {
    match check(&args.file) {
        Ok((file, image)) => {
            let digest = image
                .digest()
                .map_or_else(|e| e.to_string(), |d| d.to_string());
            if args.json {
                say!(
                    "{}",
                    serde_json::json!({
                        "sound": true,
                        "id": file.header.id,
                        "position": file.header.position,
                        "wallets": file.header.summary.wallets,
                        "digest": digest,
                    })
                );
            } else {
                say!(
                    "sound: {} at position {}, {} wallets, state digest {digest}",
                    file.header.id,
                    file.header.position,
                    file.header.summary.wallets
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if args.json {
                say!("{}", serde_json::json!({ "sound": false, "problem": e }));
            } else {
                say!("NOT sound: {e}");
            }
            ExitCode::FAILURE
        }
    }
}
