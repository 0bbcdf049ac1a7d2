//! Funding rails and notifications (API.md "Funding rails and
//! notifications"): pay-in addresses, and the webhooks with their outbox.
//!
//! Everything here that must survive a crash changes only through a
//! `FundingRecord` (logged before it is acknowledged, replayed at recovery
//! by `apply`), or is derived from the wallets' events (the notices; see
//! `webhooks::outbox`). `export`/`import` carry the whole of it as one
//! plain value (`FundingImage`) for snapshots, so that recovery never needs
//! the log from its very start.
//!
//! - `addresses`: issuing, uniqueness, the index per wallet.
//! - `payins`: a bank's notice of money arriving, as a pending credit.

pub mod addresses;
pub mod payins;

use crate::gateway::CommitHook;
use crate::journal::{Journal, Record};
use crate::webhooks::notices::{self, Notice};
use crate::webhooks::outbox::{Key, Outbox, QueueImage};
use crate::webhooks::{Webhook, WebhookConfig};
use addresses::{Addresses, PayinAddress};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use settle_engine::{
    AssetRegistry, ClientId, Event, Ledger, PayinAddressId, Timestamp, WalletId, WalletState,
    WebhookId,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// One change to the funding state, as the log holds it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FundingRecord {
    AddressIssued {
        address: PayinAddress,
    },
    WebhookCreated {
        webhook: Webhook,
    },
    WebhookDeleted {
        webhook: WebhookId,
        at: Timestamp,
    },
    /// The outbox bound was reached for it: its queue was dropped.
    WebhookDisabled {
        webhook: WebhookId,
        reason: String,
        at: Timestamp,
    },
    /// A receiver answered 2xx for this wallet's notices up to `sequence`.
    /// Appended without waiting: lost in a crash, it means a duplicate
    /// delivery (same id), never a lost one.
    Delivered {
        webhook: WebhookId,
        wallet: WalletId,
        sequence: u64,
    },
}

/// Everything of this module a snapshot keeps.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct FundingImage {
    pub addresses: Vec<PayinAddress>,
    pub webhooks: Vec<Webhook>,
    pub outbox: Vec<QueueImage>,
}

/// Why a webhook's latest delivery attempt failed, and when.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AttemptFailure {
    pub at: Timestamp,
    pub error: String,
}

#[derive(Debug, Default)]
struct Hooks {
    by_id: HashMap<WebhookId, Webhook>,
    /// Each client's webhooks, oldest first.
    by_client: HashMap<ClientId, Vec<WebhookId>>,
}

/// The funding rails' state, live and at replay.
#[derive(Debug)]
pub struct Funding {
    pub config: WebhookConfig,
    assets: AssetRegistry,
    addresses: RwLock<Addresses>,
    hooks: RwLock<Hooks>,
    /// Enabled webhooks in all: zero keeps commits free of any work here.
    enabled: AtomicUsize,
    pub outbox: Arc<Outbox>,
    /// Each webhook's latest failed attempt, until an attempt succeeds
    /// (shown as `lastError`; in memory only: a restart starts clean).
    failures: Mutex<HashMap<WebhookId, AttemptFailure>>,
    /// Set once recovery is done (the log is reopened for writing then).
    journal: OnceLock<Arc<Journal>>,
}

impl Funding {
    pub fn new(config: WebhookConfig, assets: AssetRegistry) -> Self {
        Self {
            config,
            assets,
            addresses: RwLock::default(),
            hooks: RwLock::default(),
            enabled: AtomicUsize::new(0),
            outbox: Arc::new(Outbox::new()),
            failures: Mutex::default(),
            journal: OnceLock::new(),
        }
    }

    /// From now on, delivery marks and disablings are logged.
    pub fn attach(&self, journal: Arc<Journal>) {
        let _ = self.journal.set(journal);
    }

    /// Applies one record; applying it again changes nothing more.
    pub fn apply(&self, record: &FundingRecord) {
        match record {
            FundingRecord::AddressIssued { address } => {
                self.addresses.write().insert(address.clone());
            }
            FundingRecord::WebhookCreated { webhook } => {
                let mut hooks = self.hooks.write();
                if hooks.by_id.contains_key(&webhook.id) {
                    return;
                }
                if webhook.disabled.is_none() {
                    self.enabled.fetch_add(1, Ordering::AcqRel);
                }
                hooks
                    .by_client
                    .entry(webhook.client)
                    .or_default()
                    .push(webhook.id);
                hooks.by_id.insert(webhook.id, webhook.clone());
            }
            FundingRecord::WebhookDeleted { webhook, .. } => {
                let mut hooks = self.hooks.write();
                if let Some(w) = hooks.by_id.remove(webhook) {
                    if w.disabled.is_none() {
                        self.enabled.fetch_sub(1, Ordering::AcqRel);
                    }
                    if let Some(list) = hooks.by_client.get_mut(&w.client) {
                        list.retain(|id| id != webhook);
                    }
                }
                drop(hooks);
                self.outbox.drop_hook(*webhook);
                self.failures.lock().remove(webhook);
            }
            FundingRecord::WebhookDisabled {
                webhook, reason, ..
            } => {
                self.disable_in_memory(*webhook, reason);
            }
            FundingRecord::Delivered {
                webhook,
                wallet,
                sequence,
            } => self
                .outbox
                .delivered_through((*webhook, *wallet), *sequence),
        }
    }

