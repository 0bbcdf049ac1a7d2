//! The wallet actor: one wallet's state machine, one message at a time.

use crate::actor::{CommitError, RESEND_AFTER_MS, Then, WalletHost, WalletShared};
use crate::command::Op;
use crate::event::Event;
use crate::ids::Timestamp;
use crate::message::{self, Message};
use crate::reject::Reject;
use crate::txn::Txn;
use crate::wallet::{Done, WalletState};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The answer to a command: what it produced and the record it touched, as
/// they were right after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub done: Done,
    pub txn: Option<Txn>,
    /// The wallet's sequence after the command.
    pub sequence: u64,
    /// Where the touched record waits in its FIFO queue (1 = head), if it does.
    pub queue_position: Option<usize>,
}

pub type Outcome = Result<Answer, Reject>;

/// When a command's answer is sent back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ack {
    /// Once its events are durable: the answer may be acknowledged as is.
    #[default]
    Durable,
    /// As soon as it is applied and its events are handed to the log. For
    /// callers that make a later record durable before acknowledging
    /// anything (an idempotent request's answer): the log is one ordered
    /// sequence, so that record's durability covers these events, and the
    /// request waits for one group commit instead of two.
    Applied,
}

/// A client's command with the router's verdict on a transfer's
/// destination (see `WalletState::execute`).
#[derive(Debug)]
pub struct Order {
    pub op: Op,
    pub destination: Result<(), Reject>,
}

/// A client's command as its wallet receives it.
#[derive(Debug)]
pub struct Execute {
    pub order: Order,
    pub reply: RpcReplyPort<Outcome>,
    pub ack: Ack,
}

/// Several client commands for one wallet, run in order in one turn.
#[derive(Debug)]
pub struct ExecuteMany {
    pub orders: Vec<Order>,
    pub reply: RpcReplyPort<Vec<Outcome>>,
    pub ack: Ack,
}

/// A wallet actor's messages. Each payload is boxed, so that a message is
/// two words: ractor copies a message into the receiving actor's task
/// (whose memory is cold when 10,000 wallets share two cores) and through
/// its processing loop, and a 240-byte message cost four cache lines each
/// time (BENCHMARKS.md). The box is written once by the sender.
#[derive(Debug)]
pub enum WalletMsg {
    /// A client's command.
    Execute(Box<Execute>),
    /// Several client commands for this wallet, run in order in one turn
    /// and answered together (a batch's commands for one wallet): one
    /// message, one commit and one answer instead of one each. Each runs
    /// as if it had come alone; a refusal does not stop the ones after it.
    ExecuteMany(Box<ExecuteMany>),
    /// A message from another wallet (a transfer's delivery, receipt or return).
    Receive(Box<Message>),
    /// Time has passed: expire what is due, settle what fits, and send again
    /// every transfer whose receipt is still awaited.
    Tick,
    /// The wallet has been idle: ask the host to passivate it.
    Passivate,
    /// Panics at once (supervision tests).
    #[cfg(feature = "fault-injection")]
    Panic,
    /// Applies `op`, then panics before committing or answering: a command
    /// cut short (supervision tests). Its events stand and are committed by
    /// the next message the wallet handles.
    #[cfg(feature = "fault-injection")]
    PanicAfter(Box<Op>),
}

const _: () = assert!(std::mem::size_of::<WalletMsg>() <= 16);

#[derive(Debug, Clone, Copy, Default)]
pub struct WalletActor;

pub struct WalletActorState {
    shared: Arc<WalletShared>,
    host: Arc<dyn WalletHost>,
}

impl std::fmt::Debug for WalletActorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalletActorState")
            .field("wallet", &self.shared.id)
            .finish()
    }
}

/// What one message did: events to commit and messages to post.
struct Effects {
    events: Vec<Event>,
    posts: Vec<Message>,
}

