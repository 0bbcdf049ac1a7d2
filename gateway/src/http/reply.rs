//! Answers: the JSON envelopes of API.md and the error type every handler
//! returns. Every answer, errors included, is a JSON body.

use crate::GatewayError;
use bytes::Bytes;
use hyper::StatusCode;
use serde::Serialize;
use settle_engine::Reject;

/// An error as the client sees it: a status, a stable code, a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn invalid_amount(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_amount", message)
    }

    pub fn invalid_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_query", message)
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// A defect of ours. Logged with its detail; the client sees a generic
    /// message (and a JSON body, as always).
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; it has been logged",
        )
    }

    pub fn to_body(&self) -> Bytes {
        #[derive(Serialize)]
        struct Envelope<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            code: &'a str,
            message: &'a str,
        }
        json_bytes(&Envelope {
            error: Inner {
                code: self.code,
                message: &self.message,
            },
        })
    }
}

impl From<Reject> for ApiError {
    fn from(r: Reject) -> Self {
        let status = match &r {
            Reject::InvalidAmount(_) | Reject::UnknownAsset(_) | Reject::InvalidRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            Reject::NotFound(_) => StatusCode::NOT_FOUND,
            Reject::InsufficientFunds(_)
            | Reject::InvalidState(_)
            | Reject::WalletRestricted(_)
            | Reject::WalletSuspended(_)
            | Reject::WalletClosed(_) => StatusCode::CONFLICT,
            Reject::QueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
            Reject::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Reject::Internal(detail) => return ApiError::internal(detail),
        };
        ApiError::new(status, r.code(), r.to_string())
    }
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::Rejected(r) => r.into(),
            GatewayError::Overloaded { .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", e.to_string())
            }
            GatewayError::Unavailable(why) => ApiError::unavailable(why),
        }
    }
}

/// A finished answer: status and JSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
    /// Parts of it may go otherwise on a retry (a batch with operations
    /// refused for now, 429 or 503): not stored for its idempotency key.
    pub retry: bool,
}

impl Reply {
    pub fn data<T: Serialize>(status: StatusCode, data: &T) -> Reply {
        Reply::data_sized(status, data, SMALL_BODY)
    }

    /// `data` for a body of about `bytes` (a batch's: hundreds of KB), so
    /// that its buffer is not grown by doubling: each doubling of a large
    /// buffer copied it into fresh pages the kernel zeroed first.
    pub fn data_sized<T: Serialize>(status: StatusCode, data: &T, bytes: usize) -> Reply {
        #[derive(Serialize)]
        struct Envelope<'a, T> {
            data: &'a T,
        }
        Reply {
            status,
            body: json_bytes_sized(&Envelope { data }, bytes),
            retry: false,
        }
    }

    pub fn list<T: Serialize, M: Serialize>(data: &[T], meta: &M) -> Reply {
        #[derive(Serialize)]
        struct Envelope<'a, T, M> {
            data: &'a [T],
            meta: &'a M,
        }
        Reply {
            status: StatusCode::OK,
            body: json_bytes(&Envelope { data, meta }),
            retry: false,
        }
    }

    pub fn error(e: &ApiError) -> Reply {
        Reply {
            status: e.status,
            body: e.to_body(),
            retry: false,
        }
    }
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Self {
        Reply::error(&e)
    }
}

/// Serialises a value we built ourselves. Our views hold strings, numbers
/// and raw JSON we parsed before, so this cannot fail; if it ever did, the
/// client still gets a JSON error body rather than an empty one.
pub fn json_bytes<T: Serialize>(value: &T) -> Bytes {
    json_bytes_sized(value, SMALL_BODY)
}

/// Most answers (one transaction, one wallet) fit: one allocation, where
/// `serde_json::to_vec`'s 128 bytes grew twice.
const SMALL_BODY: usize = 512;

/// `json_bytes` into a buffer of `capacity` bytes to start with.
pub fn json_bytes_sized<T: Serialize>(value: &T, capacity: usize) -> Bytes {
    let mut buf = Vec::with_capacity(capacity);
    match serde_json::to_writer(&mut buf, value) {
        Ok(()) => Bytes::from(buf),
        Err(e) => {
            tracing::error!(error = %e, "a view did not serialise");
            Bytes::from_static(
                br#"{"error":{"code":"internal","message":"internal error; it has been logged"}}"#,
            )
        }
    }
}
