//! Shared by the benches: a gateway with funded wallets, a cheap
//! deterministic generator of wallet pairs, a whole engine booted with
//! the log's fsync off, and the process's CPU time.
#![allow(dead_code)]

use settle_engine::actor::SystemClock;
use settle_engine::{
    AssetCode, ClientId, Decimal, IfInsufficient, Op, TxnId, TxnInfo, WalletId, WalletKind,
    WalletSettings,
};
use settle_gateway::boot::{BootConfig, Booted, boot};
use settle_gateway::http::auth::Keys;
use settle_gateway::{Gateway, GatewayConfig};
use settle_snapshots::{FsStorage, FsyncPolicy, WalConfig};
use std::path::Path;
use std::sync::Arc;

/// CPU time (user + system) this process has used so far, in seconds, from
/// `/proc/self/stat` (clock ticks of 10 ms): on a shared machine CPU time
/// per operation says more than wall time. 0 where there is no `/proc`.
#[allow(clippy::float_arithmetic)]
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat(5): 12 and 13 here.
    (field(11) + field(12)) / 100.0
}

pub fn usd() -> AssetCode {
    AssetCode::new("USD").unwrap_or_else(|e| panic!("{e}"))
}

/// Opens `n` USD wallets (ids 1..=n) with 1,000,000.00 each.
pub async fn funded_gateway(n: u64, config: GatewayConfig) -> Gateway {
    let g = Gateway::start(config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 1..=u128::from(n) {
        let wallet = WalletId::from_u128(i);
        let open = Op::OpenWallet {
            wallet,
            client: ClientId::from_u128(1),
            kind: WalletKind::General,
            customer: None,
            assets: vec![usd()],
            single_asset: true,
            settings: WalletSettings::default(),
        };
        g.open_wallet(open).await.unwrap_or_else(|e| panic!("{e}"));
        let credit = Op::Credit {
            wallet,
            txn: TxnId::from_u128(i << 64),
            asset: usd(),
            amount: Decimal::new(100_000_000, 2),
            pending: false,
            info: TxnInfo::default(),
        };
        g.execute(credit).await.unwrap_or_else(|e| panic!("{e}"));
    }
    g
}

/// xorshift: a cheap, deterministic stream of wallet pairs.
pub struct Pairs {
    state: u64,
    wallets: u64,
}

impl Pairs {
    pub fn new(seed: u64, wallets: u64) -> Self {
        Self {
            state: seed | 1,
            wallets,
        }
    }

    /// Two different wallets, as ids 1..=wallets.
    pub fn next(&mut self) -> (WalletId, WalletId) {
        let (a, b) = self.next_indices();
        (
            WalletId::from_u128(u128::from(a) + 1),
            WalletId::from_u128(u128::from(b) + 1),
        )
    }

    /// Two different wallets, as indices 0..wallets.
    pub fn next_indices(&mut self) -> (u64, u64) {
        loop {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let a = self.state % self.wallets;
            let b = (self.state >> 32) % self.wallets;
            if a != b {
                return (a, b);
            }
        }
    }
}

pub fn transfer(from: WalletId, to: WalletId, txn: TxnId) -> Op {
    Op::Transfer {
        from,
        to,
        txn,
        asset: usd(),
        amount: Decimal::new(1, 2),
        if_insufficient: IfInsufficient::Queue,
        expires_at: None,
        info: TxnInfo::default(),
    }
}

/// A ledger of `n` USD wallets of `client` (ids 1..=n), each opened and
/// credited 1,000,000.00 (transaction ids `i << 64`).
pub fn funded_ledger(n: u64, client: settle_engine::ClientId) -> settle_engine::Ledger {
    use settle_engine::{Command, EngineConfig, Ledger, Timestamp};
    let mut ledger = Ledger::new(EngineConfig::default());
    let mut events = Vec::new();
    let at = Timestamp::from_millis(1_700_000_000_000);
    for i in 1..=u128::from(n) {
        let wallet = WalletId::from_u128(i);
        for op in [
            Op::OpenWallet {
                wallet,
                client,
                kind: WalletKind::General,
                customer: None,
                assets: vec![usd()],
                single_asset: true,
                settings: WalletSettings::default(),
            },
            Op::Credit {
                wallet,
                txn: TxnId::from_u128(i << 64),
                asset: usd(),
                amount: Decimal::new(100_000_000, 2),
                pending: false,
                info: TxnInfo::default(),
            },
        ] {
            ledger
                .execute(&Command { at, op }, &mut events)
                .unwrap_or_else(|e| panic!("{e}"));
            events.clear();
        }
    }
    ledger
}

/// A fresh engine (log, actors, front door) in `dir`, with the log's fsync
/// off: for benches of CPU cost, not of the disk.
pub async fn boot_without_fsync(dir: &Path, admin_key: &str) -> Booted {
    let mut wal = WalConfig::new(dir.join("wal"));
    wal.fsync = FsyncPolicy::Never;
    boot(
        Arc::new(FsStorage),
        BootConfig::new(wal),
        Keys::new(admin_key),
        Arc::new(SystemClock),
        None,
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}
