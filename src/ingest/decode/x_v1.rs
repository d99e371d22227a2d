//! X API v1.1 decoder: one status object, a `{"statuses": [...]}` search response or a JSON array of
//! statuses (archives, twarc/tweepy exports) in, one [`Record::Post`] per status out.
//!
//! Owns the v1.1 interaction rules of `shared/PROTOCOLS.md`. Pure: no I/O, no state; depends on the
//! domain model and the borrowed-string helper of [`super::x_v2`].
//!
//! # Rules
//!
//! - Ids are read from `id_str` and `user.id_str` only, never from the numeric `id`: some publishers
//!   rounded those through a double (`search_2014.json` in the fixtures). A status without them is
//!   rejected rather than attributed to a rounded id.
//! - **repost**: `retweeted_status.user`. A retweet of a quote repeats `quoted_status` on the outer
//!   status: it is a retweet only.
//! - **quote**: `quoted_status.user`; a `quoted_status_id_str` whose status is absent (deleted) is kept
//!   as a reference but gives no edge.
//! - **reply**: `in_reply_to_user_id_str`, with or without `in_reply_to_status_id_str` (a status that
//!   starts with `@user` has only the former). This literal reading is the one that agrees with the
//!   counted `reply=9` of `search_2014.json`; the v2 decoder, whose data marks replies explicitly with a
//!   `replied_to` reference, reads it the other way, also to agree with its counted fixtures.
//! - **mention**: `entities.user_mentions[].id_str`, from `extended_tweet.entities` when a long streamed
//!   status has one. In a retweet the automatic `RT @author: ` mention (offset 3, or the first mention
//!   when offsets are missing) is not counted; mentions copied from the retweeted text are.
//! - Self-loops and repeats within one status are dropped by [`Post::interact`].

use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;

use super::text::{json_struct, Text};
use super::{DecodeError, Decoded};
use crate::graph::{Kind, Platform, Post, Record, UserRef};

/// The `created_at` format of v1.1: `Thu Apr 06 15:28:43 +0000 2017`.
const CREATED_AT_FORMAT: &str = "%a %b %d %H:%M:%S %z %Y";

/// Decodes one v1.1 document: a status object, a `{"statuses": [...]}` search response, or a JSON
/// array of statuses.
///
/// Returns one [`Record::Post`] per status. An object that is neither a status nor a search response
/// (a stream's `limit` or `delete` notice, an unknown message) is [`Record::Ignored`]; empty input gives
/// no record. In an array or a search response a status without `id_str`/`user.id_str` is skipped.
///
/// # Errors
///
/// [`DecodeError::Json`] for malformed JSON; [`DecodeError::Shape`] for a lone status without
/// `id_str`/`user.id_str`, a non-empty list none of whose statuses has them, or JSON that is neither an
/// object nor an array.
pub fn decode(doc: &[u8]) -> Decoded {
    let doc = doc.trim_ascii();
    if doc.is_empty() {
        return Ok(Vec::new());
    }
    match doc[0] {
        b'[' => {
            let statuses: Vec<Status<'_>> = serde_json::from_slice(doc)?;
            from_list(&statuses)
        }
        b'{' => {
            let top: Status<'_> = serde_json::from_slice(doc)?;
            if let Some(statuses) = &top.statuses {
                return from_list(statuses);
            }
            if top.id_str.is_none() && top.user.is_none() {
                return Ok(vec![Record::Ignored]);
            }
            let post = to_post(&top).ok_or_else(missing_ids)?;
            Ok(vec![Record::Post(post)])
        }
        _ => Err(DecodeError::Shape("x v1: expected a status object or an array of statuses".into())),
    }
}

fn missing_ids() -> DecodeError {
    DecodeError::Shape("x v1: status without id_str or user.id_str".into())
}

