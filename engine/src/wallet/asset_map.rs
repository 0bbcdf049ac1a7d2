//! `AssetMap`: a wallet's per-asset values (books, flows) in one sorted
//! vector instead of a `BTreeMap`.
//!
//! Why: almost every wallet holds one asset, a few hold a handful. A
//! `BTreeMap` allocates a whole leaf (room for 11 entries: about 1.5 KB for
//! the books, 1.1 KB for the flows) for the first entry, so a million
//! restored wallets cost 2.6 GB of zeroed pages before anything else, and
//! loading a snapshot was dominated by page faults. A vector of exactly the
//! entries held costs one allocation of that size, and a linear search over
//! one to a few entries is as fast as a tree lookup.
//!
//! It serializes as a map in key order, exactly as the `BTreeMap` did, so
//! the state digest (BLAKE3 over named MessagePack) is unchanged.

use crate::asset::AssetCode;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// Values by asset code, kept sorted by code (so iteration order is the
/// order a `BTreeMap` would give).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AssetMap<V> {
    entries: Vec<(AssetCode, V)>,
}

impl<V> Default for AssetMap<V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<V> AssetMap<V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// From entries already in strictly ascending key order (a decoder's
    /// input); `None` if they are not, so no key is lost or duplicated.
    pub fn from_sorted(entries: Vec<(AssetCode, V)>) -> Option<Self> {
        entries
            .windows(2)
            .all(|w| w[0].0 < w[1].0)
            .then_some(Self { entries })
    }

    fn find(&self, key: &AssetCode) -> Result<usize, usize> {
        // One to a few entries: a linear scan beats a binary search's branches.
        for (i, (k, _)) in self.entries.iter().enumerate() {
            if k == key {
                return Ok(i);
            }
            if k > key {
                return Err(i);
            }
        }
        Err(self.entries.len())
    }

    pub fn get(&self, key: &AssetCode) -> Option<&V> {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    pub fn get_mut(&mut self, key: &AssetCode) -> Option<&mut V> {
        self.find(key).ok().map(|i| &mut self.entries[i].1)
    }

    pub fn contains_key(&self, key: &AssetCode) -> bool {
        self.find(key).is_ok()
    }

    /// Inserts or replaces; returns the value replaced, as `BTreeMap` does.
    pub fn insert(&mut self, key: AssetCode, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &AssetCode> + ExactSizeIterator {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.entries.iter().map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&AssetCode, &V)> + ExactSizeIterator {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

impl<'a, V> IntoIterator for &'a AssetMap<V> {
    type Item = (&'a AssetCode, &'a V);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (AssetCode, V)>,
        fn(&'a (AssetCode, V)) -> (&'a AssetCode, &'a V),
    >;

    fn into_iter(self) -> Self::IntoIter {
        fn pair<K, V>((k, v): &(K, V)) -> (&K, &V) {
            (k, v)
        }
        self.entries.iter().map(pair)
    }
}

impl<V: Serialize> Serialize for AssetMap<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for AssetMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<AssetCode, V>::deserialize(d)?;
        Ok(Self {
            entries: map.into_iter().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> AssetCode {
        AssetCode::new(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn behaves_as_a_btreemap() {
        let mut ours = AssetMap::new();
        let mut theirs = BTreeMap::new();
        for (i, c) in ["USD", "BTC", "JPY", "USD", "AAA", "ZZZ", "BTC"]
            .into_iter()
            .enumerate()
        {
            assert_eq!(ours.insert(code(c), i), theirs.insert(code(c), i));
        }
        assert!(ours.iter().eq(theirs.iter()));
        assert_eq!(ours.len(), theirs.len());
        assert_eq!(ours.get(&code("JPY")), theirs.get(&code("JPY")));
        assert_eq!(ours.get(&code("EUR")), None);
        assert_eq!(
            rmp_serde::to_vec_named(&ours).ok(),
            rmp_serde::to_vec_named(&theirs).ok()
        );
        let back: AssetMap<usize> =
            rmp_serde::from_slice(&rmp_serde::to_vec_named(&ours).unwrap_or_default())
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, ours);
        assert!(AssetMap::from_sorted(vec![(code("B1"), 0), (code("A1"), 1)]).is_none());
        assert!(AssetMap::from_sorted(vec![(code("A1"), 0), (code("A1"), 1)]).is_none());
    }
}
