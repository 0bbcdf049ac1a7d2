//! Money movement (API.md "Money movement"): the request bodies, the engine
//! commands they become, and their answers. `batch` builds its commands with
//! the same functions, so one operation means the same thing either way.

use crate::GatewayError;
use crate::directory::DirectoryRecord;
use crate::http::app::{App, Cx};
use crate::http::handlers::{owned_txn, owned_wallet, owned_wallet_field, read};
use crate::http::json::{Amount, metadata_text, parse_body, parse_optional_body, parse_time};
use crate::http::reply::{ApiError, Reply};
use crate::http::views::TxnView;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::value::RawValue;
use settle_engine::actor::Answer;
use settle_engine::{
    AssetCode, ClientId, Done, IfInsufficient, Op, Timestamp, TxnId, TxnInfo, WalletId,
};

#[derive(Deserialize, Debug, Clone, Copy, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnInsufficient {
    #[default]
    Queue,
    Reject,
}

impl From<OnInsufficient> for IfInsufficient {
    fn from(o: OnInsufficient) -> Self {
        match o {
            OnInsufficient::Queue => IfInsufficient::Queue,
            OnInsufficient::Reject => IfInsufficient::Reject,
        }
    }
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreditBody {
    pub asset: String,
    pub amount: Amount,
    #[serde(default)]
    pub pending: bool,
    pub reference: Option<String>,
    pub metadata: Option<Box<RawValue>>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DebitBody {
    pub asset: String,
    pub amount: Amount,
    #[serde(default)]
    pub on_insufficient_funds: OnInsufficient,
    pub expires_at: Option<String>,
    pub reference: Option<String>,
    pub metadata: Option<Box<RawValue>>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReserveBody {
    pub asset: String,
    pub amount: Amount,
    pub expires_at: Option<String>,
    pub reference: Option<String>,
    pub metadata: Option<Box<RawValue>>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransferBody {
    pub from_wallet_id: String,
    pub to_wallet_id: String,
    pub asset: String,
    pub amount: Amount,
    #[serde(default)]
    pub on_insufficient_funds: OnInsufficient,
    pub expires_at: Option<String>,
    pub reference: Option<String>,
    pub metadata: Option<Box<RawValue>>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConvertBody {
    pub from_wallet_id: String,
    pub to_wallet_id: String,
    pub sell_asset: String,
    pub buy_asset: String,
    pub sell_amount: Amount,
    pub rate: Amount,
    #[serde(default)]
    pub on_insufficient_funds: OnInsufficient,
    pub expires_at: Option<String>,
    pub reference: Option<String>,
    pub metadata: Option<Box<RawValue>>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaptureBody {
    pub amount: Option<Amount>,
}

/// The actions on an existing transaction take no body; `{}` is accepted.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct NoBody {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Settle,
    Reject,
    Capture,
    Release,
    Cancel,
}

fn asset(field: &str, text: &str) -> Result<AssetCode, ApiError> {
    AssetCode::new(text).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_asset",
            format!("{field}: {e}"),
        )
    })
}

fn info(reference: Option<String>, metadata: Option<Box<RawValue>>) -> Result<TxnInfo, ApiError> {
    Ok(TxnInfo {
        reference,
        metadata: metadata_text(metadata)?,
    })
}

/// An expiry must lie ahead: one in the past would expire at once.
fn expiry(app: &App, text: Option<&str>) -> Result<Option<Timestamp>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    let at = parse_time("expiresAt", text)?;
    if at <= app.now() {
        return Err(ApiError::invalid_request(
            "expiresAt: must be in the future",
        ));
    }
    Ok(Some(at))
}

pub fn credit_op(wallet: WalletId, txn: TxnId, b: CreditBody) -> Result<Op, ApiError> {
    Ok(Op::Credit {
        wallet,
        txn,
        asset: asset("asset", &b.asset)?,
        amount: b.amount.decimal("amount")?,
        pending: b.pending,
        info: info(b.reference, b.metadata)?,
    })
}

pub fn debit_op(app: &App, wallet: WalletId, txn: TxnId, b: DebitBody) -> Result<Op, ApiError> {
    Ok(Op::Debit {
        wallet,
        txn,
        asset: asset("asset", &b.asset)?,
        amount: b.amount.decimal("amount")?,
        if_insufficient: b.on_insufficient_funds.into(),
        expires_at: expiry(app, b.expires_at.as_deref())?,
        info: info(b.reference, b.metadata)?,
    })
}

pub fn reserve_op(app: &App, wallet: WalletId, txn: TxnId, b: ReserveBody) -> Result<Op, ApiError> {
    Ok(Op::Reserve {
        wallet,
        txn,
        asset: asset("asset", &b.asset)?,
        amount: b.amount.decimal("amount")?,
        expires_at: expiry(app, b.expires_at.as_deref())?,
        info: info(b.reference, b.metadata)?,
    })
}

pub fn transfer_op(
    app: &App,
    client: ClientId,
    txn: TxnId,
    b: TransferBody,
) -> Result<Op, ApiError> {
    let asset = asset("asset", &b.asset)?;
    let amount = b.amount.decimal("amount")?;
    let from = owned_wallet_field(app, client, "fromWalletId", &b.from_wallet_id)?;
    let to = owned_wallet_field(app, client, "toWalletId", &b.to_wallet_id)?;
    Ok(Op::Transfer {
        from,
        to,
        txn,
        asset,
        amount,
        if_insufficient: b.on_insufficient_funds.into(),
        expires_at: expiry(app, b.expires_at.as_deref())?,
        info: info(b.reference, b.metadata)?,
    })
}

pub fn convert_op(app: &App, client: ClientId, txn: TxnId, b: ConvertBody) -> Result<Op, ApiError> {
    let sell_asset = asset("sellAsset", &b.sell_asset)?;
    let buy_asset = asset("buyAsset", &b.buy_asset)?;
    let sell_amount = b.sell_amount.decimal("sellAmount")?;
    let rate = b.rate.decimal("rate")?;
    let from = owned_wallet_field(app, client, "fromWalletId", &b.from_wallet_id)?;
    let to = owned_wallet_field(app, client, "toWalletId", &b.to_wallet_id)?;
    Ok(Op::Convert {
        from,
        to,
        txn,
        sell_asset,
        buy_asset,
        sell_amount,
        rate,
        if_insufficient: b.on_insufficient_funds.into(),
        expires_at: expiry(app, b.expires_at.as_deref())?,
        info: info(b.reference, b.metadata)?,
    })
}

pub fn action_op(
    action: Action,
    wallet: WalletId,
    txn: TxnId,
    capture: CaptureBody,
) -> Result<Op, ApiError> {
    Ok(match action {
        Action::Settle => Op::SettlePending { wallet, txn },
        Action::Reject => Op::RejectPending { wallet, txn },
        Action::Release => Op::Release { wallet, txn },
        Action::Cancel => Op::Cancel { wallet, txn },
        Action::Capture => Op::Capture {
            wallet,
            txn,
            amount: capture.amount.map(|a| a.decimal("amount")).transpose()?,
        },
    })
}

/// A transaction id for this request (minted, or the one a claim recorded).
pub fn mint_txn(app: &App, cx: &Cx) -> TxnId {
    TxnId::from_ulid(cx.mint(app))
}

/// The answer to a command that touched a transaction, and the index entry
/// for a transaction it created.
pub fn txn_answer(
    app: &App,
    wallet: WalletId,
    created: bool,
    result: Result<Answer, GatewayError>,
) -> Result<(StatusCode, TxnView), ApiError> {
    let answer = result?;
    let txn = answer
        .txn
        .as_ref()
        .ok_or_else(|| ApiError::internal(format!("no record in the answer {answer:?}")))?;
    if created && answer.done == Done::Txn(txn.id) {
        app.directory.apply(&DirectoryRecord::TxnCreated {
            txn: txn.id,
            wallet,
        });
    }
    let view = TxnView::new(app.gateway.assets(), wallet, txn, answer.queue_position);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, view))
}