fn from_list(statuses: &[Status<'_>]) -> Decoded {
    let records: Vec<Record> = statuses.iter().filter_map(to_post).map(Record::Post).collect();
    if records.is_empty() && !statuses.is_empty() {
        return Err(missing_ids());
    }
    Ok(records)
}

json_struct! {
    /// The parts of a status the graph needs; everything else is skipped unbuilt.
    struct Status<'a> {
        id_str: Text<'a> = b"id_str",
        created_at: Text<'a> = b"created_at",
        user: User<'a> = b"user",
        in_reply_to_user_id_str: Text<'a> = b"in_reply_to_user_id_str",
        in_reply_to_screen_name: Text<'a> = b"in_reply_to_screen_name",
        in_reply_to_status_id_str: Text<'a> = b"in_reply_to_status_id_str",
        retweeted_status: Embedded<'a> = b"retweeted_status",
        quoted_status: Embedded<'a> = b"quoted_status",
        quoted_status_id_str: Text<'a> = b"quoted_status_id_str",
        entities: Entities<'a> = b"entities",
        extended_tweet: Extended<'a> = b"extended_tweet",
        // Only at the top of a search response.
        statuses: Vec<Status<'a>> = b"statuses",
    }
}

json_struct! {
    /// A retweeted or quoted status: only its id and author matter here.
    struct Embedded<'a> {
        id_str: Text<'a> = b"id_str",
        user: User<'a> = b"user",
    }
}

json_struct! {
    struct User<'a> {
        id_str: Text<'a> = b"id_str",
        screen_name: Text<'a> = b"screen_name",
        name: Text<'a> = b"name",
    }
}

json_struct! {
    /// The full entities of a long status in compatibility mode.
    struct Extended<'a> {
        entities: Entities<'a> = b"entities",
    }
}

json_struct! {
    struct Entities<'a> {
        user_mentions: Vec<UserMention<'a>> = b"user_mentions",
        hashtags: Vec<Hashtag<'a>> = b"hashtags",
    }
}

json_struct! {
    struct UserMention<'a> {
        id_str: Text<'a> = b"id_str",
        screen_name: Text<'a> = b"screen_name",
        name: Text<'a> = b"name",
        indices: Start = b"indices",
    }
}

json_struct! {
    struct Hashtag<'a> {
        text: Text<'a> = b"text",
    }
}

/// The first number of an `indices: [start, end]` pair, read without allocating the array.
struct Start(Option<u64>);

impl<'de> Deserialize<'de> for Start {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StartVisitor;
        impl<'de> Visitor<'de> for StartVisitor {
            type Value = Start;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of offsets")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Start, A::Error> {
                let first = seq.next_element::<u64>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Start(first))
            }
        }
        deserializer.deserialize_seq(StartVisitor)
    }
}

fn user_ref(key: String, user: &User<'_>) -> UserRef {
    UserRef::new(key)
        .with_handle(user.screen_name.as_ref().map(|s| s.as_str().to_owned()))
        .with_name(user.name.as_ref().map(|s| s.as_str().to_owned()))
}

/// An interaction with the user `id`, with the profile the payload gave for them.
fn interact(post: &mut Post, kind: Kind, id: &str, handle: Option<&Text<'_>>, name: Option<&Text<'_>>) {
    let user = UserRef::new(Platform::X.user_key(id))
        .with_handle(handle.map(|s| s.as_str().to_owned()))
        .with_name(name.map(|s| s.as_str().to_owned()));
    post.interact_with(kind, user);
}

