//! `Gateway`: the handle through which callers (the HTTP front door, tests,
//! benchmarks) open wallets, send commands and read state.

use crate::config::GatewayConfig;
use crate::error::GatewayError;
use crate::image::InstalledWallet;
use crate::incoming::Incoming;
use crate::journal::Journal;
use crate::registry::Slot;
use crate::runtime::{Admit, Runtime};
use crate::supervisor::{GatewayActor, GatewayMsg};
use ractor::{Actor, ActorRef};
use settle_engine::actor::{
    Ack, Answer, Clock, Execute, ExecuteMany, Order, SystemClock, Then, WalletMsg, WalletShared,
};
use settle_engine::wallet::{Action, opening};
use settle_engine::{
    AssetAudit, ClientId, Done, Event, Message, Op, Reject, StateDigest, Txn, WalletId,
    WalletState, WalletStatus,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Sees every wallet's events as they are committed (tests check FIFO
/// order through it; the write-ahead log will take this place).
pub trait CommitObserver: Send + Sync + 'static {
    fn committed(&self, wallet: WalletId, events: &[Event]);
}

/// Told about each commit with the wallet's state right after it, before
/// the commit is appended to the log; what it returns runs once the commit
/// is durable (on the log's writer thread: keep it short). The webhooks'
/// outbox takes its notices here (`funding`).
pub trait CommitHook: Send + Sync + std::fmt::Debug + 'static {
    /// Cheap: whether `committing` has anything to do with these events.
    /// False keeps the commit free of any lookup.
    fn wants(&self, events: &[Event]) -> bool;

    fn committing(&self, state: &WalletState, events: &[Event])
    -> Option<Box<dyn FnOnce() + Send>>;
}

/// Counts for operators and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub wallets: usize,
    /// Wallets with a running actor.
    pub active: usize,
    /// Client commands routed and not yet handled.
    pub inflight: usize,
    /// Wallet actors restarted after a failure, since start.
    pub restarts: u64,
    /// Entries in the sweep's heap of passivated wallets with a timer (one
    /// per such wallet, and stale ones until their instant comes).
    pub filed_timers: usize,
    /// Items waiting in the wallets' FIFO queues, all wallets together.
    pub queued: u64,
}

#[derive(Clone, Debug)]
pub struct Gateway {
    runtime: Arc<Runtime>,
    actor: ActorRef<GatewayMsg>,
}

impl Gateway {
    /// Starts the gateway actor. Must run inside a Tokio runtime.
    pub async fn start(config: GatewayConfig) -> Result<Gateway, GatewayError> {
        Self::start_with(config, Arc::new(SystemClock), None).await
    }

    /// Starts with a given clock and commit observer (tests).
    pub async fn start_with(
        config: GatewayConfig,
        clock: Arc<dyn Clock>,
        observer: Option<Arc<dyn CommitObserver>>,
    ) -> Result<Gateway, GatewayError> {
        Self::spawn(Runtime::new(config, clock, observer, None, None)).await
    }

    /// Starts on recovered wallets, committing to `journal` from now on.
    /// Wallets with transfers awaiting receipts or expiries due are ticked
    /// by the first sweeps, which sends again what was in flight.
    /// `incoming`: the recovered index of transfers toward each wallet.
    pub async fn start_durable(
        config: GatewayConfig,
        clock: Arc<dyn Clock>,
        journal: Arc<Journal>,
        wallets: impl IntoIterator<Item = InstalledWallet>,
        incoming: Incoming,
        hook: Option<Arc<dyn CommitHook>>,
    ) -> Result<Gateway, GatewayError> {
        let runtime = Runtime::new(config, clock, None, Some(journal), hook);
        *runtime.incoming.lock() = incoming;
        for installed in wallets {
            // Every wallet starts passivated: a snapshot's bytes as they
            // are, else its state packed now.
            let shared = match installed {
                InstalledWallet::Packed(outline, bytes) => {
                    Arc::new(WalletShared::packed(outline, bytes))
                }
                InstalledWallet::Live(state) => {
                    let shared = Arc::new(WalletShared::new(*state));
                    shared
                        .pack()
                        .map_err(|e| GatewayError::Unavailable(e.to_string()))?;
                    shared
                }
            };
            let wallet = shared.id;
            let mut slots = runtime.registry.shard(wallet).write();
            runtime.rest(&shared);
            slots.insert(
                wallet,
                Slot {
                    shared,
                    actor: None,
                },
            );
        }
        Self::spawn(runtime).await
    }