async fn run(app: &App, cx: &Cx, op: Op, created: bool) -> Result<Reply, ApiError> {
    let wallet = op.wallet();
    let name = op.name();
    cx.claim(app)?;
    let result = match cx.submit(app, op) {
        Ok(submitted) => submitted.answer().await,
        Err(e) => Err(e),
    };
    let answer = txn_answer(app, wallet, created, result);
    count_operation(name, &answer);
    let (status, view) = answer?;
    Ok(Reply::data(status, &view))
}

/// `settle_operations_total{op, outcome}`: each money operation the engine
/// ran, by its name and by how it ended (the transaction's status, or the
/// error code it was refused with).
pub fn count_operation(op: &'static str, answer: &Result<(StatusCode, TxnView), ApiError>) {
    count(op, outcome(answer), 1);
}

fn count(op: &'static str, outcome: &'static str, n: u64) {
    metrics::counter!("settle_operations_total", "op" => op, "outcome" => outcome).increment(n);
}

/// How an operation ended: its transaction's status, or the error code it
/// was refused with.
pub fn outcome(answer: &Result<(StatusCode, TxnView), ApiError>) -> &'static str {
    match answer {
        Ok((_, view)) => view.status,
        Err(e) => e.code,
    }
}

/// `count_operation` for many operations (a batch's): counted here, and
/// published once per kind and outcome. Looking a counter up by its labels
/// costs more than the count itself (2% of a batch's CPU, one lookup per
/// operation; BENCHMARKS.md).
#[derive(Debug, Default)]
pub struct OperationTally(Vec<(&'static str, &'static str, u64)>);

