//! The part of a wallet both its actor and the gateway's registry hold.

use crate::asset::AssetCode;
use crate::ids::{ClientId, Timestamp, TxnId, WalletId};
use crate::wallet::pack::Outline;
use crate::wallet::{WalletState, WalletStatus};
use parking_lot::{Mutex, MutexGuard};
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU32, Ordering};

/// `WalletShared::receipts_age`: no receipt waits in the inbox.
const RECEIPTS_NONE: u8 = 0;
/// Receipts wait; no sweep has seen them yet.
const RECEIPTS_WAITING: u8 = 1;
/// Receipts wait and a sweep has seen them: the next sweep ticks the wallet.
const RECEIPTS_SEEN: u8 = 2;

/// What a sweep finds in a wallet's receipt inbox (`WalletShared::sweep_receipts`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptsWaiting {
    None,
    /// Left since the last sweep: the wallet may well apply them with its
    /// next message, so it is not ticked for them yet.
    Fresh,
    /// Seen by the previous sweep too: the wallet has handled no message
    /// since, so it needs a tick to apply them.
    Overdue,
}

/// A wallet's state: live while its actor runs, packed (MessagePack) while
/// passivated, so that a million idle wallets fit in little memory.
#[derive(Debug)]
enum Cell {
    Live(Box<WalletState>),
    Packed(Box<[u8]>),
}

/// What the state's lock guards: the state, and the events applied to it
/// and not yet handed to the host to commit. Kept here, not in the actor,
/// so that the events of a command cut short by a panic are not lost: they
/// are applied, so they must be logged (roll forward); the next actor's
/// first message commits them, ahead of its own. Under the state's own lock
/// because only a step that holds it touches them: one lock per message,
/// and a `WalletShared` small enough for the allocator's 192-byte class
/// (a million wallets: 32 MB less than the 224-byte one).
#[derive(Debug)]
struct Guarded {
    cell: Cell,
    uncommitted: Vec<crate::event::Event>,
}

/// Encodes a wallet's state compactly: the packed form of `wallet::pack`,
/// the same bytes a snapshot holds for the wallet, so a snapshot's bytes
/// can be installed here as they are.
pub fn encode_state(state: &WalletState) -> Vec<u8> {
    crate::wallet::pack::to_bytes(state)
}

pub fn decode_state(bytes: &[u8]) -> Result<WalletState, crate::msgpack::DecodeError> {
    crate::wallet::pack::decode(bytes)
}

/// One wallet as the actor and the registry share it.
///
/// The state lives here, not inside the actor, for two reasons: a wallet
/// actor that panics is restarted on exactly the state its last applied
/// event left (each event applies atomically, so that state is consistent);
/// and the registry can read or pack it without a round trip to the actor.
/// Lock order: a registry shard before a wallet's state, never the reverse;
/// an actor never holds its state while it posts or commits.
#[derive(Debug)]
pub struct WalletShared {
    pub id: WalletId,
    pub client: ClientId,
    /// The wallet's first asset, inline: most wallets hold one, and the
    /// router checks a transfer's destination (`holds`) against it.
    /// Fixed at creation.
    first_asset: Option<AssetCode>,
    /// The others, if any. Boxed on purpose: a thin pointer, 8 bytes
    /// where a boxed slice takes 16, for the wallets that hold one asset.
    #[expect(
        clippy::box_collection,
        reason = "a thin pointer keeps WalletShared in the 192-byte class"
    )]
    other_assets: Option<Box<Vec<AssetCode>>>,
    status: AtomicU8,
    guarded: Mutex<Guarded>,
    /// Messages routed to the actor and not yet finished (backpressure).
    pub inflight: AtomicU32,
    /// Of those, client commands (the gateway's total counts only these).
    pub client_inflight: AtomicU32,
    /// When the wallet last received a message (ms), for passivation.
    pub last_used: AtomicI64,
    /// When the wallet next needs a `Tick` (ms; `i64::MAX` for never):
    /// an expiry, or a transfer whose receipt is awaited.
    pub next_due: AtomicI64,
    /// The `next_due` the host last filed this wallet under while it was
    /// passivated (`i64::MIN` for none): the host files it again only when
    /// its timer moved, so resting often does not pile up entries.
    pub filed_due: AtomicI64,
    /// Receipts for transfers this wallet sent, left here by their
    /// destinations rather than sent as actor messages: a receipt moves no
    /// money and nothing waits on it, so it need not wake the actor. The
    /// actor applies them before whatever it handles next (and a tick comes
    /// if nothing else does within two sweeps).
    receipts: Mutex<Vec<TxnId>>,
    /// `RECEIPTS_*`: whether receipts wait, and whether a sweep saw them.
    /// Written under `receipts`' lock when receipts are left or taken, so
    /// it never says "none" while some wait; read without it.
    receipts_age: AtomicU8,
}

