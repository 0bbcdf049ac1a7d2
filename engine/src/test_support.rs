//! Helpers for the unit tests of this crate.

use crate::asset::AssetRegistry;
use crate::event::Event;
use crate::ids::{ClientId, Timestamp, WalletId};
use crate::wallet::{WalletKind, WalletSettings, WalletSpec};

pub fn opened(wallet: WalletId, codes: &[&str]) -> Event {
    let registry = AssetRegistry::builtin();
    let assets = codes
        .iter()
        .map(|c| registry.get(crate::AssetCode::new(c).unwrap()).unwrap())
        .collect();
    Event::WalletOpened {
        wallet,
        spec: Box::new(WalletSpec {
            client: ClientId::from_u128(1),
            kind: WalletKind::General,
            customer: None,
            assets,
            single_asset: codes.len() == 1,
        }),
        settings: Box::new(WalletSettings::default()),
        at: Timestamp::from_millis(0),
    }
}
