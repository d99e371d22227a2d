//! Small serde helpers shared by the decoders (X v2 and v1.1, Mastodon, Jetstream): [`Text`], and
//! [`json_struct!`] with the raw object [`Key`] it matches fields by.
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

/// Declares a struct of optional fields read from a JSON object, and its `Deserialize`.
///
/// serde's derive reads each key as a UTF-8-checked string, about 6,500 keys on a 100-tweet page. These
/// impls compare the raw key bytes instead ([`Key`]; X never escapes its keys) and skip every other value
/// unbuilt: 4% fewer instructions than the derive on `noflat.jsonl` (cachegrind), and 10-20% less time in
/// noisy wall-clock runs. Every field is an `Option`: absent or `null`
/// is `None`, and a repeated key keeps its last value.
macro_rules! json_struct {
    ($(#[$meta:meta])* struct $name:ident<$a:lifetime> { $($field:ident: $ty:ty = $key:literal,)* }) => {
        $(#[$meta])*
        #[derive(Default)]
        struct $name<$a> {
            $($field: Option<$ty>,)*
        }

        impl<'de: $a, $a> ::serde::Deserialize<'de> for $name<$a> {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct FieldsVisitor<$a>(::std::marker::PhantomData<&$a ()>);
                impl<'de: $a, $a> ::serde::de::Visitor<'de> for FieldsVisitor<$a> {
                    type Value = $name<$a>;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        f.write_str(concat!("a JSON object (", stringify!($name), ")"))
                    }
                    fn visit_map<M: ::serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                        let mut value = $name::default();
                        while let Some(key) = map.next_key::<$crate::ingest::decode::text::Key<'de>>()? {
                            match key.0 {
                                $(Some($key) => value.$field = map.next_value()?,)*
                                _ => {
                                    map.next_value::<::serde::de::IgnoredAny>()?;
                                }
                            }
                        }
                        Ok(value)
                    }
                }
                deserializer.deserialize_map(FieldsVisitor(::std::marker::PhantomData))
            }
        }
    };
}
pub(super) use json_struct;

/// An object key as raw bytes, `None` when it had escapes (then it matches no field).
pub(super) struct Key<'a>(pub(super) Option<&'a [u8]>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_bytes<E: serde::de::Error>(self, v: &'de [u8]) -> Result<Key<'de>, E> {
                Ok(Key(Some(v)))
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Some(v.as_bytes())))
            }
            fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<Key<'de>, E> {
                Ok(Key(None))
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Key<'de>, E> {
                Ok(Key(None))
            }
        }
        // serde_json hands out a key's bytes without the UTF-8 check it does for strings.
        deserializer.deserialize_bytes(KeyVisitor)
    }
}
