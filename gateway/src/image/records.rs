//! An image's idempotency records: those the log's tail wrote, in memory;
//! those a snapshot file held, in that file.
//!
//! Why: a million idempotency records loaded from a snapshot were ~460 MB
//! of the snapshotter's image (each answer's text, its key twice, a hash
//! table's slots: BENCHMARKS.md), beside the live store's own copy. A
//! record loaded from a file is kept as its key, its time and where it is
//! (its section and index there), 48 bytes and the key's text in a list
//! sorted by key (a hash table's slots would double that), and read again,
//! section by section with the frame's checksum checked again, when the
//! image is written or installed.
//!
//! The log's tail can hold as many records as a snapshot (the first
//! snapshot holds every record the log has): past `IN_MEMORY` records, or
//! `IN_MEMORY_BYTES` of answers, kept in memory, they are written to the
//! image's scratch file, if it has one (`image::scratch`), and read back
//! from there the same way.

use super::scratch::{Place, Scratch};
use super::{IdempotencyEntry, IdempotencyOutcome, ImageError, Section};
use crate::http::idempotency::Fingerprint;
use settle_engine::ClientId;
use settle_snapshots::snapshot::SnapshotReread;
use std::collections::HashMap;

type Key = (ClientId, Box<str>);

/// Records inserted in memory beyond which they go to the scratch file:
/// ~250 bytes each with their key and slot, so ~16 MB.
const IN_MEMORY: usize = 65_536;

/// Bytes of answers kept in memory beyond which the records go to the
/// scratch file: a batch's answer is ~42 KB compressed, so funding a
/// million wallets in batches of 1,000 left ~42 MB of them under the
/// count above.
const IN_MEMORY_BYTES: usize = 16 << 20;

/// A record the log wrote (its key is the map's).
#[derive(Debug)]
struct Kept {
    fingerprint: Fingerprint,
    at: i64,
    outcome: IdempotencyOutcome,
}

/// A record of the log.
#[derive(Debug)]
enum Slot {
    Memory(Box<Kept>),
    /// In the scratch file: an `IdempotencyEntry`, named-field MessagePack.
    Scratch {
        at: i64,
        place: Place,
    },
}

impl Slot {
    fn at(&self) -> i64 {
        match self {
            Slot::Memory(kept) => kept.at,
            Slot::Scratch { at, .. } => *at,
        }
    }
}

/// Record `index` of the file's idempotency section `section` (an index
/// into `Records::sections`).
#[derive(Debug)]
struct FileRecord {
    client: ClientId,
    key: Box<str>,
    at: i64,
    section: u32,
    index: u32,
}

/// `FileRecord::section` of a record the log forgot or replaced, or that
/// expired: its place in the sorted list stays, it is no longer a record.
const GONE: u32 = u32::MAX;

/// The idempotency records of an image, by client and key.
#[derive(Debug, Default)]
pub(super) struct Records {
    /// The log's records.
    map: HashMap<Key, Slot, foldhash::fast::RandomState>,
    /// The file's records, sorted by (client, key) once loaded (`sort`).
    on_file: Vec<FileRecord>,
    /// Those not `GONE`.
    on_file_live: usize,
    /// The file's idempotency sections: where each one's body starts, and
    /// its length.
    sections: Vec<(u64, usize)>,
    /// The file the `on_file` records are in.
    file: Option<SnapshotReread>,
    /// Where records in memory go past `IN_MEMORY` or `IN_MEMORY_BYTES`,
    /// if anywhere.
    scratch: Option<Scratch>,
    /// Records inserted in memory since the last spill, and their
    /// answers' bytes.
    in_memory: usize,
    in_memory_bytes: usize,
}

/// A record's key and time, as a load keeps it.
pub(super) type OnDisk = (ClientId, Box<str>, i64);

impl Records {
    /// Records kept in `file` (and those later inserted in memory).
    pub fn in_file(file: SnapshotReread) -> Self {
        Records {
            file: Some(file),
            ..Records::default()
        }
    }

    pub fn len(&self) -> usize {
        self.on_file_live + self.map.len()
    }

    /// The file's record of `client` and `key`, gone or not.
    fn on_file_index(&self, client: ClientId, key: &str) -> Option<usize> {
        self.on_file
            .binary_search_by(|r| (r.client, &*r.key).cmp(&(client, key)))
            .ok()
    }

    /// The file's record of `client` and `key` is no longer one.
    fn forget_on_file(&mut self, client: ClientId, key: &str) {
        if let Some(i) = self.on_file_index(client, key)
            && let Some(r) = self.on_file.get_mut(i)
            && r.section != GONE
        {
            r.section = GONE;
            self.on_file_live -= 1;
        }
    }

