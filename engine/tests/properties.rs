//! Property tests: random command sequences over several wallets and assets,
//! run against the `Ledger` side by side with a small reference model written
//! here (integer minor units, plain vectors and maps), which predicts every
//! answer (at least its error code), every balance and every transaction
//! status. After every step the six invariants of ENGINE.md are checked as
//! they apply to a state machine:
//!
//! 1. conservation: `audit()` rows are ok and equal the model's own totals;
//! 2. per (wallet, asset): `0 <= reserved <= cash`, `pending >= 0`,
//!    `queued` = sum of the queue, `available >= 0`, plus `check_invariants`;
//! 3. FIFO, from the emitted events alone;
//! 4. idempotency: a retried creation command emits nothing, answers the
//!    same and leaves the digest unchanged;
//! 5. durability: a replica that only `apply()`s the emitted events equals
//!    the ledger after every step, and has the same digest after every step
//!    that emitted events (a step without events left the replica as it was);
//! 6. determinism: the same commands and deliveries on a fresh ledger give
//!    the same answers, events and digest.
//!
//! After every step, too, each wallet's packed form (`wallet::pack`: what
//! passivation and snapshots keep) decodes back to the very same state.
//!
//! Where ENGINE.md is silent the model follows the engine's documented
//! decisions: the status table of `WalletStatus::permit`, the order in which
//! a command is checked (hence which error code wins), expiry running first
//! and being kept even when the command is refused, retries answered before
//! anything else, the in-flight protocol of `message.rs`, `deliver_all`
//! delivering the lowest transaction id first. Its one rule of its own is
//! ENGINE.md's: whenever `cash - reserved` grows, queues drain from the head
//! while the head fits, until no head fits (also after a conversion within
//! one wallet credits another of its assets).
//!
//! Properties: `fifo_single_wallet` (4,000 cases), `transfers_and_conversions`
//! (3,000), `statuses_and_expiry` (3,000), `txn_ids_shared_between_wallets`
//! (1,000, where a new transaction may reuse an id another wallet holds).
//! `PROPTEST_CASES=n` runs `n` cases in each property instead.

// A broken assumption of the model itself is a bug in this file: it panics.
#![allow(clippy::expect_used)]

mod common;

use common::{at, code, txn, wal};
use proptest::prelude::*;
use proptest::sample::select;
use settle_engine::{
    AssetCode, ClientId, Command, Decimal, Done, EngineConfig, Event, IfInsufficient, Ledger,
    Limits, Message, Op, Reject, TxnId, TxnInfo, TxnKind, TxnStatus, WalletId, WalletKind,
    WalletSettings, WalletState, WalletStatus,
};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

// ---------------------------------------------------------------------------
// The world: assets and wallets.

const USD: usize = 0;
const BTC: usize = 1;
const JPY: usize = 2;
/// Known to the engine, held by no wallet.
const EUR: usize = 3;
/// Unknown to the engine.
const XYZ: usize = 4;
const ASSET_CODES: [&str; 5] = ["USD", "BTC", "JPY", "EUR", "XYZ"];
const ASSET_SCALES: [Option<u32>; 5] = [Some(2), Some(8), Some(0), Some(2), None];
/// The registered assets whose audit rows are compared with the model.
const AUDITED: [usize; 4] = [USD, BTC, JPY, EUR];

const N_WALLETS: usize = 4;
/// An index that names no wallet (`not_found`).
const UNKNOWN_WALLET: usize = N_WALLETS;
/// Assets per wallet: single-asset USD, USD+BTC, BTC+JPY+USD, single-asset JPY.
const HOLDINGS: [&[usize]; N_WALLETS] = [&[USD], &[USD, BTC], &[BTC, JPY, USD], &[JPY]];
const QUEUE_DEPTH: usize = 4;

fn wid(w: usize) -> WalletId {
    if w < N_WALLETS {
        wal(w as u128 + 1)
    } else {
        wal(99)
    }
}

fn acode(a: usize) -> AssetCode {
    code(ASSET_CODES[a])
}

/// The scale amounts of an asset are written at (a guess for unknown ones).
fn gen_scale(a: usize) -> u32 {
    ASSET_SCALES[a].unwrap_or(2)
}

fn pow10(n: u32) -> i128 {
    10i128.pow(n)
}

fn dec(units: i128, scale: u32) -> Decimal {
    Decimal::from_i128_with_scale(units, scale)
}

