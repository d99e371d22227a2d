//! Domain vocabulary shared by every layer: platforms, interaction kinds, users, posts.
//!
//! These are plain data types (serde only). Decoders produce them, the store persists them and the
//! graph applies them; none of them knows about petgraph, sled or HTTP.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a post or a user comes from. The platform is part of every ingested user key
/// (`x:123`, `mastodon:alice@mastodon.social`, `bsky:did:plc:...`) and of every post identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    X,
    Mastodon,
    Bsky,
}

impl Platform {
    pub const ALL: [Platform; 3] = [Platform::X, Platform::Mastodon, Platform::Bsky];

    /// The prefix of user keys and post identities of this platform.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::X => "x",
            Platform::Mastodon => "mastodon",
            Platform::Bsky => "bsky",
        }
    }

    /// Stable one-byte tag used in the on-disk key layout. Never renumber.
    pub fn tag(self) -> u8 {
        match self {
            Platform::X => 1,
            Platform::Mastodon => 2,
            Platform::Bsky => 3,
        }
    }

    /// The vertex key of a user of this platform: `<platform>:<platform user id>`.
    pub(crate) fn user_key(self, platform_user_id: &str) -> String {
        format!("{}:{}", self.as_str(), platform_user_id)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one user did to another. `Manual` is an interaction added by hand through the API.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Repost,
    Reply,
    Quote,
    Mention,
    Manual,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Repost, Kind::Reply, Kind::Quote, Kind::Mention, Kind::Manual];
    pub(crate) const COUNT: usize = 5;

    /// Dense index (0..5) used for per-kind arrays and the on-disk layout. Never renumber.
    pub fn index(self) -> usize {
        match self {
            Kind::Repost => 0,
            Kind::Reply => 1,
            Kind::Quote => 2,
            Kind::Mention => 3,
            Kind::Manual => 4,
        }
    }

    pub(crate) fn from_index(i: usize) -> Option<Kind> {
        Kind::ALL.get(i).copied()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Repost => "repost",
            Kind::Reply => "reply",
            Kind::Quote => "quote",
            Kind::Mention => "mention",
            Kind::Manual => "manual",
        }
    }

    /// Parses a kind name; `retweet` and `boost` are accepted as synonyms of `repost`.
    ///
    /// ```
    /// use tagflow::graph::Kind;
    /// assert_eq!(Kind::parse("Retweet"), Some(Kind::Repost));
    /// assert_eq!(Kind::parse("like"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Kind> {
        match s.to_ascii_lowercase().as_str() {
            "repost" | "retweet" | "reblog" | "boost" => Some(Kind::Repost),
            "reply" => Some(Kind::Reply),
            "quote" => Some(Kind::Quote),
            "mention" => Some(Kind::Mention),
            "manual" => Some(Kind::Manual),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user as a decoder saw it: the stable key and whatever profile it carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRef {
    /// `<platform>:<platform user id>`.
    pub key: String,
    /// Latest known handle, without a leading `@` (X `username`, Mastodon `acct@domain`, Bluesky handle).
    pub handle: Option<String>,
    /// Latest known display name.
    pub name: Option<String>,
}

impl UserRef {
    pub fn new(key: impl Into<String>) -> UserRef {
        UserRef { key: key.into(), handle: None, name: None }
    }

    pub(crate) fn with_handle(mut self, handle: Option<String>) -> UserRef {
        self.handle = handle.filter(|h| !h.is_empty());
        self
    }

    pub(crate) fn with_name(mut self, name: Option<String>) -> UserRef {
        self.name = name.filter(|n| !n.is_empty());
        self
    }
}

/// One interaction of a post: `from` acted upon `to` (the retweeter to the original author).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interaction {
    pub kind: Kind,
    /// Key of the user who acted.
    pub from: String,
    /// Key of the user acted upon.
    pub to: String,
}

/// A decoded post: who wrote it, when, and the interactions it carries.
///
/// A post is identified by `(platform, id)`; applying the same post twice changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Post {
    pub platform: Platform,
    /// The platform's post id (X tweet id, Mastodon status URI or id, Bluesky at-URI).
    pub id: String,
    /// Unix seconds; `None` when the payload carried no usable time (the ingest time is used then).
    pub created_at: Option<i64>,
    /// The author; always present as a vertex once the post is applied, even with no interactions.
    pub author: UserRef,
    /// Every other user the payload described (targets with handles and names), for profile updates.
    pub users: Vec<UserRef>,
    /// Interactions, deduplicated per `(kind, to)`, never a self-loop.
    pub interactions: Vec<Interaction>,
    /// Lowercased hashtags of the post text, without `#` (used by sources that filter client-side).
    pub tags: Vec<String>,
    /// Ids of the posts this one reposts, replies to or quotes (used to attribute follow-ups).
    pub refs: Vec<String>,
}

/// A hashtag as tagflow compares them, from a payload or a `--track` term: trimmed, without its
/// leading `#` (or the full-width `＃` some clients type), lowercased; `None` when nothing is left.
pub(crate) fn normalize_tag(raw: &str) -> Option<String> {
    let tag = raw.trim().trim_start_matches(['#', '＃']);
    (!tag.is_empty()).then(|| tag.to_lowercase())
}