    /// Records in memory go to `scratch` from now on, past `IN_MEMORY` or
    /// `IN_MEMORY_BYTES`.
    pub fn spill_into(&mut self, scratch: Scratch) {
        self.scratch = Some(scratch);
    }

    /// Keeps `entry` in memory (a record of the log, or of a snapshot
    /// read whole). Its answer is kept as the live store keeps it
    /// (`AnswerBody::compact`).
    pub fn insert(&mut self, entry: IdempotencyEntry) {
        let outcome = match entry.outcome {
            IdempotencyOutcome::Answered { status, body } => IdempotencyOutcome::Answered {
                status,
                body: body.compact(),
            },
            claimed => claimed,
        };
        if let IdempotencyOutcome::Answered { body, .. } = &outcome {
            self.in_memory_bytes += body.stored_len();
        }
        let kept = Kept {
            fingerprint: entry.fingerprint,
            at: entry.at,
            outcome,
        };
        self.forget_on_file(entry.client, &entry.key);
        self.map.insert(
            (entry.client, entry.key.into_boxed_str()),
            Slot::Memory(Box::new(kept)),
        );
        self.in_memory += 1;
        let over = self.in_memory > IN_MEMORY || self.in_memory_bytes > IN_MEMORY_BYTES;
        if over && self.scratch.is_some() {
            self.spill();
        }
    }

    /// Writes every record in memory to the scratch file (kept in memory
    /// if it does not take them).
    fn spill(&mut self) {
        self.in_memory = 0;
        self.in_memory_bytes = 0;
        let mut keys = Vec::new();
        let mut parts = Vec::new();
        for (key, slot) in &self.map {
            let Slot::Memory(kept) = slot else { continue };
            let entry = IdempotencyEntry {
                client: key.0,
                key: key.1.to_string(),
                fingerprint: kept.fingerprint,
                at: kept.at,
                outcome: kept.outcome.clone(),
            };
            match rmp_serde::to_vec_named(&entry) {
                Ok(bytes) => {
                    keys.push(key.clone());
                    parts.push(bytes);
                }
                Err(e) => tracing::warn!(%e, "an idempotency record stays in memory"),
            }
        }
        let Some(scratch) = &mut self.scratch else {
            return;
        };
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        match scratch.write(&refs) {
            Ok(places) => {
                for (key, place) in keys.into_iter().zip(places) {
                    if let Some(slot) = self.map.get_mut(&key) {
                        *slot = Slot::Scratch {
                            at: slot.at(),
                            place,
                        };
                    }
                }
            }
            Err(e) => {
                tracing::warn!(%e, "replay keeps idempotency records in memory");
                self.scratch = None;
            }
        }
    }