// A million wallets each hold one (`Arc`: 16 more bytes): at most 176 keeps
// them in the allocator's 192-byte class rather than its 224-byte one.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<WalletShared>() <= 176);

/// How long a sent transfer may await its receipt before it is sent again.
pub const RESEND_AFTER_MS: i64 = 1_000;

impl WalletShared {
    pub fn new(state: WalletState) -> Self {
        let mut shared = Self::with_cell(Outline::of(&state), Cell::Packed(Box::default()));
        shared.guarded.get_mut().cell = Cell::Live(Box::new(state));
        shared.refresh_from_live();
        shared
    }

    /// A passivated wallet from its packed bytes and their outline
    /// (`pack::scan` of them, or `Outline::of` the state they encode): a
    /// snapshot's wallet starts this way at recovery, never decoded until
    /// first used, instead of being decoded and packed again.
    pub fn packed(outline: Outline, bytes: Box<[u8]>) -> Self {
        let (next_expiry, awaits_receipt) = (outline.next_expiry, outline.awaits_receipt);
        let shared = Self::with_cell(outline, Cell::Packed(bytes));
        shared.publish_timers(next_expiry, awaits_receipt);
        shared
    }

    /// The fixed facts of a wallet and fresh counters around `cell`; the
    /// caller publishes the wallet's timers.
    fn with_cell(outline: Outline, cell: Cell) -> Self {
        let mut assets = outline.assets.iter().copied();
        let first_asset = assets.next();
        let others: Vec<AssetCode> = assets.collect();
        Self {
            id: outline.id,
            client: outline.client,
            first_asset,
            other_assets: (!others.is_empty()).then(|| Box::new(others)),
            status: AtomicU8::new(status_code(outline.status)),
            guarded: Mutex::new(Guarded {
                cell,
                uncommitted: Vec::new(),
            }),
            inflight: AtomicU32::new(0),
            client_inflight: AtomicU32::new(0),
            last_used: AtomicI64::new(0),
            next_due: AtomicI64::new(i64::MAX),
            filed_due: AtomicI64::new(i64::MIN),
            receipts: Mutex::new(Vec::new()),
            receipts_age: AtomicU8::new(RECEIPTS_NONE),
        }
    }

    /// The wallet's status as last published by its actor.
    pub fn status(&self) -> WalletStatus {
        match self.status.load(Ordering::Acquire) {
            0 => WalletStatus::Active,
            1 => WalletStatus::Restricted,
            2 => WalletStatus::Suspended,
            _ => WalletStatus::Closed,
        }
    }

    pub fn holds(&self, asset: AssetCode) -> bool {
        self.first_asset == Some(asset)
            || self
                .other_assets
                .as_ref()
                .is_some_and(|others| others.contains(&asset))
    }

