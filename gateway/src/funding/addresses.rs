//! Pay-in addresses: the bank details a wallet's owner gives payers. Each
//! is unique across the engine (the account number, which a bank notice
//! names, finds exactly one wallet).
//!
//! settle issues them as the virtual accounts of one partner bank: fixed
//! routing codes, account numbers derived from the address id (BLAKE3, so
//! a retry with the claimed id issues the same number) and checked against
//! every number issued; a collision takes the next id.

use serde::{Deserialize, Serialize};
use settle_engine::{AssetCode, ClientId, PayinAddressId, Timestamp, WalletId};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressKind {
    LocalBankTransfer,
    InternationalBankTransfer,
}

impl AddressKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AddressKind::LocalBankTransfer => "local_bank_transfer",
            AddressKind::InternationalBankTransfer => "international_bank_transfer",
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PayinAddress {
    pub id: PayinAddressId,
    pub wallet: WalletId,
    pub client: ClientId,
    pub kind: AddressKind,
    /// The asset pay-ins to it credit.
    pub asset: AssetCode,
    pub routing_code_type: String,
    pub routing_code: String,
    pub account_number: String,
    pub created_at: Timestamp,
}

/// The partner bank's BIC, for international transfers.
pub const BIC: &str = "SETLGB2LXXX";

/// The local clearing code of the partner bank for an asset's currency.
fn local_routing(asset: AssetCode) -> (&'static str, &'static str) {
    match asset.as_str() {
        "USD" => ("aba", "021000021"),
        "GBP" => ("sort_code", "040004"),
        "CAD" => ("transit_number", "00011-001"),
        "AUD" => ("bsb", "062-000"),
        _ => ("bank_code", "SETL0001"),
    }
}

/// `n` decimal digits from the id's hash.
fn digits(id: PayinAddressId, n: usize) -> String {
    let hash = blake3::hash(&id.ulid().0.to_be_bytes());
    hash.as_bytes()
        .iter()
        .take(n)
        .map(|b| char::from(b'0' + b % 10))
        .collect()
}

/// An IBAN (GB format: bank code SETL, sort code, account) with its mod-97
/// check digits, so that payers' banks accept it.
fn iban(sort: &str, account: &str) -> String {
    let bban = format!("SETL{sort}{account}");
    // Letters become 10..35; the country and "00" go at the end.
    let mut rem: u32 = 0;
    for c in format!("{bban}GB00").chars() {
        let v = c.to_digit(36).unwrap_or(0);
        for d in v.to_string().chars() {
            rem = (rem * 10 + d.to_digit(10).unwrap_or(0)) % 97;
        }
    }
    format!("GB{:02}{bban}", 98 - rem)
}

/// The bank details of an address with this id.
pub fn details(
    id: PayinAddressId,
    kind: AddressKind,
    asset: AssetCode,
) -> (String, String, String) {
    match kind {
        AddressKind::LocalBankTransfer => {
            let (t, code) = local_routing(asset);
            (t.to_owned(), code.to_owned(), digits(id, 12))
        }
        AddressKind::InternationalBankTransfer => {
            let d = digits(id, 14);
            let (sort, account) = d.split_at(6);
            ("bic".to_owned(), BIC.to_owned(), iban(sort, account))
        }
    }
}

/// Every address, by id and by wallet, and the numbers taken.
#[derive(Debug, Default)]
pub struct Addresses {
    by_id: HashMap<PayinAddressId, Arc<PayinAddress>>,
    by_wallet: HashMap<WalletId, Vec<PayinAddressId>>,
    numbers: HashSet<String>,
}

impl Addresses {
    pub fn get(&self, id: PayinAddressId) -> Option<Arc<PayinAddress>> {
        self.by_id.get(&id).cloned()
    }

    pub fn number_taken(&self, number: &str) -> bool {
        self.numbers.contains(number)
    }

    /// Adds an address; again (replay, a retry) changes nothing.
    pub fn insert(&mut self, a: PayinAddress) {
        if self.by_id.contains_key(&a.id) {
            return;
        }
        self.numbers.insert(a.account_number.clone());
        let list = self.by_wallet.entry(a.wallet).or_default();
        // Ids are minted monotonic: appending keeps the list oldest first.
        if let Err(at) = list.binary_search(&a.id) {
            list.insert(at, a.id);
        }
        self.by_id.insert(a.id, Arc::new(a));
    }

    /// Takes an address back whose record did not reach the log.
    pub fn remove(&mut self, id: PayinAddressId) {
        if let Some(a) = self.by_id.remove(&id) {
            self.numbers.remove(&a.account_number);
            if let Some(list) = self.by_wallet.get_mut(&a.wallet) {
                list.retain(|x| *x != id);
            }
        }
    }

    /// A wallet's addresses, oldest first.
    pub fn of_wallet(&self, wallet: WalletId) -> Vec<Arc<PayinAddress>> {
        self.by_wallet
            .get(&wallet)
            .map(|ids| ids.iter().filter_map(|id| self.get(*id)).collect())
            .unwrap_or_default()
    }

    pub fn all(&self) -> Vec<PayinAddress> {
        let mut out: Vec<PayinAddress> = self.by_id.values().map(|a| (**a).clone()).collect();
        out.sort_by_key(|a| a.id);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ibans_carry_valid_check_digits() {
        // The published example GB82 WEST 1234 5698 7654 32 checks the method.
        let bban = "WEST12345698765432";
        let mut rem = 0u32;
        for c in format!("{bban}GB82").chars() {
            for d in c.to_digit(36).unwrap().to_string().chars() {
                rem = (rem * 10 + d.to_digit(10).unwrap()) % 97;
            }
        }
        assert_eq!(rem, 1);
        let i = iban("123456", "12345678");
        assert!(i.starts_with("GB") && i.len() == 22, "{i}");
        let mut rem = 0u32;
        for c in format!("{}{}", &i[4..], &i[..4]).chars() {
            for d in c.to_digit(36).unwrap().to_string().chars() {
                rem = (rem * 10 + d.to_digit(10).unwrap()) % 97;
            }
        }
        assert_eq!(rem, 1, "{i}");
    }

    #[test]
    fn details_are_stable_per_id() {
        let id = PayinAddressId::from_u128(42);
        let usd = AssetCode::new("USD").unwrap();
        let a = details(id, AddressKind::LocalBankTransfer, usd);
        assert_eq!(a, details(id, AddressKind::LocalBankTransfer, usd));
        assert_eq!((a.0.as_str(), a.2.len()), ("aba", 12));
        let b = details(id, AddressKind::InternationalBankTransfer, usd);
        assert_eq!((b.0.as_str(), b.1.as_str()), ("bic", BIC));
    }
}
