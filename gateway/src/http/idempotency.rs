//! Idempotency keys (API.md "Conventions").
//!
//! A key is scoped to its client. The first request with a key runs; its
//! answer is stored with a fingerprint of the request (method, path, body).
//! The same key and fingerprint later gets the stored answer; a different
//! fingerprint gets 422 `idempotency_key_reused`; a duplicate that arrives
//! while the first still runs waits for its answer (up to a bound), else
//! 409 `idempotency_conflict`.
//!
//! Not remembered, so that the request can be corrected or retried: 400
//! (it failed validation and did nothing), 429 and 503 (refused before
//! anything happened), and 500. Everything else, refusals such as 409
//! `insufficient_funds` included, is the answer for good.
//!
//! Records are kept at least `ttl` (24 hours) and at most `max_records` at
//! once: past that, the oldest go first, with a warning (an explicit bound
//! instead of memory without end). `StoredAnswer` is plain data so that the
//! write-ahead log can carry it.

use crate::answer_body::AnswerBody;
use crate::http::reply::Reply;
use crate::shards::Shards;
use hashbrown::HashTable;
use hyper::StatusCode;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use settle_engine::ClientId;
use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub const MAX_KEY_LEN: usize = 255;

/// BLAKE3 of method, path and body.
pub type Fingerprint = [u8; 32];

pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> Fingerprint {
    let mut h = blake3::Hasher::new();
    h.update(method.as_bytes());
    h.update(b"\n");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(body);
    *h.finalize().as_bytes()
}

/// Checks a key: 1 to 255 printable ASCII characters.
pub fn valid_key(key: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&key.len()) && key.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// An answer as it is stored and replayed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAnswer {
    pub status: u16,
    pub body: AnswerBody,
}

/// Whether an answer with this status is kept for replay.
pub fn remembered(status: StatusCode) -> bool {
    !matches!(status.as_u16(), 400 | 429 | 500..=599)
}

type Key = (ClientId, Box<str>);

/// A key with its hash, computed once per request: the table finds,
/// grows and forgets entries by it, without hashing the key again.
#[derive(Clone, Debug)]
struct Hashed {
    hash: u64,
    key: Key,
}

#[derive(Debug)]
enum State {
    /// The first request is running; the flag turns true when it is done
    /// (or given up), and waiters look again.
    Running(watch::Receiver<bool>),
    Done(Arc<StoredAnswer>),
    /// Recovered from the log: the request was claimed with these ids but
    /// never answered (the process stopped). A retry runs it again with them.
    Claimed(Arc<[u128]>),
}

#[derive(Debug)]
struct Entry {
    fingerprint: Fingerprint,
    /// Milliseconds since the epoch, for expiry.
    created_at: i64,
    state: State,
}

/// A stored key and its record, boxed, with the key's hash beside the box
/// in the table. A growing table then moves 16 bytes per entry and hashes
/// nothing again. (Inline and rehashed, growing the sixteen shards from
/// ~65,000 to ~130,000 keys took ~100 ms of CPU in one burst: SipHash
/// behind a pointer per key, and the kernel zeroing the fresh pages of
/// tables of ~100 bytes per bucket. BENCHMARKS.md, "The idempotency
/// store's tables grow without a stall".)
#[derive(Debug)]
struct Slot {
    hash: u64,
    stored: Box<Stored>,
}

#[derive(Debug)]
struct Stored {
    key: Key,
    entry: Entry,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashTable<Slot>,
    /// (time stored, key's hash) in the order records were stored, for
    /// expiry and the size bound. The hash and the time find the record a
    /// mark was made for: two keys of one shard sharing both are expired
    /// together anyway. (The key itself here cost a copy of it per request,
    /// and this queue's doublings, at 48 bytes a mark, were three times
    /// the tables' cost of growing; BENCHMARKS.md.)
    order: VecDeque<(i64, u64)>,
}

/// Whether a slot holds `k` (its hash first: no pointer followed for the
/// other keys that share a probe group).
fn holds(k: &Hashed) -> impl Fn(&Slot) -> bool + '_ {
    move |s| s.hash == k.hash && s.stored.key == k.key
}