fn config() -> EngineConfig {
    EngineConfig {
        limits: Limits {
            max_queue_depth: QUEUE_DEPTH,
            ..Limits::default()
        },
        ..EngineConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Concrete commands, as both the engine and the model see them.

/// An amount as sent, and what it is worth in minor units of the asset it
/// was generated for (`None`: it must be refused as `invalid_amount`).
#[derive(Clone, Debug)]
struct Amount {
    dec: Decimal,
    units: Option<i128>,
}

/// A conversion rate `m / 10^s`; `m <= 0` must be refused.
#[derive(Clone, Debug)]
struct Rate {
    dec: Decimal,
    m: i128,
    s: u32,
}

#[derive(Clone, Debug)]
enum Cmd {
    Open {
        w: usize,
    },
    Credit {
        w: usize,
        t: u128,
        asset: usize,
        amt: Amount,
        pending: bool,
    },
    Settle {
        w: usize,
        t: u128,
    },
    RejectPending {
        w: usize,
        t: u128,
    },
    Debit {
        w: usize,
        t: u128,
        asset: usize,
        amt: Amount,
        reject: bool,
        exp: Option<i64>,
    },
    Reserve {
        w: usize,
        t: u128,
        asset: usize,
        amt: Amount,
        exp: Option<i64>,
    },
    Capture {
        w: usize,
        t: u128,
        amt: Option<Amount>,
    },
    Release {
        w: usize,
        t: u128,
    },
    Cancel {
        w: usize,
        t: u128,
    },
    Transfer {
        from: usize,
        to: usize,
        t: u128,
        asset: usize,
        amt: Amount,
        reject: bool,
        exp: Option<i64>,
    },
    Convert {
        from: usize,
        to: usize,
        t: u128,
        sell: usize,
        buy: usize,
        amt: Amount,
        rate: Rate,
        reject: bool,
        exp: Option<i64>,
    },
    SetStatus {
        w: usize,
        status: WalletStatus,
    },
    Expire {
        w: usize,
    },
}

impl Cmd {
    /// The wallet that executes it.
    fn wallet(&self) -> usize {
        match self {
            Cmd::Open { w }
            | Cmd::Credit { w, .. }
            | Cmd::Settle { w, .. }
            | Cmd::RejectPending { w, .. }
            | Cmd::Debit { w, .. }
            | Cmd::Reserve { w, .. }
            | Cmd::Capture { w, .. }
            | Cmd::Release { w, .. }
            | Cmd::Cancel { w, .. }
            | Cmd::SetStatus { w, .. }
            | Cmd::Expire { w } => *w,
            Cmd::Transfer { from, .. } | Cmd::Convert { from, .. } => *from,
        }
    }

    /// The transaction id a creation command carries.
    fn txn_id(&self) -> Option<u128> {
        match self {
            Cmd::Credit { t, .. }
            | Cmd::Debit { t, .. }
            | Cmd::Reserve { t, .. }
            | Cmd::Transfer { t, .. }
            | Cmd::Convert { t, .. } => Some(*t),
            _ => None,
        }
    }

    /// For commands that create something: what a retry must answer.
    fn created(&self) -> Option<Done> {
        match self {
            Cmd::Open { w } => Some(Done::Wallet(wid(*w))),
            Cmd::Credit { t, .. }
            | Cmd::Debit { t, .. }
            | Cmd::Reserve { t, .. }
            | Cmd::Transfer { t, .. }
            | Cmd::Convert { t, .. } => Some(Done::Txn(txn(*t))),
            _ => None,
        }
    }

    fn op(&self) -> Op {
        let mode = |reject: bool| {
            if reject {
                IfInsufficient::Reject
            } else {
                IfInsufficient::Queue
            }
        };
        let ts = |e: &Option<i64>| e.map(at);
        match self {
            Cmd::Open { w } => Op::OpenWallet {
                wallet: wid(*w),
                client: ClientId::from_u128(1),
                kind: WalletKind::General,
                customer: None,
                assets: HOLDINGS[*w].iter().map(|&a| acode(a)).collect(),
                single_asset: HOLDINGS[*w].len() == 1,
                settings: WalletSettings::default(),
            },
            Cmd::Credit {
                w,
                t,
                asset,
                amt,
                pending,
            } => Op::Credit {
                wallet: wid(*w),
                txn: txn(*t),
                asset: acode(*asset),
                amount: amt.dec,
                pending: *pending,
                info: TxnInfo::default(),
            },
            Cmd::Settle { w, t } => Op::SettlePending {
                wallet: wid(*w),
                txn: txn(*t),
            },
            Cmd::RejectPending { w, t } => Op::RejectPending {
                wallet: wid(*w),
                txn: txn(*t),
            },
            Cmd::Debit {
                w,
                t,
                asset,
                amt,
                reject,
                exp,
            } => Op::Debit {
                wallet: wid(*w),
                txn: txn(*t),
                asset: acode(*asset),
                amount: amt.dec,
                if_insufficient: mode(*reject),
                expires_at: ts(exp),
                info: TxnInfo::default(),
            },
            Cmd::Reserve {
                w,
                t,
                asset,
                amt,
                exp,
            } => Op::Reserve {
                wallet: wid(*w),
                txn: txn(*t),
                asset: acode(*asset),
                amount: amt.dec,
                expires_at: ts(exp),
                info: TxnInfo::default(),
            },
            Cmd::Capture { w, t, amt } => Op::Capture {
                wallet: wid(*w),
                txn: txn(*t),
                amount: amt.as_ref().map(|a| a.dec),
            },
            Cmd::Release { w, t } => Op::Release {
                wallet: wid(*w),
                txn: txn(*t),
            },
            Cmd::Cancel { w, t } => Op::Cancel {
                wallet: wid(*w),
                txn: txn(*t),
            },
            Cmd::Transfer {
                from,
                to,
                t,
                asset,
                amt,
                reject,
                exp,
            } => Op::Transfer {
                from: wid(*from),
                to: wid(*to),
                txn: txn(*t),
                asset: acode(*asset),
                amount: amt.dec,
                if_insufficient: mode(*reject),
                expires_at: ts(exp),
                info: TxnInfo::default(),
            },
            Cmd::Convert {
                from,
                to,
                t,
                sell,
                buy,
                amt,
                rate,
                reject,
                exp,
            } => Op::Convert {
                from: wid(*from),
                to: wid(*to),
                txn: txn(*t),
                sell_asset: acode(*sell),
                buy_asset: acode(*buy),
                sell_amount: amt.dec,
                rate: rate.dec,
                if_insufficient: mode(*reject),
                expires_at: ts(exp),
                info: TxnInfo::default(),
            },
            Cmd::SetStatus { w, status } => Op::SetStatus {
                wallet: wid(*w),
                status: *status,
                reason: None,
            },
            Cmd::Expire { w } => Op::Expire { wallet: wid(*w) },
        }
    }
}

// ---------------------------------------------------------------------------
// The reference model.

type Code = &'static str;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Payout,
    Transfer {
        to: usize,
    },
    Conversion {
        to: usize,
        buy: usize,
        buy_units: i128,
    },
}

#[derive(Clone, Debug)]
struct MTxn {
    kind: TxnKind,
    status: TxnStatus,
    /// For conversions: the sell side.
    asset: usize,
    units: i128,
    /// Submitted here as an outbound item or a hold (direction `out`).
    out: bool,
    target: Option<Target>,
    expires: Option<i64>,
}

#[derive(Clone, Debug, Default)]
struct MBook {
    cash: i128,
    reserved: i128,
    pending: i128,
    queue: Vec<(u128, i128)>,
}

impl MBook {
    fn queued(&self) -> i128 {
        self.queue.iter().map(|&(_, u)| u).sum()
    }
    fn spendable(&self) -> i128 {
        self.cash - self.reserved
    }
    fn available(&self) -> i128 {
        (self.cash - self.reserved - self.queued()).max(0)
    }
    fn is_empty(&self) -> bool {
        self.cash == 0 && self.reserved == 0 && self.pending == 0 && self.queue.is_empty()
    }
}

#[derive(Clone, Debug)]
struct MWallet {
    status: WalletStatus,
    books: BTreeMap<usize, MBook>,
    txns: BTreeMap<u128, MTxn>,
    /// Transfers sent from here, not yet delivered or returned.
    awaiting: BTreeSet<u128>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MLeg {
    txn: u128,
    from: usize,
    to: usize,
    asset: usize,
    units: i128,
    /// For conversions: the buy asset and amount (what travels).
    conv: Option<(usize, i128)>,
}

impl MLeg {
    fn money(&self) -> (usize, i128) {
        self.conv.unwrap_or((self.asset, self.units))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MMsg {
    Deliver(MLeg),
    Return(MLeg),
    Receipt { to: usize },
}

/// External flows, per asset, in minor units.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    credited: i128,
    debited: i128,
    conv_in: i128,
    conv_out: i128,
}

#[derive(Clone, Copy)]
enum Act {
    Credit,
    RejectPending,
    NewOutbound,
    Reserve,
    Capture,
    Release,
    Cancel,
}

/// ENGINE.md "Wallet status", with the decisions documented at
/// `WalletStatus::permit`: restricted forbids only new outbound obligations
/// (debits, transfers, conversions, holds); suspended allows only what moves
/// no money in or out of cash (release, cancel, reject of a pending credit).
fn permit(status: WalletStatus, act: Act) -> Result<(), Code> {
    match status {
        WalletStatus::Active => Ok(()),
        WalletStatus::Restricted => match act {
            Act::NewOutbound | Act::Reserve => Err("wallet_restricted"),
            _ => Ok(()),
        },
        WalletStatus::Suspended => match act {
            Act::Release | Act::Cancel | Act::RejectPending => Ok(()),
            _ => Err("wallet_suspended"),
        },
        WalletStatus::Closed => Err("wallet_closed"),
    }
}

fn drains(status: WalletStatus) -> bool {
    matches!(status, WalletStatus::Active | WalletStatus::Restricted)
}

#[derive(Clone, Debug)]
struct Model {
    wallets: Vec<MWallet>,
    in_flight: BTreeMap<u128, MMsg>,
    totals: [Totals; 5],
}

impl Model {
    fn new() -> Self {
        let wallets = HOLDINGS
            .iter()
            .map(|h| MWallet {
                status: WalletStatus::Active,
                books: h.iter().map(|&a| (a, MBook::default())).collect(),
                txns: BTreeMap::new(),
                awaiting: BTreeSet::new(),
            })
            .collect();
        Self {
            wallets,
            in_flight: BTreeMap::new(),
            totals: [Totals::default(); 5],
        }
    }

    fn known(w: usize) -> Result<usize, Code> {
        if w < N_WALLETS {
            Ok(w)
        } else {
            Err("not_found")
        }
    }

    fn book(&mut self, w: usize, asset: usize) -> &mut MBook {
        self.wallets[w]
            .books
            .get_mut(&asset)
            .expect("model: book exists")
    }

    fn txn(&mut self, w: usize, t: u128) -> &mut MTxn {
        self.wallets[w].txns.get_mut(&t).expect("model: txn exists")
    }

    /// Holds and queued items due at `now` end; then the queues drain.
    fn expire(&mut self, w: usize, now: i64) {
        let mut due: Vec<(i64, u128)> = self.wallets[w]
            .txns
            .iter()
            .filter(|(_, t)| matches!(t.status, TxnStatus::Held | TxnStatus::AwaitingFunds))
            .filter_map(|(&id, t)| t.expires.filter(|&e| e <= now).map(|e| (e, id)))
            .collect();
        due.sort_unstable();
        for (_, id) in due {
            let t = self.wallets[w].txns[&id].clone();
            if t.status == TxnStatus::Held {
                self.book(w, t.asset).reserved -= t.units;
                self.txn(w, id).status = TxnStatus::Released;
            } else {
                self.book(w, t.asset).queue.retain(|&(q, _)| q != id);
                self.txn(w, id).status = TxnStatus::Expired;
            }
        }
        self.drain(w);
    }

    /// Every queue of the wallet settles from its head while the head fits
    /// in `cash - reserved`, until nothing more settles.
    fn drain(&mut self, w: usize) {
        if !drains(self.wallets[w].status) {
            return;
        }
        let assets: Vec<usize> = self.wallets[w].books.keys().copied().collect();
        loop {
            let mut progressed = false;
            for &a in &assets {
                while let Some(&(id, units)) = self.wallets[w].books[&a].queue.first() {
                    if units > self.wallets[w].books[&a].spendable() {
                        break;
                    }
                    self.settle_head(w, a, id, units);
                    progressed = true;
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn settle_head(&mut self, w: usize, asset: usize, id: u128, units: i128) {
        let book = self.book(w, asset);
        book.queue.remove(0);
        book.cash -= units;
        let t = self.txn(w, id);
        t.status = TxnStatus::Settled;
        let target = t.target.expect("model: outbound item has a target");
        let send = |m: &mut Model, conv| {
            m.wallets[w].awaiting.insert(id);
            let to = match target {
                Target::Transfer { to } | Target::Conversion { to, .. } => to,
                Target::Payout => unreachable!(),
            };
            m.in_flight.insert(
                id,
                MMsg::Deliver(MLeg {
                    txn: id,
                    from: w,
                    to,
                    asset,
                    units,
                    conv,
                }),
            );
        };
        match target {
            Target::Payout => self.totals[asset].debited += units,
            Target::Transfer { .. } => send(self, None),
            Target::Conversion { to, buy, buy_units } => {
                self.totals[asset].conv_out += units;
                self.totals[buy].conv_in += buy_units;
                if to == w {
                    self.book(w, buy).cash += buy_units;
                } else {
                    send(self, Some((buy, buy_units)));
                }
            }
        }
    }

    /// The destination of a transfer or conversion: it exists, takes the
    /// asset now, and does not hold the id already (an id clash).
    fn destination(&self, to: usize, t: u128, asset: usize) -> Result<usize, Code> {
        let to = Self::known(to)?;
        self.accepts(to, asset)?;
        if self.wallets[to].txns.contains_key(&t) {
            return Err("invalid_request");
        }
        Ok(to)
    }

    fn accepts(&self, w: usize, asset: usize) -> Result<(), Code> {
        if !self.wallets[w].books.contains_key(&asset) {
            return Err("unknown_asset");
        }
        permit(self.wallets[w].status, Act::Credit)
    }

    /// `Some(answer)` when `t` already exists at `w`: a retry of the same
    /// kind of creation answers Done, any other use of the id is refused.
    fn seen(&self, w: usize, t: u128, kind: TxnKind) -> Result<Option<Done>, Code> {
        match self.wallets[w].txns.get(&t) {
            None => Ok(None),
            Some(x) if x.kind == kind && (kind == TxnKind::Credit || x.out) => {
                Ok(Some(Done::Txn(txn(t))))
            }
            Some(_) => Err("invalid_request"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn submit(
        &mut self,
        w: usize,
        t: u128,
        asset: usize,
        amt: &Amount,
        target: Target,
        reject: bool,
        exp: Option<i64>,
        now: i64,
    ) -> Result<Done, Code> {
        self.expire(w, now);
        let kind = match target {
            Target::Payout => TxnKind::Debit,
            Target::Transfer { .. } => TxnKind::Transfer,
            Target::Conversion { .. } => TxnKind::Conversion,
        };
        if let Some(done) = self.seen(w, t, kind)? {
            return Ok(done);
        }
        let wallet = &self.wallets[w];
        let book = wallet.books.get(&asset).ok_or("unknown_asset")?;
        let units = amt.units.ok_or("invalid_amount")?;
        if exp.is_some_and(|e| e <= now) {
            return Err("invalid_request");
        }
        if let Target::Conversion { to, buy, .. } = target
            && to == w
            && !wallet.books.contains_key(&buy)
        {
            return Err("unknown_asset");
        }
        permit(wallet.status, Act::NewOutbound)?;
        let fits = book.queue.is_empty() && units <= book.spendable();
        if !fits {
            if reject {
                return Err("insufficient_funds");
            }
            if book.queue.len() >= QUEUE_DEPTH {
                return Err("queue_full");
            }
        }
        self.book(w, asset).queue.push((t, units));
        let record = MTxn {
            kind,
            status: TxnStatus::AwaitingFunds,
            asset,
            units,
            out: true,
            target: Some(target),
            expires: exp,
        };
        self.wallets[w].txns.insert(t, record);
        self.drain(w);
        Ok(Done::Txn(txn(t)))
    }

    /// Predicts the answer to a command, and updates the model.
    fn exec(&mut self, cmd: &Cmd, now: i64) -> Result<Done, Code> {
        // Ids are unique across the engine: a new transaction may not take
        // an id another wallet created (time still passes at this wallet).
        if let Some(t) = cmd.txn_id() {
            let w = Self::known(cmd.wallet())?;
            let created =
                |r: &MTxn| r.out || !matches!(r.kind, TxnKind::Transfer | TxnKind::Conversion);
            let creator = self
                .wallets
                .iter()
                .position(|x| x.txns.get(&t).is_some_and(created));
            if creator.is_some_and(|c| c != w) {
                self.expire(w, now);
                return Err("invalid_request");
            }
        }
        match cmd {
            Cmd::Open { w } => Ok(Done::Wallet(wid(*w))),
            Cmd::Credit {
                w,
                t,
                asset,
                amt,
                pending,
            } => {
                let w = Self::known(*w)?;
                self.expire(w, now);
                if let Some(done) = self.seen(w, *t, TxnKind::Credit)? {
                    return Ok(done);
                }
                if !self.wallets[w].books.contains_key(asset) {
                    return Err("unknown_asset");
                }
                let units = amt.units.ok_or("invalid_amount")?;
                permit(self.wallets[w].status, Act::Credit)?;
                let status = if *pending {
                    self.book(w, *asset).pending += units;
                    TxnStatus::Pending
                } else {
                    self.book(w, *asset).cash += units;
                    self.totals[*asset].credited += units;
                    TxnStatus::Settled
                };
                let record = MTxn {
                    kind: TxnKind::Credit,
                    status,
                    asset: *asset,
                    units,
                    out: false,
                    target: None,
                    expires: None,
                };
                self.wallets[w].txns.insert(*t, record);
                self.drain(w);
                Ok(Done::Txn(txn(*t)))
            }
            Cmd::Settle { w, t } | Cmd::RejectPending { w, t } => {
                let settle = matches!(cmd, Cmd::Settle { .. });
                let w = Self::known(*w)?;
                self.expire(w, now);
                let x = self.wallets[w].txns.get(t).ok_or("not_found")?;
                if x.kind != TxnKind::Credit || x.status != TxnStatus::Pending {
                    return Err("invalid_state");
                }
                let (asset, units) = (x.asset, x.units);
                if settle {
                    permit(self.wallets[w].status, Act::Credit)?;
                    let book = self.book(w, asset);
                    book.pending -= units;
                    book.cash += units;
                    self.totals[asset].credited += units;
                    self.txn(w, *t).status = TxnStatus::Settled;
                } else {
                    permit(self.wallets[w].status, Act::RejectPending)?;
                    self.book(w, asset).pending -= units;
                    self.txn(w, *t).status = TxnStatus::Rejected;
                }
                self.drain(w);
                Ok(Done::Txn(txn(*t)))
            }
            Cmd::Debit {
                w,
                t,
                asset,
                amt,
                reject,
                exp,
            } => {
                let w = Self::known(*w)?;
                self.submit(w, *t, *asset, amt, Target::Payout, *reject, *exp, now)
            }
            Cmd::Reserve {
                w,
                t,
                asset,
                amt,
                exp,
            } => {
                let w = Self::known(*w)?;
                self.expire(w, now);
                if let Some(done) = self.seen(w, *t, TxnKind::Reservation)? {
                    return Ok(done);
                }
                let wallet = &self.wallets[w];
                let book = wallet.books.get(asset).ok_or("unknown_asset")?;
                let units = amt.units.ok_or("invalid_amount")?;
                if exp.is_some_and(|e| e <= now) {
                    return Err("invalid_request");
                }
                permit(wallet.status, Act::Reserve)?;
                if units > book.available() {
                    return Err("insufficient_funds");
                }
                self.book(w, *asset).reserved += units;
                let record = MTxn {
                    kind: TxnKind::Reservation,
                    status: TxnStatus::Held,
                    asset: *asset,
                    units,
                    out: true,
                    target: None,
                    expires: *exp,
                };
                self.wallets[w].txns.insert(*t, record);
                Ok(Done::Txn(txn(*t)))
            }
            Cmd::Capture { w, t, amt } => {
                let w = Self::known(*w)?;
                self.expire(w, now);
                let x = self.wallets[w].txns.get(t).ok_or("not_found")?;
                if x.kind != TxnKind::Reservation || x.status != TxnStatus::Held {
                    return Err("invalid_state");
                }
                let (asset, held) = (x.asset, x.units);
                let captured = match amt {
                    None => held,
                    Some(a) => a.units.filter(|&u| u <= held).ok_or("invalid_amount")?,
                };
                permit(self.wallets[w].status, Act::Capture)?;
                let book = self.book(w, asset);
                book.reserved -= held;
                book.cash -= captured;
                self.totals[asset].debited += captured;
                self.txn(w, *t).status = TxnStatus::Captured;
                self.drain(w);
                Ok(Done::Txn(txn(*t)))
            }
            Cmd::Release { w, t } => {
                let w = Self::known(*w)?;
                self.expire(w, now);
                let x = self.wallets[w].txns.get(t).ok_or("not_found")?;
                if x.kind != TxnKind::Reservation || x.status != TxnStatus::Held {
                    return Err("invalid_state");
                }
                let (asset, held) = (x.asset, x.units);
                permit(self.wallets[w].status, Act::Release)?;
                self.book(w, asset).reserved -= held;
                self.txn(w, *t).status = TxnStatus::Released;
                self.drain(w);
                Ok(Done::Txn(txn(*t)))
            }
            Cmd::Cancel { w, t } => {
                let w = Self::known(*w)?;
                self.expire(w, now);
                let x = self.wallets[w].txns.get(t).ok_or("not_found")?;
                if !(x.out && x.target.is_some()) || x.status != TxnStatus::AwaitingFunds {
                    return Err("invalid_state");
                }
                let asset = x.asset;
                permit(self.wallets[w].status, Act::Cancel)?;
                self.book(w, asset).queue.retain(|&(q, _)| q != *t);
                self.txn(w, *t).status = TxnStatus::Cancelled;
                self.drain(w);
                Ok(Done::Txn(txn(*t)))
            }
            Cmd::Transfer {
                from,
                to,
                t,
                asset,
                amt,
                reject,
                exp,
            } => {
                // A retry is answered first; then time passes at the source
                // whatever the command's fate.
                let from = Self::known(*from)?;
                if let Some(done) = self.seen(from, *t, TxnKind::Transfer)? {
                    return Ok(done);
                }
                self.expire(from, now);
                if from == *to {
                    return Err("invalid_request");
                }
                if ASSET_SCALES[*asset].is_none() {
                    return Err("unknown_asset");
                }
                let to = self.destination(*to, *t, *asset)?;
                self.submit(
                    from,
                    *t,
                    *asset,
                    amt,
                    Target::Transfer { to },
                    *reject,
                    *exp,
                    now,
                )
            }
            Cmd::Convert {
                from,
                to,
                t,
                sell,
                buy,
                amt,
                rate,
                reject,
                exp,
            } => {
                let from = Self::known(*from)?;
                if let Some(done) = self.seen(from, *t, TxnKind::Conversion)? {
                    return Ok(done);
                }
                self.expire(from, now);
                if sell == buy {
                    return Err("invalid_request");
                }
                let (Some(sell_scale), Some(buy_scale)) = (ASSET_SCALES[*sell], ASSET_SCALES[*buy])
                else {
                    return Err("unknown_asset");
                };
                let sell_units = amt.units.ok_or("invalid_amount")?;
                if rate.m <= 0 {
                    return Err("invalid_amount");
                }
                // sell * rate, rounded down to the buy scale.
                let buy_units = sell_units * rate.m * pow10(buy_scale) / pow10(sell_scale + rate.s);
                if buy_units == 0 {
                    return Err("invalid_amount");
                }
                // Within one wallet, the buy side is checked with the rest.
                let to = if *to == from {
                    from
                } else {
                    self.destination(*to, *t, *buy)?
                };
                let target = Target::Conversion {
                    to,
                    buy: *buy,
                    buy_units,
                };
                self.submit(from, *t, *sell, amt, target, *reject, *exp, now)
            }
            Cmd::SetStatus { w, status } => {
                let w = Self::known(*w)?;
                self.expire(w, now);
                let wallet = &self.wallets[w];
                if wallet.status == WalletStatus::Closed {
                    return Err("wallet_closed");
                }
                if *status == wallet.status {
                    return Ok(Done::Wallet(wid(w)));
                }
                if *status == WalletStatus::Closed
                    && (!wallet.books.values().all(MBook::is_empty) || !wallet.awaiting.is_empty())
                {
                    return Err("invalid_state");
                }
                self.wallets[w].status = *status;
                self.drain(w);
                Ok(Done::Wallet(wid(w)))
            }
            Cmd::Expire { w } => {
                let w = Self::known(*w)?;
                self.expire(w, now);
                Ok(Done::Wallet(wid(w)))
            }
        }
    }

    /// The message in flight for `id` reaches its recipient.
    fn deliver(&mut self, id: u128) -> Result<(), Code> {
        let msg = self.in_flight.remove(&id).ok_or("not_found")?;
        match msg {
            MMsg::Deliver(leg) => {
                let (asset, units) = leg.money();
                let ok = self.accepts(leg.to, asset).is_ok();
                let kind = if leg.conv.is_some() {
                    TxnKind::Conversion
                } else {
                    TxnKind::Transfer
                };
                let status = if ok {
                    TxnStatus::Settled
                } else {
                    TxnStatus::Returned
                };
                let record = MTxn {
                    kind,
                    status,
                    asset: leg.asset,
                    units: leg.units,
                    out: false,
                    target: None,
                    expires: None,
                };
                self.wallets[leg.to].txns.insert(id, record);
                if ok {
                    self.book(leg.to, asset).cash += units;
                    self.in_flight.insert(id, MMsg::Receipt { to: leg.from });
                    self.drain(leg.to);
                } else {
                    self.in_flight.insert(id, MMsg::Return(leg));
                }
            }
            MMsg::Return(leg) => {
                let s = leg.from;
                assert!(
                    self.wallets[s].awaiting.remove(&id),
                    "model: return of {id} not awaited"
                );
                self.book(s, leg.asset).cash += leg.units;
                if let Some((buy, buy_units)) = leg.conv {
                    // The conversion is undone at its own rate.
                    self.totals[buy].conv_out += buy_units;
                    self.totals[leg.asset].conv_in += leg.units;
                }
                self.txn(s, id).status = TxnStatus::Returned;
                self.drain(s);
            }
            MMsg::Receipt { to } => {
                assert!(
                    self.wallets[to].awaiting.remove(&id),
                    "model: receipt of {id} not awaited"
                );
            }
        }
        Ok(())
    }

    fn in_flight_units(&self, asset: usize) -> i128 {
        self.in_flight
            .values()
            .filter_map(|m| match m {
                MMsg::Deliver(leg) | MMsg::Return(leg) => Some(leg.money()),
                MMsg::Receipt { .. } => None,
            })
            .filter(|&(a, _)| a == asset)
            .map(|(_, u)| u)
            .sum()
    }
}

// ---------------------------------------------------------------------------
// Invariant 3, from the events alone.

#[derive(Default)]
struct Fifo {
    asset_of: BTreeMap<(WalletId, TxnId), AssetCode>,
    /// Items that entered a queue and have not left it yet, in order.
    waiting: BTreeMap<(WalletId, AssetCode), Vec<TxnId>>,
    entered: BTreeMap<(WalletId, AssetCode), Vec<TxnId>>,
    settled: BTreeMap<(WalletId, AssetCode), Vec<TxnId>>,
}

impl Fifo {
    fn observe(&mut self, e: &Event) -> Result<(), String> {
        match e {
            Event::OutboundQueued {
                wallet, txn, asset, ..
            } => {
                self.asset_of.insert((*wallet, *txn), *asset);
                self.waiting
                    .entry((*wallet, *asset))
                    .or_default()
                    .push(*txn);
                self.entered
                    .entry((*wallet, *asset))
                    .or_default()
                    .push(*txn);
            }
            Event::OutboundSettled { wallet, txn, .. } => {
                let asset = self
                    .asset_of
                    .get(&(*wallet, *txn))
                    .ok_or(format!("FIFO: {txn} settled, never queued"))?;
                let q = self.waiting.entry((*wallet, *asset)).or_default();
                if q.first() != Some(txn) {
                    return Err(format!(
                        "FIFO: {wallet}/{asset}: {txn} settled while {q:?} were queued before it"
                    ));
                }
                q.remove(0);
                self.settled
                    .entry((*wallet, *asset))
                    .or_default()
                    .push(*txn);
            }
            // Settling as it is submitted: it enters and settles at once,
            // so its queue must hold nothing that entered before it.
            Event::OutboundSettledAtOnce {
                wallet, txn, asset, ..
            } => {
                let key = (*wallet, *asset);
                let q = self.waiting.entry(key).or_default();
                if !q.is_empty() {
                    return Err(format!(
                        "FIFO: {wallet}/{asset}: {txn} settled at once while {q:?} were queued"
                    ));
                }
                self.asset_of.insert((*wallet, *txn), *asset);
                self.entered.entry(key).or_default().push(*txn);
                self.settled.entry(key).or_default().push(*txn);
            }
            Event::OutboundCancelled { wallet, txn, .. }
            | Event::OutboundExpired { wallet, txn, .. } => {
                let asset = self
                    .asset_of
                    .get(&(*wallet, *txn))
                    .ok_or(format!("FIFO: {txn} left, never queued"))?;
                let q = self.waiting.entry((*wallet, *asset)).or_default();
                let pos = q
                    .iter()
                    .position(|t| t == txn)
                    .ok_or(format!("FIFO: {txn} left twice"))?;
                q.remove(pos);
            }
            _ => {}
        }
        Ok(())
    }

    /// The settled order is the entry order restricted to what settled.
    fn finish(&self) -> Result<(), String> {
        for (key, entered) in &self.entered {
            let settled = self.settled.get(key).cloned().unwrap_or_default();
            let set: BTreeSet<TxnId> = settled.iter().copied().collect();
            let expected: Vec<TxnId> = entered
                .iter()
                .copied()
                .filter(|t| set.contains(t))
                .collect();
            if expected != settled {
                return Err(format!(
                    "FIFO: {key:?} entered {entered:?} but settled {settled:?}"
                ));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Generated steps (raw choices, made concrete against the model's state).

/// How a command names a transaction.
#[derive(Clone, Debug)]
enum Pick {
    /// A transaction of the wallet the command fits (a pending credit to
    /// settle, a held reservation to capture, a queued item to cancel).
    Live(u16),
    /// Any transaction of the wallet.
    Own(u16),
    /// Any transaction of any wallet.
    Any(u16),
    /// An id never used (drawn at random, so that shrinking keeps it; a
    /// clash falls back to a counter).
    Fresh(u32),
}

#[derive(Clone, Debug)]
struct Amt {
    major: u32,
    frac: u64,
    kind: u8,
}

impl Amt {
    fn make(&self, scale: u32) -> Amount {
        let p = pow10(scale);
        let major = i128::from(self.major);
        let frac = i128::from(self.frac) % p;
        let units = (major * p + frac).max(1);
        match self.kind {
            0 => Amount {
                dec: dec(0, scale),
                units: None,
            },
            1 => Amount {
                dec: dec(-(major + 1), 0),
                units: None,
            },
            2 => {
                let extra = 1 + i128::from(self.frac % 9);
                Amount {
                    dec: dec(units * 10 + extra, scale + 1),
                    units: None,
                }
            }
            3..=9 => {
                let m = major.max(1);
                Amount {
                    dec: dec(m, 0),
                    units: Some(m * p),
                }
            }
            // Trailing zeros past the scale are fine ("10.500" is 10.50).
            10 => Amount {
                dec: dec(units * 100, scale + 2),
                units: Some(units),
            },
            _ => Amount {
                dec: dec(units, scale),
                units: Some(units),
            },
        }
    }
}

/// How a command names an asset: one the wallet(s) hold (mostly), or a
/// given one (to be refused when not held or not known).
#[derive(Clone, Copy, Debug)]
enum APick {
    Held(u8),
    Fixed(usize),
}

impl APick {
    fn resolve(self, candidates: &[usize]) -> usize {
        match self {
            APick::Held(i) if !candidates.is_empty() => {
                candidates[usize::from(i) % candidates.len()]
            }
            APick::Held(_) => USD,
            APick::Fixed(a) => a,
        }
    }
}

/// The assets a wallet holds (all three for an unknown wallet).
fn holdings(w: usize) -> Vec<usize> {
    HOLDINGS
        .get(w)
        .map_or_else(|| vec![USD, BTC, JPY], |h| h.to_vec())
}

#[derive(Clone, Debug)]
enum Step {
    Credit {
        w: usize,
        asset: APick,
        amt: Amt,
        pending: bool,
        id: Pick,
    },
    Settle {
        w: usize,
        t: Pick,
    },
    RejectPending {
        w: usize,
        t: Pick,
    },
    Debit {
        w: usize,
        asset: APick,
        amt: Amt,
        reject: bool,
        exp: Option<i64>,
        id: Pick,
    },
    Reserve {
        w: usize,
        asset: APick,
        amt: Amt,
        exp: Option<i64>,
        id: Pick,
    },
    Capture {
        w: usize,
        t: Pick,
        part: u8,
    },
    Release {
        w: usize,
        t: Pick,
    },
    Cancel {
        w: usize,
        t: Pick,
    },
    Transfer {
        from: usize,
        to: usize,
        asset: APick,
        amt: Amt,
        reject: bool,
        exp: Option<i64>,
        id: Pick,
    },
    Convert {
        from: usize,
        to: usize,
        sell: APick,
        buy: APick,
        amt: Amt,
        rate: (u32, u8, u8),
        reject: bool,
        exp: Option<i64>,
        id: Pick,
    },
    SetStatus {
        w: usize,
        status: WalletStatus,
    },
    Expire {
        w: usize,
    },
    DeliverOne(u16),
    DeliverAll,
    Retry(u16),
}

/// What one property generates.
#[derive(Debug)]
struct Profile {
    wallets: &'static [usize],
    max_major: u32,
    /// Weights: credit, settle, reject pending, debit, reserve, capture,
    /// release, cancel, transfer, convert, status, expire, deliver one,
    /// deliver all, retry.
    weights: [u32; 15],
    /// Creation commands may reuse an id that another wallet holds.
    shared_ids: bool,
    len: Range<usize>,
    /// Time between steps: mostly small, sometimes up to this.
    max_jump: i64,
}

const FIFO: Profile = Profile {
    wallets: &[0],
    max_major: 25,
    weights: [6, 2, 1, 8, 3, 2, 2, 2, 0, 0, 1, 2, 0, 0, 2],
    shared_ids: false,
    len: 20..60,
    max_jump: 150,
};

const TRANSFERS: Profile = Profile {
    wallets: &[0, 1, 2, 3],
    max_major: 60,
    weights: [6, 1, 1, 3, 2, 1, 1, 2, 7, 5, 1, 1, 4, 1, 2],
    shared_ids: false,
    len: 20..60,
    max_jump: 150,
};

const STATUSES: Profile = Profile {
    wallets: &[0, 1, 2, 3],
    max_major: 40,
    weights: [5, 2, 1, 3, 3, 1, 1, 1, 3, 2, 5, 4, 2, 1, 1],
    shared_ids: false,
    len: 20..60,
    max_jump: 300,
};

const SHARED_IDS: Profile = Profile {
    wallets: &[0, 1, 2, 3],
    max_major: 60,
    weights: [6, 1, 1, 3, 2, 1, 1, 2, 7, 5, 1, 1, 4, 1, 2],
    shared_ids: true,
    len: 20..60,
    max_jump: 150,
};

fn wallet_s(p: &'static Profile) -> BoxedStrategy<usize> {
    prop_oneof![30 => select(p.wallets), 1 => Just(UNKNOWN_WALLET)].boxed()
}

fn asset_s() -> BoxedStrategy<APick> {
    prop_oneof![
        24 => any::<u8>().prop_map(APick::Held),
        1 => select(&[USD, BTC, JPY, EUR, XYZ][..]).prop_map(APick::Fixed),
    ]
    .boxed()
}

/// Rates near 1 with two decimals mostly, else anything from 0.0001 to
/// 200000; the third number makes it zero (0) or negative (1) now and then.
fn rate_s() -> BoxedStrategy<(u32, u8, u8)> {
    (
        prop_oneof![3 => (1u32..=300).prop_map(|m| (m, 2u8)), 1 => (1u32..=200_000, 0u8..=4)],
        0u8..40,
    )
        .prop_map(|((m, s), kind)| (m, s, kind))
        .boxed()
}

fn amt_s(p: &'static Profile) -> BoxedStrategy<Amt> {
    (0..=p.max_major, 0u64..100_000_000, 0u8..24)
        .prop_map(|(major, frac, kind)| Amt { major, frac, kind })
        .boxed()
}

fn exp_s() -> BoxedStrategy<Option<i64>> {
    prop_oneof![3 => Just(None), 2 => (-2i64..=200).prop_map(Some)].boxed()
}

fn new_id_s() -> BoxedStrategy<Pick> {
    prop_oneof![12 => any::<u32>().prop_map(Pick::Fresh), 1 => any::<u16>().prop_map(Pick::Own), 1 => any::<u16>().prop_map(Pick::Any)]
        .boxed()
}

fn pick_s() -> BoxedStrategy<Pick> {
    prop_oneof![
        8 => any::<u16>().prop_map(Pick::Live),
        2 => any::<u16>().prop_map(Pick::Own),
        1 => any::<u16>().prop_map(Pick::Any),
        1 => any::<u32>().prop_map(Pick::Fresh),
    ]
    .boxed()
}

fn status_s() -> BoxedStrategy<WalletStatus> {
    prop_oneof![
        4 => Just(WalletStatus::Active),
        2 => Just(WalletStatus::Restricted),
        2 => Just(WalletStatus::Suspended),
        1 => Just(WalletStatus::Closed),
    ]
    .boxed()
}

fn step_s(p: &'static Profile) -> BoxedStrategy<Step> {
    let [
        credit,
        settle,
        reject,
        debit,
        reserve,
        capture,
        release,
        cancel,
        transfer,
        convert,
        status,
        expire,
        one,
        all,
        retry,
    ] = p.weights;
    let w = || wallet_s(p);
    let a = asset_s;
    let amt = || amt_s(p);
    let mut arms: Vec<(u32, BoxedStrategy<Step>)> = vec![
        (
            credit,
            (w(), a(), amt(), prop::bool::weighted(0.3), new_id_s())
                .prop_map(|(w, asset, amt, pending, id)| Step::Credit {
                    w,
                    asset,
                    amt,
                    pending,
                    id,
                })
                .boxed(),
        ),
        (
            settle,
            (w(), pick_s())
                .prop_map(|(w, t)| Step::Settle { w, t })
                .boxed(),
        ),
        (
            reject,
            (w(), pick_s())
                .prop_map(|(w, t)| Step::RejectPending { w, t })
                .boxed(),
        ),
        (
            debit,
            (
                w(),
                a(),
                amt(),
                prop::bool::weighted(0.2),
                exp_s(),
                new_id_s(),
            )
                .prop_map(|(w, asset, amt, reject, exp, id)| Step::Debit {
                    w,
                    asset,
                    amt,
                    reject,
                    exp,
                    id,
                })
                .boxed(),
        ),
        (
            reserve,
            (w(), a(), amt(), exp_s(), new_id_s())
                .prop_map(|(w, asset, amt, exp, id)| Step::Reserve {
                    w,
                    asset,
                    amt,
                    exp,
                    id,
                })
                .boxed(),
        ),
        (
            capture,
            (w(), pick_s(), 0u8..8)
                .prop_map(|(w, t, part)| Step::Capture { w, t, part })
                .boxed(),
        ),
        (
            release,
            (w(), pick_s())
                .prop_map(|(w, t)| Step::Release { w, t })
                .boxed(),
        ),
        (
            cancel,
            (w(), pick_s())
                .prop_map(|(w, t)| Step::Cancel { w, t })
                .boxed(),
        ),
        (
            transfer,
            (
                w(),
                w(),
                a(),
                amt(),
                prop::bool::weighted(0.2),
                exp_s(),
                new_id_s(),
            )
                .prop_map(|(from, to, asset, amt, reject, exp, id)| Step::Transfer {
                    from,
                    to,
                    asset,
                    amt,
                    reject,
                    exp,
                    id,
                })
                .boxed(),
        ),
        (
            convert,
            (
                w(),
                w(),
                a(),
                a(),
                amt(),
                rate_s(),
                prop::bool::weighted(0.2),
                exp_s(),
                new_id_s(),
            )
                .prop_map(
                    |(from, to, sell, buy, amt, rate, reject, exp, id)| Step::Convert {
                        from,
                        to,
                        sell,
                        buy,
                        amt,
                        rate,
                        reject,
                        exp,
                        id,
                    },
                )
                .boxed(),
        ),
        (
            status,
            (w(), status_s())
                .prop_map(|(w, status)| Step::SetStatus { w, status })
                .boxed(),
        ),
        (expire, w().prop_map(|w| Step::Expire { w }).boxed()),
        (one, any::<u16>().prop_map(Step::DeliverOne).boxed()),
        (all, Just(Step::DeliverAll).boxed()),
        (retry, any::<u16>().prop_map(Step::Retry).boxed()),
    ];
    arms.retain(|(weight, _)| *weight > 0);
    proptest::strategy::Union::new_weighted(arms).boxed()
}

/// A sequence of steps and the time before each. Steps are always
/// generated; shrinking first tries to skip a step (`None`), so that a
/// minimal failing sequence can be shorter than the shortest generated one.
fn steps_s(p: &'static Profile) -> impl Strategy<Value = Vec<(Option<Step>, i64)>> {
    let dt = prop_oneof![6 => 0i64..=5, 3 => 5i64..=40, 1 => 40..=p.max_jump];
    prop::collection::vec((Skippable(step_s(p)), dt), p.len.clone())
}

/// `Some(value)`, which shrinks to `None` first, then as the value.
#[derive(Debug)]
struct Skippable<S>(S);

struct SkippableTree<T> {
    inner: T,
    skipped: bool,
    tried: bool,
    last_was_skip: bool,
}

impl<S: Strategy> Strategy for Skippable<S> {
    type Tree = SkippableTree<S::Tree>;
    type Value = Option<S::Value>;

    fn new_tree(
        &self,
        runner: &mut proptest::test_runner::TestRunner,
    ) -> proptest::strategy::NewTree<Self> {
        let inner = self.0.new_tree(runner)?;
        Ok(SkippableTree {
            inner,
            skipped: false,
            tried: false,
            last_was_skip: false,
        })
    }
}

impl<T: proptest::strategy::ValueTree> proptest::strategy::ValueTree for SkippableTree<T> {
    type Value = Option<T::Value>;

    fn current(&self) -> Self::Value {
        (!self.skipped).then(|| self.inner.current())
    }

    fn simplify(&mut self) -> bool {
        if self.skipped {
            return false;
        }
        if !self.tried {
            self.tried = true;
            self.skipped = true;
            self.last_was_skip = true;
            return true;
        }
        self.last_was_skip = false;
        self.inner.simplify()
    }

    fn complicate(&mut self) -> bool {
        if self.last_was_skip {
            self.last_was_skip = false;
            self.skipped = false;
            return true;
        }
        self.inner.complicate()
    }
}

// ---------------------------------------------------------------------------
// The runner: one case, engine and model side by side.

#[derive(Clone, Debug)]
enum Trace {
    Exec(Command),
    Deliver(TxnId, i64),
    DeliverAll(i64),
}

type Outcome = Result<Option<Done>, Reject>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

fn same(got: &Result<Done, Reject>, want: &Result<Done, Code>) -> bool {
    match (got, want) {
        (Ok(a), Ok(b)) => a == b,
        (Err(e), Err(c)) => e.code() == *c,
        _ => false,
    }
}

struct Runner {
    p: &'static Profile,
    ledger: Ledger,
    replica: Ledger,
    model: Model,
    fifo: Fifo,
    now: i64,
    next_txn: u128,
    trace: Vec<Trace>,
    outcomes: Vec<Outcome>,
    events: Vec<Event>,
    /// Creation commands accepted so far (retried by `Step::Retry`).
    accepted: Vec<Cmd>,
    /// What the current step is, for messages.
    context: String,
    /// Every id handed out as fresh.
    used: BTreeSet<u128>,
}

impl Runner {
    fn new(p: &'static Profile) -> Self {
        Self {
            p,
            ledger: Ledger::new(config()),
            replica: Ledger::new(config()),
            model: Model::new(),
            fifo: Fifo::default(),
            now: 1_000,
            next_txn: 1,
            trace: Vec::new(),
            outcomes: Vec::new(),
            events: Vec::new(),
            accepted: Vec::new(),
            context: String::new(),
            used: BTreeSet::new(),
        }
    }

    /// Opens every wallet; the first checks run once all are open.
    fn open_all(&mut self) -> Result<(), String> {
        let mut events = Vec::new();
        for w in 0..N_WALLETS {
            let cmd = Cmd::Open { w };
            let command = Command {
                at: at(self.now),
                op: cmd.op(),
            };
            let got = self.ledger.execute(&command, &mut events);
            ensure!(
                got == Ok(Done::Wallet(wid(w))),
                "opening wallet {w}: {got:?}"
            );
            self.trace.push(Trace::Exec(command));
            self.outcomes.push(got.map(Some));
            self.accepted.push(cmd);
        }
        self.context = "opening the wallets".to_owned();
        self.after(events)
    }

    fn fresh(&mut self, pick: &Pick) -> u128 {
        if let Pick::Fresh(r) = pick {
            let id = (1u128 << 64) | u128::from(*r);
            if self.used.insert(id) {
                return id;
            }
        }
        loop {
            self.next_txn += 1;
            if self.used.insert(self.next_txn) {
                return self.next_txn;
            }
        }
    }

    fn all_ids(&self) -> Vec<u128> {
        let ids: BTreeSet<u128> = self
            .model
            .wallets
            .iter()
            .flat_map(|w| w.txns.keys().copied())
            .collect();
        ids.into_iter().collect()
    }

    fn own_ids(&self, w: usize, live: Option<fn(&MTxn) -> bool>) -> Vec<u128> {
        if w >= N_WALLETS {
            return Vec::new();
        }
        self.model.wallets[w]
            .txns
            .iter()
            .filter(|(_, t)| live.is_none_or(|f| f(t)))
            .map(|(&id, _)| id)
            .collect()
    }

    fn pick(&mut self, w: usize, pick: &Pick, live: fn(&MTxn) -> bool) -> u128 {
        let choose =
            |ids: Vec<u128>, i: u16| (!ids.is_empty()).then(|| ids[usize::from(i) % ids.len()]);
        let found = match pick {
            Pick::Live(i) => choose(self.own_ids(w, Some(live)), *i)
                .or_else(|| choose(self.own_ids(w, None), *i)),
            Pick::Own(i) => choose(self.own_ids(w, None), *i),
            Pick::Any(i) => choose(self.all_ids(), *i),
            Pick::Fresh(_) => None,
        };
        found.unwrap_or_else(|| self.fresh(pick))
    }

    /// The id for a new transaction at `w`: fresh, or one `w` holds, or
    /// (only with `shared_ids`) one any wallet holds.
    fn new_id(&mut self, w: usize, pick: &Pick) -> u128 {
        match pick {
            Pick::Any(i) if self.p.shared_ids => self.pick(w, &Pick::Any(*i), |_| true),
            Pick::Own(i) | Pick::Any(i) => self.pick(w, &Pick::Own(*i), |_| true),
            _ => self.fresh(pick),
        }
    }

    fn concrete(&mut self, step: &Step) -> Cmd {
        let now = self.now;
        let exp_at = |e: &Option<i64>| e.map(|d| now + d);
        match step {
            Step::Credit {
                w,
                asset,
                amt,
                pending,
                id,
            } => {
                let t = self.new_id(*w, id);
                let asset = asset.resolve(&holdings(*w));
                Cmd::Credit {
                    w: *w,
                    t,
                    asset,
                    amt: amt.make(gen_scale(asset)),
                    pending: *pending,
                }
            }
            Step::Settle { w, t } => {
                let t = self.pick(*w, t, |x| x.status == TxnStatus::Pending);
                Cmd::Settle { w: *w, t }
            }
            Step::RejectPending { w, t } => {
                let t = self.pick(*w, t, |x| x.status == TxnStatus::Pending);
                Cmd::RejectPending { w: *w, t }
            }
            Step::Debit {
                w,
                asset,
                amt,
                reject,
                exp,
                id,
            } => {
                let t = self.new_id(*w, id);
                let asset = asset.resolve(&holdings(*w));
                let amt = amt.make(gen_scale(asset));
                Cmd::Debit {
                    w: *w,
                    t,
                    asset,
                    amt,
                    reject: *reject,
                    exp: exp_at(exp),
                }
            }
            Step::Reserve {
                w,
                asset,
                amt,
                exp,
                id,
            } => {
                let t = self.new_id(*w, id);
                let asset = asset.resolve(&holdings(*w));
                Cmd::Reserve {
                    w: *w,
                    t,
                    asset,
                    amt: amt.make(gen_scale(asset)),
                    exp: exp_at(exp),
                }
            }
            Step::Capture { w, t, part } => {
                let t = self.pick(*w, t, |x| x.status == TxnStatus::Held);
                let (asset, held) = match self.model.wallets.get(*w).and_then(|x| x.txns.get(&t)) {
                    Some(x) if x.kind == TxnKind::Reservation => (x.asset, x.units),
                    _ => (USD, 100),
                };
                let scale = gen_scale(asset);
                let amt = match part {
                    0 | 1 => None,
                    2..=5 => {
                        let u = held * i128::from(part - 1) / 4;
                        Some(Amount {
                            dec: dec(u, scale),
                            units: (u > 0).then_some(u),
                        })
                    }
                    6 => Some(Amount {
                        dec: dec(held + 1, scale),
                        units: None,
                    }),
                    _ => Some(Amount {
                        dec: dec(held * 10 + 5, scale + 1),
                        units: None,
                    }),
                };
                Cmd::Capture { w: *w, t, amt }
            }
            Step::Release { w, t } => {
                let t = self.pick(*w, t, |x| x.status == TxnStatus::Held);
                Cmd::Release { w: *w, t }
            }
            Step::Cancel { w, t } => {
                let t = self.pick(*w, t, |x| x.status == TxnStatus::AwaitingFunds);
                Cmd::Cancel { w: *w, t }
            }
            Step::Transfer {
                from,
                to,
                asset,
                amt,
                reject,
                exp,
                id,
            } => {
                let t = self.new_id(*from, id);
                let (source, destination) = (holdings(*from), holdings(*to));
                let mut common: Vec<usize> = source
                    .iter()
                    .copied()
                    .filter(|a| destination.contains(a))
                    .collect();
                if common.is_empty() {
                    common = source;
                }
                let asset = asset.resolve(&common);
                let amt = amt.make(gen_scale(asset));
                Cmd::Transfer {
                    from: *from,
                    to: *to,
                    t,
                    asset,
                    amt,
                    reject: *reject,
                    exp: exp_at(exp),
                }
            }
            Step::Convert {
                from,
                to,
                sell,
                buy,
                amt,
                rate,
                reject,
                exp,
                id,
            } => {
                let t = self.new_id(*from, id);
                let (m, s, kind) = *rate;
                let m = match kind {
                    0 => 0,
                    1 => -i128::from(m),
                    _ => i128::from(m),
                };
                let rate = Rate {
                    dec: dec(m, u32::from(s)),
                    m,
                    s: u32::from(s),
                };
                let sell = sell.resolve(&holdings(*from));
                let mut buys: Vec<usize> =
                    holdings(*to).into_iter().filter(|&a| a != sell).collect();
                if buys.is_empty() {
                    buys = holdings(*to);
                }
                let buy = buy.resolve(&buys);
                let amt = amt.make(gen_scale(sell));
                Cmd::Convert {
                    from: *from,
                    to: *to,
                    t,
                    sell,
                    buy,
                    amt,
                    rate,
                    reject: *reject,
                    exp: exp_at(exp),
                }
            }
            Step::SetStatus { w, status } => Cmd::SetStatus {
                w: *w,
                status: *status,
            },
            Step::Expire { w } => Cmd::Expire { w: *w },
            Step::DeliverOne(_) | Step::DeliverAll | Step::Retry(_) => {
                unreachable!("not a command")
            }
        }
    }

    fn step(&mut self, step: &Step, dt: i64) -> Result<(), String> {
        self.now += dt;
        match step {
            Step::DeliverOne(i) => {
                let ids: Vec<u128> = self.model.in_flight.keys().copied().collect();
                if let Some(&id) = ids.get(usize::from(*i) % ids.len().max(1)) {
                    self.deliver(Some(id))?;
                }
            }
            Step::DeliverAll => self.deliver(None)?,
            Step::Retry(i) => {
                if !self.accepted.is_empty() {
                    let cmd = self.accepted[usize::from(*i) % self.accepted.len()].clone();
                    self.retry(&cmd)?;
                }
            }
            _ => {
                let cmd = self.concrete(step);
                self.exec(&cmd)?;
            }
        }
        Ok(())
    }

    fn exec(&mut self, cmd: &Cmd) -> Result<(), String> {
        let command = Command {
            at: at(self.now),
            op: cmd.op(),
        };
        self.context = format!("{command:?}");
        let mut events = Vec::new();
        let got = self.ledger.execute(&command, &mut events);
        let want = self.model.exec(cmd, self.now);
        ensure!(
            same(&got, &want),
            "{}: engine answered {got:?}, the model expects {want:?}",
            self.context
        );
        self.trace.push(Trace::Exec(command));
        self.outcomes.push(got.clone().map(Some));
        if got.is_ok() && cmd.created().is_some() {
            self.accepted.push(cmd.clone());
        }
        self.after(events)
    }

    /// Invariant 4: a creation command already accepted, sent again, answers
    /// the same, emits nothing and changes nothing. (Timers of its wallet run
    /// first at the same instant, as a command of their own.)
    fn retry(&mut self, cmd: &Cmd) -> Result<(), String> {
        self.exec(&Cmd::Expire { w: cmd.wallet() })?;
        let before = self.ledger.digest().map_err(|e| e.to_string())?;
        let command = Command {
            at: at(self.now),
            op: cmd.op(),
        };
        self.context = format!("retry of {command:?}");
        let mut events = Vec::new();
        let got = self.ledger.execute(&command, &mut events);
        let want = self.model.exec(cmd, self.now);
        ensure!(
            same(&got, &want),
            "{}: engine answered {got:?}, the model expects {want:?}",
            self.context
        );
        ensure!(
            got == Ok(cmd.created().expect("a creation command")),
            "{}: answered {got:?}",
            self.context
        );
        ensure!(
            events.is_empty(),
            "{}: a retry emitted {events:?}",
            self.context
        );
        self.trace.push(Trace::Exec(command));
        self.outcomes.push(got.map(Some));
        self.after(events)?;
        let after = self.ledger.digest().map_err(|e| e.to_string())?;
        ensure!(
            before == after,
            "{}: a retry changed the digest",
            self.context
        );
        Ok(())
    }

    /// Delivers one message (`Some`) or all of them.
    fn deliver(&mut self, id: Option<u128>) -> Result<(), String> {
        let mut events = Vec::new();
        let (got, want) = match id {
            Some(id) => {
                self.context = format!("deliver {} at {}", txn(id), self.now);
                self.trace.push(Trace::Deliver(txn(id), self.now));
                (
                    self.ledger.deliver(txn(id), at(self.now), &mut events),
                    self.model.deliver(id),
                )
            }
            None => {
                self.context = format!("deliver all at {}", self.now);
                self.trace.push(Trace::DeliverAll(self.now));
                let got = self.ledger.deliver_all(at(self.now), &mut events);
                let mut want = Ok(());
                while let Some(&id) = self.model.in_flight.keys().next() {
                    want = self.model.deliver(id);
                }
                (got, want)
            }
        };
        let agree = match (&got, &want) {
            (Ok(()), Ok(())) => true,
            (Err(e), Err(c)) => e.code() == *c,
            _ => false,
        };
        ensure!(
            agree,
            "{}: engine answered {got:?}, the model expects {want:?}",
            self.context
        );
        self.outcomes.push(got.map(|()| None));
        self.after(events)
    }

    /// After every step: the replica, FIFO, the model and the invariants.
    fn after(&mut self, events: Vec<Event>) -> Result<(), String> {
        for e in &events {
            self.replica
                .apply(e)
                .map_err(|err| format!("{}: replaying {e:?}: {err}", self.context))?;
            self.fifo
                .observe(e)
                .map_err(|err| format!("{}: {err}", self.context))?;
        }
        let changed = !events.is_empty();
        self.events.extend(events);
        self.compare()
            .map_err(|err| format!("{}: {err}", self.context))?;
        self.invariants(changed)
            .map_err(|err| format!("{}: {err}", self.context))
    }

    /// Balances, queues, statuses and messages: engine against model.
    fn compare(&self) -> Result<(), String> {
        for (w, mw) in self.model.wallets.iter().enumerate() {
            let ew = self
                .ledger
                .wallet(wid(w))
                .ok_or(format!("wallet {w} missing"))?;
            let id = wid(w);
            ensure!(
                ew.status == mw.status,
                "{id}: status {:?}, model {:?}",
                ew.status,
                mw.status
            );
            ensure!(ew.books().count() == mw.books.len(), "{id}: books differ");
            for (&a, mb) in &mw.books {
                let scale = gen_scale(a);
                let b = ew
                    .balance(acode(a))
                    .ok_or(format!("{id}: no {} book", ASSET_CODES[a]))?;
                let want = (
                    dec(mb.cash, scale),
                    dec(mb.reserved, scale),
                    dec(mb.pending, scale),
                    dec(mb.queued(), scale),
                    dec(mb.available(), scale),
                );
                let got = (b.cash, b.reserved, b.pending, b.queued, b.available);
                ensure!(
                    got == want,
                    "{id}/{}: (cash, reserved, pending, queued, available) = {got:?}, model {want:?}",
                    ASSET_CODES[a]
                );
                let queue: Vec<(TxnId, Decimal)> = ew
                    .book(acode(a))
                    .map(|bk| bk.queue().map(|i| (i.txn, i.amount)).collect())
                    .unwrap_or_default();
                let mqueue: Vec<(TxnId, Decimal)> = mb
                    .queue
                    .iter()
                    .map(|&(t, u)| (txn(t), dec(u, scale)))
                    .collect();
                ensure!(
                    queue == mqueue,
                    "{id}/{}: queue {queue:?}, model {mqueue:?}",
                    ASSET_CODES[a]
                );
            }
            ensure!(
                ew.txns().count() == mw.txns.len(),
                "{id}: {} txns, model {}",
                ew.txns().count(),
                mw.txns.len()
            );
            for (&t, mt) in &mw.txns {
                let et = ew.txn(txn(t)).ok_or(format!("{id}: no txn {}", txn(t)))?;
                ensure!(
                    (et.kind, et.status, et.asset, et.amount)
                        == (
                            mt.kind,
                            mt.status,
                            acode(mt.asset),
                            dec(mt.units, gen_scale(mt.asset))
                        ),
                    "{id}: txn {et:?}, model {mt:?}"
                );
            }
            let awaiting: BTreeSet<TxnId> = ew.awaiting_receipt().collect();
            let mawaiting: BTreeSet<TxnId> = mw.awaiting.iter().map(|&t| txn(t)).collect();
            ensure!(
                awaiting == mawaiting,
                "{id}: awaiting receipt {awaiting:?}, model {mawaiting:?}"
            );
        }
        let flying: Vec<(TxnId, &str, WalletId)> = self
            .ledger
            .in_flight()
            .map(|m| {
                let kind = match m {
                    Message::Deliver(_) => "deliver",
                    Message::Return(_) => "return",
                    Message::Receipt { .. } => "receipt",
                };
                (m.txn(), kind, m.recipient())
            })
            .collect();
        let mflying: Vec<(TxnId, &str, WalletId)> = self
            .model
            .in_flight
            .iter()
            .map(|(&t, m)| match m {
                MMsg::Deliver(leg) => (txn(t), "deliver", wid(leg.to)),
                MMsg::Return(leg) => (txn(t), "return", wid(leg.from)),
                MMsg::Receipt { to } => (txn(t), "receipt", wid(*to)),
            })
            .collect();
        ensure!(flying == mflying, "in flight {flying:?}, model {mflying:?}");
        Ok(())
    }

    /// Invariants 1, 2 and 5 on the engine's own state. `changed`: the step
    /// emitted events.
    fn invariants(&self, changed: bool) -> Result<(), String> {
        // 2. Per (wallet, asset).
        for w in self.ledger.wallets() {
            for book in w.books() {
                let b = book.balance();
                let zero = Decimal::ZERO;
                let sum: Decimal = book.queue().map(|i| i.amount).sum();
                ensure!(
                    zero <= b.reserved && b.reserved <= b.cash,
                    "{}/{}: reserved out of [0, cash]: {b:?}",
                    w.id,
                    b.asset
                );
                ensure!(
                    b.pending >= zero,
                    "{}/{}: negative pending: {b:?}",
                    w.id,
                    b.asset
                );
                ensure!(
                    b.queued == sum,
                    "{}/{}: queued {} != sum of queue {sum}",
                    w.id,
                    b.asset,
                    b.queued
                );
                ensure!(
                    b.available >= zero,
                    "{}/{}: negative available: {b:?}",
                    w.id,
                    b.asset
                );
                ensure!(
                    b.committed == b.reserved + b.queued,
                    "{}/{}: committed: {b:?}",
                    w.id,
                    b.asset
                );
                ensure!(
                    b.available == (b.cash - b.committed).max(zero),
                    "{}/{}: available: {b:?}",
                    w.id,
                    b.asset
                );
            }
        }
        self.ledger.check_invariants()?;
        // The packed form (passivation, snapshots) gives back every wallet
        // exactly, whatever state the commands left it in.
        for w in self.ledger.wallets() {
            let bytes = settle_engine::wallet::pack::to_bytes(w);
            let back = settle_engine::wallet::pack::decode(&bytes).map_err(|e| e.to_string())?;
            ensure!(&back == w, "{}: the packed form does not round-trip", w.id);
            // A snapshot's load checks the bytes without decoding them: the
            // scan tells the same outline, and refuses what decode refuses
            // (one byte changed, at a place that varies with the state).
            let outline = settle_engine::wallet::pack::scan(&bytes, &mut ())
                .map_err(|e| format!("{}: the scan refuses its packed form: {e}", w.id))?;
            ensure!(
                outline == settle_engine::wallet::pack::Outline::of(w),
                "{}: the scan's outline differs",
                w.id
            );
            let at = usize::try_from(w.sequence.wrapping_mul(7_919))
                .unwrap_or(0)
                .checked_rem(bytes.len())
                .unwrap_or(0);
            for value in [
                0xc1,
                0x00,
                0x93,
                bytes[at] ^ 0x01,
                bytes[at].wrapping_add(0x10),
            ] {
                let mut bad = bytes.clone();
                bad[at] = value;
                let scanned = settle_engine::wallet::pack::scan(&bad, &mut ());
                let decoded = settle_engine::wallet::pack::decode(&bad);
                ensure!(
                    scanned.is_ok() == decoded.is_ok(),
                    "{}: byte {at} set to {value:#04x}: scan {scanned:?}, decode {:?}",
                    w.id,
                    decoded.map(|_| ())
                );
            }
        }
        // 1. Conservation, per asset: the audit, and the model's own books.
        let audit = self.ledger.audit();
        for row in &audit {
            ensure!(row.ok(), "conservation broken: {row:?}");
        }
        for a in AUDITED {
            let row = audit
                .iter()
                .find(|r| r.asset == acode(a))
                .ok_or(format!("no audit row for {}", ASSET_CODES[a]))?;
            let t = self.model.totals[a];
            let cash: i128 = self
                .model
                .wallets
                .iter()
                .filter_map(|w| w.books.get(&a))
                .map(|b| b.cash)
                .sum();
            let flying = self.model.in_flight_units(a);
            ensure!(
                cash + flying == t.credited - t.debited + t.conv_in - t.conv_out,
                "model: {} not conserved",
                ASSET_CODES[a]
            );
            let got = (
                row.cash,
                row.in_flight,
                row.credited,
                row.debited,
                row.converted_in,
                row.converted_out,
            );
            let want = (cash, flying, t.credited, t.debited, t.conv_in, t.conv_out);
            ensure!(
                got == want,
                "audit of {} (cash, in flight, credited, debited, converted in, out) = {got:?}, model {want:?}",
                ASSET_CODES[a]
            );
        }
        // 5. The events alone rebuild the state: the replica, which saw
        // nothing but the events, equals the ledger, and so does its digest.
        // (A step without events changed nothing in the replica, so the
        // structural comparison suffices there: the digests, the costliest
        // part of a step, are compared after every step that emitted events.)
        ensure!(
            self.ledger == self.replica,
            "the state rebuilt from the events differs"
        );
        if changed {
            let live = self.ledger.digest().map_err(|e| e.to_string())?;
            let rebuilt = self.replica.digest().map_err(|e| e.to_string())?;
            ensure!(
                live == rebuilt,
                "the state rebuilt from the events differs (digest)"
            );
            // 6. A snapshot of the wallets alone (through the snapshot
            // files' named encoding) restores the whole ledger: the
            // messages in flight and the creators follow from the states.
            let states: Vec<WalletState> = self
                .ledger
                .wallets()
                .map(|w| {
                    let bytes = rmp_serde::to_vec_named(w).map_err(|e| e.to_string())?;
                    rmp_serde::from_slice(&bytes).map_err(|e| e.to_string())
                })
                .collect::<Result<_, String>>()
                .map_err(|e| format!("a wallet state does not round-trip: {e}"))?;
            let restored = Ledger::restore(config(), states).map_err(|e| e.to_string())?;
            ensure!(
                restored == self.ledger,
                "the ledger restored from its wallet states differs"
            );
        }
        Ok(())
    }
}

/// Runs a trace on a fresh ledger.
fn rerun(trace: &[Trace]) -> (Ledger, Vec<Event>, Vec<Outcome>) {
    let mut ledger = Ledger::new(config());
    let mut events = Vec::new();
    let mut outcomes = Vec::new();
    for t in trace {
        let outcome = match t {
            Trace::Exec(c) => ledger.execute(c, &mut events).map(Some),
            Trace::Deliver(id, now) => ledger.deliver(*id, at(*now), &mut events).map(|()| None),
            Trace::DeliverAll(now) => ledger.deliver_all(at(*now), &mut events).map(|()| None),
        };
        outcomes.push(outcome);
    }
    (ledger, events, outcomes)
}

fn run_case(p: &'static Profile, steps: &[(Option<Step>, i64)]) -> Result<(), String> {
    let mut r = Runner::new(p);
    r.open_all()?;
    for (i, (step, dt)) in steps.iter().enumerate() {
        let Some(step) = step else { continue };
        r.step(step, *dt)
            .map_err(|e| format!("step {i} ({step:?}): {e}"))?;
    }
    // Everything in flight lands somewhere.
    r.now += 1;
    r.deliver(None)
        .map_err(|e| format!("final delivery: {e}"))?;
    ensure!(
        r.ledger.in_flight().len() == 0,
        "money still in flight after delivering all"
    );
    r.fifo.finish()?;
    // 6. Determinism: the same inputs give the same answers, events and state.
    let (again, events, outcomes) = rerun(&r.trace);
    ensure!(
        outcomes == r.outcomes,
        "determinism: the answers differ on a second run"
    );
    ensure!(
        events == r.events,
        "determinism: the events differ on a second run"
    );
    ensure!(
        again.digest().ok() == r.ledger.digest().ok(),
        "determinism: the digests differ on a second run"
    );
    Ok(())
}

/// Cases per property: `PROPTEST_CASES` if set, else the default given.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Shrinking a failing sequence of 20 to 60 steps takes a few thousand runs.
fn config_with(default_cases: u32) -> ProptestConfig {
    ProptestConfig {
        max_shrink_iters: 20_000,
        ..ProptestConfig::with_cases(cases(default_cases))
    }
}

proptest! {
    #![proptest_config(config_with(4_000))]

    /// One single-asset wallet: credits, holds, debits queueing and draining,
    /// cancellation, expiry, partial captures, statuses, retries.
    #[test]
    fn fifo_single_wallet(steps in steps_s(&FIFO)) {
        run_case(&FIFO, &steps).map_err(TestCaseError::fail)?;
    }
}

proptest! {
    #![proptest_config(config_with(3_000))]

    /// Four wallets, three assets: transfers and conversions in flight,
    /// delivered one message at a time or all at once.
    #[test]
    fn transfers_and_conversions(steps in steps_s(&TRANSFERS)) {
        run_case(&TRANSFERS, &steps).map_err(TestCaseError::fail)?;
    }
}

proptest! {
    #![proptest_config(config_with(3_000))]

    /// Status changes (restricted, suspended, closed) and time jumps that
    /// expire holds and queued items, around transfers in flight.
    #[test]
    fn statuses_and_expiry(steps in steps_s(&STATUSES)) {
        run_case(&STATUSES, &steps).map_err(TestCaseError::fail)?;
    }
}

proptest! {
    #![proptest_config(config_with(1_000))]

    /// As `transfers_and_conversions`, but a new transaction may reuse an id
    /// that another wallet already holds (ids are the caller's input).
    #[test]
    fn txn_ids_shared_between_wallets(steps in steps_s(&SHARED_IDS)) {
        run_case(&SHARED_IDS, &steps).map_err(TestCaseError::fail)?;
    }
}