fn to_post(status: &Status<'_>) -> Option<Post> {
    let id = status.id_str.as_ref()?.as_str();
    let user = status.user.as_ref()?;
    let author = user_ref(Platform::X.user_key(user.id_str.as_ref()?.as_str()), user);
    let mut post = Post::new(Platform::X, id, author);
    post.created_at = status.created_at.as_ref().and_then(|s| parse_created_at(s.as_str()));

    let retweeted = status.retweeted_status.as_ref();
    if let Some(rt) = retweeted {
        if let Some(rt_id) = &rt.id_str {
            post.add_ref(rt_id.as_str());
        }
        if let Some(rt_user) = &rt.user {
            if let Some(uid) = &rt_user.id_str {
                interact(
                    &mut post,
                    Kind::Repost,
                    uid.as_str(),
                    rt_user.screen_name.as_ref(),
                    rt_user.name.as_ref(),
                );
            }
        }
    } else {
        // The outer `quoted_status` of a retweet is the retweeted status's quote, not the retweeter's.
        let quoted_id = status
            .quoted_status
            .as_ref()
            .and_then(|q| q.id_str.as_ref())
            .or(status.quoted_status_id_str.as_ref());
        if let Some(quoted_id) = quoted_id {
            post.add_ref(quoted_id.as_str());
        }
        if let Some(q_user) = status.quoted_status.as_ref().and_then(|q| q.user.as_ref()) {
            if let Some(uid) = &q_user.id_str {
                interact(
                    &mut post,
                    Kind::Quote,
                    uid.as_str(),
                    q_user.screen_name.as_ref(),
                    q_user.name.as_ref(),
                );
            }
        }
    }
    if let Some(status_id) = &status.in_reply_to_status_id_str {
        post.add_ref(status_id.as_str());
    }
    if let Some(uid) = &status.in_reply_to_user_id_str {
        interact(&mut post, Kind::Reply, uid.as_str(), status.in_reply_to_screen_name.as_ref(), None);
    }

    let entities =
        status.extended_tweet.as_ref().and_then(|e| e.entities.as_ref()).or(status.entities.as_ref());
    let mentions = entities.and_then(|e| e.user_mentions.as_deref()).unwrap_or_default();
    for (i, mention) in mentions.iter().enumerate() {
        // `RT @author: ` puts the retweeted author's mention at offset 3.
        let rt_prefix = match mention.indices.as_ref().and_then(|s| s.0) {
            Some(start) => start == 3,
            None => i == 0,
        };
        if retweeted.is_some() && rt_prefix {
            continue;
        }
        if let Some(uid) = &mention.id_str {
            interact(
                &mut post,
                Kind::Mention,
                uid.as_str(),
                mention.screen_name.as_ref(),
                mention.name.as_ref(),
            );
        }
    }
    for tag in entities.and_then(|e| e.hashtags.as_deref()).unwrap_or_default() {
        if let Some(text) = &tag.text {
            post.add_tag(text.as_str());
        }
    }
    Some(post)
}

