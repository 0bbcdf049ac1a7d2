//! `History`: every transaction record a wallet holds, sorted by id, in
//! chunks of about `CHUNK` records.
//!
//! Why not a `BTreeMap`: the gateway mints transaction ids as ULIDs, so the
//! records of one wallet arrive in nearly increasing id order. A tree walks
//! from its root to a leaf for every new record and every lookup of one:
//! two or three nodes per wallet, none of them in cache when 10,000 wallets
//! share two cores, which made the duplicate checks of `execute` and
//! `receive` the largest costs of a routed transfer in our own code
//! (BENCHMARKS.md). Here an id past the newest (kept beside the chunks) is
//! known new without touching a record and is pushed; a recent id is found
//! by a search that starts from the end, touching the records just written.
//! Records sit inline, not boxed: one allocation fewer per record, and the
//! newest records share cache lines.
//!
//! Why chunks, not one vector: a vector doubles, which would copy a busy
//! wallet's whole history in one message (a merchant with a million records:
//! ~110 MB) and leave up to half of it unused. Chunks are filled in order
//! and sealed full; only the open one grows.
//!
//! An id out of order (ids minted by another process, a clock set back, a
//! test) is still placed correctly: it shifts the records after it in its
//! chunk, and a chunk grown past twice `CHUNK` is split in two.

use crate::ids::TxnId;
use crate::txn::Txn;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use std::fmt;

/// Records per sealed chunk (~7 KiB of 112-byte records).
const CHUNK: usize = 64;

/// A wallet's records, strictly increasing by id across `sealed` then
/// `open`. (A record's `id` is never changed in place: it is the key.)
/// Equal to another when it holds the same records, however chunked.
#[derive(Clone, Debug, Default)]
pub(crate) struct History {
    /// Full chunks, oldest first; every record of one is below every record
    /// of the next. Never empty chunks.
    sealed: Vec<Chunk>,
    /// The newest records, fewer than `CHUNK` (possibly none).
    open: Vec<Txn>,
    /// The greatest id held, if any: a new id is checked against it
    /// without touching a record.
    newest: Option<TxnId>,
    len: usize,
}

#[derive(Clone, Debug)]
struct Chunk {
    /// Its first record's id, for the search across chunks.
    first: TxnId,
    records: Vec<Txn>,
}

/// Which records a place is in.
#[derive(Clone, Copy, Debug)]
enum Part {
    Sealed(usize),
    Open,
}

/// Where a new record goes (`History::vacant`).
pub(crate) struct Vacant<'a> {
    history: &'a mut History,
    part: Part,
    at: usize,
    id: TxnId,
}

impl Vacant<'_> {
    /// Places the record (whose id is the one asked for).
    pub(crate) fn insert(self, txn: Txn) {
        debug_assert_eq!(txn.id, self.id, "a record placed under another id");
        let h = self.history;
        if h.newest.is_none_or(|n| n < self.id) {
            h.newest = Some(self.id);
        }
        h.len += 1;
        match self.part {
            Part::Open => {
                h.open.insert(self.at, txn);
                if h.open.len() >= CHUNK {
                    let records = std::mem::replace(&mut h.open, Vec::with_capacity(CHUNK));
                    h.seal(records);
                }
            }
            Part::Sealed(c) => {
                let chunk = &mut h.sealed[c];
                chunk.records.insert(self.at, txn);
                chunk.first = chunk.records[0].id;
                if chunk.records.len() > 2 * CHUNK {
                    let later = chunk.records.split_off(CHUNK);
                    // Its room for twice `CHUNK` would stay unused.
                    chunk.records.shrink_to_fit();
                    h.sealed.insert(
                        c + 1,
                        Chunk {
                            first: later[0].id,
                            records: later,
                        },
                    );
                }
            }
        }
    }
}

impl History {
    /// Records already in strictly increasing id order; `None` if they are
    /// not.
    pub(crate) fn from_sorted(records: Vec<Txn>) -> Option<Self> {
        if !records.windows(2).all(|w| w[0].id < w[1].id) {
            return None;
        }
        let mut history = History {
            newest: records.last().map(|t| t.id),
            len: records.len(),
            ..History::default()
        };
        if records.len() < CHUNK {
            // Most wallets (and every one activated with few records): the
            // vector read is the open chunk as it is, not copied again.
            history.open = records;
            return Some(history);
        }
        let mut records = records.into_iter();
        loop {
            let chunk: Vec<Txn> = records.by_ref().take(CHUNK).collect();
            if chunk.len() < CHUNK {
                history.open = chunk;
                return Some(history);
            }
            history.seal(chunk);
        }
    }

