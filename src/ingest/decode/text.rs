//! Small serde helpers shared by the decoders (X v2 and v1.1, Mastodon, Jetstream).
//!
//! serde's own `Cow<str>` impl always allocates, and `#[serde(borrow)]` only borrows a bare `Cow<str>`
//! field, not one inside `Option` or `Vec`. [`Text`] borrows from the input whenever the JSON string
//! has no escapes, wherever it sits, and accepts a JSON integer where a string id is expected.

use serde::de::{Deserialize, Deserializer, Visitor};
use std::borrow::Cow;
use std::fmt;

/// A JSON string (or integer, kept as its decimal text), borrowed from the input when possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

impl Text<'_> {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an integer")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }

            // Ids are strings in both APIs; integers are tolerated (never through f64), the way the X
            // decoders tolerate numeric `matching_rules[].id`.
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }

            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
        }

        deserializer.deserialize_any(TextVisitor)
    }
}

/// `deserialize_with` for list fields that servers send as `null` as well as absent or `[]`.
pub(crate) fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// Unix seconds of an RFC 3339 timestamp (`2022-08-30T23:05:46.839Z`, `...+00:00`), `None` if unparsable.
pub(crate) fn unix_seconds(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339.trim()).ok().map(|t| t.timestamp())
}
