//! `settle`: one binary, one subcommand per job.

// First: its `say!` is used by the modules after it.
#[macro_use]
mod out;

mod data_lock;
mod load;
mod offline;
mod progress;
mod restore_cmd;
mod serve;
mod snapshot_cmd;
mod wal_cmd;
mod wal_show;

use clap::{Parser, Subcommand};
use settle_engine::AssetRegistry;
use std::process::ExitCode;

#[cfg(not(feature = "heap-stats"))]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The same allocator, counting the bytes it hands out (`heap::live_bytes`).
#[cfg(feature = "heap-stats")]
#[global_allocator]
static ALLOC: cap::Cap<mimalloc::MiMalloc> = cap::Cap::new(mimalloc::MiMalloc, usize::MAX);

mod heap {
    /// Bytes allocated and not yet freed, in a `--features heap-stats` build.
    pub fn live_bytes() -> Option<usize> {
        #[cfg(feature = "heap-stats")]
        return Some(super::ALLOC.allocated());
        #[cfg(not(feature = "heap-stats"))]
        None
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "settle",
    version,
    about = "An actor-based, in-memory wallet settlement engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the wallet API over HTTP (API.md).
    Serve(serve::ServeArgs),
    /// The write-ahead log, offline: verify, repair or show it.
    #[command(subcommand)]
    Wal(wal_cmd::WalCommand),
    /// Snapshot files, offline: list, inspect, verify.
    #[command(subcommand)]
    Snapshot(snapshot_cmd::SnapshotCommand),
    /// A new data directory from a snapshot, optionally rolled forward
    /// through an old log to a position (point-in-time recovery).
    Restore(restore_cmd::RestoreArgs),
    /// List the assets the engine knows, with their scales (decimal places).
    Assets,
    /// Load-test a running server over HTTP: throughput, latency, errors,
    /// and the conservation audit afterwards.
    Load(load::LoadArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            init_logs();
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("settle: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("settle: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Wal(command) => wal_cmd::run(command),
        Command::Snapshot(command) => snapshot_cmd::run(command),
        Command::Restore(args) => restore_cmd::run(&args),
        Command::Load(args) => load::run(&args),
        Command::Assets => {
            for asset in AssetRegistry::builtin().iter() {
                say!("{:<6} {}", asset.code, asset.scale);
            }
            ExitCode::SUCCESS
        }
    }
}

/// Logs to standard error, `info` and up unless `RUST_LOG` says otherwise;
/// in colour only when standard error is a terminal.
/// Request logs are at `debug` (`RUST_LOG=settle::http=debug` shows them).
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log redirected to a file (or journald)
    // should not carry escape codes.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
}
