//! Mastodon: `Status` entities (REST pages, streaming payloads), streaming events and frames (the
//! server-sent-events parser of the hashtag stream is `sse.rs`).
//!
//! Pure: no I/O, no state. Follows `shared/PROTOCOLS.md` (Mastodon):
//!
//! - post id: the status `uri`, global across instances (the `id` is local to the instance we read from);
//! - user key `mastodon:<acct>@<domain>`: an `acct` without `@` is local and is qualified with the
//!   instance domain (the `instance` argument, else the host of that account's own `url`);
//! - reply: `in_reply_to_account_id` is an instance-local account id, resolved through `mentions[]`
//!   (a reply mentions the account it answers); a reply to oneself is a self-loop and is skipped, and an
//!   id that no mention carries is skipped;
//! - mentions: `mentions[]`; quote: `quote.quoted_status.account` only when `quote.state` is `accepted`
//!   (4.4+), or a legacy `quote` that is itself a Status (Fedibird-style); boost: a status whose `reblog`
//!   is set is a repost by `account` of `reblog.account`, and the reblogged status's own mentions, reply
//!   and quote stay its author's.
//!
//! Tags are `tags[].name` lowercased (for a boost, the boosted status's tags, since the wrapper has
//! none); refs are `in_reply_to_id` (instance-local: the API gives no parent uri), the boosted status's
//! uri and the quoted status's uri.

use super::text::{null_as_empty, unix_seconds, Text};
use super::{DecodeError, Decoded};
use crate::graph::{Kind, Platform, Post, Record, UserRef};
use serde::de::IgnoredAny;
use serde::Deserialize;

/// The subset of a Mastodon `Account` (or a status `Mention`, which has the same keys) that we use.
#[derive(Debug, Deserialize)]
struct Account<'a> {
    #[serde(borrow, default)]
    id: Option<Text<'a>>,
    #[serde(borrow, default)]
    acct: Option<Text<'a>>,
    #[serde(borrow, default)]
    url: Option<Text<'a>>,
    #[serde(borrow, default)]
    display_name: Option<Text<'a>>,
}

impl Account<'_> {
    /// The account as a user, or `None` when its `acct` cannot be made global (see [`qualify`]).
    fn user_ref(&self, instance: Option<&str>) -> Option<UserRef> {
        let acct = qualify(self.acct.as_ref()?.as_str(), self.url.as_ref().map(Text::as_str), instance)?;
        let name = self.display_name.as_ref().map(|n| n.as_str().to_owned());
        Some(UserRef::new(Platform::Mastodon.user_key(&acct)).with_handle(Some(acct)).with_name(name))
    }
}

/// The subset of a Mastodon `Status` that carries interactions.
#[derive(Debug, Deserialize)]
struct Status<'a> {
    #[serde(borrow, default)]
    uri: Option<Text<'a>>,
    #[serde(borrow, default)]
    created_at: Option<Text<'a>>,
    #[serde(borrow, default)]
    in_reply_to_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    in_reply_to_account_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    account: Option<Account<'a>>,
    #[serde(borrow, default, deserialize_with = "null_as_empty")]
    mentions: Vec<Account<'a>>,
    #[serde(borrow, default, deserialize_with = "null_as_empty")]
    tags: Vec<Tag<'a>>,
    #[serde(borrow, default)]
    reblog: Option<Box<Status<'a>>>,
    #[serde(borrow, default)]
    quote: Option<Box<Quote<'a>>>,
}

#[derive(Debug, Deserialize)]
struct Tag<'a> {
    #[serde(borrow, default)]
    name: Option<Text<'a>>,
}

/// Every `quote` shape seen so far, in one struct:
/// - 4.4+ `Quote`: `{state, quoted_status}` (`quoted_status` is null unless the quote is visible);
/// - 4.4+ `ShallowQuote`: `{state, quoted_status_id}` (only inside a quoted status: nothing to resolve);
/// - legacy (Fedibird and forks that copied it): `quote` is the quoted `Status` itself, with no `state`.
#[derive(Debug, Deserialize)]
struct Quote<'a> {
    #[serde(borrow, default)]
    state: Option<Text<'a>>,
    #[serde(borrow, default)]
    quoted_status: Option<Box<Status<'a>>>,
    #[serde(borrow, default)]
    account: Option<Account<'a>>,
    #[serde(borrow, default)]
    uri: Option<Text<'a>>,
}