impl Post {
    /// Adds a hashtag of the post's text ([`normalize_tag`]), once.
    pub(crate) fn add_tag(&mut self, raw: &str) {
        if let Some(tag) = normalize_tag(raw) {
            if !self.tags.contains(&tag) {
                self.tags.push(tag);
            }
        }
    }

    /// Adds the id of a post this one refers to (replies to, quotes, reposts), once; an empty one is
    /// no reference.
    pub(crate) fn add_ref(&mut self, id: &str) {
        if !id.is_empty() && !self.refs.iter().any(|r| r == id) {
            self.refs.push(id.to_owned());
        }
    }

    /// An interaction with `user` (see [`Post::interact`]), whose profile is recorded when the
    /// payload gave one (see [`Post::see_user`]).
    pub(crate) fn interact_with(&mut self, kind: Kind, user: UserRef) {
        if user.key == self.author.key {
            return;
        }
        self.interact(kind, &user.key);
        if user.handle.is_some() || user.name.is_some() {
            self.see_user(user);
        }
    }

    /// A post with no interactions yet.
    pub fn new(platform: Platform, id: impl Into<String>, author: UserRef) -> Post {
        Post {
            platform,
            id: id.into(),
            created_at: None,
            author,
            users: Vec::new(),
            interactions: Vec::new(),
            tags: Vec::new(),
            refs: Vec::new(),
        }
    }

    /// Adds an interaction from the author to `to`, skipping self-loops and exact duplicates
    /// (a post that mentions the same user twice is one mention).
    pub fn interact(&mut self, kind: Kind, to: &str) {
        if to == self.author.key {
            return;
        }
        if self.interactions.iter().any(|i| i.kind == kind && i.to == to) {
            return;
        }
        self.interactions.push(Interaction { kind, from: self.author.key.clone(), to: to.to_string() });
    }

    /// Records a user seen in the payload, keeping the richest profile when it appears more than once.
    pub(crate) fn see_user(&mut self, user: UserRef) {
        if user.key == self.author.key {
            return;
        }
        match self.users.iter_mut().find(|u| u.key == user.key) {
            Some(u) => {
                if user.handle.is_some() {
                    u.handle = user.handle;
                }
                if user.name.is_some() {
                    u.name = user.name;
                }
            }
            None => self.users.push(user),
        }
    }
}

/// What a decoder found in one input record (a stream line, an event, an array element).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A post to apply (idempotent by `(platform, id)`).
    Post(Post),
    /// A new version of an already-seen post: its interactions replace the old ones (Mastodon edits).
    Edit(Post),
    /// The post was deleted: its interactions are removed (Mastodon `delete`).
    Delete { platform: Platform, id: String },
    /// The server ends this connection (X `operational-disconnect`); the source must reconnect.
    Disconnect { reason: String },
    /// A user's profile changed (a Bluesky identity event with a new handle): update it if known.
    Profile(UserRef),
    /// A well-formed record that carries nothing for the graph (a like, a follow, a keep-alive object).
    Ignored,
}

#[cfg(test)]
mod tag_tests {
    use super::*;

    #[test]
    fn every_platform_and_track_term_compares_hashtags_one_way() {
        for raw in ["#RustLang", "rustlang", " ＃RUSTLANG ", "##rustlang"] {
            assert_eq!(normalize_tag(raw).as_deref(), Some("rustlang"), "{raw:?}");
        }
        for empty in ["", "#", " ＃ ", "   "] {
            assert_eq!(normalize_tag(empty), None, "{empty:?}");
        }
        let mut p = Post::new(Platform::Mastodon, "1", UserRef::new("a"));
        for raw in ["#Rust", "rust", "＃RUST", "#", "Go"] {
            p.add_tag(raw);
        }
        assert_eq!(p.tags, ["rust", "go"]);
    }

    #[test]
    fn references_and_interactions_are_added_once_and_never_to_oneself() {
        let mut p = Post::new(Platform::X, "1", UserRef::new("x:1"));
        for id in ["9", "", "8", "9"] {
            p.add_ref(id);
        }
        assert_eq!(p.refs, ["9", "8"]);
        p.interact_with(Kind::Mention, UserRef::new("x:1").with_handle(Some("me".into())));
        p.interact_with(Kind::Mention, UserRef::new("x:2"));
        p.interact_with(Kind::Reply, UserRef::new("x:3").with_handle(Some("c".into())));
        p.interact_with(Kind::Reply, UserRef::new("x:3"));
        let to: Vec<_> = p.interactions.iter().map(|i| (i.kind, i.to.as_str())).collect();
        assert_eq!(to, [(Kind::Mention, "x:2"), (Kind::Reply, "x:3")]);
        let seen: Vec<_> = p.users.iter().map(|u| (u.key.as_str(), u.handle.as_deref())).collect();
        assert_eq!(seen, [("x:3", Some("c"))], "profiles only where the payload gave one");
    }
}
