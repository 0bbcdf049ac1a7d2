//! `settle`: one binary, one subcommand per job.

use clap::{Parser, Subcommand};
use settle_engine::AssetRegistry;
use std::process::ExitCode;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// List the assets the engine knows, with their scales (decimal places).
    Assets,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Assets => {
            for asset in AssetRegistry::builtin().iter() {
                println!("{:<6} {}", asset.code, asset.scale);
            }
            ExitCode::SUCCESS
        }
    }
}