impl<'a> Quote<'a> {
    /// The quoted status's author and uri, when this quote counts as an interaction.
    fn quoted(&self) -> Option<(&Account<'a>, Option<&str>)> {
        match &self.state {
            // Pending, rejected, revoked, deleted, unauthorized...: the quote is not (or no longer) shown.
            Some(state) if state.as_str() != "accepted" => None,
            Some(_) => {
                let quoted = self.quoted_status.as_deref()?;
                Some((quoted.account.as_ref()?, quoted.uri.as_ref().map(Text::as_str)))
            }
            None => Some((self.account.as_ref()?, self.uri.as_ref().map(Text::as_str))),
        }
    }
}

/// Decodes one Mastodon `Status` entity (a REST response, or the payload of an `update` event) into
/// a [`Record::Post`]. `instance` is the domain of the server the status was read from (see
/// [`qualify`]); pass `None` to fall back to the host of each account's `url`.
///
/// # Errors
///
/// [`DecodeError::Json`] when the bytes are not JSON or a field has the wrong type;
/// [`DecodeError::Shape`] when the status has no `uri` or no usable `account`.
pub fn decode_status(status: &[u8], instance: Option<&str>) -> Decoded {
    let status: Status = serde_json::from_slice(status)?;
    Ok(vec![Record::Post(to_post(&status, instance)?)])
}

/// Decodes a page of statuses (a JSON array, as `GET /api/v1/timelines/tag/:name` returns it), one
/// [`Record::Post`] per status, in page order.
///
/// # Errors
///
/// As [`decode_status`], for the first element that fails: a page comes from one server, so a bad
/// element means the whole page is suspect.
pub(crate) fn decode_statuses(page: &[u8], instance: Option<&str>) -> Decoded {
    let statuses: Vec<Status> = serde_json::from_slice(page)?;
    statuses.iter().map(|s| to_post(s, instance).map(Record::Post)).collect()
}

#[cfg(test)]
/// Decodes one Mastodon `Account` entity into a user (`mastodon:<acct>@<domain>`, handle, display name).
///
/// # Errors
///
/// [`DecodeError::Json`] when the bytes are not a JSON object of the right types;
/// [`DecodeError::Shape`] when it has no `acct` or the acct cannot be qualified.
pub(crate) fn decode_account(account: &[u8], instance: Option<&str>) -> Result<UserRef, DecodeError> {
    let account: Account = serde_json::from_slice(account)?;
    account.user_ref(instance).ok_or_else(|| DecodeError::Shape("account without a qualifiable acct".into()))
}

#[cfg(test)]
/// The user of an already-parsed `Account` JSON value, or `None` when it has no usable `acct`.
pub(crate) fn account_ref(account: &serde_json::Value, instance: Option<&str>) -> Option<UserRef> {
    Account::deserialize(account).ok()?.user_ref(instance)
}

/// Decodes the body of `GET /api/v1/statuses/:id/reblogged_by` (a JSON array of `Account`s): the users
/// who boosted the status, each to be linked to the status's author with a [`Kind::Repost`] by the
/// caller, which knows that author. Accounts without a usable `acct` are skipped.
///
/// # Errors
///
/// [`DecodeError::Json`] when the body is not a JSON array of objects.
pub fn decode_accounts(body: &[u8], instance: Option<&str>) -> Result<Vec<UserRef>, DecodeError> {
    let accounts: Vec<Account> = serde_json::from_slice(body)?;
    Ok(accounts.iter().filter_map(|a| a.user_ref(instance)).collect())
}