impl Inner {
    fn get(&self, k: &Hashed) -> Option<&Entry> {
        self.entries.find(k.hash, holds(k)).map(|s| &s.stored.entry)
    }

    fn get_mut(&mut self, k: &Hashed) -> Option<&mut Entry> {
        self.entries
            .find_mut(k.hash, holds(k))
            .map(|s| &mut s.stored.entry)
    }

    /// Stores `entry` under `k`; the entry it replaced, if any.
    fn insert(&mut self, k: Hashed, entry: Entry) -> Option<Entry> {
        match self.entries.entry(k.hash, holds(&k), |s| s.hash) {
            hashbrown::hash_table::Entry::Occupied(mut o) => {
                Some(std::mem::replace(&mut o.get_mut().stored.entry, entry))
            }
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(Slot {
                    hash: k.hash,
                    stored: Box::new(Stored { key: k.key, entry }),
                });
                None
            }
        }
    }

    fn remove(&mut self, k: &Hashed) {
        if let Ok(o) = self.entries.find_entry(k.hash, holds(k)) {
            o.remove();
        }
    }
}

/// Shards: requests on many connections meet on different locks, and a
/// growing table moves one shard at a time.
const SHARDS: usize = 16;

#[derive(Debug)]
pub struct IdempotencyStore {
    shards: Shards<Mutex<Inner>>,
    /// SipHash with a key of this process: clients choose the keys, so the
    /// table's hash must not be one they can aim collisions at.
    hasher: RandomState,
    ttl_ms: i64,
    max_records: usize,
    /// How long a duplicate waits for the first request's answer.
    wait: Duration,
}

/// What to do with a request that carries a key.
#[derive(Debug)]
pub enum Begin {
    /// Run it (with the ids a claim recorded, if any), then hand the
    /// answer to the guard.
    Run(Running),
    /// Answer this (stored) answer again.
    Replay(Arc<StoredAnswer>),
    /// The key was used for another request: 422.
    Reused,
    /// The first request with this key still runs: 409.
    Conflict,
}

impl IdempotencyStore {
    pub fn new(ttl: Duration, max_records: usize, wait: Duration) -> Arc<Self> {
        Arc::new(Self {
            shards: Shards::new(SHARDS, |_| Mutex::new(Inner::default())),
            hasher: RandomState::new(),
            ttl_ms: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
            // Per shard: keys spread evenly over the shards.
            max_records: max_records.div_ceil(SHARDS).max(1),
            wait,
        })
    }