    /// Notes the records of the file's idempotency section whose body
    /// starts at `offset` and is `len` bytes long, in their order there.
    pub fn in_section(&mut self, offset: u64, len: usize, records: Vec<OnDisk>) {
        let section = u32::try_from(self.sections.len()).unwrap_or(GONE - 1);
        self.sections.push((offset, len));
        self.on_file.reserve(records.len());
        for (index, (client, key, at)) in records.into_iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            self.on_file.push(FileRecord {
                client,
                key,
                at,
                section,
                index,
            });
        }
    }

    /// Sorts the file's records by key once every section is in; of a key
    /// the file holds twice (no writer does), the later record is the one
    /// kept, as a map's insert would.
    pub fn sort(&mut self) {
        // Stable: a key's records stay in file order.
        self.on_file
            .sort_by(|a, b| (a.client, &a.key).cmp(&(b.client, &b.key)));
        for i in 1..self.on_file.len() {
            if let [a, b] = &mut self.on_file[i - 1..=i]
                && (a.client, &a.key) == (b.client, &b.key)
            {
                a.section = GONE;
            }
        }
        self.on_file_live = self.on_file.iter().filter(|r| r.section != GONE).count();
    }

    pub fn remove(&mut self, client: ClientId, key: &str) {
        self.map.remove(&(client, Box::from(key)));
        self.forget_on_file(client, key);
    }

    /// Drops records first seen `ttl_ms` or longer before `now_ms`.
    pub fn retain_fresh(&mut self, now_ms: i64, ttl_ms: i64) {
        let fresh = |at: i64| now_ms.saturating_sub(at) < ttl_ms;
        self.map.retain(|_, slot| fresh(slot.at()));
        for r in &mut self.on_file {
            if r.section != GONE && !fresh(r.at) {
                r.section = GONE;
                self.on_file_live -= 1;
            }
        }
    }

    /// One record (tests, tools).
    pub fn get(&self, client: ClientId, key: &str) -> Option<Result<IdempotencyEntry, ImageError>> {
        if let Some((key, slot)) = self.map.get_key_value(&(client, Box::from(key))) {
            return Some(self.entry(key, slot));
        }
        let r = self.on_file.get(self.on_file_index(client, key)?)?;
        (r.section != GONE).then(|| self.on_file_entry(r, &mut SectionCache::default()))
    }

    /// Every record, oldest first (by time seen, client, key: the order
    /// the store expires them in, and one order whatever the map's), each
    /// read from the file if it is there. A file's sections come in this
    /// order already, so each is read once.
    pub fn in_order<'a>(
        &'a self,
    ) -> impl Iterator<Item = Result<IdempotencyEntry, ImageError>> + 'a {
        /// One record, wherever it is.
        enum Ref<'a> {
            Log(&'a Key, &'a Slot),
            File(&'a FileRecord),
        }
        let sort_key = |r: &Ref<'a>| -> (i64, ClientId, &'a str) {
            match r {
                Ref::Log(key, slot) => (slot.at(), key.0, &key.1),
                Ref::File(f) => (f.at, f.client, &f.key),
            }
        };
        let mut order: Vec<Ref<'_>> = self.map.iter().map(|(k, s)| Ref::Log(k, s)).collect();
        order.extend(
            self.on_file
                .iter()
                .filter(|r| r.section != GONE)
                .map(Ref::File),
        );
        order.sort_unstable_by(|a, b| sort_key(a).cmp(&sort_key(b)));
        let mut sections = SectionCache::default();
        order.into_iter().map(move |r| match r {
            Ref::Log(key, slot) => self.entry(key, slot),
            Ref::File(f) => self.on_file_entry(f, &mut sections),
        })
    }

    /// A record of the log, read from the scratch file if it is there.
    fn entry(&self, key: &Key, slot: &Slot) -> Result<IdempotencyEntry, ImageError> {
        match slot {
            Slot::Memory(kept) => Ok(IdempotencyEntry {
                client: key.0,
                key: key.1.to_string(),
                fingerprint: kept.fingerprint,
                at: kept.at,
                outcome: kept.outcome.clone(),
            }),
            Slot::Scratch { place, .. } => {
                let read = self
                    .scratch
                    .as_ref()
                    .ok_or_else(|| "a scratch file not kept".to_owned())
                    .and_then(|s| s.read(*place))
                    .and_then(|bytes| {
                        rmp_serde::from_slice::<IdempotencyEntry>(&bytes)
                            .map_err(|e| format!("does not decode: {e}"))
                    });
                match read {
                    Ok(entry) if entry.client == key.0 && *entry.key == *key.1 => Ok(entry),
                    Ok(_) => Err(ImageError(format!(
                        "the scratch file holds another record where {:?} was written",
                        key.1
                    ))),
                    Err(e) => Err(ImageError(format!(
                        "idempotency record {:?} in the scratch file: {e}",
                        key.1
                    ))),
                }
            }
        }
    }

    /// The file's record `r`, read from its section.
    fn on_file_entry(
        &self,
        r: &FileRecord,
        sections: &mut SectionCache,
    ) -> Result<IdempotencyEntry, ImageError> {
        let (section, index) = (r.section, r.index);
        let records = sections.get(self, section)?;
        let found = records.get_mut(index as usize).and_then(Option::take);
        match found {
            Some(entry) if entry.client == r.client && *entry.key == *r.key => Ok(entry),
            _ => Err(ImageError(format!(
                "idempotency section {section} of the snapshot read again has no record \
                 {index} for key {:?}",
                r.key
            ))),
        }
    }
}

/// The file's section last read, its records taken out as they are used.
#[derive(Default)]
struct SectionCache {
    section: Option<u32>,
    records: Vec<Option<IdempotencyEntry>>,
}

impl SectionCache {
    fn get(
        &mut self,
        records: &Records,
        section: u32,
    ) -> Result<&mut Vec<Option<IdempotencyEntry>>, ImageError> {
        if self.section != Some(section) {
            let Some(file) = &records.file else {
                return Err(ImageError("idempotency records in a file not kept".into()));
            };
            let Some(&(offset, len)) = records.sections.get(section as usize) else {
                return Err(ImageError(format!("no idempotency section {section}")));
            };
            let body = file.section(offset, len)?;
            let list = match rmp_serde::from_slice::<Section>(&body) {
                Ok(Section::Idempotency(list)) => list,
                Ok(_) => {
                    return Err(ImageError(format!(
                        "{}: the section at byte {offset} read again holds no idempotency records",
                        file.path().display()
                    )));
                }
                Err(e) => {
                    return Err(ImageError(format!(
                        "{}: the section at byte {offset} read again does not decode: {e}",
                        file.path().display()
                    )));
                }
            };
            self.records = list.into_iter().map(Some).collect();
            self.section = Some(section);
        }
        Ok(&mut self.records)
    }
}
