//! The outbox: undelivered notices, one FIFO queue per (webhook, wallet).
//!
//! Order: a queue hands out its head only, and only one delivery of a queue
//! is on its way at a time (`busy`); the head leaves the queue on a 2xx, so
//! a wallet's notice N+1 never goes before N got its 2xx.
//!
//! Durability: a notice enters the queue when its events are committed (in
//! the wallet's turn, so in the wallet's order) but is not sent before the
//! log says those events are durable (`set_durable`): a receiver never
//! hears of an event a crash could take back. Notices derived again at
//! replay (or carried in a snapshot image) are durable by definition.
//!
//! Idempotency: each queue remembers the last sequence it took and the
//! last delivered, and ignores a notice at or below them, so deriving the
//! same events twice (a snapshot image and the log after it overlap) keeps
//! one copy. An emptied queue is dropped; a notice derived again after that
//! is sent again, with the same id (duplicates are allowed, loss is not).
//!
//! Bounds: the caller (`Funding`) checks `pending` and `total` before a push
//! and disables a webhook past them; this module only counts.

use crate::webhooks::notices::Notice;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use settle_engine::{WalletId, WebhookId};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// One queue's name: the endpoint and the wallet whose events it carries.
pub type Key = (WebhookId, WalletId);

#[derive(Debug)]
struct Queue {
    /// Oldest first, each with whether its events are durable yet.
    notices: VecDeque<(Arc<Notice>, bool)>,
    /// The highest sequence taken in.
    last: u64,
    /// The highest sequence delivered.
    delivered: u64,
    /// A delivery of the head is on its way.
    busy: bool,
    /// Failed attempts at the head, in a row.
    attempts: u32,
    /// Backing off until then.
    not_before: Option<Instant>,
    /// In `ready` already.
    listed: bool,
}

impl Queue {
    fn new(delivered: u64) -> Self {
        Self {
            notices: VecDeque::new(),
            last: delivered,
            delivered,
            busy: false,
            attempts: 0,
            not_before: None,
            listed: false,
        }
    }

    fn sendable(&self, now: Instant) -> bool {
        !self.busy
            && !self.listed
            && self.not_before.is_none_or(|t| t <= now)
            && self.notices.front().is_some_and(|(_, durable)| *durable)
    }
}

#[derive(Debug, Default)]
struct Inner {
    queues: HashMap<Key, Queue>,
    /// Queues whose head may go now.
    ready: VecDeque<Key>,
    /// Queues backing off, by when they may go again.
    timers: BinaryHeap<Reverse<(Instant, Key)>>,
    total: usize,
    per_hook: HashMap<WebhookId, usize>,
}

impl Inner {
    /// Puts a queue in `ready` if its head may go now.
    fn list(&mut self, key: Key, now: Instant) -> bool {
        let Some(q) = self.queues.get_mut(&key) else {
            return false;
        };
        if !q.sendable(now) {
            return false;
        }
        q.listed = true;
        self.ready.push_back(key);
        true
    }

    fn count_out(&mut self, hook: WebhookId, n: usize) {
        self.total = self.total.saturating_sub(n);
        if let Some(c) = self.per_hook.get_mut(&hook) {
            *c = c.saturating_sub(n);
            if *c == 0 {
                self.per_hook.remove(&hook);
            }
        }
    }

    /// Drops delivered notices up to `seq`; an emptied idle queue goes.
    fn delivered(&mut self, key: Key, seq: u64) {
        let Some(q) = self.queues.get_mut(&key) else {
            return;
        };
        let mut gone = 0;
        while q.notices.front().is_some_and(|(n, _)| n.sequence <= seq) {
            q.notices.pop_front();
            gone += 1;
        }
        q.delivered = q.delivered.max(seq);
        q.last = q.last.max(seq);
        let empty = q.notices.is_empty() && !q.busy;
        if empty {
            self.queues.remove(&key);
        }
        self.count_out(key.0, gone);
    }
}

/// A queue as a snapshot image holds it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct QueueImage {
    pub webhook: WebhookId,
    pub wallet: WalletId,
    pub delivered: u64,
    pub notices: Vec<Notice>,
}

