//! `POST /v1/batch`: up to 8,192 operations in one request, answered in
//! order, each as if it had been sent alone (its own status and body).
//!
//! Operations on one wallet run in the order given; those on different
//! wallets run concurrently. A wallet's operations travel together, up to
//! `Gateway::max_group` in one message (one turn of the wallet, one log
//! record, one answer): a batch of payouts from one wallet is a few
//! messages, not thousands. At most `batch_window` operations are on their
//! way at once, so that one batch cannot fill a wallet's mailbox past the
//! gateway's bound by itself.

use crate::http::app::{App, Cx};
use crate::http::body_without::parse_without;
use crate::http::handlers::money::{self, Action, OperationTally};
use crate::http::handlers::{owned_txn, owned_wallet_field};
use crate::http::json::parse_body;
use crate::http::reply::{ApiError, Reply};
use crate::http::views::TxnView;
use crate::shards::IdHash;
use crate::{GatewayError, Submitted, SubmittedMany};
use hyper::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use settle_engine::TxnId;
use settle_engine::actor::Answer;
use settle_engine::{Op, WalletId};
use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};

/// Each operation is kept as its text in the request's body (read once
/// more, as its endpoint's body, by `operation`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody<'a> {
    #[serde(borrow)]
    operations: Vec<&'a RawValue>,
}

/// One result, in the request's order.
#[derive(Serialize, Debug)]
#[serde(untagged)]
enum OpResult {
    Data { status: u16, data: Box<TxnView> },
    Error { status: u16, error: ErrorBody },
}

#[derive(Serialize, Debug)]
struct ErrorBody {
    code: &'static str,
    message: String,
}

impl From<ApiError> for OpResult {
    fn from(e: ApiError) -> Self {
        OpResult::Error {
            status: e.status.as_u16(),
            error: ErrorBody {
                code: e.code,
                message: e.message,
            },
        }
    }
}

#[derive(Serialize)]
struct BatchAnswer {
    results: Vec<OpResult>,
}

/// Where an operation's result goes, and what it needs to be shown.
struct Member {
    index: usize,
    op: &'static str,
    wallet: WalletId,
    created: bool,
}

/// Operations of the batch for one wallet, in the request's order, routed
/// as one message.
struct Group {
    members: Vec<Member>,
    ops: Vec<Op>,
}

/// A routed group waiting for its answers.
enum Flight {
    One(Member, Submitted),
    Many(Vec<Member>, SubmittedMany),
}

impl Flight {
    fn len(&self) -> usize {
        match self {
            Flight::One(..) => 1,
            Flight::Many(members, _) => members.len(),
        }
    }
}

pub async fn run(app: &App, cx: &Cx, body: &[u8]) -> Result<Reply, ApiError> {
    let batch: BatchBody = parse_body(body)?;
    let n = batch.operations.len();
    if n == 0 || n > app.limits.max_batch {
        return Err(ApiError::invalid_request(format!(
            "operations: a batch holds 1 to {} operations, got {n}",
            app.limits.max_batch
        )));
    }
    // All commands are built (and their ids minted) first, so that the
    // request's claim holds every id before the first command is routed.
    let built: Vec<Result<(Op, bool), ApiError>> = batch
        .operations
        .iter()
        .enumerate()
        .map(|(index, raw)| operation(app, cx, index, raw))
        .collect();
    cx.claim(app)?;
    let mut results: Vec<Option<OpResult>> = (0..n).map(|_| None).collect();
    let window = app.limits.batch_window.max(1);
    let groups = group(built, app.gateway.max_group().min(window), &mut results);
    let mut flying: VecDeque<Flight> = VecDeque::with_capacity(groups.len().min(window));
    let mut flying_ops = 0;
    let mut tally = OperationTally::default();
    for g in groups {
        while flying_ops + g.ops.len() > window
            && let Some(f) = flying.pop_front()
        {
            flying_ops -= f.len();
            land(app, f, &mut results, &mut tally).await;
        }
        match route(app, cx, g) {
            Ok(f) => {
                flying_ops += f.len();
                flying.push_back(f);
            }
            Err((members, e)) => {
                for m in members {
                    results[m.index] = Some(e.clone().into());
                }
            }
        }
    }
    while let Some(f) = flying.pop_front() {
        land(app, f, &mut results, &mut tally).await;
    }
    tally.publish();
    let results: Vec<OpResult> = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| ApiError::internal("a batch operation got no result").into()))
        .collect();
    // An operation refused for now (429, 503) may go otherwise on a retry:
    // the batch's answer is then not stored, and a retry runs it again with
    // the same ids (what ran is recognised by its transaction id).
    let retry = results.iter().any(|r| match r {
        OpResult::Error { status, .. } => *status == 429 || *status >= 500,
        OpResult::Data { .. } => false,
    });
    // ~340 bytes of JSON per operation (BENCHMARKS.md); a little more up
    // front is cheaper than growing by doubling.
    let size = 64 + 400 * results.len();
    let mut reply = Reply::data_sized(StatusCode::OK, &BatchAnswer { results }, size);
    reply.retry = retry;
    Ok(reply)
}

