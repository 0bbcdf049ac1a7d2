//! The JSON edge: request bodies, exact amounts, timestamps, metadata.
//!
//! Amounts are never read through a float. `Amount` keeps the JSON token's
//! own text (a string's content or a number's digits, via serde_json's
//! `RawValue`) and parses it exactly into a `Decimal` only when the handler
//! asks, so that a bad amount answers `invalid_amount`, not `invalid_request`.

use crate::http::reply::ApiError;
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use settle_engine::Timestamp;
use std::fmt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Parses a request body. Malformed JSON, a missing or unknown field, or a
/// field of the wrong type answers 400 `invalid_request` with serde's words
/// (which name the field and the place).
pub fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(ApiError::invalid_request("the request needs a JSON body")),
        // serde reads a struct from an array of its fields in order too;
        // a body that is not an object is refused rather than guessed at.
        Some(b'{') => {}
        Some(_) => return Err(ApiError::invalid_request("the body must be a JSON object")),
    }
    serde_json::from_slice(body).map_err(|e| ApiError::invalid_request(format!("body: {e}")))
}

/// Parses an optional body: empty means `T::default()` (actions such as
/// settle or release need none, and `{}` is accepted too).
pub fn parse_optional_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_body(body)
}

/// An amount as the client wrote it: a JSON string or number, kept as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Amount {
    text: String,
    /// A JSON string (rather than a number).
    quoted: bool,
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        let text = raw.get();
        if text.starts_with('"') {
            // A string: unescape it through serde_json itself.
            let inner: String = serde_json::from_str(text).map_err(serde::de::Error::custom)?;
            Ok(Amount {
                text: inner,
                quoted: true,
            })
        } else {
            Ok(Amount {
                text: text.to_owned(),
                quoted: false,
            })
        }
    }
}

impl Amount {
    /// The exact decimal. Scale, sign and range are the engine's to check
    /// (against the asset); this only refuses what is not a number at all.
    pub fn decimal(&self, field: &str) -> Result<Decimal, ApiError> {
        let shown: String = self.text.chars().take(64).collect();
        let bad = || {
            ApiError::invalid_amount(format!(
                "{field}: '{shown}' is not a decimal amount (write it as a string such as \"10.50\" or a JSON number)"
            ))
        };
        if self.quoted {
            exact_decimal(&self.text).ok_or_else(bad)
        } else if let Some((base, exp)) = self.text.split_once(['e', 'E']) {
            // A JSON number with an exponent (serde_json checked its syntax).
            scientific(base, exp).ok_or_else(bad)
        } else if self
            .text
            .starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9'])
        {
            exact_decimal(&self.text).ok_or_else(bad)
        } else {
            // true, null, an object, an array.
            Err(bad())
        }
    }
}

/// `-?digits(.digits)?`, exactly: no exponent, no `+`, no `_`, no spaces,
/// at most 28 significant digits (never rounded).
pub fn exact_decimal(text: &str) -> Option<Decimal> {
    if !is_plain_decimal(text) {
        return None;
    }
    Decimal::from_str_exact(text).ok()
}

/// `-?digits(.digits)?`: `Decimal::from_str_exact` alone would also take
/// `_`, `+`, `1.` and `.5`.
pub fn is_plain_decimal(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, frac) = match digits.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    all_digits(whole) && frac.is_none_or(all_digits)
}

/// `base × 10^exp`, exactly or not at all (rust_decimal's `from_scientific`
/// rounds a base with more digits than it holds).
fn scientific(base: &str, exp: &str) -> Option<Decimal> {
    let mut d = exact_decimal(base)?;
    let exp: i64 = exp.strip_prefix('+').unwrap_or(exp).parse().ok()?;
    if exp >= 0 {
        for _ in 0..exp.min(29) {
            d = d.checked_mul(Decimal::TEN)?;
        }
        (exp <= 28).then_some(d)
    } else {
        let scale = i64::from(d.scale()).checked_sub(exp)?;
        let scale = u32::try_from(scale).ok().filter(|&s| s <= 28)?;
        d.set_scale(scale).ok()?;
        Some(d)
    }
}

/// Formats an amount with exactly `scale` decimals (`"10.50"`).
pub fn format_amount(amount: Decimal, scale: u32) -> String {
    amount_text(amount, scale).0.to_string()
}

