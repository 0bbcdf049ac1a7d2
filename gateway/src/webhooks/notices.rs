//! Which committed events make which notice, and what a notice says.
//!
//! A notice is derived from one event of one wallet and the wallet's state
//! right after the commit that holds it; both are in the log (and the
//! state in a snapshot), so replay derives the very same notice: same
//! `walletSequence` (the event's place in the wallet), same id, same body.

use crate::http::json::format_time;
use crate::http::reply::json_bytes;
use crate::http::views::TxnView;
use crate::webhooks::EventType;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use settle_engine::{AssetRegistry, Event, Timestamp, TxnId, TxnStatus, WalletId, WalletState};

/// One event, as a webhook receiver sees it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Notice {
    pub wallet: WalletId,
    /// The event's sequence in its wallet (1 is the wallet's opening).
    pub sequence: u64,
    pub kind: EventType,
    pub at: Timestamp,
    /// The `data` object, as JSON text.
    pub data: String,
}

impl Notice {
    /// Stable across redeliveries and restarts: the wallet and the event's
    /// place in it name the event.
    pub fn id(&self) -> String {
        format!("evt_{}_{}", self.wallet.ulid(), self.sequence)
    }

    /// The delivery's body: `{id, type, createdAt, walletSequence, data}`.
    pub fn body(&self) -> bytes::Bytes {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Body<'a> {
            id: String,
            #[serde(rename = "type")]
            kind: &'static str,
            created_at: String,
            wallet_sequence: u64,
            data: &'a RawValue,
        }
        let null = RawValue::NULL;
        let data: Box<RawValue> =
            RawValue::from_string(self.data.clone()).unwrap_or_else(|_| null.to_owned());
        json_bytes(&Body {
            id: self.id(),
            kind: self.kind.as_str(),
            created_at: format_time(self.at),
            wallet_sequence: self.sequence,
            data: &data,
        })
    }
}

/// What an event means for the receivers: a notice type, the transaction
/// it is about (if any) and the status that event gave it.
fn classify(e: &Event) -> Option<(EventType, Option<(TxnId, TxnStatus)>)> {
    use EventType::{TransactionCreated as Created, TransactionStatusChanged as Changed};
    let txn = |t: TxnId, s: TxnStatus| Some((t, s));
    Some(match e {
        Event::StatusChanged { .. } => (EventType::WalletStatusChanged, None),
        Event::CreditAccepted {
            txn: t, pending, ..
        } => {
            let s = if *pending {
                TxnStatus::Pending
            } else {
                TxnStatus::Settled
            };
            (Created, txn(*t, s))
        }
        Event::OutboundQueued { txn: t, .. } => (Created, txn(*t, TxnStatus::AwaitingFunds)),
        Event::OutboundSettledAtOnce { txn: t, .. } => (Created, txn(*t, TxnStatus::Settled)),
        Event::ReservationHeld { txn: t, .. } => (Created, txn(*t, TxnStatus::Held)),
        Event::TransferReceived { leg, .. } => (Created, txn(leg.txn, TxnStatus::Settled)),
        Event::TransferBounced { leg, .. } => (Created, txn(leg.txn, TxnStatus::Returned)),
        Event::PendingSettled { txn: t, .. } | Event::OutboundSettled { txn: t, .. } => {
            (Changed, txn(*t, TxnStatus::Settled))
        }
        Event::PendingRejected { txn: t, .. } => (Changed, txn(*t, TxnStatus::Rejected)),
        Event::OutboundCancelled { txn: t, .. } => (Changed, txn(*t, TxnStatus::Cancelled)),
        Event::OutboundExpired { txn: t, .. } => (Changed, txn(*t, TxnStatus::Expired)),
        Event::ReservationCaptured { txn: t, .. } => (Changed, txn(*t, TxnStatus::Captured)),
        Event::ReservationReleased { txn: t, .. } => (Changed, txn(*t, TxnStatus::Released)),
        Event::TransferReturned { txn: t, .. } => (Changed, txn(*t, TxnStatus::Returned)),
        // Not in API.md's event types: no notice.
        Event::WalletOpened { .. }
        | Event::SettingsChanged { .. }
        | Event::TransferDelivered { .. } => return None,
    })
}

/// Whether any of these events makes a notice (cheap: no state needed).
pub fn any_notice(events: &[Event]) -> bool {
    events.iter().any(|e| classify(e).is_some())
}

/// The notices a commit makes. `state` is the wallet right after the commit
/// of `events` (its last event has `state.sequence`). A transaction's data
/// is its record as of the commit, with the status that event gave it.
pub fn derive(assets: &AssetRegistry, state: &WalletState, events: &[Event]) -> Vec<Notice> {
    let n = u64::try_from(events.len()).unwrap_or(u64::MAX);
    let first = state.sequence.saturating_add(1).saturating_sub(n);
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let Some((kind, txn)) = classify(e) else {
            continue;
        };
        let sequence = first.saturating_add(u64::try_from(i).unwrap_or(u64::MAX));
        let data = match (e, txn) {
            (Event::StatusChanged { status, reason, .. }, _) => {
                #[derive(Serialize)]
                #[serde(rename_all = "camelCase")]
                struct StatusData<'a> {
                    wallet_id: String,
                    status: &'a str,
                    reason: Option<&'a str>,
                }
                json_bytes(&StatusData {
                    wallet_id: state.id.to_string(),
                    status: status.as_str(),
                    reason: reason.as_deref(),
                })
            }
            (_, Some((id, status))) => {
                let Some(t) = state.txn(id) else {
                    tracing::warn!(wallet = %state.id, txn = %id, "no record for a notice; skipped");
                    continue;
                };
                let mut view = TxnView::new(assets, state.id, t, state.queue_position(id));
                view.status = status.as_str();
                json_bytes(&view)
            }
            (_, None) => continue,
        };
        out.push(Notice {
            wallet: state.id,
            sequence,
            kind,
            at: e.at(),
            data: String::from_utf8_lossy(&data).into_owned(),
        });
    }
    out
}