    async fn spawn(runtime: Arc<Runtime>) -> Result<Gateway, GatewayError> {
        let (actor, _) = GatewayActor::spawn(None, GatewayActor, Arc::clone(&runtime))
            .await
            .map_err(|e| GatewayError::Unavailable(format!("cannot start the gateway: {e}")))?;
        let _ = runtime.supervisor.set(actor.get_cell());
        Ok(Gateway { runtime, actor })
    }

    /// Stops every actor. Commands after this answer `unavailable`.
    pub fn shutdown(&self) {
        self.actor.stop(Some("shutdown".to_owned()));
        self.runtime.stop_all();
    }

    /// Opens a wallet (`Op::OpenWallet`); opening the same wallet again
    /// answers as before.
    pub async fn open_wallet(&self, op: Op) -> Result<Answer, GatewayError> {
        let rt = &self.runtime;
        let event = opening(&rt.config.engine, rt.clock.now(), &op)?;
        let state = WalletState::open(&event).map_err(Reject::from)?;
        let wallet = state.id;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let durable: Then = Box::new(move |r| {
            let _ = tx.send(r);
        });
        let answer = {
            let mut slots = rt.registry.shard(wallet).write();
            if let Some(slot) = slots.get(&wallet) {
                let done = slot
                    .shared
                    .read(|existing| existing.reopened(&event))
                    .map_err(|e| GatewayError::Unavailable(e.to_string()))??;
                // The first opening may not be durable yet: wait for it.
                settle_engine::actor::WalletHost::commit(&**rt, wallet, Vec::new(), durable);
                Answer {
                    done,
                    txn: None,
                    sequence: 0,
                    queue_position: None,
                }
            } else {
                let shared = Arc::new(WalletShared::new(state));
                // A new wallet waits packed until its first message.
                shared
                    .pack()
                    .map_err(|e| GatewayError::Unavailable(e.to_string()))?;
                // Committed under the shard's lock, so that no command on the
                // wallet can reach the log before its opening.
                settle_engine::actor::WalletHost::commit(&**rt, wallet, vec![event], durable);
                rt.rest(&shared);
                slots.insert(
                    wallet,
                    Slot {
                        shared,
                        actor: None,
                    },
                );
                Answer {
                    done: Done::Wallet(wallet),
                    txn: None,
                    sequence: 1,
                    queue_position: None,
                }
            }
        };
        match rx.await {
            Ok(Ok(())) => Ok(answer),
            Ok(Err(e)) => Err(GatewayError::Unavailable(format!(
                "wallet {wallet} could not be made durable: {e}"
            ))),
            Err(_) => Err(GatewayError::Unavailable(format!(
                "wallet {wallet}: the log stopped before answering"
            ))),
        }
    }

    /// Executes a command at its wallet (the source, for a transfer); the
    /// answer comes once its events are durable.
    pub async fn execute(&self, op: Op) -> Result<Answer, GatewayError> {
        if matches!(op, Op::OpenWallet { .. }) {
            return self.open_wallet(op).await;
        }
        self.submit(op, Ack::Durable)?.answer().await
    }