/// Decodes one streaming event, by its SSE `event` name (or a WebSocket frame's `event`):
///
/// - `update`: a new status, [`Record::Post`];
/// - `status.update`: an edited status, [`Record::Edit`] (its interactions replace the old ones);
/// - `delete`: [`Record::Delete`] whose `id` is the bare payload. **That id is the instance-local
///   status `id`, not the `uri` that identifies posts**: the live source must translate it (it knows
///   which uri it saw with which local id) before applying it;
/// - anything else (`notification`, `filters_changed`, `announcement`, `conversation`...): [`Record::Ignored`].
///
/// # Errors
///
/// As [`decode_status`] for `update` and `status.update`; [`DecodeError::Shape`] for an empty `delete`.
pub fn decode_event(event: &str, data: &[u8], instance: Option<&str>) -> Decoded {
    match event {
        "update" => decode_status(data, instance),
        "status.update" => {
            let status: Status = serde_json::from_slice(data)?;
            Ok(vec![Record::Edit(to_post(&status, instance)?)])
        }
        "delete" => {
            let id = std::str::from_utf8(data).map_err(|_| shape("delete payload is not utf-8"))?.trim();
            if id.is_empty() {
                return Err(shape("delete event without an id"));
            }
            Ok(vec![Record::Delete { platform: Platform::Mastodon, id: id.to_owned() }])
        }
        _ => Ok(vec![Record::Ignored]),
    }
}

/// A streaming WebSocket frame: `{stream, event, payload}` where `payload` is a JSON string holding
/// the event's data (itself JSON for statuses).
#[derive(Debug, Deserialize)]
struct Frame<'a> {
    #[serde(borrow, default)]
    event: Option<Text<'a>>,
    #[serde(borrow, default)]
    payload: Option<Text<'a>>,
}

/// Decodes one WebSocket frame of `/api/v1/streaming` by handing its payload to [`decode_event`].
///
/// # Errors
///
/// [`DecodeError::Json`] for a frame that is not JSON; [`DecodeError::Shape`] for a frame without
/// `event`, or an `update`/`status.update`/`delete` without `payload`; else as [`decode_event`].
pub fn decode_frame(frame: &[u8], instance: Option<&str>) -> Decoded {
    let frame: Frame = serde_json::from_slice(frame)?;
    let event = frame.event.ok_or_else(|| shape("streaming frame without event"))?;
    match frame.payload {
        Some(payload) => decode_event(event.as_str(), payload.as_str().as_bytes(), instance),
        None if matches!(event.as_str(), "update" | "status.update" | "delete") => {
            Err(shape("streaming frame without payload"))
        }
        // `filters_changed` and friends carry no payload at all.
        None => Ok(vec![Record::Ignored]),
    }
}

/// Decodes any Mastodon input record [`super::Format::Mastodon`] stands for: a JSON array is a page of
/// statuses ([`decode_statuses`]), an object with an `event` and no `account` is a WebSocket frame
/// ([`decode_frame`]), anything else a single status ([`decode_status`]).
///
/// # Errors
///
/// As the decoder it picks.
pub fn decode(record: &[u8], instance: Option<&str>) -> Decoded {
    if record.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return decode_statuses(record, instance);
    }
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        event: Option<IgnoredAny>,
        #[serde(default)]
        account: Option<IgnoredAny>,
    }
    let probe: Probe = serde_json::from_slice(record)?;
    if probe.event.is_some() && probe.account.is_none() {
        decode_frame(record, instance)
    } else {
        decode_status(record, instance)
    }
}

fn shape(what: &str) -> DecodeError {
    DecodeError::Shape(what.to_owned())
}

