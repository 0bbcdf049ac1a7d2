//! Helpers for the gateway's tests: wallets, commands, and an observer that
//! checks FIFO order online, as events are committed.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use parking_lot::Mutex;
use settle_engine::actor::ManualClock;
use settle_engine::{
    AssetCode, ClientId, Decimal, Event, IfInsufficient, Op, Timestamp, TxnId, TxnInfo, WalletId,
    WalletKind, WalletSettings,
};
use settle_gateway::{CommitObserver, Gateway, GatewayConfig};
use std::collections::{HashMap, VecDeque};
use std::str::FromStr;
use std::sync::Arc;

pub fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

pub fn usd() -> AssetCode {
    AssetCode::new("USD").unwrap()
}

pub fn wal(n: u128) -> WalletId {
    WalletId::from_u128(n)
}

pub fn txn(n: u128) -> TxnId {
    TxnId::from_u128(n)
}

pub fn open_op(w: WalletId) -> Op {
    Op::OpenWallet {
        wallet: w,
        client: ClientId::from_u128(1),
        kind: WalletKind::General,
        customer: None,
        assets: vec![usd()],
        single_asset: true,
        settings: WalletSettings::default(),
    }
}

pub fn credit(w: WalletId, t: TxnId, amount: &str) -> Op {
    Op::Credit {
        wallet: w,
        txn: t,
        asset: usd(),
        amount: d(amount),
        pending: false,
        info: TxnInfo::default(),
    }
}

pub fn debit(w: WalletId, t: TxnId, amount: &str) -> Op {
    Op::Debit {
        wallet: w,
        txn: t,
        asset: usd(),
        amount: d(amount),
        if_insufficient: IfInsufficient::Queue,
        expires_at: None,
        info: TxnInfo::default(),
    }
}

pub fn transfer(from: WalletId, to: WalletId, t: TxnId, amount: &str) -> Op {
    Op::Transfer {
        from,
        to,
        txn: t,
        asset: usd(),
        amount: d(amount),
        if_insufficient: IfInsufficient::Queue,
        expires_at: None,
        info: TxnInfo::default(),
    }
}

pub fn reserve(w: WalletId, t: TxnId, amount: &str, expires_at: Option<Timestamp>) -> Op {
    Op::Reserve {
        wallet: w,
        txn: t,
        asset: usd(),
        amount: d(amount),
        expires_at,
        info: TxnInfo::default(),
    }
}

/// Checks, per (wallet, asset), that outbound items settle in the order they
/// were queued, from the committed events alone; remembers nothing else.
#[derive(Default)]
pub struct FifoChecker {
    queues: Mutex<HashMap<(WalletId, AssetCode), VecDeque<TxnId>>>,
    assets: Mutex<HashMap<(WalletId, TxnId), AssetCode>>,
    pub violations: Mutex<Vec<String>>,
    pub events: std::sync::atomic::AtomicU64,
}

impl CommitObserver for FifoChecker {
    fn committed(&self, wallet: WalletId, events: &[Event]) {
        self.events
            .fetch_add(events.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let mut queues = self.queues.lock();
        let mut assets = self.assets.lock();
        for e in events {
            match e {
                Event::OutboundQueued { txn, asset, .. } => {
                    queues.entry((wallet, *asset)).or_default().push_back(*txn);
                    assets.insert((wallet, *txn), *asset);
                }
                Event::OutboundSettled { txn, .. } => {
                    let Some(asset) = assets.remove(&(wallet, *txn)) else {
                        self.violations
                            .lock()
                            .push(format!("{wallet}: settled unknown {txn}"));
                        continue;
                    };
                    let q = queues.entry((wallet, asset)).or_default();
                    if q.front() != Some(txn) {
                        self.violations.lock().push(format!(
                            "{wallet}/{asset}: {txn} settled while {:?} was ahead of it",
                            q.front()
                        ));
                    }
                    q.retain(|t| t != txn);
                }
                // Settling as it is submitted skips the queue, so it must
                // have been empty: nothing waiting is overtaken.
                Event::OutboundSettledAtOnce { txn, asset, .. } => {
                    let q = queues.entry((wallet, *asset)).or_default();
                    if let Some(ahead) = q.front() {
                        self.violations.lock().push(format!(
                            "{wallet}/{asset}: {txn} settled at once while {ahead} was queued"
                        ));
                    }
                }
                Event::OutboundCancelled { txn, .. } | Event::OutboundExpired { txn, .. } => {
                    if let Some(asset) = assets.remove(&(wallet, *txn)) {
                        queues
                            .entry((wallet, asset))
                            .or_default()
                            .retain(|t| t != txn);
                    }
                }
                _ => {}
            }
        }
    }
}

/// A gateway on a manual clock, with a FIFO checker, sweeping only when told.
pub async fn gateway(config: GatewayConfig) -> (Gateway, Arc<ManualClock>, Arc<FifoChecker>) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_700_000_000_000)));
    let fifo = Arc::new(FifoChecker::default());
    let g = Gateway::start_with(config, clock.clone(), Some(fifo.clone()))
        .await
        .unwrap();
    (g, clock, fifo)
}

/// Waits until nothing is in flight between wallets (receipts included).
pub async fn quiesce(g: &Gateway) {
    for _ in 0..2_000 {
        // Receipts wait in their wallet's inbox until a message or a tick.
        g.sweep_now();
        let cut = g.cut().unwrap();
        if cut.in_flight.is_empty() && g.stats().inflight == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!(
        "messages still in flight after 10 s: {:?}",
        g.cut().unwrap().in_flight
    );
}

/// Waits until the gateway has restarted `n` wallet actors in all.
pub async fn wait_restarts(g: &Gateway, n: u64) {
    for _ in 0..2_000 {
        if g.stats().restarts >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("{} restarts after 10 s, expected {n}", g.stats().restarts);
}

/// Keeps the panics the tests inject from printing a backtrace each (other
/// panics print as usual).
pub fn quiet_injected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let text = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !text.starts_with("injected fault") {
                default(info);
            }
        }));
    });
}

/// Waits (up to 10 s) until `cond` holds; actors work on other threads.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..2_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("not after 10 s: {what}");
}