/// The built operations in groups of at most `max` per wallet, in the
/// order each group's first operation comes; an operation that could not
/// be built gets its result now. A wallet's operations keep their order:
/// within a group, and across its groups, since a wallet's next group is
/// opened (and so routed) after its previous one is full. Operations on
/// different wallets run concurrently either way.
fn group(
    built: Vec<Result<(Op, bool), ApiError>>,
    max: usize,
    results: &mut [Option<OpResult>],
) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    // Sized for one group per operation, so it never grows; wallet ids are
    // minted by the server, so a fast hash will do.
    let mut open: HashMap<WalletId, usize, IdHash> =
        HashMap::with_capacity_and_hasher(built.len(), IdHash::default());
    for (index, op) in built.into_iter().enumerate() {
        let (op, created) = match op {
            Ok(op) => op,
            Err(e) => {
                results[index] = Some(e.into());
                continue;
            }
        };
        let wallet = op.wallet();
        let member = Member {
            index,
            op: op.name(),
            wallet,
            created,
        };
        match open.get(&wallet).and_then(|&g| groups.get_mut(g)) {
            Some(g) if g.ops.len() < max => {
                g.members.push(member);
                g.ops.push(op);
            }
            _ => {
                open.insert(wallet, groups.len());
                groups.push(Group {
                    members: vec![member],
                    ops: vec![op],
                });
            }
        }
    }
    groups
}

/// Routes a group: one operation alone as it would go alone, several in
/// one message. A refusal at the door (overload, an unknown wallet) is
/// every member's.
fn route(app: &App, cx: &Cx, mut g: Group) -> Result<Flight, (Vec<Member>, ApiError)> {
    if g.ops.len() == 1
        && let (Some(op), Some(member)) = (g.ops.pop(), g.members.pop())
    {
        return match cx.submit(app, op) {
            Ok(s) => Ok(Flight::One(member, s)),
            Err(e) => Err((vec![member], e.into())),
        };
    }
    match cx.submit_many(app, g.ops) {
        Ok(s) => Ok(Flight::Many(g.members, s)),
        Err(e) => Err((g.members, e.into())),
    }
}

/// Waits for a group's answers and puts each in its place.
async fn land(app: &App, f: Flight, results: &mut [Option<OpResult>], tally: &mut OperationTally) {
    match f {
        Flight::One(m, submitted) => {
            let answer = submitted.answer().await;
            results[m.index] = Some(result(app, &m, answer, tally));
        }
        Flight::Many(members, submitted) => match submitted.answers().await {
            Ok(answers) => {
                for (m, answer) in members.iter().zip(answers) {
                    results[m.index] = Some(result(app, m, answer, tally));
                }
            }
            Err(e) => {
                for m in &members {
                    results[m.index] = Some(result(app, m, Err(e.clone()), tally));
                }
            }
        },
    }
}