/// Builds the post of one status, applying the rules in the module doc.
fn to_post(status: &Status, instance: Option<&str>) -> Result<Post, DecodeError> {
    let uri = status.uri.as_ref().map(Text::as_str).filter(|u| !u.is_empty());
    let uri = uri.ok_or_else(|| shape("status without uri"))?;
    let account = status.account.as_ref().ok_or_else(|| shape("status without account"))?;
    let author = account.user_ref(instance).ok_or_else(|| shape("status account without a usable acct"))?;
    let mut post = Post::new(Platform::Mastodon, uri, author);
    post.created_at = status.created_at.as_ref().and_then(|t| unix_seconds(t.as_str()));

    if let Some(to_id) = &status.in_reply_to_account_id {
        // A reply to oneself (a thread) is a self-loop: nothing to record, no lookup needed.
        if account.id.as_ref() != Some(to_id) {
            // The id is local to the instance we read from; the replied-to account is among the
            // mentions (Mastodon adds it), which carry its acct. Unresolvable ids are skipped.
            if let Some(target) = status.mentions.iter().find(|m| m.id.as_ref() == Some(to_id)) {
                interact(&mut post, Kind::Reply, target, instance);
            }
        }
    }
    if let Some(parent) = &status.in_reply_to_id {
        post.add_ref(parent.as_str());
    }
    for mention in &status.mentions {
        interact(&mut post, Kind::Mention, mention, instance);
    }
    if let Some((quoted_author, quoted_uri)) = status.quote.as_deref().and_then(Quote::quoted) {
        interact(&mut post, Kind::Quote, quoted_author, instance);
        if let Some(quoted_uri) = quoted_uri {
            post.add_ref(quoted_uri);
        }
    }
    if let Some(boosted) = status.reblog.as_deref() {
        if let Some(boosted_author) = &boosted.account {
            interact(&mut post, Kind::Repost, boosted_author, instance);
        }
        if let Some(boosted_uri) = &boosted.uri {
            post.add_ref(boosted_uri.as_str());
        }
        // The wrapper of a boost has no tags of its own; the boosted status's tags say what it is about.
        push_tags(&mut post, &boosted.tags);
    }
    push_tags(&mut post, &status.tags);
    Ok(post)
}

/// Records an interaction to `target` (skipped when its acct cannot be qualified) and its profile.
/// An interaction with the account `target`, with its profile.
fn interact(post: &mut Post, kind: Kind, target: &Account, instance: Option<&str>) {
    if let Some(user) = target.user_ref(instance) {
        post.interact_with(kind, user);
    }
}

fn push_tags(post: &mut Post, tags: &[Tag]) {
    for name in tags.iter().filter_map(|t| t.name.as_ref()) {
        post.add_tag(name.as_str());
    }
}

/// The global `acct@domain` of an account: an `acct` that already has a domain is kept (its domain
/// lowercased), a local one (no `@`) gets the instance domain: `instance` (a domain, or a base URL whose
/// host is taken) when given, else the host of the account's own `url`.
///
/// The `url` fallback is right whenever the instance serves its web pages on its account domain; an
/// instance with a separate `WEB_DOMAIN` must be named through `instance`. `None` when the acct is
/// empty or malformed, or no domain is known.
fn qualify(acct: &str, url: Option<&str>, instance: Option<&str>) -> Option<String> {
    let acct = acct.trim();
    let acct = acct.strip_prefix('@').unwrap_or(acct);
    match acct.split_once('@') {
        Some((user, domain)) => {
            if user.is_empty() || domain.is_empty() || domain.contains('@') {
                return None;
            }
            Some(format!("{user}@{}", domain.to_ascii_lowercase()))
        }
        None if acct.is_empty() => None,
        None => {
            let domain = match instance {
                Some(instance) => instance_domain(instance)?,
                None => host_of(url?)?,
            };
            Some(format!("{acct}@{}", domain.to_ascii_lowercase()))
        }
    }
}

/// `mastodon.social`, `https://mastodon.social/` and `Mastodon.Social` all name the same instance.
fn instance_domain(instance: &str) -> Option<&str> {
    let instance = instance.trim();
    let domain = if instance.contains("://") { host_of(instance)? } else { instance.trim_end_matches('/') };
    (!domain.is_empty()).then_some(domain)
}

