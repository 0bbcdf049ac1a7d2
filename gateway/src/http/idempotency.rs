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

use crate::http::reply::Reply;
use hyper::StatusCode;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use settle_engine::ClientId;
use std::collections::{HashMap, VecDeque};
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
    pub body: Vec<u8>,
}

/// Whether an answer with this status is kept for replay.
pub fn remembered(status: StatusCode) -> bool {
    !matches!(status.as_u16(), 400 | 429 | 500..=599)
}

type Key = (ClientId, Box<str>);

#[derive(Debug)]
enum State {
    /// The first request is running; the flag turns true when it is done
    /// (or given up), and waiters look again.
    Running(watch::Receiver<bool>),
    Done(Arc<StoredAnswer>),
}

#[derive(Debug)]
struct Entry {
    fingerprint: Fingerprint,
    /// Milliseconds since the epoch, for expiry.
    created_at: i64,
    state: State,
}

#[derive(Debug)]
struct Inner {
    entries: HashMap<Key, Entry>,
    /// Keys in the order they were stored, for expiry and the size bound.
    order: VecDeque<(i64, Key)>,
}

#[derive(Debug)]
pub struct IdempotencyStore {
    inner: Mutex<Inner>,
    ttl_ms: i64,
    max_records: usize,
    /// How long a duplicate waits for the first request's answer.
    wait: Duration,
}

/// What to do with a request that carries a key.
#[derive(Debug)]
pub enum Begin {
    /// Run it, then hand the answer to the guard.
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
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                order: VecDeque::new(),
            }),
            ttl_ms: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
            max_records: max_records.max(1),
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
                let mut inner = self.inner.lock();
                let k: Key = (client, key.into());
                match inner.entries.get(&k) {
                    Some(e) if e.fingerprint != fingerprint => return Begin::Reused,
                    Some(Entry {
                        state: State::Done(answer),
                        ..
                    }) => return Begin::Replay(Arc::clone(answer)),
                    Some(Entry {
                        state: State::Running(rx),
                        ..
                    }) => rx.clone(),
                    None => {
                        let (tx, rx) = watch::channel(false);
                        inner.entries.insert(
                            k.clone(),
                            Entry {
                                fingerprint,
                                created_at: now_ms,
                                state: State::Running(rx),
                            },
                        );
                        inner.order.push_back((now_ms, k.clone()));
                        return Begin::Run(Running {
                            store: Arc::clone(self),
                            key: Some(k),
                            tx,
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

    /// Forgets records older than the TTL, and the oldest beyond the bound.
    pub fn expire(&self, now_ms: i64) {
        let mut inner = self.inner.lock();
        let mut evicted_early = 0usize;
        while let Some((at, _)) = inner.order.front() {
            let expired = now_ms.saturating_sub(*at) >= self.ttl_ms;
            let over = inner.entries.len() > self.max_records;
            if !(expired || over) {
                break;
            }
            let Some((at, key)) = inner.order.pop_front() else {
                break;
            };
            // The entry may be younger than this mark (given up and claimed
            // again): only the record this mark was made for goes.
            let same = inner.entries.get(&key).is_some_and(|e| e.created_at == at);
            let done = inner
                .entries
                .get(&key)
                .is_some_and(|e| matches!(e.state, State::Done(_)));
            if same && done {
                inner.entries.remove(&key);
                if !expired {
                    evicted_early += 1;
                }
            } else if same {
                // Still running: keep it, look again next time.
                inner.order.push_back((at, key));
                break;
            }
        }
        if evicted_early > 0 {
            tracing::warn!(
                evicted = evicted_early,
                max_records = self.max_records,
                "idempotency records evicted before their 24 hours: the store is at its bound"
            );
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn settle(&self, key: Key, answer: Option<StoredAnswer>) {
        let mut inner = self.inner.lock();
        match answer {
            Some(a) => {
                if let Some(e) = inner.entries.get_mut(&key) {
                    e.state = State::Done(Arc::new(a));
                }
            }
            None => {
                inner.entries.remove(&key);
            }
        }
    }
}

/// A claimed key. `finish` stores the answer (or forgets the key, for an
/// answer that is not remembered); dropping it unfinished forgets the key.
#[derive(Debug)]
pub struct Running {
    store: Arc<IdempotencyStore>,
    key: Option<Key>,
    tx: watch::Sender<bool>,
}

impl Running {
    pub fn finish(mut self, reply: &Reply) {
        if let Some(key) = self.key.take() {
            let answer = remembered(reply.status).then(|| StoredAnswer {
                status: reply.status.as_u16(),
                body: reply.body.to_vec(),
            });
            self.store.settle(key, answer);
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
            Begin::Replay(a) => assert_eq!((a.status, &a.body[..]), (201, &b"{\"data\":1}"[..])),
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

    #[tokio::test]
    async fn records_expire_after_the_ttl_and_beyond_the_bound() {
        let s = IdempotencyStore::new(Duration::from_millis(100), 2, Duration::ZERO);
        for (i, k) in ["a", "b", "c"].iter().enumerate() {
            let Begin::Run(run) = s.begin(C, k, [0; 32], i as i64).await else {
                panic!()
            };
            run.finish(&reply(201, "{}"));
        }
        s.expire(50);
        assert_eq!(s.len(), 2, "the oldest goes beyond the bound");
        s.expire(99);
        assert_eq!(s.len(), 2, "kept until the TTL");
        s.expire(102);
        assert_eq!(s.len(), 0);
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