    fn seal(&mut self, records: Vec<Txn>) {
        if let Some(first) = records.first() {
            self.sealed.push(Chunk {
                first: first.id,
                records,
            });
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Oldest id first.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &Txn> {
        self.sealed
            .iter()
            .flat_map(|c| c.records.iter())
            .chain(self.open.iter())
    }

    pub(crate) fn get(&self, id: TxnId) -> Option<&Txn> {
        let (part, found) = self.find(id);
        let at = found.ok()?;
        Some(&self.part(part)[at])
    }

    pub(crate) fn get_mut(&mut self, id: TxnId) -> Option<&mut Txn> {
        let (part, found) = self.find(id);
        let at = found.ok()?;
        Some(match part {
            Part::Open => &mut self.open[at],
            Part::Sealed(c) => &mut self.sealed[c].records[at],
        })
    }

    /// The place for a record with `id`, or `None` if one is there already.
    pub(crate) fn vacant(&mut self, id: TxnId) -> Option<Vacant<'_>> {
        let (part, found) = self.find(id);
        let at = found.err()?;
        Some(Vacant {
            history: self,
            part,
            at,
            id,
        })
    }

    fn part(&self, part: Part) -> &[Txn] {
        match part {
            Part::Open => &self.open,
            Part::Sealed(c) => &self.sealed[c].records,
        }
    }

    /// The part `id` is or would be in, and `Ok(index)` of its record there
    /// or `Err(index)` where it would go.
    fn find(&self, id: TxnId) -> (Part, Result<usize, usize>) {
        if self.newest.is_none_or(|n| n < id) {
            return (Part::Open, Err(self.open.len()));
        }
        if self.open.first().is_some_and(|t| t.id <= id) {
            return (Part::Open, from_the_end(&self.open, id));
        }
        // In a sealed chunk (there is one: `open` starts above `id`, or is
        // empty while `newest` is held): the last that starts at or below
        // `id`, or the first.
        let c = self
            .sealed
            .partition_point(|c| c.first <= id)
            .saturating_sub(1);
        match self.sealed.get(c) {
            Some(chunk) => (Part::Sealed(c), from_the_end(&chunk.records, id)),
            None => (Part::Open, Err(0)),
        }
    }
}

/// Searches sorted `records` for `id` from the newest back, doubling the
/// step, then bisects the last step: a recent id touches only the end.
fn from_the_end(records: &[Txn], id: TxnId) -> Result<usize, usize> {
    let mut hi = records.len();
    match records.last() {
        None => return Err(0),
        Some(last) if last.id < id => return Err(hi),
        Some(_) => {}
    }
    // Throughout, `records[hi - 1].id >= id`: the place is before `hi`.
    // Step back until a record below `id`: the place is after it.
    let mut step = 1;
    let lo = loop {
        let Some(below) = hi.checked_sub(step).filter(|&b| b > 0) else {
            break 0;
        };
        if records[below - 1].id < id {
            break below;
        }
        hi = below;
        step = step.saturating_mul(2);
    };
    records[lo..hi]
        .binary_search_by(|t| t.id.cmp(&id))
        .map(|i| lo + i)
        .map_err(|i| lo + i)
}

impl PartialEq for History {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for History {}

/// As a map from id to record, in id order: the bytes a `BTreeMap` of the
/// same records writes (digests and older formats depend on them).
impl Serialize for History {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len))?;
        for t in self.iter() {
            map.serialize_entry(&t.id, t)?;
        }
        map.end()
    }
}