/// One operation's result as the batch shows it (and counted).
fn result(
    app: &App,
    m: &Member,
    answer: Result<Answer, GatewayError>,
    tally: &mut OperationTally,
) -> OpResult {
    let answer = money::txn_answer(app, m.wallet, m.created, answer);
    tally.add(m.op, money::outcome(&answer));
    match answer {
        Ok((status, data)) => OpResult::Data {
            status: status.as_u16(),
            data: Box::new(data),
        },
        Err(e) => e.into(),
    }
}

/// One operation of the batch as an engine command (and whether it creates
/// a transaction). Each takes the fields of its endpoint's body plus the
/// target: `walletId` for credit, debit and reserve; `transactionId` for the
/// actions on a transaction; transfers and conversions name their wallets.
///
/// The object is read once where it can be: as its endpoint's body, with
/// the batch's fields kept aside (`parse_without`). `Head` reads it first
/// only when `op` is not written first, and again when the body is refused,
/// so that errors come in one order however the object is written: the
/// object's own (not an object, a batch field twice), then `op`, then the
/// target's field, then the body, then the target itself (for credit,
/// debit and reserve the wallet is checked before the body).
fn operation(app: &App, cx: &Cx, index: usize, raw: &RawValue) -> Result<(Op, bool), ApiError> {
    let at = |e: ApiError| ApiError {
        message: format!("operations[{index}]: {}", e.message),
        ..e
    };
    let object = raw.get();
    if !object.starts_with('{') {
        return Err(at(ApiError::invalid_request(
            "an operation must be a JSON object",
        )));
    }
    let mut fields = Fields { object, head: None };
    let op = match leading_op(object) {
        Some(op) => Cow::Borrowed(op),
        None => Cow::Owned(fields.op().map_err(at)?),
    };
    build(app, cx, &op, &mut fields).map_err(at)
}

fn build(app: &App, cx: &Cx, op: &str, fields: &mut Fields<'_>) -> Result<(Op, bool), ApiError> {
    match op {
        "credit" => with_wallet(app, cx, fields, money::credit_op),
        "debit" => with_wallet(app, cx, fields, |w, t, b| money::debit_op(app, w, t, b)),
        "reserve" => with_wallet(app, cx, fields, |w, t, b| money::reserve_op(app, w, t, b)),
        "transfer" => {
            let body = fields.body(["op"])?;
            let txn = money::mint_txn(app, cx);
            money::transfer_op(app, cx.client, txn, body).map(|o| (o, true))
        }
        "convert" => {
            let body = fields.body(["op"])?;
            let txn = money::mint_txn(app, cx);
            money::convert_op(app, cx.client, txn, body).map(|o| (o, true))
        }
        "capture" | "release" | "settle" | "reject" | "cancel" => {
            let action = match op {
                "capture" => Action::Capture,
                "release" => Action::Release,
                "settle" => Action::Settle,
                "reject" => Action::Reject,
                _ => Action::Cancel,
            };
            const HIDDEN: [&str; 2] = ["op", "transactionId"];
            let (capture, kept) = if action == Action::Capture {
                fields.read(HIDDEN)
            } else {
                let (body, kept) = fields.read::<money::NoBody, 2>(HIDDEN);
                (body.map(|_| money::CaptureBody::default()), kept)
            };
            let id = fields.target(Target::Transaction, capture.is_ok(), kept[1])?;
            let capture = capture?;
            let (txn, wallet) = owned_txn(app, cx.client, &id)?;
            money::action_op(action, wallet, txn, capture).map(|o| (o, false))
        }
        other => {
            fields.head()?;
            let shown: String = other.chars().take(32).collect();
            Err(ApiError::invalid_request(format!(
                "op: unknown operation '{shown}' (credit, debit, reserve, transfer, convert, capture, release, settle, reject, cancel)"
            )))
        }
    }
}

/// Credit, debit or reserve: the body, the wallet it names (checked
/// before the body's errors are told), then its transaction id.
fn with_wallet<B: DeserializeOwned>(
    app: &App,
    cx: &Cx,
    fields: &mut Fields<'_>,
    make: impl FnOnce(WalletId, TxnId, B) -> Result<Op, ApiError>,
) -> Result<(Op, bool), ApiError> {
    let (body, kept) = fields.read(["op", "walletId"]);
    let id = fields.target(Target::Wallet, body.is_ok(), kept[1])?;
    let wallet = owned_wallet_field(app, cx.client, "walletId", &id)?;
    let txn = money::mint_txn(app, cx);
    make(wallet, txn, body?).map(|op| (op, true))
}