    /// Routes a command now and returns the answer to wait for. Commands
    /// submitted one after another reach their wallet in that order (a batch
    /// relies on it); `execute` is `submit` then wait. Not for `OpenWallet`.
    pub fn submit(&self, op: Op, ack: Ack) -> Result<Submitted, GatewayError> {
        if matches!(op, Op::OpenWallet { .. }) {
            return Err(GatewayError::Rejected(Reject::InvalidRequest(
                "wallets are opened with open_wallet".to_owned(),
            )));
        }
        let destination = self.destination_verdict(&op);
        let wallet = op.wallet();
        let (tx, rx) = ractor::concurrency::oneshot();
        self.runtime.route(
            wallet,
            WalletMsg::Execute(Box::new(Execute {
                order: Order { op, destination },
                reply: tx.into(),
                ack,
            })),
            Admit::Client(1),
        )?;
        Ok(Submitted { wallet, rx })
    }

    /// The most commands `submit_many` takes in one group.
    pub fn max_group(&self) -> usize {
        MAX_GROUP.min(self.runtime.config.max_inflight_per_wallet as usize)
    }

    /// Routes several commands for one wallet (the wallet of each `op`, as
    /// `submit` would route it) in one message: they run in order in one
    /// turn of the wallet, and their events go to the log together. Each
    /// is answered as if it had come alone. Counted against the limits as
    /// that many commands; refused whole if they do not all fit. At most
    /// `max_group` of them, all for one wallet, none `OpenWallet`.
    pub fn submit_many(&self, ops: Vec<Op>, ack: Ack) -> Result<SubmittedMany, GatewayError> {
        let wallet = match ops.first() {
            Some(op) => op.wallet(),
            None => return Err(invalid("a group holds at least one command")),
        };
        let max = self.max_group();
        if ops.len() > max {
            return Err(invalid(&format!("a group holds at most {max} commands")));
        }
        if ops
            .iter()
            .any(|op| op.wallet() != wallet || matches!(op, Op::OpenWallet { .. }))
        {
            return Err(invalid(
                "a group's commands are for one wallet, and open none",
            ));
        }
        let count = ops.len();
        let commands = u32::try_from(count).unwrap_or(u32::MAX);
        let orders = ops
            .into_iter()
            .map(|op| Order {
                destination: self.destination_verdict(&op),
                op,
            })
            .collect();
        let (tx, rx) = ractor::concurrency::oneshot();
        self.runtime.route(
            wallet,
            WalletMsg::ExecuteMany(Box::new(ExecuteMany {
                orders,
                reply: tx.into(),
                ack,
            })),
            Admit::Client(commands),
        )?;
        Ok(SubmittedMany { wallet, count, rx })
    }

    /// The client a wallet belongs to, if the wallet exists.
    pub fn client_of(&self, wallet: WalletId) -> Option<ClientId> {
        let slots = self.runtime.registry.shard(wallet).read();
        slots.get(&wallet).map(|s| s.shared.client)
    }

    /// A wallet's status, without reading its state.
    pub fn status_of(&self, wallet: WalletId) -> Option<WalletStatus> {
        let slots = self.runtime.registry.shard(wallet).read();
        slots.get(&wallet).map(|s| s.shared.status())
    }

    /// The assets the engine knows.
    pub fn assets(&self) -> &settle_engine::AssetRegistry {
        &self.runtime.config.engine.assets
    }

    /// A transfer's destination as the router sees it: it exists, holds the
    /// asset and takes credits now. (Checked again on delivery: a change in
    /// between bounces the money back.)
    fn destination_verdict(&self, op: &Op) -> Result<(), Reject> {
        let (to, asset) = match op {
            Op::Transfer {
                from, to, asset, ..
            } if from != to => (*to, *asset),
            Op::Convert {
                from,
                to,
                buy_asset,
                ..
            } if from != to => (*to, *buy_asset),
            _ => return Ok(()),
        };
        // Under the shard's read lock, without cloning the `Arc`: this runs
        // for every transfer, and a shared reference count is a contended
        // cache line between cores.
        let slots = self.runtime.registry.shard(to).read();
        let dest = slots
            .get(&to)
            .ok_or_else(|| Reject::NotFound(format!("wallet {to} not found")))?;
        if !dest.shared.holds(asset) {
            return Err(Reject::UnknownAsset(format!(
                "wallet {to} holds no {asset}"
            )));
        }
        dest.shared.status().permit(to, Action::Credit)
    }