/// A value an answer shows as a JSON string, written by its `Display`
/// straight into the answer's buffer: no `String` per field. (A transfer's
/// answer has six such fields; building its answer took 10% of a batch's
/// CPU with them as strings, 6% without: BENCHMARKS.md, "Answers without a
/// String per field".)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Text<T>(pub T);

impl<T: fmt::Display> Serialize for Text<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// An amount shown with exactly `scale` decimals (`"10.50"`).
pub fn amount_text(amount: Decimal, scale: u32) -> Text<Decimal> {
    let mut d = amount;
    d.rescale(scale);
    Text(d)
}

/// A time shown as RFC 3339 UTC with milliseconds (`format_time`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Time(pub Timestamp);

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        with_time_text(self.0, |text| f.write_str(text))
    }
}

/// RFC 3339 UTC with milliseconds: `2026-11-21T10:00:00.123Z`.
pub fn format_time(at: Timestamp) -> String {
    with_time_text(at, str::to_owned)
}

/// Calls `f` with the text of `at`, built on the stack. The times of one
/// request's answers (a batch, a page of history) fall in the same second
/// or two, but not in one millisecond: a batch's transactions run wallet by
/// wallet, so its answers, in request order, alternate between a few
/// milliseconds. So the text of the last second used on this thread is
/// kept, and only the milliseconds are written each time. (Keeping the last
/// whole text missed on nearly every answer of a batch: formatting was 2.6%
/// of a batch's CPU; BENCHMARKS.md.) `f` must not format a time itself: the
/// cache is borrowed while it runs.
fn with_time_text<R>(at: Timestamp, f: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        static SECOND: std::cell::RefCell<Option<(i64, Option<String>)>> =
            const { std::cell::RefCell::new(None) };
    }
    let (second, millis) = (at.millis().div_euclid(1000), at.millis().rem_euclid(1000));
    SECOND.with_borrow_mut(|cached| {
        if cached.as_ref().is_none_or(|(s, _)| *s != second) {
            *cached = Some((second, second_prefix(second)));
        }
        let Some((_, Some(prefix))) = cached.as_ref() else {
            return f(OUT_OF_RANGE);
        };
        // `prefix` is at most 21 bytes ("-9999-12-31T23:59:59."), and 4
        // more follow: a longer one (a calendar with larger years) is
        // refused here rather than overrun the buffer.
        let mut buf = [0u8; 32];
        let n = prefix.len();
        if n + 4 > buf.len() {
            return f(OUT_OF_RANGE);
        }
        buf[..n].copy_from_slice(prefix.as_bytes());
        let m = u16::try_from(millis).unwrap_or(0);
        let digit = |d: u16| b'0' + u8::try_from(d % 10).unwrap_or(0);
        buf[n..n + 4].copy_from_slice(&[digit(m / 100), digit(m / 10), digit(m), b'Z']);
        match std::str::from_utf8(&buf[..n + 4]) {
            Ok(text) => f(text),
            Err(_) => f(OUT_OF_RANGE),
        }
    })
}

/// What a time outside the calendar's range is shown as.
const OUT_OF_RANGE: &str = "1970-01-01T00:00:00.000Z";

/// `2026-11-21T10:00:00.` for a Unix second; `None` outside the range.
fn second_prefix(second: i64) -> Option<String> {
    let t = OffsetDateTime::from_unix_timestamp(second).ok()?;
    let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
    let (h, mi, s) = (t.hour(), t.minute(), t.second());
    Some(format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}."))
}

/// Parses an RFC 3339 timestamp (any offset) to milliseconds UTC.
pub fn parse_time(field: &str, text: &str) -> Result<Timestamp, ApiError> {
    let shown: String = text.chars().take(64).collect();
    time_ms(text)
        .map(Timestamp::from_millis)
        .map_err(|why| ApiError::invalid_request(format!("{field}: '{shown}': {why}")))
}

/// RFC 3339 to Unix milliseconds. Times are kept in milliseconds, so a
/// finer value is refused rather than rounded: rounding would make `>=` and
/// `>` (and an expiry) wrong around the cut.
pub fn time_ms(s: &str) -> Result<i64, &'static str> {
    const EXPECTED: &str = "expected an RFC 3339 time, like \"2026-11-21T10:00:00Z\"";
    let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| EXPECTED)?;
    let nanos = t.unix_timestamp_nanos();
    if nanos.rem_euclid(1_000_000) != 0 {
        return Err("times have millisecond precision at most");
    }
    i64::try_from(nanos.div_euclid(1_000_000)).map_err(|_| EXPECTED)
}

