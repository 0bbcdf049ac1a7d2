//! Assets: a code and a fixed scale (number of decimal places).

use crate::reject::Reject;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// The largest scale an asset may have. With at most 28 significant digits
/// per amount (see `money`), scale 18 still leaves 10 digits before the point.
pub const MAX_SCALE: u32 = 18;

/// The built-in assets of ENGINE.md and their scales.
pub const BUILTIN: &[(&str, u32)] = &[
    ("USD", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("AUD", 2),
    ("JPY", 0),
    ("BTC", 8),
    ("LTC", 8),
    ("BCH", 8),
    ("ETH", 18),
    ("USDT", 6),
    ("USDC", 6),
    ("XRP", 6),
    ("SOL", 9),
];

/// An asset code: 2 to 11 characters of `A-Z` and `0-9`, held inline so that
/// it is `Copy` and costs no allocation per balance.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AssetCode {
    // Zero-padded, so that ordering the bytes orders the codes as text.
    bytes: [u8; AssetCode::MAX_LEN],
    len: u8,
}

impl AssetCode {
    pub const MAX_LEN: usize = 11;

    /// Parses a code. Lower case is refused rather than folded: codes are
    /// identifiers, and `usd` silently meaning `USD` hides client bugs.
    pub fn new(text: &str) -> Result<Self, Reject> {
        let ok_len = (2..=Self::MAX_LEN).contains(&text.len());
        let ok_chars = text
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !(ok_len && ok_chars) {
            return Err(Reject::UnknownAsset(format!(
                "'{}' is not an asset code (2 to {} characters A-Z, 0-9)",
                text.chars().take(32).collect::<String>(),
                Self::MAX_LEN
            )));
        }
        let mut bytes = [0u8; Self::MAX_LEN];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        // At most MAX_LEN (11), checked above.
        let len = u8::try_from(text.len()).unwrap_or(0);
        Ok(Self { bytes, len })
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (checked in `new`), so this cannot fail.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Display for AssetCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for AssetCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for AssetCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AssetCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        AssetCode::new(&text).map_err(serde::de::Error::custom)
    }
}

/// An asset as the ledger uses it: its code and its scale.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Asset {
    pub code: AssetCode,
    pub scale: u32,
}

/// The assets this engine knows: the built-in list plus configured ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetRegistry {
    scales: BTreeMap<AssetCode, u32>,
}

impl Default for AssetRegistry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl AssetRegistry {
    /// The built-in assets of ENGINE.md.
    pub fn builtin() -> Self {
        let scales = BUILTIN
            .iter()
            .filter_map(|&(code, scale)| AssetCode::new(code).ok().map(|c| (c, scale)))
            .collect();
        Self { scales }
    }

    /// Adds a configured asset. Redefining a known asset with another scale is
    /// refused: amounts already on the books were validated against the old one.
    pub fn add(&mut self, code: &str, scale: u32) -> Result<Asset, Reject> {
        let code = AssetCode::new(code)?;
        if scale > MAX_SCALE {
            return Err(Reject::InvalidRequest(format!(
                "asset {code}: scale {scale} is above the maximum of {MAX_SCALE}"
            )));
        }
        match self.scales.get(&code) {
            Some(&known) if known != scale => Err(Reject::InvalidRequest(format!(
                "asset {code} already has scale {known}"
            ))),
            _ => {
                self.scales.insert(code, scale);
                Ok(Asset { code, scale })
            }
        }
    }

    pub fn get(&self, code: AssetCode) -> Option<Asset> {
        self.scales.get(&code).map(|&scale| Asset { code, scale })
    }

    /// The asset for a code, or `unknown_asset`.
    pub fn resolve(&self, code: AssetCode) -> Result<Asset, Reject> {
        self.get(code)
            .ok_or_else(|| Reject::UnknownAsset(format!("unknown asset {code}")))
    }

    pub fn iter(&self) -> impl Iterator<Item = Asset> + '_ {
        self.scales
            .iter()
            .map(|(&code, &scale)| Asset { code, scale })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_assets_have_the_scales_of_the_contract() {
        let r = AssetRegistry::builtin();
        let scale = |c: &str| r.get(AssetCode::new(c).unwrap()).map(|a| a.scale);
        assert_eq!(scale("USD"), Some(2));
        assert_eq!(scale("JPY"), Some(0));
        assert_eq!(scale("BTC"), Some(8));
        assert_eq!(scale("ETH"), Some(18));
        assert_eq!(scale("USDT"), Some(6));
        assert_eq!(scale("SOL"), Some(9));
        assert_eq!(r.iter().count(), BUILTIN.len());
    }

    #[test]
    fn codes_are_validated_and_ordered_as_text() {
        assert!(AssetCode::new("usd").is_err());
        assert!(AssetCode::new("U").is_err());
        assert!(AssetCode::new("ABCDEFGHIJKL").is_err());
        assert!(AssetCode::new("US D").is_err());
        assert!(AssetCode::new("USDT").unwrap() > AssetCode::new("USD").unwrap());
        assert!(AssetCode::new("AUD").unwrap() < AssetCode::new("B2").unwrap());
    }

    #[test]
    fn configured_assets_are_added_but_never_rescaled() {
        let mut r = AssetRegistry::builtin();
        assert_eq!(r.add("PTS", 0).unwrap().scale, 0);
        assert!(r.add("USD", 3).is_err());
        assert!(r.add("USD", 2).is_ok());
        assert!(r.add("BIG", MAX_SCALE + 1).is_err());
    }
}