    fn disable_in_memory(&self, webhook: WebhookId, reason: &str) -> bool {
        let mut hooks = self.hooks.write();
        let Some(w) = hooks.by_id.get_mut(&webhook) else {
            return false;
        };
        if w.disabled.is_some() {
            return false;
        }
        w.disabled = Some(reason.to_owned());
        self.enabled.fetch_sub(1, Ordering::AcqRel);
        drop(hooks);
        self.outbox.drop_hook(webhook);
        true
    }

    /// Appends a record without waiting (marks, disablings: see their docs).
    fn append(&self, record: FundingRecord) {
        if let Some(journal) = self.journal.get() {
            journal.append(&Record::Funding(record), |r| {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "a webhook record did not reach the log");
                }
            });
        }
    }

    pub fn address(&self, id: PayinAddressId) -> Option<Arc<PayinAddress>> {
        self.addresses.read().get(id)
    }

    pub fn addresses_of(&self, wallet: WalletId) -> Vec<Arc<PayinAddress>> {
        self.addresses.read().of_wallet(wallet)
    }

    /// Reserves an address in memory if its number is free (the caller
    /// logs it next, and calls `unissue` if that fails). False: taken.
    pub fn issue(&self, address: PayinAddress) -> bool {
        let mut a = self.addresses.write();
        if a.get(address.id).is_some() {
            return true;
        }
        if a.number_taken(&address.account_number) {
            return false;
        }
        a.insert(address);
        true
    }

    pub fn unissue(&self, id: PayinAddressId) {
        self.addresses.write().remove(id);
    }

    pub fn webhook(&self, id: WebhookId) -> Option<Webhook> {
        self.hooks.read().by_id.get(&id).cloned()
    }

    pub fn webhooks_of(&self, client: ClientId) -> Vec<Webhook> {
        let hooks = self.hooks.read();
        hooks
            .by_client
            .get(&client)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| hooks.by_id.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Turns a commit's events into notices and queues them for every
    /// enabled webhook of the wallet's client that wants them. `live`:
    /// past the outbox's bounds the webhook is disabled (logged); at
    /// replay the log's own records decide that. Returns the queues fed.
    fn enqueue(&self, state: &WalletState, events: &[Event], durable: bool) -> Vec<Key> {
        let subscribers: Vec<Webhook> = {
            let hooks = self.hooks.read();
            match hooks.by_client.get(&state.spec.client) {
                Some(ids) => ids
                    .iter()
                    .filter_map(|id| hooks.by_id.get(id))
                    .filter(|w| w.disabled.is_none())
                    .cloned()
                    .collect(),
                None => return Vec::new(),
            }
        };
        if subscribers.is_empty() {
            return Vec::new();
        }
        let derived: Vec<Arc<Notice>> = notices::derive(&self.assets, state, events)
            .into_iter()
            .map(Arc::new)
            .collect();
        let mut keys = Vec::new();
        for hook in &subscribers {
            let mut fed = false;
            for n in derived.iter().filter(|n| hook.wants(n.kind)) {
                if !durable && self.over_bound(hook.id) {
                    break;
                }
                fed |= self.outbox.push(hook.id, Arc::clone(n), durable);
            }
            if fed {
                keys.push((hook.id, state.id));
            }
        }
        keys
    }

    /// Whether the outbox is full for this webhook: if so it is disabled
    /// (its queue dropped, the reason logged and shown). The policy: a
    /// receiver that cannot keep up loses its subscription, visibly,
    /// rather than slowing money movement or growing memory without end.
    fn over_bound(&self, hook: WebhookId) -> bool {
        let pending = self.outbox.pending(hook);
        let total = self.outbox.total();
        let reason = if pending >= self.config.max_pending_per_webhook {
            format!(
                "disabled: {pending} undelivered events (the limit per webhook is {})",
                self.config.max_pending_per_webhook
            )
        } else if total >= self.config.max_pending_total {
            format!(
                "disabled: the outbox holds {total} undelivered events (the limit is {})",
                self.config.max_pending_total
            )
        } else {
            return false;
        };
        if self.disable_in_memory(hook, &reason) {
            tracing::error!(webhook = %hook, %reason, "webhook disabled: its receiver is not keeping up");
            let at = settle_engine::actor::Clock::now(&settle_engine::actor::SystemClock);
            self.append(FundingRecord::WebhookDisabled {
                webhook: hook,
                reason,
                at,
            });
        }
        true
    }

    /// Replay: a wallet's events were applied to `ledger`.
    pub fn replayed(&self, ledger: &Ledger, wallet: WalletId, events: &[Event]) {
        if self.enabled.load(Ordering::Acquire) == 0 || !notices::any_notice(events) {
            return;
        }
        if let Some(state) = ledger.wallet(wallet) {
            self.enqueue(state, events, true);
        }
    }

    /// A delivery attempt failed (`error` says why): kept for `last_failure`.
    pub fn attempt_failed(&self, webhook: WebhookId, error: &str) {
        let at = settle_engine::actor::Clock::now(&settle_engine::actor::SystemClock);
        let failure = AttemptFailure {
            at,
            error: error.to_owned(),
        };
        // Under the webhooks' lock: a webhook deleted meanwhile (its entry
        // removed after it left `hooks`) gets none back.
        let hooks = self.hooks.read();
        if hooks.by_id.contains_key(&webhook) {
            self.failures.lock().insert(webhook, failure);
        }
    }

    /// The webhook's latest failed attempt, if none succeeded since.
    pub fn last_failure(&self, webhook: WebhookId) -> Option<AttemptFailure> {
        self.failures.lock().get(&webhook).cloned()
    }

    /// A delivery got its 2xx: the queue moves on, and the mark is logged.
    pub fn delivered(&self, key: Key, sequence: u64) {
        self.failures.lock().remove(&key.0);
        self.outbox.succeeded(key, sequence);
        self.append(FundingRecord::Delivered {
            webhook: key.0,
            wallet: key.1,
            sequence,
        });
    }

    /// The whole state as one plain value (for snapshots).
    pub fn export(&self) -> FundingImage {
        let addresses = self.addresses.read().all();
        let mut webhooks: Vec<Webhook> = self.hooks.read().by_id.values().cloned().collect();
        webhooks.sort_by_key(|w| w.id);
        FundingImage {
            addresses,
            webhooks,
            outbox: self.outbox.export(),
        }
    }

    /// Loads an image into this (empty) state, before the log after it is
    /// replayed.
    pub fn import(&self, image: FundingImage) {
        for address in image.addresses {
            self.apply(&FundingRecord::AddressIssued { address });
        }
        for webhook in image.webhooks {
            self.apply(&FundingRecord::WebhookCreated { webhook });
        }
        self.outbox.import(image.outbox);
    }
}

