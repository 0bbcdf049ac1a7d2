//! The conservation audit of ENGINE.md (invariant 1), per asset:
//!
//! `cash + in flight = external credits - external debits + converted in - converted out`
//!
//! `cash` is read from the balances, `in flight` from the messages actually
//! in flight, the right-hand side from the wallets' flow counters: three
//! independent records that must agree. Sums are `i128` minor units.

use crate::asset::{AssetCode, AssetRegistry};
use crate::message::Message;
use crate::money;
use crate::wallet::WalletState;
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
    let mut rows: BTreeMap<AssetCode, AssetAudit> = assets
        .iter()
        .map(|a| (a.code, AssetAudit::new(a.code, a.scale)))
        .collect();
    // Saturating: an overflow would need 10^10 maximal balances; it then
    // shows as a failed audit rather than a panic.
    for w in wallets {
        for b in w.books() {
            let row = rows
                .entry(b.asset.code)
                .or_insert_with(|| AssetAudit::new(b.asset.code, b.asset.scale));
            row.cash = row.cash.saturating_add(money::units(b.cash));
        }
        for (code, f) in w.flows() {
            let row = rows.entry(code).or_insert_with(|| AssetAudit::new(code, 0));
            row.credited = row.credited.saturating_add(f.credited);
            row.debited = row.debited.saturating_add(f.debited);
            row.converted_in = row.converted_in.saturating_add(f.converted_in);
            row.converted_out = row.converted_out.saturating_add(f.converted_out);
            row.sent = row.sent.saturating_add(f.sent);
            row.received = row.received.saturating_add(f.received);
        }
    }
    for m in in_flight {
        if let Some((code, amount)) = m.money() {
            let row = rows.entry(code).or_insert_with(|| AssetAudit::new(code, 0));
            row.in_flight = row.in_flight.saturating_add(money::units(amount));
        }
    }
    rows.into_values().collect()
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
    for a in audit(assets, wallets, in_flight) {
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