impl OperationTally {
    pub fn add(&mut self, op: &'static str, outcome: &'static str) {
        match self
            .0
            .iter_mut()
            .find(|(o, c, _)| *o == op && *c == outcome)
        {
            Some((_, _, n)) => *n += 1,
            None => self.0.push((op, outcome, 1)),
        }
    }

    pub fn publish(self) {
        for (op, outcome, n) in self.0 {
            count(op, outcome, n);
        }
    }
}

pub async fn credit(app: &App, cx: &Cx, id: &str, body: &[u8]) -> Result<Reply, ApiError> {
    let wallet = owned_wallet(app, cx.client, id)?;
    let op = credit_op(wallet, mint_txn(app, cx), parse_body(body)?)?;
    run(app, cx, op, true).await
}

pub async fn debit(app: &App, cx: &Cx, id: &str, body: &[u8]) -> Result<Reply, ApiError> {
    let wallet = owned_wallet(app, cx.client, id)?;
    let op = debit_op(app, wallet, mint_txn(app, cx), parse_body(body)?)?;
    run(app, cx, op, true).await
}

pub async fn reserve(app: &App, cx: &Cx, id: &str, body: &[u8]) -> Result<Reply, ApiError> {
    let wallet = owned_wallet(app, cx.client, id)?;
    let op = reserve_op(app, wallet, mint_txn(app, cx), parse_body(body)?)?;
    run(app, cx, op, true).await
}

pub async fn transfer(app: &App, cx: &Cx, body: &[u8]) -> Result<Reply, ApiError> {
    let op = transfer_op(app, cx.client, mint_txn(app, cx), parse_body(body)?)?;
    run(app, cx, op, true).await
}

pub async fn convert(app: &App, cx: &Cx, body: &[u8]) -> Result<Reply, ApiError> {
    let op = convert_op(app, cx.client, mint_txn(app, cx), parse_body(body)?)?;
    run(app, cx, op, true).await
}

pub async fn action(
    app: &App,
    cx: &Cx,
    id: &str,
    action: Action,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let capture = if action == Action::Capture {
        parse_optional_body::<CaptureBody>(body)?
    } else {
        parse_optional_body::<NoBody>(body)?;
        CaptureBody::default()
    };
    let (txn, wallet) = owned_txn(app, cx.client, id)?;
    run(app, cx, action_op(action, wallet, txn, capture)?, false).await
}

pub fn get(app: &App, client: ClientId, id: &str) -> Result<Reply, ApiError> {
    let (txn, wallet) = owned_txn(app, client, id)?;
    let assets = app.gateway.assets();
    let view = read(app, wallet, |w| {
        w.txn(txn)
            .map(|t| TxnView::new(assets, wallet, t, w.queue_position(txn)))
    })?
    .ok_or_else(|| ApiError::not_found(format!("transaction {txn}")))?;
    Ok(Reply::data(StatusCode::OK, &view))
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;

    #[test]
    fn a_tally_publishes_each_kind_and_outcome_with_its_count() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let mut tally = OperationTally::default();
        for (op, outcome) in [
            ("transfer", "settled"),
            ("credit", "settled"),
            ("transfer", "settled"),
            ("transfer", "awaiting_funds"),
            ("transfer", "settled"),
        ] {
            tally.add(op, outcome);
        }
        metrics::with_local_recorder(&recorder, || tally.publish());
        let text = handle.render();
        for line in [
            r#"settle_operations_total{op="transfer",outcome="settled"} 3"#,
            r#"settle_operations_total{op="credit",outcome="settled"} 1"#,
            r#"settle_operations_total{op="transfer",outcome="awaiting_funds"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
    }
}