impl WalletActorState {
    /// Runs `f` on the live state, then collects the messages its events send
    /// and publishes the status and next tick for the router. `at` is the
    /// message's instant (the clock is read once per message).
    fn step<R>(
        &self,
        at: Timestamp,
        f: impl FnOnce(&mut WalletState, &mut Vec<Event>) -> R,
    ) -> Result<(R, Effects), ActorProcessingErr> {
        let receipts = self.shared.take_receipts();
        let mut live = self.shared.live()?;
        let (state, buffer) = live.parts()?;
        // Events a failed actor applied but did not commit come first.
        if !buffer.is_empty() {
            tracing::warn!(
                wallet = %self.shared.id,
                events = buffer.len(),
                "committing the events of a command cut short by a failure"
            );
        }
        for txn in receipts {
            let receipt = Message::Receipt {
                txn,
                to: self.shared.id,
            };
            if let Err(err) = state.receive(at, &receipt, buffer) {
                tracing::error!(wallet = %self.shared.id, %err, "receipt not applied");
            }
        }
        let r = f(state, buffer);
        let events = std::mem::take(buffer);
        let mut posts = Vec::new();
        for e in &events {
            match message::sent_by(state, e) {
                Ok(Some(m)) => posts.push(m),
                Ok(None) => {}
                Err(err) => tracing::error!(wallet = %self.shared.id, %err, "no message for event"),
            }
        }
        self.shared.publish(state);
        Ok((r, Effects { events, posts }))
    }

    /// Commits the events (the reply waits for them), then posts.
    fn finish(&self, effects: Effects, then: Then) {
        self.host.commit(self.shared.id, effects.events, then);
        for m in effects.posts {
            self.host.post(m);
        }
    }

    /// Commits and posts a client message's effects and sends its answer:
    /// at once (`Ack::Applied`), or once the events are durable, turned by
    /// `undurable` into refusals if they cannot be made so (nothing is
    /// acknowledged that is not durable). The caller may have given up
    /// waiting; the answer is then dropped.
    fn acknowledge<T: Send + 'static>(
        &self,
        effects: Effects,
        ack: Ack,
        reply: RpcReplyPort<T>,
        answer: T,
        undurable: fn(T, &CommitError) -> T,
    ) {
        if ack == Ack::Applied {
            self.finish(effects, Box::new(|_| {}));
            let _ = reply.send(answer);
        } else {
            self.finish(
                effects,
                Box::new(move |durable| {
                    let _ = reply.send(match durable {
                        Ok(()) => answer,
                        Err(e) => undurable(answer, &e),
                    });
                }),
            );
        }
    }
}

/// The refusal of a command whose events could not be made durable.
fn undurable(e: &CommitError) -> Reject {
    Reject::Unavailable(format!("the change could not be made durable: {e}"))
}

fn answer(state: &WalletState, done: Done) -> Answer {
    Answer {
        done,
        txn: match done {
            Done::Txn(id) => state.txn(id).cloned(),
            Done::Wallet(_) => None,
        },
        sequence: state.sequence,
        queue_position: match done {
            Done::Txn(id) => state.queue_position(id),
            Done::Wallet(_) => None,
        },
    }
}

impl Actor for WalletActor {
    type Msg = WalletMsg;
    type State = WalletActorState;
    type Arguments = (Arc<WalletShared>, Arc<dyn WalletHost>);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (shared, host): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(WalletActorState { shared, host })
    }

    /// A failure (a panic, or an error from the state) is reported to the
    /// host, which starts a new actor on the state the last applied event
    /// left; this one then stops. Reported here, not through a ractor
    /// supervisor: a link sends the supervisor two events per actor
    /// (started, terminated), and one supervisor cannot drain them at the
    /// rate a burst activates wallets: its queue held every stopped actor
    /// (~8 KB each), 2.5 GB while 1,000,000 wallets were funded.
    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let outcome =
            std::panic::catch_unwind(AssertUnwindSafe(|| handle_now(&myself, message, st)));
        let error = match outcome {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(panic) => panic_text(panic.as_ref()),
        };
        st.host.failed(&st.shared, myself.get_id(), &error);
        Err(error.into())
    }
}

/// What a panic said, if it said it in text.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(text), _) => format!("panicked: {text}"),
        (None, Some(text)) => format!("panicked: {text}"),
        (None, None) => "panicked".to_owned(),
    }
}