impl CommitHook for Funding {
    fn wants(&self, events: &[Event]) -> bool {
        self.enabled.load(Ordering::Acquire) > 0 && notices::any_notice(events)
    }

    fn committing(
        &self,
        state: &WalletState,
        events: &[Event],
    ) -> Option<Box<dyn FnOnce() + Send>> {
        let keys = self.enqueue(state, events, false);
        if keys.is_empty() {
            return None;
        }
        let outbox = Arc::clone(&self.outbox);
        let through = state.sequence;
        Some(Box::new(move || outbox.set_durable(&keys, through)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::EventType;
    use settle_engine::AssetCode;

    #[test]
    fn the_state_exports_to_a_plain_value_and_imports_back() {
        let f = Funding::new(WebhookConfig::default(), AssetRegistry::default());
        let client = ClientId::from_u128(1);
        let id = PayinAddressId::from_u128(5);
        let usd = AssetCode::new("USD").unwrap();
        let (t, code, number) =
            addresses::details(id, addresses::AddressKind::LocalBankTransfer, usd);
        f.apply(&FundingRecord::AddressIssued {
            address: PayinAddress {
                id,
                wallet: WalletId::from_u128(9),
                client,
                kind: addresses::AddressKind::LocalBankTransfer,
                asset: usd,
                routing_code_type: t,
                routing_code: code,
                account_number: number,
                created_at: Timestamp::from_millis(1),
            },
        });
        f.apply(&FundingRecord::WebhookCreated {
            webhook: Webhook {
                id: WebhookId::from_u128(3),
                client,
                url: "http://127.0.0.1:1/x".into(),
                events: vec![EventType::TransactionCreated],
                secret: "s".into(),
                created_at: Timestamp::from_millis(2),
                disabled: None,
            },
        });
        let image = f.export();
        let bytes = rmp_serde::to_vec_named(&image).unwrap();
        let back: FundingImage = rmp_serde::from_slice(&bytes).unwrap();
        let g = Funding::new(WebhookConfig::default(), AssetRegistry::default());
        g.import(back);
        assert_eq!(g.export(), image);
        assert_eq!(g.webhooks_of(client).len(), 1);
        assert!(g.address(id).is_some());
    }
}
