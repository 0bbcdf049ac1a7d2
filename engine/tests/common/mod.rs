//! Shared helpers for the engine's integration tests: a ledger with wallets,
//! short constructors for commands, and reads of balances.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use settle_engine::{
    AssetCode, Balance, ClientId, Command, Decimal, Done, EngineConfig, Event, IfInsufficient,
    Ledger, Op, Reject, Timestamp, TxnId, TxnInfo, TxnStatus, WalletId, WalletKind, WalletSettings,
};
use std::str::FromStr;

pub fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

pub fn code(s: &str) -> AssetCode {
    AssetCode::new(s).unwrap()
}

pub fn wal(n: u128) -> WalletId {
    WalletId::from_u128(n)
}

pub fn txn(n: u128) -> TxnId {
    TxnId::from_u128(n)
}

pub fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

/// A ledger and a recorder of every event it emitted, so that tests can
/// replay them and compare digests.
pub struct Harness {
    pub ledger: Ledger,
    pub events: Vec<Event>,
    pub now: i64,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_config(EngineConfig::default())
    }

    pub fn with_config(config: EngineConfig) -> Self {
        Self {
            ledger: Ledger::new(config),
            events: Vec::new(),
            now: 1_000,
        }
    }

    /// Executes at the current instant (which then advances by 1 ms).
    pub fn run(&mut self, op: Op) -> Result<Done, Reject> {
        self.now += 1;
        let cmd = Command {
            at: at(self.now),
            op,
        };
        let r = self.ledger.execute(&cmd, &mut self.events);
        self.ledger
            .check_invariants()
            .unwrap_or_else(|e| panic!("after {cmd:?}: {e}"));
        r
    }

    /// Delivers every message in flight.
    pub fn settle_flights(&mut self) {
        self.now += 1;
        self.ledger
            .deliver_all(at(self.now), &mut self.events)
            .unwrap();
        self.ledger.check_invariants().unwrap();
    }

    pub fn open(&mut self, w: WalletId, assets: &[&str]) {
        self.run(Op::OpenWallet {
            wallet: w,
            client: ClientId::from_u128(1),
            kind: WalletKind::General,
            customer: None,
            assets: assets.iter().map(|a| code(a)).collect(),
            single_asset: assets.len() == 1,
            settings: WalletSettings::default(),
        })
        .unwrap();
    }

    pub fn credit(
        &mut self,
        w: WalletId,
        t: TxnId,
        asset: &str,
        amount: &str,
    ) -> Result<Done, Reject> {
        self.run(Op::Credit {
            wallet: w,
            txn: t,
            asset: code(asset),
            amount: d(amount),
            pending: false,
            info: TxnInfo::default(),
        })
    }

    pub fn debit(
        &mut self,
        w: WalletId,
        t: TxnId,
        asset: &str,
        amount: &str,
    ) -> Result<Done, Reject> {
        self.run(Op::Debit {
            wallet: w,
            txn: t,
            asset: code(asset),
            amount: d(amount),
            if_insufficient: IfInsufficient::Queue,
            expires_at: None,
            info: TxnInfo::default(),
        })
    }

    pub fn balance(&self, w: WalletId, asset: &str) -> Balance {
        self.ledger.wallet(w).unwrap().balance(code(asset)).unwrap()
    }

    pub fn status(&self, w: WalletId, t: TxnId) -> TxnStatus {
        self.ledger.wallet(w).unwrap().txn(t).unwrap().status
    }

    /// Replays every recorded event into an empty ledger; the digests match.
    pub fn assert_replay_matches(&self) {
        let mut replica = Ledger::new(self.ledger.config().clone());
        for e in &self.events {
            replica
                .apply(e)
                .unwrap_or_else(|err| panic!("replaying {e:?}: {err}"));
        }
        assert_eq!(replica.digest().unwrap(), self.ledger.digest().unwrap());
        assert_eq!(replica, self.ledger);
    }
}