/// Handles one message (no await in it: a wallet's turn never waits).
fn handle_now(
    myself: &ActorRef<WalletMsg>,
    message: WalletMsg,
    st: &mut WalletActorState,
) -> Result<(), ActorProcessingErr> {
    let at = st.host.now();
    match message {
        WalletMsg::Execute(execute) => {
            let Execute { order, reply, ack } = *execute;
            let config = st.host.config();
            let (outcome, effects) = st.step(at, |state, out| {
                state
                    .execute(at, config, &order.op, order.destination, out)
                    .map(|done| answer(state, done))
            })?;
            // Counted out before the answer goes back, so that a caller
            // who got its answer never sees its command still counted.
            st.host.finished(&st.shared, 1);
            st.acknowledge(effects, ack, reply, outcome, |_, e| Err(undurable(e)));
        }
        WalletMsg::ExecuteMany(many) => {
            let ExecuteMany { orders, reply, ack } = *many;
            let config = st.host.config();
            let commands = u32::try_from(orders.len()).unwrap_or(u32::MAX);
            let (outcomes, effects) = st.step(at, |state, out| {
                orders
                    .into_iter()
                    .map(|o| {
                        state
                            .execute(at, config, &o.op, o.destination, out)
                            .map(|done| answer(state, done))
                    })
                    .collect::<Vec<Outcome>>()
            })?;
            st.host.finished(&st.shared, commands);
            st.acknowledge(effects, ack, reply, outcomes, |outcomes, e| {
                outcomes.iter().map(|_| Err(undurable(e))).collect()
            });
        }
        WalletMsg::Receive(m) => {
            let (ack, mut effects) = st.step(at, |state, out| state.receive(at, &m, out))?;
            match ack {
                Ok(Some(again)) => effects.posts.push(again),
                Ok(None) => {}
                Err(err) => {
                    tracing::error!(wallet = %st.shared.id, %err, ?m, "message not applied")
                }
            }
            st.host.finished(&st.shared, 0);
            st.finish(effects, Box::new(|_| {}));
        }
        WalletMsg::Tick => {
            let (settled, mut effects) = st.step(at, |state, out| {
                let r = state.settle_due(at, out);
                // Only what has waited long enough: a receipt for what
                // settled a moment ago is most likely on its way.
                let resend: Vec<Message> = state
                    .awaiting_receipt()
                    .filter(|txn| {
                        state.txn(*txn).is_some_and(|t| {
                            t.updated_at.millis().saturating_add(RESEND_AFTER_MS) <= at.millis()
                        })
                    })
                    .filter_map(|txn| message::delivery(state, txn))
                    .collect();
                (r, resend)
            })?;
            let (r, resend) = settled;
            if let Err(err) = r {
                tracing::error!(wallet = %st.shared.id, %err, "tick failed");
            }
            effects.posts.extend(resend);
            st.host.finished(&st.shared, 0);
            st.finish(effects, Box::new(|_| {}));
        }
        WalletMsg::Passivate => {
            if st.host.passivate(&st.shared) {
                myself.stop(Some("passivated".to_owned()));
            }
            return Ok(());
        }
        #[cfg(feature = "fault-injection")]
        WalletMsg::Panic => panic!("injected fault in wallet {}", st.shared.id),
        #[cfg(feature = "fault-injection")]
        WalletMsg::PanicAfter(op) => {
            let config = st.host.config();
            let wallet = st.shared.id;
            let _ = st.step(at, |state, out| {
                let _ = state.execute(at, config, &op, Ok(()), out);
                panic!("injected fault in wallet {wallet} after a command");
            })?;
        }
    }
    // Past the host's bound on running actors, a wallet with nothing
    // else waiting stops now rather than at the next sweep: a burst over
    // many wallets (a set-up funding a million) would otherwise start
    // actors far faster than sweeps stop them.
    if st.host.crowded()
        && st.shared.inflight.load(Ordering::Acquire) == 0
        && st.host.passivate(&st.shared)
    {
        myself.stop(Some("passivated".to_owned()));
    }
    Ok(())
}
