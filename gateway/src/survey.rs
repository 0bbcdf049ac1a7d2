//! One pass over a consistent cut of the live engine, wallet by wallet:
//! the conservation audit, every invariant, and optionally the state
//! digest, without holding every wallet decoded at once.
//!
//! Why not `Gateway::with_cut`: it decodes every passivated wallet into one
//! map, so that an audit of a million wallets (which `settle load` runs
//! after every run) held a second, decoded copy of the state, 1.2 GB beside
//! the packed one. Here each wallet is decoded, checked, tallied, hashed
//! and dropped in turn; only the wallets awaiting a receipt, and the
//! destinations of their transfers, are read a second time, to put in
//! flight the messages their states imply (as a snapshot's load does).
//! The cut is the same: every wallet's state stays locked for the pass.

use crate::error::GatewayError;
use crate::runtime::Runtime;
use settle_engine::actor::{HeldState, StateError};
use settle_engine::audit::{self, Tally};
use settle_engine::digest::{self, Digester};
use settle_engine::message::implied_by;
use settle_engine::{AssetAudit, StateDigest, WalletState};
use std::borrow::Cow;

/// What one pass over a consistent cut found.
#[derive(Debug)]
pub struct Survey {
    /// The conservation audit, per asset.
    pub audit: Vec<AssetAudit>,
    /// Every wallet's own invariants and conservation across them: the
    /// first that does not hold.
    pub invariants: Result<(), String>,
    /// The state digest, if asked for.
    pub digest: Option<StateDigest>,
    pub wallets: usize,
    pub in_flight: usize,
}

fn unavailable(e: StateError) -> GatewayError {
    GatewayError::Unavailable(e.to_string())
}

/// The pass itself (`Gateway::survey`).
pub(crate) fn survey(runtime: &Runtime, with_digest: bool) -> Result<Survey, GatewayError> {
    // In id order (the digest's order); all locked before any is read.
    let all = runtime.registry.all();
    let guards: Vec<HeldState<'_>> = all.iter().map(|s| s.hold()).collect();
    let mut tally = Tally::new(&runtime.config.engine.assets);
    let mut invariants = Ok(());
    let mut digester = with_digest.then(|| Digester::new(guards.len()));
    let mut encoded = Vec::with_capacity(1024);
    let mut senders = Vec::new();
    for (i, guard) in guards.iter().enumerate() {
        let wallet = guard.view().map_err(unavailable)?;
        if invariants.is_ok() {
            invariants = wallet.check_invariants();
        }
        tally.wallet(&wallet);
        if let Some(d) = &mut digester {
            encoded.clear();
            digest::encode_wallet(&wallet, &mut encoded)
                .map_err(|e| GatewayError::Unavailable(format!("digest: {e}")))?;
            d.encoded_wallets(&encoded);
        }
        if wallet.awaiting_receipt().next().is_some() {
            senders.push(i);
        }
    }
    let sources: Vec<Cow<'_, WalletState>> = senders
        .iter()
        .filter_map(|&i| guards.get(i))
        .map(HeldState::view)
        .collect::<Result<_, _>>()
        .map_err(unavailable)?;
    let at_destination = |to, txn| match all.binary_search_by_key(&to, |s| s.id) {
        Ok(j) => match guards.get(j) {
            Some(g) => g.view().map(|d| d.txn(txn).map(|r| r.status)),
            None => Ok(None),
        },
        Err(_) => Ok(None),
    };
    let in_flight =
        implied_by(sources.iter().map(|w| &**w), at_destination).map_err(unavailable)?;
    for m in &in_flight {
        tally.message(m);
    }
    let rows = tally.finish();
    let invariants = invariants.and_then(|()| audit::check_rows(&rows));
    let digest = match digester {
        Some(d) => Some(
            d.finish(&in_flight)
                .map_err(|e| GatewayError::Unavailable(format!("digest: {e}")))?,
        ),
        None => None,
    };
    Ok(Survey {
        audit: rows,
        invariants,
        digest,
        wallets: guards.len(),
        in_flight: in_flight.len(),
    })
}
