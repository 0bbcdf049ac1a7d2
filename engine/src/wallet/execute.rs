//! One entry point for every command addressed to a wallet, shared by the
//! `Ledger` and the wallet actors, so both run exactly the same rules.

use super::{Done, WalletState};
use crate::command::Op;
use crate::config::EngineConfig;
use crate::event::Event;
use crate::ids::Timestamp;
use crate::money;
use crate::reject::Reject;
use crate::txn::{ConversionTerms, Outbound, TxnKind};

impl WalletState {
    /// Executes `op` (any `Op` but `OpenWallet`) on this wallet.
    ///
    /// `destination` is the caller's verdict on a transfer's or conversion's
    /// destination wallet, which this wallet cannot see; it is applied after
    /// this wallet's own retry check and expiry, so that a retry is answered
    /// as before and time passes whatever the command's fate.
    pub fn execute(
        &mut self,
        at: Timestamp,
        config: &EngineConfig,
        op: &Op,
        destination: Result<(), Reject>,
        out: &mut Vec<Event>,
    ) -> Result<Done, Reject> {
        if op.wallet() != self.id {
            return Err(Reject::Internal(format!(
                "command for {} routed to {}",
                op.wallet(),
                self.id
            )));
        }
        let limits = &config.limits;
        match op {
            Op::OpenWallet { wallet, .. } => Err(Reject::InvalidRequest(format!(
                "wallet {wallet} is already open"
            ))),
            Op::SetStatus { status, reason, .. } => {
                self.change_status(at, *status, reason.clone(), out)
            }
            Op::UpdateSettings { patch, .. } => self.update_settings(at, patch, out),
            Op::Credit {
                txn,
                asset,
                amount,
                pending,
                info,
                ..
            } => self.credit(at, *txn, *asset, *amount, *pending, info, out),
            Op::SettlePending { txn, .. } => self.resolve_pending(at, *txn, true, out),
            Op::RejectPending { txn, .. } => self.resolve_pending(at, *txn, false, out),
            Op::Debit {
                txn,
                asset,
                amount,
                if_insufficient,
                expires_at,
                info,
                ..
            } => self.submit_outbound(
                at,
                limits,
                *txn,
                *asset,
                *amount,
                Outbound::Payout,
                *if_insufficient,
                *expires_at,
                info,
                out,
            ),
            Op::Reserve {
                txn,
                asset,
                amount,
                expires_at,
                info,
                ..
            } => self.reserve(at, *txn, *asset, *amount, *expires_at, info, out),
            Op::Capture { txn, amount, .. } => self.capture(at, *txn, *amount, out),
            Op::Release { txn, .. } => self.release(at, *txn, out),
            Op::Cancel { txn, .. } => self.cancel(at, *txn, out),
            Op::Expire { wallet } => {
                self.expire_due(at, out)?;
                Ok(Done::Wallet(*wallet))
            }
            Op::Transfer {
                from,
                to,
                txn,
                asset,
                amount,
                if_insufficient,
                expires_at,
                info,
            } => {
                if let Some(done) = self.seen(*txn, TxnKind::Transfer)? {
                    return Ok(done);
                }
                self.expire_due(at, out)?;
                if from == to {
                    return Err(Reject::InvalidRequest(
                        "a transfer needs two different wallets".to_owned(),
                    ));
                }
                config.assets.resolve(*asset)?;
                destination?;
                // Expired and checked for a retry above: nothing has changed
                // since (the id is still unknown here).
                self.submit_new_outbound(
                    at,
                    limits,
                    *txn,
                    *asset,
                    *amount,
                    Outbound::Transfer { to: *to },
                    *if_insufficient,
                    *expires_at,
                    info,
                    out,
                )
            }
            Op::Convert {
                to,
                txn,
                sell_asset,
                buy_asset,
                sell_amount,
                rate,
                if_insufficient,
                expires_at,
                info,
                ..
            } => {
                if let Some(done) = self.seen(*txn, TxnKind::Conversion)? {
                    return Ok(done);
                }
                self.expire_due(at, out)?;
                if sell_asset == buy_asset {
                    return Err(Reject::InvalidRequest(
                        "a conversion needs two different assets".to_owned(),
                    ));
                }
                let sell = config.assets.resolve(*sell_asset)?;
                let buy = config.assets.resolve(*buy_asset)?;
                let sell_amount = money::validate(sell, *sell_amount)?;
                let terms = ConversionTerms {
                    buy_asset: buy.code,
                    buy_amount: money::convert(sell_amount, *rate, buy)?,
                    rate: *rate,
                };
                destination?;
                // Expired and checked for a retry above: nothing has changed
                // since (the id is still unknown here).
                self.submit_new_outbound(
                    at,
                    limits,
                    *txn,
                    *sell_asset,
                    sell_amount,
                    Outbound::Conversion { to: *to, terms },
                    *if_insufficient,
                    *expires_at,
                    info,
                    out,
                )
            }
        }
    }
}