    /// Locks the live state, unpacking it first if it was packed, with the
    /// buffer a message's events are applied into (see `Guarded`).
    pub fn live(&self) -> Result<LiveState<'_>, StateError> {
        let mut guarded = self.guarded.lock();
        if let Cell::Packed(bytes) = &guarded.cell {
            let state = decode_state(bytes).map_err(|e| StateError(e.to_string()))?;
            guarded.cell = Cell::Live(Box::new(state));
        }
        Ok(LiveState(guarded))
    }

    /// Runs `f` on the state, live or packed, without unpacking it in place.
    pub fn read<R>(&self, f: impl FnOnce(&WalletState) -> R) -> Result<R, StateError> {
        let guarded = self.guarded.lock();
        match &guarded.cell {
            Cell::Live(state) => Ok(f(state)),
            Cell::Packed(bytes) => {
                let state = decode_state(bytes).map_err(|e| StateError(e.to_string()))?;
                Ok(f(&state))
            }
        }
    }

    /// Packs the state (passivation). A state that will not encode stays live.
    pub fn pack(&self) -> Result<(), StateError> {
        let mut guarded = self.guarded.lock();
        if let Cell::Live(state) = &guarded.cell {
            guarded.cell = Cell::Packed(encode_state(state).into_boxed_slice());
        }
        Ok(())
    }

    /// Locks the state until the guard is dropped (consistent cuts).
    pub fn hold(&self) -> HeldState<'_> {
        HeldState(self.guarded.lock())
    }

    /// Leaves a receipt for this wallet. It is applied with the wallet's
    /// next message, or by a tick from the second sweep that finds it
    /// still waiting (`sweep_receipts`). Not a tick at the next sweep: a
    /// busy wallet applies its receipts long before, and ticking every
    /// wallet that got one since the last sweep cost a message per wallet
    /// per sweep (BENCHMARKS.md).
    pub fn leave_receipt(&self, txn: TxnId) {
        let mut receipts = self.receipts.lock();
        receipts.push(txn);
        if self.receipts_age.load(Ordering::Relaxed) == RECEIPTS_NONE {
            self.receipts_age.store(RECEIPTS_WAITING, Ordering::Release);
        }
    }

    /// For the sweep: whether receipts wait, and whether the previous sweep
    /// saw them waiting already (then the wallet needs a tick). Marks them
    /// seen.
    pub fn sweep_receipts(&self) -> ReceiptsWaiting {
        match self.receipts_age.load(Ordering::Acquire) {
            RECEIPTS_NONE => ReceiptsWaiting::None,
            RECEIPTS_WAITING => {
                // Lost to a concurrent take (then none wait) or a concurrent
                // leave (then they are still fresh): both fine.
                let _ = self.receipts_age.compare_exchange(
                    RECEIPTS_WAITING,
                    RECEIPTS_SEEN,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
                ReceiptsWaiting::Fresh
            }
            _ => ReceiptsWaiting::Overdue,
        }
    }

    /// Takes the receipts left so far. Most messages find none: then the
    /// inbox's lock is not taken.
    pub fn take_receipts(&self) -> Vec<TxnId> {
        if self.receipts_age.load(Ordering::Acquire) == RECEIPTS_NONE {
            // A receipt being left right now is applied with the next
            // message or tick, as if it had come a moment later.
            return Vec::new();
        }
        let mut receipts = self.receipts.lock();
        self.receipts_age.store(RECEIPTS_NONE, Ordering::Release);
        std::mem::take(&mut *receipts)
    }

    /// Publishes what the router and the sweeper read without locking: the
    /// status and when the wallet next needs a tick.
    pub fn publish(&self, state: &WalletState) {
        self.status
            .store(status_code(state.status), Ordering::Release);
        self.publish_timers(
            state.next_expiry(),
            state.awaiting_receipt().next().is_some(),
        );
    }

    /// When the wallet next needs a tick: its next expiry, or a resend if a
    /// transfer it sent awaits its receipt.
    fn publish_timers(&self, next_expiry: Option<Timestamp>, awaits_receipt: bool) {
        let expiry = next_expiry.map_or(i64::MAX, Timestamp::millis);
        let resend = if awaits_receipt {
            self.last_used
                .load(Ordering::Relaxed)
                .saturating_add(RESEND_AFTER_MS)
        } else {
            i64::MAX
        };
        // Receipts left in the inbox are not timers: the sweep ticks for
        // them on its own (`sweep_receipts`).
        self.next_due.store(expiry.min(resend), Ordering::Release);
    }

    fn refresh_from_live(&self) {
        if let Cell::Live(state) = &self.guarded.lock().cell {
            self.publish(state);
        }
    }
}

fn status_code(status: WalletStatus) -> u8 {
    match status {
        WalletStatus::Active => 0,
        WalletStatus::Restricted => 1,
        WalletStatus::Suspended => 2,
        WalletStatus::Closed => 3,
    }
}

/// A wallet's live state, locked, with its buffer of events not yet
/// committed (see `WalletShared::live`).
#[derive(Debug)]
pub struct LiveState<'a>(MutexGuard<'a, Guarded>);

impl LiveState<'_> {
    /// The state and the buffer. (`live` made the state live; the lock has
    /// been held since, so it still is.)
    pub fn parts(
        &mut self,
    ) -> Result<(&mut WalletState, &mut Vec<crate::event::Event>), StateError> {
        let Guarded { cell, uncommitted } = &mut *self.0;
        match cell {
            Cell::Live(state) => Ok((&mut **state, uncommitted)),
            Cell::Packed(_) => Err(StateError("state is not live".to_owned())),
        }
    }
}

/// A wallet's state, locked (see `WalletShared::hold`).
#[derive(Debug)]
pub struct HeldState<'a>(MutexGuard<'a, Guarded>);

impl HeldState<'_> {
    /// The state: borrowed if live, decoded if packed.
    pub fn view(&self) -> Result<std::borrow::Cow<'_, WalletState>, StateError> {
        match &self.0.cell {
            Cell::Live(state) => Ok(std::borrow::Cow::Borrowed(&**state)),
            Cell::Packed(bytes) => decode_state(bytes)
                .map(std::borrow::Cow::Owned)
                .map_err(|e| StateError(e.to_string())),
        }
    }
}

/// A wallet's state could not be packed or unpacked (a defect: it was
/// packed by this very binary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateError(pub String);

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wallet state: {}", self.0)
    }
}

impl std::error::Error for StateError {}