/// `op`'s value when it is the object's first field, written the plain way
/// clients write it (`{"op":"transfer",...`): then the object is read once.
/// Any other spacing, order or escape goes through `Head`.
fn leading_op(object: &str) -> Option<&str> {
    let rest = object.strip_prefix(r#"{"op":""#)?;
    let end = rest.find('"')?;
    let (op, after) = (&rest[..end], &rest[end + 1..]);
    (op.bytes().all(|b| b.is_ascii_lowercase()) && after.starts_with([',', '}'])).then_some(op)
}

/// The field that names what an operation acts on.
#[derive(Clone, Copy)]
enum Target {
    Wallet,
    Transaction,
}

impl Target {
    fn field(self) -> &'static str {
        match self {
            Target::Wallet => "walletId",
            Target::Transaction => "transactionId",
        }
    }
}

/// One operation's object, and its `Head` once that has been read.
struct Fields<'a> {
    object: &'a str,
    head: Option<Head<'a>>,
}

impl<'a> Fields<'a> {
    /// The batch's fields, read on their own (once).
    fn head(&mut self) -> Result<&Head<'a>, ApiError> {
        let head = match self.head.take() {
            Some(head) => head,
            None => serde_json::from_str(self.object)
                .map_err(|e| ApiError::invalid_request(format!("not an object: {e}")))?,
        };
        Ok(self.head.insert(head))
    }

    /// `op`, read through `Head`.
    fn op(&mut self) -> Result<String, ApiError> {
        self.head()?
            .op
            .map(|raw| string_field("op", raw))
            .transpose()?
            .ok_or_else(|| ApiError::invalid_request("missing field `op`"))
    }

    /// The object as the endpoint's body `B`, without the batch's fields
    /// (`hidden`), whose values come back beside it. A refused body is
    /// told only after the object's own errors (`Head`'s).
    fn read<B: DeserializeOwned, const N: usize>(
        &mut self,
        hidden: [&str; N],
    ) -> (Result<B, ApiError>, [Option<&'a RawValue>; N]) {
        match parse_without(self.object, hidden) {
            Ok((body, kept)) => (Ok(body), kept),
            Err(e) => match self.head() {
                Ok(_) => (Err(e), [None; N]),
                Err(head) => (Err(head), [None; N]),
            },
        }
    }

    /// `read`, for a body that has no target among the hidden fields.
    fn body<B: DeserializeOwned, const N: usize>(
        &mut self,
        hidden: [&str; N],
    ) -> Result<B, ApiError> {
        self.read(hidden).0
    }

    /// The target field `name` as a string: the value the body's reading
    /// kept aside when it `read` the object, otherwise `Head`'s (whose
    /// error, if the object has one, comes first).
    fn target(
        &mut self,
        target: Target,
        read: bool,
        kept: Option<&RawValue>,
    ) -> Result<String, ApiError> {
        let raw = if read {
            kept
        } else {
            let head = self.head()?;
            match target {
                Target::Wallet => head.wallet_id,
                Target::Transaction => head.transaction_id,
            }
        };
        let name = target.field();
        raw.map(|raw| string_field(name, raw))
            .transpose()?
            .ok_or_else(|| ApiError::invalid_request(format!("missing field `{name}`")))
    }
}

/// The batch's own fields of an operation, read in place; every other field
/// belongs to the endpoint's body (`parse_without`). A field given twice is
/// refused (here for these, by the body for the rest), never last-one-wins.
/// A `null` is kept (not read as absent), so that it is refused as "must be
/// a string" like any other non-string.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    op: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    wallet_id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    transaction_id: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

fn string_field(name: &str, raw: &RawValue) -> Result<String, ApiError> {
    serde_json::from_str::<String>(raw.get())
        .map_err(|_| ApiError::invalid_request(format!("{name}: must be a string")))
}