/// Unix seconds of a v1.1 `created_at`, `None` when it does not parse.
fn parse_created_at(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_str(s, CREATED_AT_FORMAT).ok().map(|t| t.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn posts(doc: &str) -> Vec<Post> {
        decode(doc.as_bytes())
            .expect("decodes")
            .into_iter()
            .map(|r| match r {
                Record::Post(p) => p,
                other => panic!("expected only posts, got {other:?}"),
            })
            .collect()
    }

    fn one_post(doc: &str) -> Post {
        let mut posts = posts(doc);
        assert_eq!(posts.len(), 1, "expected exactly one post");
        posts.remove(0)
    }

    fn edges(post: &Post) -> Vec<(Kind, &str)> {
        post.interactions.iter().map(|i| (i.kind, i.to.as_str())).collect()
    }

    /// A retweet in the real shape: numeric ids beside the `_str` ones (the numeric ones float-rounded
    /// here, as in `search_2014.json`), a full embedded status and the `RT @author` mention at [3, 14].
    const RETWEET: &str = r#"{
        "created_at": "Thu Apr 06 15:28:43 +0000 2017", "id": 850007368138018800, "id_str": "850007368138018817",
        "text": "RT @TwitterDev: 1/ Today we’re sharing our vision #API @jack",
        "truncated": false,
        "entities": {"hashtags": [{"text": "API", "indices": [47, 51]}], "symbols": [], "urls": [],
            "user_mentions": [
                {"screen_name": "TwitterDev", "name": "TwitterDev", "id": 2244994945, "id_str": "2244994945", "indices": [3, 14]},
                {"screen_name": "jack", "name": "jack", "id": 12, "id_str": "12", "indices": [52, 57]}]},
        "in_reply_to_status_id": null, "in_reply_to_status_id_str": null, "in_reply_to_user_id": null,
        "in_reply_to_user_id_str": null, "in_reply_to_screen_name": null,
        "user": {"id": 6253282, "id_str": "6253282", "name": "Twitter API", "screen_name": "twitterapi", "followers_count": 6172353},
        "retweeted_status": {"created_at": "Thu Apr 06 15:24:15 +0000 2017", "id_str": "850006245121695744",
            "text": "1/ Today we’re sharing our vision #API @jack", "entities": {"user_mentions": []},
            "user": {"id": 2244994945, "id_str": "2244994945", "name": "TwitterDev", "screen_name": "TwitterDev"},
            "quoted_status": {"id_str": "1", "user": {"id_str": "77", "screen_name": "q"}}},
        "quoted_status_id_str": "1",
        "quoted_status": {"id_str": "1", "user": {"id_str": "77", "screen_name": "q"}},
        "is_quote_status": true, "retweet_count": 284, "lang": "en"
    }"#;

    #[test]
    fn a_retweet_of_a_quote_is_a_retweet_only_and_its_rt_mention_is_not_counted() {
        let post = one_post(RETWEET);
        assert_eq!(post.id, "850007368138018817", "id_str, not the rounded numeric id");
        assert_eq!(post.author.key, "x:6253282");
        assert_eq!(post.author.handle.as_deref(), Some("twitterapi"));
        assert_eq!(post.created_at, Some(1_491_492_523));
        assert_eq!(edges(&post), vec![(Kind::Repost, "x:2244994945"), (Kind::Mention, "x:12")]);
        assert_eq!(post.refs, vec!["850006245121695744".to_string()]);
        assert_eq!(post.tags, vec!["api".to_string()]);
        assert_eq!(
            post.users[0],
            UserRef::new("x:2244994945")
                .with_handle(Some("TwitterDev".into()))
                .with_name(Some("TwitterDev".into()))
        );
    }

    #[test]
    fn a_quote_goes_to_the_quoted_user() {
        let doc = r#"{"id_str": "5", "user": {"id_str": "1", "screen_name": "a"}, "text": "so true https://t.co/q",
            "quoted_status_id_str": "4", "quoted_status": {"id_str": "4", "user": {"id_str": "2", "screen_name": "b", "name": "B"}},
            "entities": {"user_mentions": []}}"#;
        let post = one_post(doc);
        assert_eq!(edges(&post), vec![(Kind::Quote, "x:2")]);
        assert_eq!(post.refs, vec!["4".to_string()]);
    }

    #[test]
    fn a_quote_of_a_deleted_status_keeps_the_reference_without_an_edge() {
        let doc = r#"{"id_str": "5", "user": {"id_str": "1"}, "quoted_status_id_str": "4", "is_quote_status": true}"#;
        let post = one_post(doc);
        assert!(post.interactions.is_empty());
        assert_eq!(post.refs, vec!["4".to_string()]);
    }

    #[test]
    fn a_reply_counts_in_reply_to_user_id_str_and_its_leading_mention() {
        let doc = r#"{"id_str": "6", "user": {"id_str": "1"}, "text": "@b yes",
            "in_reply_to_status_id": 3, "in_reply_to_status_id_str": "3", "in_reply_to_user_id": 2,
            "in_reply_to_user_id_str": "2", "in_reply_to_screen_name": "b",
            "entities": {"user_mentions": [{"screen_name": "b", "name": "Bee", "id_str": "2", "indices": [0, 2]}]}}"#;
        let post = one_post(doc);
        assert_eq!(edges(&post), vec![(Kind::Reply, "x:2"), (Kind::Mention, "x:2")]);
        assert_eq!(post.refs, vec!["3".to_string()]);
        assert_eq!(
            post.users,
            vec![UserRef::new("x:2").with_handle(Some("b".into())).with_name(Some("Bee".into()))]
        );
    }

    #[test]
    fn a_status_starting_with_a_mention_is_a_reply_even_without_a_status_id() {
        let doc = r#"{"id_str": "7", "user": {"id_str": "1"}, "in_reply_to_status_id_str": null,
            "in_reply_to_user_id_str": "2", "in_reply_to_screen_name": "b"}"#;
        assert_eq!(edges(&one_post(doc)), vec![(Kind::Reply, "x:2")]);
    }

    #[test]
    fn self_loops_and_duplicate_mentions_are_dropped() {
        let doc = r#"{"id_str": "8", "user": {"id_str": "1"}, "in_reply_to_user_id_str": "1",
            "entities": {"user_mentions": [{"id_str": "1", "indices": [0, 2]}, {"id_str": "2", "indices": [3, 5]},
                                           {"id_str": "2", "indices": [6, 8]}]}}"#;
        assert_eq!(edges(&one_post(doc)), vec![(Kind::Mention, "x:2")], "not a retweet: offset 3 counts");
    }

    #[test]
    fn long_streamed_statuses_use_extended_tweet_entities() {
        let doc = r#"{"id_str": "9", "user": {"id_str": "1"}, "truncated": true, "text": "a long… https://t.co/x",
            "entities": {"user_mentions": [], "hashtags": []},
            "extended_tweet": {"full_text": "a long text @c #Tag", "display_text_range": [0, 19],
                "entities": {"user_mentions": [{"id_str": "3", "screen_name": "c", "indices": [12, 14]}],
                             "hashtags": [{"text": "Tag", "indices": [15, 19]}]}}}"#;
        let post = one_post(doc);
        assert_eq!(edges(&post), vec![(Kind::Mention, "x:3")]);
        assert_eq!(post.tags, vec!["tag".to_string()]);
    }

    #[test]
    fn a_search_response_and_an_array_give_one_post_per_status() {
        let search = format!(
            r#"{{"statuses": [{RETWEET}, {{"id_str": "2", "user": {{"id_str": "3"}}}}], "search_metadata": {{"count": 2}}}}"#
        );
        assert_eq!(posts(&search).len(), 2);
        let array = format!("[{RETWEET}, {RETWEET}]");
        assert_eq!(posts(&array).len(), 2);
        assert!(decode(b"[]").expect("empty array").is_empty());
    }

    #[test]
    fn statuses_without_id_str_are_skipped_in_a_list_and_rejected_alone() {
        let list = r#"[{"id": 1, "user": {"id_str": "1"}}, {"id_str": "2", "user": {"id_str": "1"}}]"#;
        assert_eq!(posts(list).len(), 1);
        assert!(matches!(decode(br#"{"id": 1, "user": {"id": 1}}"#), Err(DecodeError::Shape(_))));
        assert!(matches!(decode(br#"[{"id": 1, "user": {"id": 1}}]"#), Err(DecodeError::Shape(_))));
    }

    #[test]
    fn stream_notices_and_empty_input_carry_nothing() {
        for doc in [
            r#"{"limit": {"track": 5, "timestamp_ms": "1"}}"#,
            r#"{"delete": {"status": {"id_str": "1"}}}"#,
            "{}",
        ] {
            assert!(matches!(decode(doc.as_bytes()).expect(doc).as_slice(), [Record::Ignored]), "{doc}");
        }
        assert!(decode(b" \r\n").expect("blank").is_empty());
    }

    #[test]
    fn truncated_json_is_an_error() {
        assert!(matches!(decode(&RETWEET.as_bytes()[..200]), Err(DecodeError::Json(_))));
        assert!(matches!(decode(b"\"a string\""), Err(DecodeError::Shape(_))));
    }

    #[test]
    fn escaped_screen_names_are_decoded() {
        let doc = r#"{"id_str": "1", "user": {"id_str": "1", "screen_name": "\u0061li", "name": "\u524d\u7530 \"A\""}}"#;
        let post = one_post(doc);
        assert_eq!(post.author.handle.as_deref(), Some("ali"));
        assert_eq!(post.author.name.as_deref(), Some("前田 \"A\""));
    }

    #[test]
    fn an_rt_mention_without_indices_is_the_first_mention() {
        let doc = r#"{"id_str": "1", "user": {"id_str": "1"},
            "retweeted_status": {"id_str": "2", "user": {"id_str": "2"}},
            "entities": {"user_mentions": [{"id_str": "2"}, {"id_str": "3"}]}}"#;
        assert_eq!(edges(&one_post(doc)), vec![(Kind::Repost, "x:2"), (Kind::Mention, "x:3")]);
    }
}