/// The `host[:port]` of an absolute URL, without any userinfo.
fn host_of(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Interaction;
    use serde_json::{json, Value};

    fn account(id: &str, acct: &str, url: &str, name: &str) -> Value {
        json!({"id": id, "username": acct.split('@').next(), "acct": acct, "display_name": name,
               "locked": false, "bot": false, "url": url, "emojis": [], "fields": []})
    }

    fn mention(id: &str, acct: &str, url: &str) -> Value {
        json!({"id": id, "username": acct.split('@').next(), "url": url, "acct": acct})
    }

    /// A status in the shape `GET /api/v1/statuses/:id` and the streaming `update` payload have.
    fn status(uri: &str, account: Value) -> Value {
        json!({"id": "108914327388663283", "created_at": "2022-08-30T23:05:46.839Z", "in_reply_to_id": null,
               "in_reply_to_account_id": null, "sensitive": false, "spoiler_text": "", "visibility": "public",
               "language": "en", "uri": uri, "url": uri, "replies_count": 0, "reblogs_count": 0,
               "favourites_count": 0, "edited_at": null, "content": "<p>hi</p>", "reblog": null,
               "account": account, "media_attachments": [], "mentions": [], "tags": [], "emojis": [],
               "card": null, "poll": null})
    }

    fn freon() -> Value {
        account("464472", "freon@letsalllovela.in", "https://letsalllovela.in/users/freon", "freon")
    }

    fn one_post(decoded: Decoded) -> Post {
        match decoded.expect("decodes").as_slice() {
            [Record::Post(post)] => post.clone(),
            other => panic!("expected one post, got {other:?}"),
        }
    }

    fn edges(post: &Post) -> Vec<(Kind, &str)> {
        post.interactions.iter().map(|i| (i.kind, i.to.as_str())).collect()
    }

    fn bytes(value: &Value) -> Vec<u8> {
        serde_json::to_vec(value).expect("serialises")
    }

    #[test]
    fn reply_is_resolved_through_the_mention_that_carries_the_account_id() {
        let mut s = status("https://letsalllovela.in/objects/e9ce", freon());
        s["in_reply_to_id"] = json!("108914298452377720");
        s["in_reply_to_account_id"] = json!("107946650784398271");
        s["mentions"] = json!([mention(
            "107946650784398271",
            "disarray@pl.nulled.red",
            "https://pl.nulled.red/users/disarray"
        )]);
        let post = one_post(decode_status(&bytes(&s), Some("mastodon.social")));
        assert_eq!(post.platform, Platform::Mastodon);
        assert_eq!(post.id, "https://letsalllovela.in/objects/e9ce", "the post id is the global uri");
        assert_eq!(post.author.key, "mastodon:freon@letsalllovela.in");
        assert_eq!(post.author.handle.as_deref(), Some("freon@letsalllovela.in"));
        assert_eq!(post.author.name.as_deref(), Some("freon"));
        let to = "mastodon:disarray@pl.nulled.red";
        assert_eq!(edges(&post), vec![(Kind::Reply, to), (Kind::Mention, to)]);
        assert_eq!(
            post.interactions[0],
            Interaction { kind: Kind::Reply, from: post.author.key.clone(), to: to.into() }
        );
        assert_eq!(post.users.len(), 1, "the target's profile is recorded once");
        assert_eq!(post.users[0].handle.as_deref(), Some("disarray@pl.nulled.red"));
        assert_eq!(post.refs, vec!["108914298452377720"]);
        assert_eq!(post.created_at, Some(1_661_900_746));
    }

    #[test]
    fn reply_to_oneself_is_a_skipped_self_loop_but_keeps_its_parent_ref() {
        let mut s = status("https://fosstodon.org/users/tobtobxx/statuses/1", {
            account("1081104", "tobtobxx@fosstodon.org", "https://fosstodon.org/@tobtobxx", "TobTobXX")
        });
        s["in_reply_to_id"] = json!("108913981098896721");
        s["in_reply_to_account_id"] = json!("1081104");
        let post = one_post(decode_status(&bytes(&s), None));
        assert!(post.interactions.is_empty(), "{:?}", post.interactions);
        assert_eq!(post.refs, vec!["108913981098896721"]);
    }

    #[test]
    fn reply_whose_account_id_no_mention_carries_is_skipped() {
        let mut s = status("https://bsky.brid.gy/convert/ap/at://x", freon());
        s["in_reply_to_id"] = json!("115044053131672379");
        s["in_reply_to_account_id"] = json!(109446733188999785_u64); // a number: tolerated, never via f64
        let post = one_post(decode_status(&bytes(&s), None));
        assert!(post.interactions.is_empty());
        assert_eq!(post.refs, vec!["115044053131672379"]);
    }

    #[test]
    fn local_accts_are_qualified_with_the_instance_else_the_host_of_their_url() {
        let cases = [
            (Some("mastodon.social"), "mastodon:trwnh@mastodon.social", "mastodon:admin@mastodon.social"),
            (
                Some("https://Mastodon.Social/"),
                "mastodon:trwnh@mastodon.social",
                "mastodon:admin@mastodon.social",
            ),
            (None, "mastodon:trwnh@mastodon.social", "mastodon:admin@localhost:3000"),
        ];
        for (instance, author, mentioned) in cases {
            let mut s = status("https://mastodon.social/users/trwnh/statuses/1", {
                account("14715", "trwnh", "https://mastodon.social/@trwnh", "infinite love ⴳ")
            });
            s["mentions"] = json!([mention("1", "admin", "http://localhost:3000/@admin")]);
            let post = one_post(decode_status(&bytes(&s), instance));
            assert_eq!(post.author.key, author, "author with instance {instance:?}");
            assert_eq!(post.author.handle.as_deref(), author.strip_prefix("mastodon:"));
            assert_eq!(edges(&post), vec![(Kind::Mention, mentioned)], "mention with instance {instance:?}");
        }
        let remote = account("2", "Alice@Example.COM", "https://example.com/@Alice", "");
        let post = one_post(decode_status(&bytes(&status("https://example.com/1", remote)), None));
        assert_eq!(post.author.key, "mastodon:Alice@example.com", "domains are case-insensitive, users kept");
        assert_eq!(post.author.name, None, "an empty display name is no name");
    }

    #[test]
    fn mentions_of_oneself_and_repeated_mentions_count_once_or_not_at_all() {
        let halcy =
            account("23972", "halcy@icosahedron.website", "https://icosahedron.website/@halcy", "halcy");
        let mut s = status("https://icosahedron.website/users/halcy/statuses/1", halcy);
        let bob = mention("7", "bob@example.com", "https://example.com/@bob");
        s["mentions"] = json!([
            mention("23972", "halcy@icosahedron.website", "https://icosahedron.website/@halcy"),
            bob,
            bob
        ]);
        let post = one_post(decode_status(&bytes(&s), None));
        assert_eq!(edges(&post), vec![(Kind::Mention, "mastodon:bob@example.com")]);
    }

    #[test]
    fn a_quote_counts_only_when_accepted() {
        let quoted =
            status("https://example.com/statuses/q", account("9", "carol", "https://example.com/@carol", ""));
        let cases = [
            (json!({"state": "accepted", "quoted_status": quoted}), true, "4.4 accepted quote"),
            (json!({"state": "pending", "quoted_status": null}), false, "pending"),
            (json!({"state": "rejected", "quoted_status": null}), false, "rejected"),
            (json!({"state": "revoked", "quoted_status": quoted}), false, "revoked, even with a status"),
            (json!({"state": "accepted", "quoted_status": null}), false, "accepted but not visible"),
            (json!({"state": "accepted", "quoted_status_id": "115044056977193502"}), false, "shallow quote"),
            (quoted.clone(), true, "legacy: the quote field is the quoted status"),
        ];
        for (quote, counts, what) in cases {
            let mut s = status("https://mastodon.social/users/trwnh/statuses/2", {
                account("14715", "trwnh", "https://mastodon.social/@trwnh", "")
            });
            s["quote"] = quote;
            let post = one_post(decode_status(&bytes(&s), Some("mastodon.social")));
            if counts {
                assert_eq!(edges(&post), vec![(Kind::Quote, "mastodon:carol@mastodon.social")], "{what}");
                assert_eq!(post.refs, vec!["https://example.com/statuses/q"], "{what}");
            } else {
                assert!(post.interactions.is_empty() && post.refs.is_empty(), "{what}: {post:?}");
            }
        }
    }

    #[test]
    fn a_boost_is_a_repost_of_the_boosted_author_and_not_a_repeat_of_its_mentions() {
        let mut boosted = status("https://example.com/statuses/orig", {
            account("9", "carol@example.com", "https://example.com/@carol", "Carol")
        });
        boosted["mentions"] = json!([mention("5", "dave@example.org", "https://example.org/@dave")]);
        boosted["tags"] = json!([{"name": "RustLang", "url": "https://mastodon.social/tags/rustlang"}]);
        let mut wrapper = status("https://mastodon.social/users/trwnh/statuses/3/activity", {
            account("14715", "trwnh", "https://mastodon.social/@trwnh", "")
        });
        wrapper["reblog"] = boosted;
        let post = one_post(decode_status(&bytes(&wrapper), Some("mastodon.social")));
        assert_eq!(post.id, "https://mastodon.social/users/trwnh/statuses/3/activity", "the wrapper's uri");
        assert_eq!(post.author.key, "mastodon:trwnh@mastodon.social");
        assert_eq!(edges(&post), vec![(Kind::Repost, "mastodon:carol@example.com")]);
        assert_eq!(post.users[0].name.as_deref(), Some("Carol"));
        assert_eq!(post.refs, vec!["https://example.com/statuses/orig"]);
        assert_eq!(post.tags, vec!["rustlang"]);
    }

    #[test]
    fn tags_are_lowercased_and_deduplicated() {
        let mut s = status("https://ruby.social/users/chrismo/statuses/1", {
            account("795442", "chrismo@ruby.social", "https://ruby.social/@chrismo", "")
        });
        s["tags"] = json!([{"name": "MUSICTUESDAY", "url": "u"}, {"name": "piano", "url": "u"},
                            {"name": "MusicTuesday", "url": "u"}]);
        assert_eq!(one_post(decode_status(&bytes(&s), None)).tags, vec!["musictuesday", "piano"]);
    }

    #[test]
    fn statuses_without_uri_or_account_are_shape_errors_and_garbage_is_a_json_error() {
        let mut no_uri = status("x", freon());
        no_uri.as_object_mut().expect("object").remove("uri");
        let mut no_account = status("https://a/1", freon());
        no_account["account"] = Value::Null;
        let unqualifiable = status("https://a/1", json!({"id": "1", "acct": "local", "url": "not a url"}));
        for (input, what) in [(no_uri, "no uri"), (no_account, "null account"), (unqualifiable, "no domain")]
        {
            assert!(matches!(decode_status(&bytes(&input), None), Err(DecodeError::Shape(_))), "{what}");
        }
        let truncated = br#"{"id":"1","uri":"https://a/1","account":{"acct":"a@b""#;
        assert!(matches!(decode_status(truncated, None), Err(DecodeError::Json(_))));
        assert!(matches!(decode_status(b"", None), Err(DecodeError::Json(_))));
        assert!(matches!(decode_status(br#"{"uri": 5}"#, None), Err(DecodeError::Shape(_))), "no account");
        assert!(matches!(decode_status(br#"{"uri": ["x"]}"#, None), Err(DecodeError::Json(_))));
    }

    #[test]
    fn streaming_events_map_to_post_edit_delete_or_ignored() {
        let s = bytes(&status("https://mastodon.social/users/trwnh/statuses/4", freon()));
        assert!(matches!(decode_event("update", &s, None).expect("update").as_slice(), [Record::Post(_)]));
        let edit = decode_event("status.update", &s, None).expect("status.update");
        assert!(
            matches!(edit.as_slice(), [Record::Edit(p)] if p.id == "https://mastodon.social/users/trwnh/statuses/4")
        );
        assert_eq!(
            decode_event("delete", b"108914398911648589", None).expect("delete"),
            vec![Record::Delete { platform: Platform::Mastodon, id: "108914398911648589".into() }],
            "the delete id is the instance-local id, as sent"
        );
        assert!(matches!(decode_event("delete", b"  ", None), Err(DecodeError::Shape(_))));
        for unknown in
            ["notification", "filters_changed", "announcement", "conversation", "encrypted_message"]
        {
            assert_eq!(
                decode_event(unknown, b"{\"id\":\"1\"}", None).expect(unknown),
                vec![Record::Ignored],
                "{unknown}"
            );
        }
        assert!(matches!(decode_event("update", b"{\"id\":", None), Err(DecodeError::Json(_))));
    }

    #[test]
    fn websocket_frames_carry_their_payload_as_json_inside_json() {
        let payload =
            serde_json::to_string(&status("https://fosstodon.org/users/tobtobxx/statuses/1", freon()))
                .expect("serialises");
        let update = json!({"stream": ["hashtag", "rustlang"], "event": "update", "payload": payload});
        assert_eq!(
            one_post(decode_frame(&bytes(&update), None)).id,
            "https://fosstodon.org/users/tobtobxx/statuses/1"
        );
        let delete = br#"{"stream":["public"],"event":"delete","payload":"106692867363994015"}"#;
        assert_eq!(
            decode_frame(delete, None).expect("delete"),
            vec![Record::Delete { platform: Platform::Mastodon, id: "106692867363994015".into() }]
        );
        let filters = br#"{"stream":["user"],"event":"filters_changed"}"#;
        assert_eq!(decode_frame(filters, None).expect("filters_changed"), vec![Record::Ignored]);
        assert!(matches!(
            decode_frame(br#"{"stream":["user"],"event":"update"}"#, None),
            Err(DecodeError::Shape(_))
        ));
        assert!(matches!(decode_frame(br#"{"stream":["user"]}"#, None), Err(DecodeError::Shape(_))));
        assert!(matches!(
            decode_frame(br#"{"event":"update","payload":"{\"uri\""}"#, None),
            Err(DecodeError::Json(_))
        ));
    }

    #[test]
    fn decode_picks_page_frame_or_status_by_shape() {
        let s = status("https://a.example/1", freon());
        let page = json!([s, status("https://a.example/2", freon())]);
        assert_eq!(decode(&bytes(&page), None).expect("page").len(), 2);
        assert_eq!(decode(b" []", None).expect("empty page"), vec![]);
        assert_eq!(one_post(decode(&bytes(&s), None)).id, "https://a.example/1");
        let frame = br#"{"stream":["public"],"event":"delete","payload":"1"}"#;
        assert!(matches!(decode(frame, None).expect("frame").as_slice(), [Record::Delete { .. }]));
    }

    #[test]
    fn the_format_dispatcher_decodes_statuses_pages_and_frames() {
        use crate::ingest::decode::{decode as dispatch, Format};
        let s = status("https://a.example/1", freon());
        assert_eq!(
            dispatch(Format::Mastodon, &bytes(&s)).expect("status"),
            decode_status(&bytes(&s), None).expect("same")
        );
        assert_eq!(dispatch(Format::Mastodon, &bytes(&json!([s.clone(), s]))).expect("page").len(), 2);
        let frame = br#"{"stream":["hashtag","rustlang"],"event":"delete","payload":"1"}"#;
        assert!(matches!(
            dispatch(Format::Mastodon, frame).expect("frame").as_slice(),
            [Record::Delete { .. }]
        ));
    }

    #[test]
    fn reblogged_by_accounts_become_qualified_users() {
        let body = json!([
            account(
                "117020566092212359",
                "mastodonpy_test_2",
                "http://localhost:3000/@mastodonpy_test_2",
                ""
            ),
            account("3", "erin@example.net", "https://example.net/@erin", "Erin"),
            json!({"id": "4", "acct": ""})
        ]);
        let users = decode_accounts(&bytes(&body), Some("localhost:3000")).expect("accounts");
        let keys: Vec<&str> = users.iter().map(|u| u.key.as_str()).collect();
        assert_eq!(keys, ["mastodon:mastodonpy_test_2@localhost:3000", "mastodon:erin@example.net"]);
        assert_eq!(users[1].name.as_deref(), Some("Erin"));
        assert!(matches!(decode_accounts(b"{\"acct\":\"a\"}", None), Err(DecodeError::Json(_))));
        let value = account("3", "erin", "https://example.net/@erin", "Erin");
        assert_eq!(account_ref(&value, None).map(|u| u.key), Some("mastodon:erin@example.net".into()));
        assert_eq!(
            decode_account(&bytes(&value), Some("example.org")).expect("account").key,
            "mastodon:erin@example.org"
        );
        assert_eq!(account_ref(&json!({"acct": 5}), None), None);
    }
}
