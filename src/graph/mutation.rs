//! The domain mutations: every change to the graph, from an HTTP handler or an ingest source, is one
//! of these, persisted and applied by the store's single write path.

use super::model::{Kind, Platform, Post, UserRef};

/// One change to the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Add a user by hand. Rejected if the key exists.
    AddUser { key: String, handle: Option<String>, name: Option<String> },
    /// Remove a user and every edge touching it. Rejected if unknown.
    RemoveUser { key: String },
    /// Record one interaction by hand (kind `manual` unless given); unknown users are created.
    AddInteraction { from: String, to: String, kind: Kind, at: i64 },
    /// Remove the edge between two users, all kinds. Rejected if absent.
    RemoveTie { from: String, to: String },
    /// Apply an ingested post; a post already seen (by platform and id) changes nothing.
    ApplyPost(Post),
    /// Replace the interactions of a post seen before with this version's (an edit); applies it if new.
    EditPost(Post),
    /// Remove the interactions of a post (a deletion); remembered, so a late copy is not re-added.
    RetractPost { platform: Platform, id: String },
    /// Update the handle or name of a known user; unknown users are not created.
    Profile(UserRef),
    /// Persist a source's resume position in the same batch as the posts it covers.
    SetCursor { name: String, value: Vec<u8> },
}

/// What a mutation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    UserAdded,
    UserRemoved {
        ties: usize,
    },
    InteractionAdded,
    TieRemoved,
    /// A new post: how many interactions it added and how many users it created.
    PostApplied {
        interactions: usize,
        new_users: usize,
    },
    /// A post seen before: nothing changed.
    Duplicate,
    /// A post's interactions removed (deleted or replaced by an edit).
    PostRetracted {
        interactions: usize,
    },
    ProfileUpdated,
    /// Nothing to do (a profile of an unknown user, a retraction of an unknown post).
    Unchanged,
    CursorSet,
}

/// Why the write path refused a mutation. Refusals are per mutation: the rest of a batch goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("user {0:?} already exists")]
    UserExists(String),
    #[error("no user {0:?}")]
    UserNotFound(String),
    #[error("no edge from {from:?} to {to:?}")]
    TieNotFound { from: String, to: String },
    #[error("a user cannot interact with itself ({0:?})")]
    SelfLoop(String),
    #[error("invalid user key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
}

/// The longest user key accepted, in characters (as JSON Schema's `maxLength` counts them, so that
/// the API's contract states the rule exactly).
pub const MAX_KEY_CHARS: usize = 256;

/// Checks that a string can be a user key: 1 to 256 characters, no control characters, no leading `@`
/// (reserved for handle lookups), not only white space.
///
/// # Errors
/// [`Rejection::InvalidKey`] with the reason.
pub fn validate_key(key: &str) -> Result<(), Rejection> {
    let reason = if key.is_empty() {
        Some("empty")
    } else if key.chars().count() > MAX_KEY_CHARS {
        Some("longer than 256 characters")
    } else if key.chars().any(char::is_control) {
        Some("contains control characters")
    } else if key.starts_with('@') {
        Some("starts with '@', which is reserved for handles")
    } else if key.trim().is_empty() {
        Some("only white space")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Rejection::InvalidKey { key: key.chars().take(64).collect(), reason }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        for ok in
            ["alice", "x:3026521093", "bsky:did:plc:abc", "mastodon:ana@mastodon.social", "José Ñ", "名前"]
        {
            assert_eq!(validate_key(ok), Ok(()), "{ok}");
        }
        let long = "a".repeat(257);
        for bad in ["", " ", "@alice", "a\nb", "tab\there", "nul\0", long.as_str()] {
            assert!(validate_key(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
