//! A pay-in: a bank's notice that money arrived at an address. It becomes a
//! *pending* credit on the address's wallet (ENGINE.md: in `pending`, not in
//! `cash`, until compliance settles or rejects it through the ordinary
//! transaction actions), so its balance effects are the engine's own.
//!
//! What the notice says about the payment (the address, the remitter, the
//! source) goes into the credit's metadata, so it is durable with the
//! credit's own event and shows on the transaction.

use crate::funding::addresses::PayinAddress;
use crate::http::json::{Amount, metadata_text};
use crate::http::reply::ApiError;
use serde::Deserialize;
use serde_json::value::RawValue;
use settle_engine::{Op, TxnId, TxnInfo};

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PayinBody {
    pub amount: Amount,
    /// Who paid: any JSON value (a name, or an object with name and account).
    pub remitter: Option<Box<RawValue>>,
    /// Where from: any JSON value (a bank, a scheme, a reference).
    pub source: Option<Box<RawValue>>,
    pub reference: Option<String>,
}

/// The pending credit a pay-in makes.
pub fn credit_op(address: &PayinAddress, txn: TxnId, b: PayinBody) -> Result<Op, ApiError> {
    let amount = b.amount.decimal("amount")?;
    let mut meta = format!(
        "{{\"payinAddressId\":\"{}\",\"type\":\"{}\"",
        address.id,
        address.kind.as_str()
    );
    for (name, value) in [("remitter", &b.remitter), ("source", &b.source)] {
        if let Some(v) = value {
            meta.push_str(&format!(",\"{name}\":{}", v.get()));
        }
    }
    meta.push('}');
    let raw = RawValue::from_string(meta)
        .map_err(|e| ApiError::invalid_request(format!("remitter/source: {e}")))?;
    let metadata = metadata_text(Some(raw))?;
    Ok(Op::Credit {
        wallet: address.wallet,
        txn,
        asset: address.asset,
        amount,
        pending: true,
        info: TxnInfo {
            reference: b.reference,
            metadata,
        },
    })
}