/// From a map of id to record, in any order, as a `BTreeMap` would read it;
/// refused if a key is not its record's id or an id comes twice.
impl<'de> Deserialize<'de> for History {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Records;
        impl<'de> Visitor<'de> for Records {
            type Value = History;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of transaction id to record")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<History, A::Error> {
                let mut records: Vec<Txn> = Vec::with_capacity(access.size_hint().unwrap_or(0));
                while let Some((id, txn)) = access.next_entry::<TxnId, Txn>()? {
                    if txn.id != id {
                        return Err(de::Error::custom(format!(
                            "record {} filed under {id}",
                            txn.id
                        )));
                    }
                    records.push(txn);
                }
                records.sort_by_key(|t| t.id);
                History::from_sorted(records)
                    .ok_or_else(|| de::Error::custom("a transaction id comes twice"))
            }
        }
        deserializer.deserialize_map(Records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asset::AssetCode;
    use crate::ids::Timestamp;
    use crate::txn::{TxnKind, TxnStatus};
    use proptest::prelude::*;
    use rust_decimal::Decimal;
    use std::collections::BTreeMap;

    fn record(id: u128) -> Txn {
        let asset = AssetCode::new("USD").unwrap_or_else(|e| panic!("{e}"));
        Txn::new(
            TxnId::from_u128(id),
            TxnKind::Credit,
            TxnStatus::Settled,
            asset,
            Decimal::ONE,
            1,
            Timestamp::from_millis(0),
        )
    }

    /// Applies `(id, insert?)` steps to a `History` and a `BTreeMap` side by
    /// side: the same records placed as refused, found as missing, listed
    /// and written in the same order.
    fn agrees(
        steps: impl IntoIterator<Item = (u128, bool)>,
        ids: u128,
    ) -> Result<(), TestCaseError> {
        let mut history = History::default();
        let mut tree = BTreeMap::new();
        for (id, insert) in steps {
            let key = TxnId::from_u128(id);
            if insert {
                let placed = history
                    .vacant(key)
                    .map(|slot| slot.insert(record(id)))
                    .is_some();
                let fresh = !tree.contains_key(&key);
                if fresh {
                    tree.insert(key, record(id));
                }
                prop_assert_eq!(placed, fresh);
            } else {
                prop_assert_eq!(history.get(key), tree.get(&key));
            }
            prop_assert_eq!(history.len(), tree.len());
        }
        prop_assert!(history.iter().eq(tree.values()));
        prop_assert!(history.iter().rev().eq(tree.values().rev()));
        for id in 0..ids {
            let key = TxnId::from_u128(id);
            prop_assert_eq!(history.get(key), tree.get(&key));
            if let Some(t) = history.get_mut(key) {
                t.sequence += 1;
            }
            if let Some(t) = tree.get_mut(&key) {
                t.sequence += 1;
            }
        }
        prop_assert!(history.iter().eq(tree.values()));
        let bytes = rmp_serde::to_vec_named(&history).unwrap_or_else(|e| panic!("{e}"));
        let tree_bytes = rmp_serde::to_vec_named(&tree).unwrap_or_else(|e| panic!("{e}"));
        prop_assert_eq!(&bytes, &tree_bytes);
        let back: History = rmp_serde::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"));
        prop_assert!(back.iter().eq(history.iter()));
        let sorted = History::from_sorted(history.iter().cloned().collect());
        prop_assert!(
            sorted.is_some_and(|h| h.iter().eq(history.iter()) && h.len() == history.len())
        );
        Ok(())
    }

    proptest! {
        /// Ids in any order, over several chunks.
        #[test]
        fn agrees_with_a_tree(steps in prop::collection::vec((0u128..400, any::<bool>()), 0..900)) {
            agrees(steps, 400)?;
        }

        /// Ids mostly increasing, as minted, with some late ones: the
        /// pushes, the seals and the places found from the end.
        #[test]
        fn agrees_with_a_tree_on_nearly_ordered_ids(
            jitter in prop::collection::vec((0u128..8, any::<bool>()), 0..900),
        ) {
            let steps = jitter
                .iter()
                .enumerate()
                .map(|(i, &(back, insert))| ((i as u128 + 8 - back), insert || back > 0));
            agrees(steps, 920)?;
        }
    }

    /// Late ids piled into one sealed chunk split it, and every record is
    /// still found in order.
    #[test]
    fn a_chunk_grown_by_late_ids_is_split() {
        // Every fourth id in order (sealed chunks), then the three ids in
        // each gap of the first chunk, newest first: three times as many
        // records land in it. Last, an id below all of them.
        let ids: Vec<u128> = (1..=300u128)
            .map(|i| 4 * i)
            .chain(
                (0..64u128)
                    .rev()
                    .flat_map(|i| [4 * i + 3, 4 * i + 2, 4 * i + 1]),
            )
            .chain([0])
            .collect();
        if let Err(e) = agrees(ids.iter().map(|&i| (i, true)), 1_200) {
            panic!("{e}");
        }
        let mut history = History::default();
        for &i in &ids {
            if let Some(slot) = history.vacant(TxnId::from_u128(i)) {
                slot.insert(record(i));
            }
        }
        assert!(history.sealed.iter().all(|c| c.records.len() <= 2 * CHUNK));
        assert!(history.sealed.len() > 300 / CHUNK, "no chunk was split");
        assert!(history.sealed.iter().all(|c| c.first == c.records[0].id));
        // The same records chunked afresh (as a packed wallet is read back)
        // are the same history.
        let afresh = History::from_sorted(history.iter().cloned().collect());
        assert!(
            afresh
                .as_ref()
                .is_some_and(|h| h.sealed.len() != history.sealed.len())
        );
        assert_eq!(afresh, Some(history.clone()));
        let mut one_less = history.iter().cloned().collect::<Vec<_>>();
        one_less.pop();
        assert_ne!(History::from_sorted(one_less), Some(history));
    }

    #[test]
    fn records_out_of_order_or_twice_are_refused() {
        assert!(History::from_sorted(vec![record(2), record(1)]).is_none());
        assert!(History::from_sorted(vec![record(1), record(1)]).is_none());
        assert!(History::from_sorted(vec![record(1), record(2)]).is_some());
        // A record filed under another id than its own.
        let mut misfiled = BTreeMap::new();
        misfiled.insert(TxnId::from_u128(1), record(1));
        misfiled.insert(TxnId::from_u128(2), record(1));
        let bytes = rmp_serde::to_vec_named(&misfiled).unwrap_or_else(|e| panic!("{e}"));
        assert!(rmp_serde::from_slice::<History>(&bytes).is_err());
    }
}