    /// Looks the key up and either claims it or says how to answer.
    pub async fn begin(
        self: &Arc<Self>,
        client: ClientId,
        key: &str,
        fingerprint: Fingerprint,
        now_ms: i64,
    ) -> Begin {
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            let mut waiting = {
                let k = self.hashed(client, key);
                let mut inner = self.shard(&k).lock();
                match inner.get(&k) {
                    Some(e) if e.fingerprint != fingerprint => return Begin::Reused,
                    Some(Entry {
                        state: State::Done(answer),
                        ..
                    }) => return Begin::Replay(Arc::clone(answer)),
                    Some(Entry {
                        state: State::Running(rx),
                        ..
                    }) => rx.clone(),
                    Some(Entry {
                        state: State::Claimed(ids),
                        ..
                    }) => {
                        let ids = Arc::clone(ids);
                        let (tx, rx) = watch::channel(false);
                        if let Some(e) = inner.get_mut(&k) {
                            e.state = State::Running(rx);
                        }
                        return Begin::Run(Running {
                            store: Arc::clone(self),
                            key: Some(k),
                            tx,
                            claimed: Some(ids),
                        });
                    }
                    None => {
                        let (tx, rx) = watch::channel(false);
                        inner.insert(
                            k.clone(),
                            Entry {
                                fingerprint,
                                created_at: now_ms,
                                state: State::Running(rx),
                            },
                        );
                        inner.order.push_back((now_ms, k.hash));
                        return Begin::Run(Running {
                            store: Arc::clone(self),
                            key: Some(k),
                            tx,
                            claimed: None,
                        });
                    }
                }
            };
            // Wait for the first request to finish, then look again (it may
            // have been given up, and then this request runs instead).
            match tokio::time::timeout_at(deadline, waiting.wait_for(|done| *done)).await {
                Ok(_) => continue,
                Err(_) => return Begin::Conflict,
            }
        }
    }

    fn hashed(&self, client: ClientId, key: &str) -> Hashed {
        let key: Key = (client, key.into());
        Hashed {
            hash: self.hasher.hash_one(&key),
            key,
        }
    }

    fn shard(&self, key: &Hashed) -> &Mutex<Inner> {
        self.shards.by_hash(key.hash)
    }

    /// Forgets records older than the TTL, and the oldest beyond the bound.
    pub fn expire(&self, now_ms: i64) {
        for shard in self.shards.iter() {
            self.expire_shard(&mut shard.lock(), now_ms);
        }
    }

    fn expire_shard(&self, inner: &mut Inner, now_ms: i64) {
        let mut evicted_early = 0usize;
        while let Some(&(at, hash)) = inner.order.front() {
            let expired = now_ms.saturating_sub(at) >= self.ttl_ms;
            let over = inner.entries.len() > self.max_records;
            if !(expired || over) {
                break;
            }
            inner.order.pop_front();
            // The key's entry may be younger than this mark (given up and
            // claimed again): only the record this mark was made for goes.
            let Ok(slot) = inner
                .entries
                .find_entry(hash, |s| s.hash == hash && s.stored.entry.created_at == at)
            else {
                continue;
            };
            if matches!(slot.get().stored.entry.state, State::Running(_)) {
                // Still running: keep it, look again next time.
                inner.order.push_back((at, hash));
                break;
            }
            slot.remove();
            if !expired {
                evicted_early += 1;
            }
        }
        if evicted_early > 0 {
            tracing::warn!(
                evicted = evicted_early,
                max_records = self.max_records * SHARDS,
                "idempotency records evicted before their 24 hours: the store is at its bound"
            );
        }
    }

    /// Puts back a record read from the log (recovery): an answer, or a
    /// claim that never got one. Later records of the same key replace
    /// earlier ones; records past the TTL are not kept.
    pub fn restore(
        &self,
        client: ClientId,
        key: &str,
        fingerprint: Fingerprint,
        at: i64,
        now_ms: i64,
        restored: Restored,
    ) {
        if now_ms.saturating_sub(at) >= self.ttl_ms {
            return;
        }
        let k = self.hashed(client, key);
        let hash = k.hash;
        let mut inner = self.shard(&k).lock();
        let state = match restored {
            Restored::Answer(a) => State::Done(Arc::new(a)),
            Restored::Claim(ids) => State::Claimed(ids.into()),
        };
        let fresh = inner
            .insert(
                k.clone(),
                Entry {
                    fingerprint,
                    created_at: at,
                    state,
                },
            )
            .is_none_or(|old| old.created_at != at);
        if fresh {
            inner.order.push_back((at, hash));
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn settle(&self, key: Hashed, state: Option<State>) {
        let mut inner = self.shard(&key).lock();
        match state {
            Some(state) => {
                if let Some(e) = inner.get_mut(&key) {
                    e.state = state;
                }
            }
            None => inner.remove(&key),
        }
    }

    /// Forgets a key (recovery: the log says its request failed validation).
    pub fn forget(&self, client: ClientId, key: &str) {
        let k = self.hashed(client, key);
        self.shard(&k).lock().remove(&k);
    }
}

/// A record read back from the log.
#[derive(Debug)]
pub enum Restored {
    Answer(StoredAnswer),
    Claim(Vec<u128>),
}

/// A claimed key. `finish` stores the answer (or forgets the key, for an
/// answer that is not remembered); dropping it unfinished forgets the key.
#[derive(Debug)]
pub struct Running {
    store: Arc<IdempotencyStore>,
    key: Option<Hashed>,
    tx: watch::Sender<bool>,
    /// Ids a claim in the log recorded for this request (a retry after a
    /// crash): the request must mint exactly these again.
    claimed: Option<Arc<[u128]>>,
}

impl Running {
    pub fn claimed(&self) -> Option<&[u128]> {
        self.claimed.as_deref()
    }

    /// Stores the answer if it is one to remember; else forgets the key.
    pub fn finish(self, reply: &Reply) {
        if remembered(reply.status) && !reply.retry {
            self.store(reply.status, AnswerBody::new(reply.body.clone()));
        } else {
            self.end(None);
        }
    }

    /// Stores this answer (one the log already holds: the same body).
    pub fn store(self, status: StatusCode, body: AnswerBody) {
        self.end(Some(State::Done(Arc::new(StoredAnswer {
            status: status.as_u16(),
            body,
        }))));
    }

    /// The request may have partly run with these ids (logged in a claim)
    /// and was not answered for good: a retry must run it again with them.
    pub fn keep_claim(self, ids: Vec<u128>) {
        self.end(Some(State::Claimed(ids.into())));
    }

    fn end(mut self, state: Option<State>) {
        if let Some(key) = self.key.take() {
            self.store.settle(key, state);
            let _ = self.tx.send(true);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.store.settle(key, None);
            let _ = self.tx.send(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn store(wait_ms: u64) -> Arc<IdempotencyStore> {
        IdempotencyStore::new(
            Duration::from_secs(86_400),
            1_000,
            Duration::from_millis(wait_ms),
        )
    }

    fn reply(status: u16, body: &'static str) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            body: Bytes::from_static(body.as_bytes()),
            retry: false,
        }
    }

    const C: ClientId = ClientId::from_u128(1);

    #[tokio::test]
    async fn first_runs_then_replays_and_other_requests_are_refused() {
        let s = store(10);
        let fp = fingerprint("POST", "/v1/x", b"{}");
        let Begin::Run(run) = s.begin(C, "k", fp, 0).await else {
            panic!("first request must run")
        };
        assert!(matches!(s.begin(C, "k", fp, 0).await, Begin::Conflict));
        run.finish(&reply(201, "{\"data\":1}"));
        match s.begin(C, "k", fp, 0).await {
            Begin::Replay(a) => assert_eq!(
                (a.status, a.body.bytes()),
                (201, Ok(Bytes::from_static(b"{\"data\":1}")))
            ),
            other => panic!("{other:?}"),
        }
        let other = fingerprint("POST", "/v1/x", b"{\"a\":1}");
        assert!(matches!(s.begin(C, "k", other, 0).await, Begin::Reused));
        // Another client's key of the same text is its own.
        assert!(matches!(
            s.begin(ClientId::from_u128(2), "k", other, 0).await,
            Begin::Run(_)
        ));
    }

    #[tokio::test]
    async fn a_duplicate_waits_for_the_first_answer() {
        let s = store(5_000);
        let fp = fingerprint("POST", "/p", b"");
        let Begin::Run(run) = s.begin(C, "k", fp, 0).await else {
            panic!()
        };
        let s2 = Arc::clone(&s);
        let dup = tokio::spawn(async move { s2.begin(C, "k", fp, 0).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        run.finish(&reply(201, "{}"));
        assert!(matches!(dup.await.unwrap(), Begin::Replay(_)));
    }

    #[tokio::test]
    async fn validation_failures_and_dropped_runs_are_forgotten() {
        let s = store(10);
        let fp = fingerprint("POST", "/p", b"x");
        for status in [400, 429, 503, 500] {
            let Begin::Run(run) = s.begin(C, "k", fp, 0).await else {
                panic!()
            };
            run.finish(&reply(status, "{}"));
        }
        let Begin::Run(run) = s.begin(C, "k", fp, 0).await else {
            panic!()
        };
        drop(run);
        assert_eq!(s.len(), 0, "a run given up leaves nothing behind");
        let again = s.begin(C, "k", fp, 0).await;
        assert!(matches!(again, Begin::Run(_)));
        assert_eq!(s.len(), 1);
    }

    /// Expiry goes by marks of (time, hash): a record still running is
    /// kept past its time, and a key given up and claimed again later is
    /// not expired by its first claim's mark.
    #[tokio::test]
    async fn a_mark_expires_only_the_record_it_was_made_for() {
        let s = IdempotencyStore::new(Duration::from_millis(100), 1_000, Duration::ZERO);
        let fp = [1; 32];
        // "a": claimed at 0 and given up (dropped); "b" claimed at 10 and
        // still running; "a" claimed again at 50 and answered.
        let Begin::Run(first) = s.begin(C, "a", fp, 0).await else {
            panic!()
        };
        drop(first);
        let Begin::Run(running) = s.begin(C, "b", fp, 10).await else {
            panic!()
        };
        let Begin::Run(again) = s.begin(C, "a", fp, 50).await else {
            panic!()
        };
        again.finish(&reply(201, "{}"));
        s.expire(120);
        assert_eq!(s.len(), 2, "a's first mark is stale; b still runs");
        assert!(matches!(s.begin(C, "a", fp, 120).await, Begin::Replay(_)));
        running.finish(&reply(201, "{}"));
        s.expire(150);
        assert_eq!(s.len(), 0, "a (stored at 50) and b (done) both go");
    }

    /// Tables grow many times over here (by the cached hashes): every key
    /// is still found, answered with its own answer, and forgotten alone.
    #[tokio::test]
    async fn every_key_survives_the_tables_growing() {
        let s = IdempotencyStore::new(Duration::from_secs(3600), 100_000, Duration::ZERO);
        let fp = |i: usize| fingerprint("POST", "/p", i.to_string().as_bytes());
        let n = 20_000;
        for i in 0..n {
            let Begin::Run(run) = s.begin(C, &format!("key-{i}"), fp(i), 0).await else {
                panic!("key-{i} is new")
            };
            run.finish(&Reply {
                body: Bytes::from(format!("{{\"n\":{i}}}")),
                ..reply(201, "")
            });
        }
        assert_eq!(s.len(), n);
        for i in (0..n).step_by(7) {
            match s.begin(C, &format!("key-{i}"), fp(i), 0).await {
                Begin::Replay(a) => {
                    assert_eq!(a.body.bytes(), Ok(Bytes::from(format!("{{\"n\":{i}}}"))))
                }
                other => panic!("key-{i}: {other:?}"),
            }
        }
        assert!(matches!(s.begin(C, "key-5", fp(6), 0).await, Begin::Reused));
        s.forget(C, "key-5");
        assert_eq!(s.len(), n - 1);
        assert!(matches!(s.begin(C, "key-5", fp(6), 0).await, Begin::Run(_)));
        assert!(matches!(
            s.begin(C, "key-6", fp(6), 0).await,
            Begin::Replay(_)
        ));
    }

    #[tokio::test]
    async fn records_expire_after_the_ttl_and_beyond_the_bound() {
        let s = IdempotencyStore::new(Duration::from_millis(100), 1_000, Duration::ZERO);
        for (i, k) in ["a", "b", "c"].iter().enumerate() {
            let Begin::Run(run) = s.begin(C, k, [0; 32], i as i64).await else {
                panic!()
            };
            run.finish(&reply(201, "{}"));
        }
        s.expire(99);
        assert_eq!(s.len(), 3, "kept until the TTL");
        s.expire(101);
        assert_eq!(s.len(), 1, "a and b are 100 ms old");
        s.expire(102);
        assert_eq!(s.len(), 0);

        // The bound: one record per shard at most, the newest kept.
        let s = IdempotencyStore::new(Duration::from_secs(3600), 1, Duration::ZERO);
        for i in 0..200 {
            let Begin::Run(run) = s.begin(C, &format!("k{i}"), [0; 32], i).await else {
                panic!()
            };
            run.finish(&reply(201, "{}"));
        }
        s.expire(200);
        assert!((1..=SHARDS).contains(&s.len()), "{} records", s.len());
        assert!(
            matches!(s.begin(C, "k199", [0; 32], 201).await, Begin::Replay(_)),
            "the newest record stays"
        );
    }

    #[test]
    fn keys_are_printable_ascii_of_bounded_length() {
        assert!(valid_key("order-123"));
        assert!(valid_key(&"k".repeat(255)));
        assert!(!valid_key(""));
        assert!(!valid_key(&"k".repeat(256)));
        assert!(!valid_key("tab\there"));
        assert!(!valid_key("é"));
    }
}
