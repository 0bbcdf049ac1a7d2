//! The conservation audit of ENGINE.md (invariant 1), per asset:
//!
//! `cash + in flight = external credits - external debits + converted in - converted out`
//!
//! `cash` is read from the balances, `in flight` from the messages actually
//! in flight, the right-hand side from the wallets' flow counters: three
//! independent records that must agree. Sums are `i128` minor units.

use crate::asset::{Asset, AssetCode, AssetRegistry};
use crate::message::Message;
use crate::money;
use crate::wallet::pack as wallet_pack;
use crate::wallet::{Flows, WalletState};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AssetAudit {
    pub asset: AssetCode,
    pub scale: u32,
    pub cash: i128,
    pub in_flight: i128,
    pub credited: i128,
    pub debited: i128,
    pub converted_in: i128,
    pub converted_out: i128,
    /// Sent into flight and received from it, summed over wallets.
    pub sent: i128,
    pub received: i128,
}

impl AssetAudit {
    fn new(asset: AssetCode, scale: u32) -> Self {
        Self {
            asset,
            scale,
            cash: 0,
            in_flight: 0,
            credited: 0,
            debited: 0,
            converted_in: 0,
            converted_out: 0,
            sent: 0,
            received: 0,
        }
    }

    /// Whether money was conserved: nothing created, nothing lost.
    pub fn ok(&self) -> bool {
        let held = self.cash.checked_add(self.in_flight);
        let explained = self
            .credited
            .checked_sub(self.debited)
            .and_then(|n| n.checked_add(self.converted_in))
            .and_then(|n| n.checked_sub(self.converted_out));
        held.is_some() && held == explained
    }
}

/// Audits every asset that appears in the registry, a balance or a message.
pub fn audit<'a>(
    assets: &AssetRegistry,
    wallets: impl IntoIterator<Item = &'a WalletState>,
    in_flight: impl IntoIterator<Item = &'a Message>,
) -> Vec<AssetAudit> {
    let mut tally = Tally::new(assets);
    for w in wallets {
        tally.wallet(w);
    }
    for m in in_flight {
        tally.message(m);
    }
    tally.finish()
}

/// The audit's sums, fed value by value: from whole states (`wallet`), or
/// from a packed wallet's books and flows as a scan reads them (snapshot
/// loads do not build the states), and merged across threads.
#[derive(Clone, Debug)]
pub struct Tally {
    rows: BTreeMap<AssetCode, AssetAudit>,
}

impl Tally {
    /// Rows for every asset of the registry, all zero.
    pub fn new(assets: &AssetRegistry) -> Self {
        Tally {
            rows: assets
                .iter()
                .map(|a| (a.code, AssetAudit::new(a.code, a.scale)))
                .collect(),
        }
    }

    // Saturating: an overflow would need 10^10 maximal balances; it then
    // shows as a failed audit rather than a panic.

    /// One book's cash.
    pub fn book(&mut self, asset: Asset, cash: Decimal) {
        let row = self
            .rows
            .entry(asset.code)
            .or_insert_with(|| AssetAudit::new(asset.code, asset.scale));
        row.cash = row.cash.saturating_add(money::units(cash));
    }

    /// One (wallet, asset)'s flow counters.
    pub fn flows(&mut self, code: AssetCode, f: &Flows) {
        let row = self
            .rows
            .entry(code)
            .or_insert_with(|| AssetAudit::new(code, 0));
        row.credited = row.credited.saturating_add(f.credited);
        row.debited = row.debited.saturating_add(f.debited);
        row.converted_in = row.converted_in.saturating_add(f.converted_in);
        row.converted_out = row.converted_out.saturating_add(f.converted_out);
        row.sent = row.sent.saturating_add(f.sent);
        row.received = row.received.saturating_add(f.received);
    }

    /// A whole wallet: its books, then its flows.
    pub fn wallet(&mut self, w: &WalletState) {
        for b in w.books() {
            self.book(b.asset, b.cash);
        }
        for (code, f) in w.flows() {
            self.flows(code, f);
        }
    }

    /// The money a message in flight carries.
    pub fn message(&mut self, m: &Message) {
        if let Some((code, amount)) = m.money() {
            let row = self
                .rows
                .entry(code)
                .or_insert_with(|| AssetAudit::new(code, 0));
            row.in_flight = row.in_flight.saturating_add(money::units(amount));
        }
    }

    /// Adds another tally's sums (of other wallets) to this one's. A row's
    /// scale comes from the registry or a book (every wallet holds a book of
    /// each asset it has flows in), so the order of merging does not matter.
    pub fn merge(&mut self, other: Tally) {
        for (code, o) in other.rows {
            let row = self
                .rows
                .entry(code)
                .or_insert_with(|| AssetAudit::new(code, o.scale));
            if row.scale == 0 {
                row.scale = o.scale;
            }
            row.cash = row.cash.saturating_add(o.cash);
            row.in_flight = row.in_flight.saturating_add(o.in_flight);
            row.credited = row.credited.saturating_add(o.credited);
            row.debited = row.debited.saturating_add(o.debited);
            row.converted_in = row.converted_in.saturating_add(o.converted_in);
            row.converted_out = row.converted_out.saturating_add(o.converted_out);
            row.sent = row.sent.saturating_add(o.sent);
            row.received = row.received.saturating_add(o.received);
        }
    }

    /// The rows, by asset code.
    pub fn finish(self) -> Vec<AssetAudit> {
        self.rows.into_values().collect()
    }
}

impl wallet_pack::Sink for Tally {
    fn book(&mut self, asset: Asset, cash: Decimal) {
        Tally::book(self, asset, cash);
    }

    fn flows(&mut self, code: AssetCode, f: &Flows) {
        Tally::flows(self, code, f);
    }
}

/// Checks every wallet's own invariants and, across them, conservation per
/// asset and that the money in flight is what the wallets' flows say.
/// Shared by the `Ledger` and the actor runtime's consistent cuts.
pub fn check<'a>(
    assets: &AssetRegistry,
    wallets: impl IntoIterator<Item = &'a WalletState> + Clone,
    in_flight: impl IntoIterator<Item = &'a Message>,
) -> Result<(), String> {
    for w in wallets.clone() {
        w.check_invariants()?;
    }
    check_rows(&audit(assets, wallets, in_flight))
}

/// The checks of `check` across wallets, on the audit's rows: conservation
/// per asset, and the money in flight against the wallets' flows.
pub fn check_rows(rows: &[AssetAudit]) -> Result<(), String> {
    for a in rows {
        if !a.ok() {
            return Err(format!("conservation broken: {a:?}"));
        }
        if a.sent - a.received != a.in_flight {
            return Err(format!(
                "in flight disagrees with the wallets' flows: {a:?}"
            ));
        }
    }
    Ok(())
}
