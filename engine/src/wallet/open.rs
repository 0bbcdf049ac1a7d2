//! Opening a wallet: the checks of an `OpenWallet` command, shared by the
//! `Ledger` and the gateway's registry.

use super::{Done, WalletSettings, WalletSpec, WalletState};
use crate::command::Op;
use crate::config::EngineConfig;
use crate::event::Event;
use crate::ids::Timestamp;
use crate::reject::Reject;
use std::collections::BTreeSet;

/// The `WalletOpened` event of an `OpenWallet` command, or why not.
pub fn opening(config: &EngineConfig, at: Timestamp, op: &Op) -> Result<Event, Reject> {
    let Op::OpenWallet {
        wallet,
        client,
        kind,
        customer,
        assets,
        single_asset,
        settings,
    } = op
    else {
        return Err(Reject::Internal(format!("{op:?} opens no wallet")));
    };
    let n = assets.len();
    let max = config.limits.max_assets_per_wallet;
    if n == 0 || n > max {
        return Err(Reject::InvalidRequest(format!(
            "a wallet holds 1 to {max} assets, got {n}"
        )));
    }
    let distinct: BTreeSet<_> = assets.iter().collect();
    if distinct.len() != n {
        return Err(Reject::InvalidRequest(
            "an asset is listed twice".to_owned(),
        ));
    }
    if *single_asset && n != 1 {
        return Err(Reject::InvalidRequest(
            "a single-asset wallet holds one asset".to_owned(),
        ));
    }
    let too_long = |s: &Option<String>, max: usize| s.as_ref().is_some_and(|s| s.len() > max);
    if too_long(&settings.name, WalletSettings::MAX_NAME_LEN)
        || too_long(&settings.description, WalletSettings::MAX_DESCRIPTION_LEN)
    {
        return Err(Reject::InvalidRequest(
            "name or description is too long".to_owned(),
        ));
    }
    let spec = WalletSpec {
        client: *client,
        kind: *kind,
        customer: *customer,
        assets: assets
            .iter()
            .map(|&code| config.assets.resolve(code))
            .collect::<Result<_, _>>()?,
        single_asset: *single_asset,
    };
    Ok(Event::WalletOpened {
        wallet: *wallet,
        spec: Box::new(spec),
        settings: Box::new(settings.clone()),
        at,
    })
}

impl WalletState {
    /// The answer to opening this (existing) wallet again: a retry of the
    /// same opening is answered as before; another opening under the same id
    /// is refused.
    pub fn reopened(&self, opening: &Event) -> Result<Done, Reject> {
        match opening {
            Event::WalletOpened { spec, .. } if **spec == self.spec => Ok(Done::Wallet(self.id)),
            _ => Err(Reject::InvalidRequest(format!(
                "wallet id {} is already used",
                self.id
            ))),
        }
    }
}