    /// Reads a wallet's state (live or passivated) without activating it.
    pub fn read<R>(
        &self,
        wallet: WalletId,
        f: impl FnOnce(&WalletState) -> R,
    ) -> Result<R, GatewayError> {
        let shared = self.runtime.registry.shared(wallet).ok_or_else(|| {
            GatewayError::Rejected(Reject::NotFound(format!("wallet {wallet} not found")))
        })?;
        shared
            .read(f)
            .map_err(|e| GatewayError::Unavailable(e.to_string()))
    }

    /// The transfers and conversions toward `wallet` that have not reached
    /// it (queued at their source, or cancelled or expired there), as it
    /// shows them: see `incoming`.
    pub fn incoming(&self, wallet: WalletId) -> Vec<Txn> {
        self.runtime.incoming.lock().toward(wallet)
    }

    pub fn stats(&self) -> Stats {
        let mut stats = Stats {
            inflight: self.runtime.inflight.load(Ordering::Acquire),
            restarts: self.runtime.restarts.load(Ordering::Acquire),
            ..Stats::default()
        };
        for shard in self.runtime.registry.shards() {
            stats.wallets += shard.read().len();
        }
        stats.active = self.runtime.running();
        stats.filed_timers = self.runtime.filed_timers();
        stats.queued = self.runtime.incoming.lock().queued();
        stats
    }

    /// Runs the sweep now (passivation and timers), as the gateway actor
    /// does every `sweep_every`.
    pub fn sweep_now(&self) {
        self.runtime.sweep();
    }

    /// Sends a raw message to a wallet's actor, activating it if needed.
    /// Low level, for tests and tools (a timer tick, an injected fault).
    pub fn send_raw(&self, wallet: WalletId, msg: WalletMsg) -> Result<(), GatewayError> {
        self.runtime.route(wallet, msg, Admit::Internal)
    }

    /// Whether a wallet has a running actor.
    pub fn is_active(&self, wallet: WalletId) -> bool {
        let slots = self.runtime.registry.shard(wallet).read();
        slots.get(&wallet).is_some_and(|s| s.actor.is_some())
    }