/// How deeply client metadata may nest: deeper JSON is refused by some
/// parsers (serde_json stops at 128), so answers carrying it could not be
/// read back.
pub const MAX_METADATA_DEPTH: usize = 32;

/// Client metadata: any JSON value, kept as its text.
pub fn metadata_text(metadata: Option<Box<RawValue>>) -> Result<Option<String>, ApiError> {
    let Some(m) = metadata else { return Ok(None) };
    let depth = json_depth(m.get());
    if depth > MAX_METADATA_DEPTH {
        return Err(ApiError::invalid_request(format!(
            "metadata: nested {depth} levels deep; at most {MAX_METADATA_DEPTH}"
        )));
    }
    Ok(Some(m.get().to_owned()))
}

/// The nesting depth of valid JSON text (objects and arrays).
fn json_depth(text: &str) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Metadata text back into JSON for a response. It was parsed when it came
/// in; if it somehow were not JSON, it is answered as a JSON string.
pub fn metadata_json(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned()).unwrap_or_else(|_| {
        let quoted = serde_json::to_string(text).unwrap_or_else(|_| "null".to_owned());
        RawValue::from_string(quoted).unwrap_or_else(|_| RawValue::NULL.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[derive(Deserialize)]
    struct Body {
        amount: Amount,
    }

    fn amount(json: &str) -> Result<Decimal, ApiError> {
        let b: Body = serde_json::from_str(json).unwrap();
        b.amount.decimal("amount")
    }

    #[test]
    fn numbers_and_strings_are_read_exactly() {
        let want = Decimal::from_str("12345678901234567.89").unwrap();
        assert_eq!(amount(r#"{"amount": 12345678901234567.89}"#), Ok(want));
        assert_eq!(amount(r#"{"amount": "12345678901234567.89"}"#), Ok(want));
        assert_eq!(
            amount(r#"{"amount": "10.50"}"#).unwrap().to_string(),
            "10.50"
        );
        assert_eq!(amount(r#"{"amount": 1e2}"#), Ok(Decimal::from(100)));
        assert_eq!(amount(r#"{"amount": 15E-1}"#), Ok(Decimal::new(15, 1)));
        assert_eq!(amount(r#"{"amount": 1.25e+1}"#), Ok(Decimal::new(125, 1)));
        assert_eq!(amount(r#"{"amount": -3}"#), Ok(Decimal::from(-3)));
    }

    #[test]
    fn what_is_not_an_amount_answers_invalid_amount() {
        for bad in [
            r#"{"amount": "1_000"}"#,
            r#"{"amount": "+5"}"#,
            r#"{"amount": " 5"}"#,
            r#"{"amount": "5."}"#,
            r#"{"amount": ".5"}"#,
            r#"{"amount": "1e3"}"#,
            r#"{"amount": "NaN"}"#,
            r#"{"amount": ""}"#,
            r#"{"amount": true}"#,
            r#"{"amount": null}"#,
            r#"{"amount": [1]}"#,
            r#"{"amount": {"v": 1}}"#,
            r#"{"amount": "123456789012345678901234567890"}"#,
            r#"{"amount": 1e400}"#,
            // More digits than a Decimal holds: never rounded.
            r#"{"amount": 100.0000000000000000000000000001e0}"#,
            r#"{"amount": 1e-29}"#,
        ] {
            let e = amount(bad).unwrap_err();
            assert_eq!(e.code, "invalid_amount", "{bad}");
        }
    }

    #[test]
    fn metadata_depth_is_bounded_and_strings_do_not_count() {
        let raw = |s: &str| Some(RawValue::from_string(s.to_owned()).unwrap());
        assert!(metadata_text(raw(r#"{"a":[1,{"b":"[[[[{{{{"}]}"#)).is_ok());
        let deep = format!("{}{}", "[".repeat(33), "]".repeat(33));
        assert_eq!(
            metadata_text(raw(&deep)).unwrap_err().code,
            "invalid_request"
        );
        let ok = format!("{}{}", "[".repeat(32), "]".repeat(32));
        assert!(metadata_text(raw(&ok)).is_ok());
        assert_eq!(json_depth(r#""a\"[[[""#), 0);
    }

    #[test]
    fn bodies_must_be_objects() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct B {
            a: u32,
        }
        assert!(parse_body::<B>(b" {\"a\": 1}").is_ok());
        assert_eq!(parse_body::<B>(b"[1]").unwrap_err().code, "invalid_request");
        assert_eq!(parse_body::<B>(b"  ").unwrap_err().code, "invalid_request");
    }

    #[test]
    fn amounts_print_at_the_asset_scale() {
        assert_eq!(format_amount(Decimal::from(10), 2), "10.00");
        assert_eq!(format_amount(Decimal::new(1, 8), 8), "0.00000001");
        assert_eq!(format_amount(Decimal::from(5), 0), "5");
    }

    #[test]
    fn times_round_trip() {
        let t = parse_time("t", "2026-11-21T10:00:00.123+01:00").unwrap();
        assert_eq!(format_time(t), "2026-11-21T09:00:00.123Z");
        assert!(parse_time("t", "yesterday").is_err());
    }

    /// The text of a time, computed the long way round.
    fn format_time_uncached(at: Timestamp) -> String {
        let nanos = i128::from(at.millis()) * 1_000_000;
        match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => {
                let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
                let (h, mi, s, ms) = (t.hour(), t.minute(), t.second(), t.millisecond());
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
            }
            Err(_) => OUT_OF_RANGE.to_owned(),
        }
    }

    proptest::proptest! {
        /// Any time, in any order after any other (the cache keeps one
        /// second), reads as the long way round writes it; so does the
        /// range's edge and beyond.
        #[test]
        fn every_time_reads_as_formatted_the_long_way(
            times in proptest::collection::vec(
                proptest::prop_oneof![
                    -400_000_000_000_000i64..400_000_000_000_000,
                    1_795_291_214_000i64..1_795_291_216_000,
                    -2_000i64..2_000,
                    proptest::prelude::any::<i64>(),
                ],
                1..40,
            )
        ) {
            for ms in times {
                let t = Timestamp::from_millis(ms);
                proptest::prop_assert_eq!(format_time(t), format_time_uncached(t));
            }
        }
    }

    #[test]
    fn the_cached_time_is_the_one_asked_for() {
        let a = Timestamp::from_millis(1_795_291_214_146);
        let b = Timestamp::from_millis(1_795_291_214_147);
        for (t, want) in [
            (a, "2026-11-21T20:00:14.146Z"),
            (a, "2026-11-21T20:00:14.146Z"),
            (b, "2026-11-21T20:00:14.147Z"),
            (a, "2026-11-21T20:00:14.146Z"),
            (Timestamp::from_millis(0), "1970-01-01T00:00:00.000Z"),
        ] {
            assert_eq!(format_time(t), want);
            assert_eq!(format_time(t), format_time_uncached(t));
        }
    }

    #[test]
    fn text_fields_are_written_as_their_strings() {
        for (t, want) in [
            (
                Timestamp::from_millis(1_795_291_214_146),
                "2026-11-21T20:00:14.146Z",
            ),
            (
                Timestamp::from_millis(1_795_291_214_147),
                "2026-11-21T20:00:14.147Z",
            ),
            (Timestamp::from_millis(0), "1970-01-01T00:00:00.000Z"),
        ] {
            assert_eq!(json(&Text(Time(t))), format!("\"{want}\""));
        }
        for (amount, scale, want) in [
            (Decimal::from(10), 2, "10.00"),
            (Decimal::new(105, 1), 2, "10.50"),
            (Decimal::new(1, 8), 8, "0.00000001"),
            (Decimal::new(-25, 1), 2, "-2.50"),
            (Decimal::from(5), 0, "5"),
            (Decimal::MAX, 0, "79228162514264337593543950335"),
        ] {
            assert_eq!(json(&amount_text(amount, scale)), format!("\"{want}\""));
            assert_eq!(format_amount(amount, scale), want);
        }
        let id = settle_engine::TxnId::from_u128(1);
        assert_eq!(json(&Text(id)), format!("\"{id}\""));
        assert_eq!(json(&Text("say \"hi\"")), r#""say \"hi\"""#);
    }

    fn json<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap_or_else(|e| panic!("{e}"))
    }
}
