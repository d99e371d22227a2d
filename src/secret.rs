//! Credentials: one type whose `Debug` and `Display` redact, read from the environment only (never
//! from a flag, so that they show in neither `ps` nor shell history).

/// A credential. Its `Debug` and `Display` print `<redacted>`, so that no log line, error, `/status`
/// or `Debug` of the settings holding it can show it by accident; [`Secret::expose`] is the one way
/// to its value (for the header that carries it).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret::new(value)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The credential in environment variable `name`, trimmed; `None` when unset or blank.
pub(crate) fn from_env(name: &str) -> Option<Secret> {
    std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).map(Secret)
}