    /// Runs `f` on a consistent cut of the whole engine: every wallet's
    /// state locked at once (wallet actors wait meanwhile) and the messages
    /// in flight between them reconstructed from those states.
    pub fn with_cut<R>(&self, f: impl FnOnce(&CutView<'_>) -> R) -> Result<R, GatewayError> {
        let all = self.runtime.registry.all();
        let guards: Vec<_> = all.iter().map(|s| s.hold()).collect();
        let mut views = Vec::with_capacity(guards.len());
        for g in &guards {
            views.push(
                g.view()
                    .map_err(|e| GatewayError::Unavailable(e.to_string()))?,
            );
        }
        let wallets: BTreeMap<WalletId, &WalletState> =
            views.iter().map(|v| (v.id, &**v)).collect();
        let in_flight = settle_engine::message::implied_in_flight(&wallets);
        let view = CutView {
            assets: &self.runtime.config.engine.assets,
            wallets,
            in_flight,
        };
        Ok(f(&view))
    }

    /// The audit, the invariants and (if asked) the digest of a consistent
    /// cut, in one pass that decodes one passivated wallet at a time (see
    /// `survey`): what the admin routes use; `with_cut` decodes them all.
    pub fn survey(&self, with_digest: bool) -> Result<crate::survey::Survey, GatewayError> {
        crate::survey::survey(&self.runtime, with_digest)
    }

    /// A copy of a consistent cut (see `with_cut`); costs a copy of every wallet.
    pub fn cut(&self) -> Result<Cut, GatewayError> {
        self.with_cut(|v| Cut {
            assets: v.assets.clone(),
            wallets: v
                .wallets
                .iter()
                .map(|(id, w)| (*id, (*w).clone()))
                .collect(),
            in_flight: v.in_flight.clone(),
        })
    }
}

/// The most commands one `submit_many` message carries: enough that the
/// message, the answer and the commit are a small share of each command's
/// cost, few enough that one turn of a wallet stays short (~64 commands
/// of a few µs each) and its log record small.
const MAX_GROUP: usize = 64;

fn invalid(why: &str) -> GatewayError {
    GatewayError::Rejected(Reject::InvalidRequest(why.to_owned()))
}

/// Routed commands for one wallet whose answers are on their way together.
#[derive(Debug)]
pub struct SubmittedMany {
    wallet: WalletId,
    count: usize,
    rx: ractor::concurrency::OneshotReceiver<Vec<settle_engine::actor::Outcome>>,
}

impl SubmittedMany {
    /// Each command's answer, in the order submitted; all fail alike if
    /// the wallet's actor stopped before answering.
    pub async fn answers(self) -> Result<Vec<Result<Answer, GatewayError>>, GatewayError> {
        match self.rx.await {
            Ok(outcomes) if outcomes.len() == self.count => Ok(outcomes
                .into_iter()
                .map(|o| o.map_err(GatewayError::Rejected))
                .collect()),
            Ok(outcomes) => Err(GatewayError::Unavailable(format!(
                "wallet {} answered {} of {} commands",
                self.wallet,
                outcomes.len(),
                self.count
            ))),
            Err(_) => Err(GatewayError::Unavailable(format!(
                "wallet {} restarted before answering; retry",
                self.wallet
            ))),
        }
    }
}

/// A routed command whose answer is on its way.
#[derive(Debug)]
pub struct Submitted {
    wallet: WalletId,
    rx: ractor::concurrency::OneshotReceiver<settle_engine::actor::Outcome>,
}

impl Submitted {
    pub async fn answer(self) -> Result<Answer, GatewayError> {
        match self.rx.await {
            Ok(outcome) => outcome.map_err(GatewayError::Rejected),
            Err(_) => Err(GatewayError::Unavailable(format!(
                "wallet {} restarted before answering; retry",
                self.wallet
            ))),
        }
    }
}

/// The whole engine at one instant, borrowed while every wallet is locked.
#[derive(Debug)]
pub struct CutView<'a> {
    assets: &'a settle_engine::AssetRegistry,
    pub wallets: BTreeMap<WalletId, &'a WalletState>,
    pub in_flight: Vec<Message>,
}

impl CutView<'_> {
    pub fn audit(&self) -> Vec<AssetAudit> {
        settle_engine::audit::audit(
            self.assets,
            self.wallets.values().copied(),
            self.in_flight.iter(),
        )
    }

    pub fn digest(&self) -> Result<StateDigest, settle_engine::digest::DigestError> {
        settle_engine::digest::digest(self.wallets.values().copied(), self.in_flight.iter())
    }

    /// Every invariant the `Ledger` checks, on this cut.
    pub fn check_invariants(&self) -> Result<(), String> {
        settle_engine::audit::check(
            self.assets,
            self.wallets.values().copied(),
            self.in_flight.iter(),
        )
    }
}

/// The whole engine as of one instant, copied (see `Gateway::cut`).
#[derive(Debug)]
pub struct Cut {
    assets: settle_engine::AssetRegistry,
    pub wallets: BTreeMap<WalletId, WalletState>,
    pub in_flight: Vec<Message>,
}

impl Cut {
    pub fn view(&self) -> CutView<'_> {
        CutView {
            assets: &self.assets,
            wallets: self.wallets.iter().map(|(id, w)| (*id, w)).collect(),
            in_flight: self.in_flight.clone(),
        }
    }

    pub fn check_invariants(&self) -> Result<(), String> {
        self.view().check_invariants()
    }

    pub fn audit(&self) -> Vec<AssetAudit> {
        self.view().audit()
    }

    pub fn digest(&self) -> Result<StateDigest, settle_engine::digest::DigestError> {
        self.view().digest()
    }
}
