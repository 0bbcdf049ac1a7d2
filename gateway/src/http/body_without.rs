//! One JSON object read as a typed body, minus some of its fields.
//!
//! A batch operation is its endpoint's body plus the batch's own fields
//! (`op`, and `walletId` or `transactionId` where the endpoint has them in
//! its path). Reading it as the endpoint's body must refuse exactly what the
//! endpoint refuses (an unknown field, a field given twice, a wrong type),
//! so the body's own `deny_unknown_fields` derive does the work; this module
//! only hides the batch's fields from it, and keeps their values aside (as
//! raw JSON) so that the batch need not read the object a second time for
//! them. It reads the object once, in place: no map of the fields, no
//! re-encoded copy to parse again.

use crate::http::reply::ApiError;
use serde::de::value::{BorrowedStrDeserializer, StringDeserializer};
use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, Visitor};
use serde::forward_to_deserialize_any;
use serde_json::value::RawValue;
use std::fmt;

/// Parses `object` (a JSON object's text) as `T`, as if the fields named in
/// `hidden` were not there, and hands back each hidden field's value (by
/// its place in `hidden`; `None` where absent). A hidden field given twice
/// is refused, like any other. Errors read like `parse_body`'s ("body: ...").
pub fn parse_without<'a, T: DeserializeOwned, const N: usize>(
    object: &'a str,
    hidden: [&str; N],
) -> Result<(T, [Option<&'a RawValue>; N]), ApiError> {
    let mut kept = [None; N];
    let body = T::deserialize(Without {
        object,
        hidden: &hidden,
        kept: &mut kept,
    })
    .map_err(|e| ApiError::invalid_request(format!("body: {e}")))?;
    Ok((body, kept))
}

struct Without<'de, 'k> {
    object: &'de str,
    hidden: &'k [&'k str],
    kept: &'k mut [Option<&'de RawValue>],
}

impl<'de> de::Deserializer<'de> for Without<'de, '_> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        let mut json = serde_json::Deserializer::from_str(self.object);
        let value = de::Deserializer::deserialize_map(
            &mut json,
            HidingVisitor {
                inner: visitor,
                hidden: self.hidden,
                kept: self.kept,
            },
        )?;
        json.end()?;
        Ok(value)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct HidingVisitor<'de, 'k, V> {
    inner: V,
    hidden: &'k [&'k str],
    kept: &'k mut [Option<&'de RawValue>],
}

impl<'de, V: Visitor<'de>> Visitor<'de> for HidingVisitor<'de, '_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_map(HidingMap {
            map,
            hidden: self.hidden,
            kept: self.kept,
        })
    }
}

struct HidingMap<'de, 'k, A> {
    map: A,
    hidden: &'k [&'k str],
    kept: &'k mut [Option<&'de RawValue>],
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for HidingMap<'de, '_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        loop {
            let Some(key) = self.map.next_key::<Key<'de>>()? else {
                return Ok(None);
            };
            if let Some(i) = self.hidden.iter().position(|h| *h == key.as_str()) {
                let value: &'de RawValue = self.map.next_value()?;
                if self.kept[i].replace(value).is_some() {
                    return Err(de::Error::custom(format_args!(
                        "duplicate field `{}`",
                        self.hidden[i]
                    )));
                }
                continue;
            }
            return match key {
                Key::Borrowed(k) => seed
                    .deserialize(BorrowedStrDeserializer::<A::Error>::new(k))
                    .map(Some),
                Key::Owned(k) => seed
                    .deserialize(StringDeserializer::<A::Error>::new(k))
                    .map(Some),
            };
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, Self::Error> {
        self.map.next_value_seed(seed)
    }
}

/// A key as the JSON holds it: borrowed unless it had escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(k) => k,
            Key::Owned(k) => k,
        }
    }
}

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq, Clone)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Body {
        asset: String,
        amount: String,
        #[serde(default)]
        reference: Option<String>,
    }

    fn parse(json: &str) -> Result<Body, String> {
        parse_without::<Body, 2>(json, ["op", "walletId"])
            .map(|(body, _)| body)
            .map_err(|e| e.message)
    }

    #[test]
    fn hidden_fields_are_left_out_wherever_they_are() {
        let want = Body {
            asset: "USD".into(),
            amount: "1.00".into(),
            reference: None,
        };
        for json in [
            r#"{"op":"credit","walletId":"w","asset":"USD","amount":"1.00"}"#,
            r#"{"asset":"USD","walletId":{"nested":[1,2]},"amount":"1.00","op":"credit"}"#,
            r#"{"asset":"USD","amount":"1.00"}"#,
            r#" { "a\u0073set" : "USD" , "amount" : "1.00" } "#,
        ] {
            assert_eq!(parse(json), Ok(want.clone()), "{json}");
        }
    }

    #[test]
    fn what_the_body_refuses_is_still_refused() {
        let unknown = parse(r#"{"op":"credit","asset":"USD","amount":"1","extra":1}"#);
        assert!(unknown.unwrap_err().contains("unknown field `extra`"));
        let twice = parse(r#"{"asset":"USD","asset":"EUR","amount":"1"}"#);
        assert!(twice.unwrap_err().contains("duplicate field `asset`"));
        let missing = parse(r#"{"op":"credit","asset":"USD"}"#);
        assert!(missing.unwrap_err().contains("missing field `amount`"));
        let wrong = parse(r#"{"asset":5,"amount":"1"}"#);
        assert!(wrong.unwrap_err().starts_with("body: invalid type"));
        // Not one object: refused, never read as an array of fields.
        assert!(parse(r#"["USD","1"]"#).is_err());
        assert!(parse(r#"{"asset":"USD","amount":"1"} {}"#).is_err());
        assert!(parse(r#"{"asset":"USD","amount":"1""#).is_err());
        let hidden_twice = parse(r#"{"walletId":"a","asset":"USD","amount":"1","walletId":"b"}"#);
        assert!(
            hidden_twice
                .unwrap_err()
                .contains("duplicate field `walletId`")
        );
    }

    #[test]
    fn hidden_fields_are_kept_as_written() {
        let json = r#"{"op":"credit","asset":"USD","walletId":{"nested":[1, 2]},"amount":"1"}"#;
        let (_, kept) = parse_without::<Body, 3>(json, ["op", "walletId", "absent"]).unwrap();
        let kept = kept.map(|k| k.map(RawValue::get));
        assert_eq!(
            kept,
            [Some(r#""credit""#), Some(r#"{"nested":[1, 2]}"#), None]
        );
    }
}