/// A delivery to make: the queue and its head.
#[derive(Clone, Debug)]
pub struct Job {
    pub key: Key,
    pub notice: Arc<Notice>,
    /// Failed attempts before this one.
    pub attempts: u32,
}

#[derive(Debug, Default)]
pub struct Outbox {
    inner: Mutex<Inner>,
    /// Wakes the dispatcher when a queue becomes ready.
    pub wake: Notify,
}

impl Outbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a notice in for a webhook. False if the queue had it already.
    pub fn push(&self, hook: WebhookId, notice: Arc<Notice>, durable: bool) -> bool {
        let key = (hook, notice.wallet);
        let mut inner = self.inner.lock();
        let q = inner.queues.entry(key).or_insert_with(|| Queue::new(0));
        if notice.sequence <= q.last {
            return false;
        }
        q.last = notice.sequence;
        q.notices.push_back((notice, durable));
        inner.total += 1;
        *inner.per_hook.entry(hook).or_default() += 1;
        if durable && inner.list(key, Instant::now()) {
            drop(inner);
            self.wake.notify_one();
        }
        true
    }

    /// The events of these queues up to `through` are durable: their
    /// notices may go.
    pub fn set_durable(&self, keys: &[Key], through: u64) {
        let mut inner = self.inner.lock();
        let now = Instant::now();
        let mut woke = false;
        for key in keys {
            if let Some(q) = inner.queues.get_mut(key) {
                // Newest first: everything before a durable one is durable.
                for (n, durable) in q.notices.iter_mut().rev() {
                    if *durable {
                        break;
                    }
                    if n.sequence <= through {
                        *durable = true;
                    }
                }
            }
            woke |= inner.list(*key, now);
        }
        drop(inner);
        if woke {
            self.wake.notify_one();
        }
    }

    /// The next delivery to make, or when to look again (`None`: when woken).
    pub fn next_job(&self, now: Instant) -> Result<Job, Option<Instant>> {
        let mut inner = self.inner.lock();
        while let Some(Reverse((at, key))) = inner.timers.peek().copied() {
            if at > now {
                break;
            }
            inner.timers.pop();
            if let Some(q) = inner.queues.get_mut(&key)
                && q.not_before.is_some_and(|t| t <= now)
            {
                q.not_before = None;
            }
            inner.list(key, now);
        }
        while let Some(key) = inner.ready.pop_front() {
            let Some(q) = inner.queues.get_mut(&key) else {
                continue;
            };
            q.listed = false;
            if !q.sendable(now) {
                continue;
            }
            let Some((notice, _)) = q.notices.front() else {
                continue;
            };
            q.busy = true;
            return Ok(Job {
                key,
                notice: Arc::clone(notice),
                attempts: q.attempts,
            });
        }
        Err(inner.timers.peek().map(|Reverse((at, _))| *at))
    }

    /// The head of `key` got a 2xx.
    pub fn succeeded(&self, key: Key, seq: u64) {
        let mut inner = self.inner.lock();
        if let Some(q) = inner.queues.get_mut(&key) {
            q.busy = false;
            q.attempts = 0;
        }
        inner.delivered(key, seq);
        let woke = inner.list(key, Instant::now());
        drop(inner);
        if woke {
            self.wake.notify_one();
        }
    }

    /// The head of `key` failed; it goes again after `wait`. Returns the
    /// failures in a row so far.
    pub fn failed(&self, key: Key, wait: impl FnOnce(u32) -> Duration) -> u32 {
        let mut inner = self.inner.lock();
        let Some(q) = inner.queues.get_mut(&key) else {
            return 0;
        };
        q.busy = false;
        q.attempts = q.attempts.saturating_add(1);
        let attempts = q.attempts;
        let at = Instant::now() + wait(attempts);
        q.not_before = Some(at);
        inner.timers.push(Reverse((at, key)));
        drop(inner);
        // The dispatcher may be asleep until a later deadline.
        self.wake.notify_one();
        attempts
    }

    /// Replay of a delivery mark: everything up to `seq` was delivered.
    pub fn delivered_through(&self, key: Key, seq: u64) {
        self.inner.lock().delivered(key, seq);
    }

    /// Drops every queue of a webhook (deleted or disabled).
    pub fn drop_hook(&self, hook: WebhookId) {
        let mut inner = self.inner.lock();
        let keys: Vec<Key> = inner
            .queues
            .keys()
            .filter(|k| k.0 == hook)
            .copied()
            .collect();
        let mut gone = 0;
        for k in keys {
            if let Some(q) = inner.queues.remove(&k) {
                gone += q.notices.len();
            }
        }
        inner.count_out(hook, gone);
    }

    /// Undelivered notices of one webhook.
    pub fn pending(&self, hook: WebhookId) -> usize {
        self.inner.lock().per_hook.get(&hook).copied().unwrap_or(0)
    }

    /// Undelivered notices in all.
    pub fn total(&self) -> usize {
        self.inner.lock().total
    }

    /// Every queue with what it holds (durable or not: an image is taken
    /// at a cut whose events the snapshot holds), in a stable order.
    pub fn export(&self) -> Vec<QueueImage> {
        let inner = self.inner.lock();
        let mut out: Vec<QueueImage> = inner
            .queues
            .iter()
            .map(|(k, q)| QueueImage {
                webhook: k.0,
                wallet: k.1,
                delivered: q.delivered,
                notices: q.notices.iter().map(|(n, _)| (**n).clone()).collect(),
            })
            .collect();
        out.sort_by_key(|q| (q.webhook, q.wallet));
        out
    }

    /// Loads queues from an image (before the log after it is replayed).
    pub fn import(&self, queues: Vec<QueueImage>) {
        let mut inner = self.inner.lock();
        let now = Instant::now();
        for image in queues {
            let key = (image.webhook, image.wallet);
            let mut q = Queue::new(image.delivered);
            let n = image.notices.len();
            for notice in image.notices {
                q.last = q.last.max(notice.sequence);
                q.notices.push_back((Arc::new(notice), true));
            }
            inner.queues.insert(key, q);
            inner.total += n;
            *inner.per_hook.entry(key.0).or_default() += n;
            inner.list(key, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::EventType;
    use settle_engine::Timestamp;

    fn notice(wallet: u128, sequence: u64) -> Arc<Notice> {
        Arc::new(Notice {
            wallet: WalletId::from_u128(wallet),
            sequence,
            kind: EventType::TransactionCreated,
            at: Timestamp::from_millis(1),
            data: "{}".into(),
        })
    }

    #[test]
    fn one_head_at_a_time_in_order_and_only_once_durable() {
        let o = Outbox::new();
        let h = WebhookId::from_u128(1);
        assert!(o.push(h, notice(7, 2), false));
        assert!(o.push(h, notice(7, 3), false));
        assert!(
            !o.push(h, notice(7, 3), true),
            "a notice taken twice is kept once"
        );
        assert!(o.next_job(Instant::now()).is_err(), "not durable yet");
        o.set_durable(&[(h, WalletId::from_u128(7))], 3);
        let j = o.next_job(Instant::now()).unwrap();
        assert_eq!(j.notice.sequence, 2);
        assert!(
            o.next_job(Instant::now()).is_err(),
            "the head is on its way"
        );
        let attempts = o.failed(j.key, |_| Duration::ZERO);
        assert_eq!(attempts, 1);
        let j = o.next_job(Instant::now()).unwrap();
        assert_eq!((j.notice.sequence, j.attempts), (2, 1));
        o.succeeded(j.key, 2);
        let j = o.next_job(Instant::now()).unwrap();
        assert_eq!(j.notice.sequence, 3);
        o.succeeded(j.key, 3);
        assert_eq!(o.total(), 0);
        assert!(o.export().is_empty());
    }

    #[test]
    fn marks_and_images_round_trip() {
        let o = Outbox::new();
        let h = WebhookId::from_u128(1);
        for s in 2..6 {
            o.push(h, notice(7, s), true);
        }
        o.delivered_through((h, WalletId::from_u128(7)), 3);
        assert_eq!(o.pending(h), 2);
        let image = o.export();
        let again = Outbox::new();
        again.import(image.clone());
        assert_eq!(again.export(), image);
        assert!(
            !again.push(h, notice(7, 5), true),
            "overlap with the log is kept once"
        );
        again.drop_hook(h);
        assert_eq!(again.total(), 0);
    }
}
