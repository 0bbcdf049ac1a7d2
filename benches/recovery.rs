//! Recovery speed: a log of wallet records written as the engine writes
//! them, then opened and replayed into a fresh engine, as `settle serve`
//! does at start. Prints records/s for the scan (`Wal::open`) and for the
//! replay (decode + apply), separately.
//!
//! `SETTLE_RECORDS` (default 1,000,000) sets the log's size, roughly;
//! `SETTLE_WALLETS` (default 10,000) the wallets the transfers run among.
#![allow(clippy::float_arithmetic, clippy::cast_precision_loss)]

mod support;

use settle_engine::{
    ClientId, Command, Decimal, EngineConfig, Event, IfInsufficient, Ledger, Op, Timestamp, TxnId,
    TxnInfo, WalletId, WalletKind, WalletSettings,
};
use settle_gateway::image::Image;
use settle_gateway::journal::{self, Record};
use settle_gateway::recovery;
use settle_snapshots::{FsStorage, FsyncPolicy, Wal, WalConfig};
use std::sync::Arc;
use std::time::Instant;
use support::{Pairs, usd};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Splits a command's events into one record per wallet, in order, as the
/// wallet actors commit them.
fn records_of(events: &mut Vec<Event>, out: &mut Vec<Vec<u8>>) {
    let mut start = 0;
    while start < events.len() {
        let wallet = events[start].wallet();
        let end = events[start..]
            .iter()
            .position(|e| e.wallet() != wallet)
            .map_or(events.len(), |n| start + n);
        let record = Record::Events {
            wallet,
            events: events[start..end].to_vec(),
        };
        out.push(journal::encode(&record).unwrap_or_else(|e| panic!("{e}")));
        start = end;
    }
    events.clear();
}

fn main() {
    let target = env("SETTLE_RECORDS", 1_000_000);
    let wallets = env("SETTLE_WALLETS", 10_000);
    let config = EngineConfig::default();
    let mut ledger = Ledger::new(config.clone());
    let mut events = Vec::new();
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    let mut at = Timestamp::from_millis(1_700_000_000_000);
    for n in 1..=u128::from(wallets) {
        let wallet = WalletId::from_u128(n);
        for op in [
            Op::OpenWallet {
                wallet,
                client: ClientId::from_u128(1),
                kind: WalletKind::General,
                customer: None,
                assets: vec![usd()],
                single_asset: true,
                settings: WalletSettings::default(),
            },
            Op::Credit {
                wallet,
                txn: TxnId::from_u128(u128::MAX - n),
                asset: usd(),
                amount: Decimal::new(100_000_000, 2),
                pending: false,
                info: TxnInfo::default(),
            },
        ] {
            let _ = ledger.execute(&Command { at, op }, &mut events);
            records_of(&mut events, &mut payloads);
        }
    }
    let mut pairs = Pairs::new(0x9e37_79b9_7f4a_7c15, wallets);
    let mut txn = 1u128;
    while (payloads.len() as u64) < target {
        let (from, to) = pairs.next();
        at = Timestamp::from_millis(at.millis() + 1);
        let op = Op::Transfer {
            from,
            to,
            txn: TxnId::from_u128(txn),
            asset: usd(),
            amount: Decimal::new(1, 2),
            if_insufficient: IfInsufficient::Queue,
            expires_at: None,
            info: TxnInfo::default(),
        };
        txn += 1;
        let _ = ledger.execute(&Command { at, op }, &mut events);
        records_of(&mut events, &mut payloads);
        let _ = ledger.deliver_all(at, &mut events);
        records_of(&mut events, &mut payloads);
    }
    let records = payloads.len();
    let bytes: usize = payloads.iter().map(Vec::len).sum();
    let want = ledger.digest().unwrap_or_else(|e| panic!("{e}"));
    drop(ledger);

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let wal_dir = dir.path().join("wal");
    let mut cfg = WalConfig::new(&wal_dir);
    cfg.fsync = FsyncPolicy::Never;
    let (wal, _) = Wal::open(Arc::new(FsStorage), cfg.clone()).unwrap_or_else(|e| panic!("{e}"));
    for p in payloads {
        wal.append(
            p,
            Box::new(|r| {
                if let Err(e) = r {
                    panic!("{e}");
                }
            }),
        );
    }
    wal.close().unwrap_or_else(|e| panic!("{e}"));

    let t0 = Instant::now();
    let (wal, log) = Wal::open(Arc::new(FsStorage), cfg).unwrap_or_else(|e| panic!("{e}"));
    let open = t0.elapsed();
    let t1 = Instant::now();
    let mut replayed = Image::empty(config.clone());
    recovery::replay(&log, &mut replayed, u64::MAX, None).unwrap_or_else(|e| panic!("{e}"));
    let replay = t1.elapsed();
    // The parts of replay, each alone: decode only, then apply only.
    let t3 = Instant::now();
    let mut decoded = Vec::with_capacity(records);
    log.replay(log.first_lsn, |_, bytes| {
        decoded.push(journal::decode(bytes)?);
        Ok::<(), journal::CodecError>(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let decode = t3.elapsed();
    let t4 = Instant::now();
    let mut fresh = Ledger::new(config.clone());
    for r in &decoded {
        if let Record::Events { events, .. } = r {
            for e in events {
                fresh.apply(e).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }
    let apply = t4.elapsed();
    drop((fresh, decoded));
    let t2 = Instant::now();
    let got = replayed.digest().unwrap_or_else(|e| panic!("{e}"));
    let digest = t2.elapsed();
    assert_eq!(got, want, "replay rebuilt a different state");
    drop(wal);
    let per_s = |d: std::time::Duration| records as f64 / d.as_secs_f64();
    println!(
        "log: {records} records, {:.1} MiB, {wallets} wallets",
        bytes as f64 / (1024.0 * 1024.0)
    );
    println!(
        "open (scan, checksums): {:.0} ms, {:.2}M records/s",
        open.as_secs_f64() * 1e3,
        per_s(open) / 1e6
    );
    println!(
        "replay (decode, apply): {:.0} ms, {:.2}M records/s",
        replay.as_secs_f64() * 1e3,
        per_s(replay) / 1e6
    );
    println!(
        "  of which, alone: read+decode {:.0} ms, apply {:.0} ms",
        decode.as_secs_f64() * 1e3,
        apply.as_secs_f64() * 1e3
    );
    println!(
        "digest of the replayed state: {:.0} ms",
        digest.as_secs_f64() * 1e3
    );
}
