//! X API v2 decoder: one line of filtered-stream output or one search/lookup page (as twarc writes it)
//! in, one [`Record::Post`] per tweet of `data` out.
//!
//! Owns the v2 interaction rules of `shared/PROTOCOLS.md` and the borrowed-string helpers the v1.1
//! decoder shares. Pure: no I/O, no state, no logging; depends on the domain model only.
//!
//! # Rules (and where they differ from a raw count of the payload)
//!
//! - **repost**: a `retweeted` reference, to the author of that tweet in `includes.tweets`. A retweeted
//!   tweet missing from `includes` (suspended author, deleted tweet: a partial `errors[]`) leaves the edge
//!   unresolvable, and it is skipped.
//! - **reply**: to `in_reply_to_user_id`, when the tweet has a `replied_to` reference. A tweet that merely
//!   starts with `@user` also carries `in_reply_to_user_id` but replies to no tweet: it is a mention only.
//!   (This reading is the one that agrees with the counted `reply=31` of `noflat.jsonl`.)
//! - **quote**: a `quoted` reference, to the author of that tweet in `includes.tweets`.
//! - **mention**: `entities.mentions[].id`, or, for data from before mid-2021 that has no `id`, the
//!   `username` resolved case-insensitively against `includes.users`; otherwise skipped. A reply's leading
//!   `@user` counts as a mention too. In a retweet, the automatic `RT @author: ` prefix is not a mention:
//!   the mention entity at offset 3 (the first one when the payload has no offsets) is skipped, whether or
//!   not the retweet resolves. Mentions copied from the retweeted text count.
//! - Self-loops and repeats within one tweet are dropped by [`Post::interact`].
//!
//! # Performance
//!
//! This is the hot path of file imports and of the demo benchmark. Typed structs borrow every string
//! that has no escapes (`Text`), unknown fields are skipped without being built, and `includes` is
//! indexed once per line. Measured throughput, and the command that measures it, are in the doc of
//! [`decode`].

use std::cell::OnceCell;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::text::{json_struct, Text};
use super::{DecodeError, Decoded};
use crate::graph::{Kind, Platform, Post, Record, UserRef};

/// Decodes one line of X API v2 output.
///
/// Accepts a filtered-stream line `{data:{..}, includes, matching_rules, errors?}` or a search/lookup
/// page `{data:[..], includes, meta, errors?}`, and returns one [`Record::Post`] per tweet of `data`,
/// a [`Record::Disconnect`] for an `operational-disconnect` line, and [`Record::Ignored`] for any other
/// well-formed object that carries no tweet (an errors-only line, `{}`, an unknown message type).
/// An empty or whitespace-only line (the stream's `\r\n` keep-alive) gives no record at all.
///
/// A tweet without `id` or `author_id` cannot be attributed and is skipped; if that leaves nothing of a
/// non-empty `data`, the line is an error.
///
/// Throughput (release, one core of a 2-vCPU Xeon VM): about 150k tweets/s (600 MB/s) on the 100-tweet
/// `noflat.jsonl`/`brexit.jsonl` pages and 230k lines/s on recorded stream lines, where serde_json's
/// skip-only parse of the same page runs at 1.2 GB/s. Measure with
/// `cargo test --release --test decode_x -- --ignored --nocapture x_v2_decode_throughput`.
///
/// # Errors
///
/// [`DecodeError::Json`] for malformed or truncated JSON, [`DecodeError::Shape`] for JSON that is not
/// an object or whose tweets all lack `id`/`author_id`.
pub fn decode(line: &[u8]) -> Decoded {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Ok(Vec::new());
    }
    if line[0] != b'{' {
        return Err(DecodeError::Shape("x v2: a line must be a JSON object".into()));
    }
    let parsed: Line<'_> = serde_json::from_slice(line)?;
    let tweets = parsed.data.map(|d| d.0).unwrap_or_default();
    let includes = parsed.includes.unwrap_or_default();
    let index = Index::new(&includes);

    let mut records = Vec::with_capacity(tweets.len().max(1));
    for tweet in &tweets {
        if let Some(post) = to_post(tweet, &index) {
            records.push(Record::Post(post));
        }
    }
    if records.is_empty() && !tweets.is_empty() {
        return Err(DecodeError::Shape("x v2: no tweet with both id and author_id".into()));
    }
    if let Some(reason) = parsed.errors.unwrap_or_default().iter().find_map(Problem::disconnect) {
        records.push(Record::Disconnect { reason });
    }
    if records.is_empty() {
        records.push(Record::Ignored);
    }
    Ok(records)
}

/// `data` is one tweet on a stream line and an array of tweets on a page.
struct OneOrMany<T>(Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrManyVisitor<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a tweet object or an array of tweets")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|t| OneOrMany(vec![t]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(OneOrMany(items))
            }
        }
        deserializer.deserialize_any(OneOrManyVisitor(PhantomData))
    }
}

json_struct! {
    /// The parts of a line the graph needs. Everything else (`meta`, `matching_rules`, `__twarc`, media,
    /// places, metrics) is skipped by the parser without being built, so its shape cannot fail a line:
    /// that is how `matching_rules[].id` arriving as a number is tolerated.
    struct Line<'a> {
        data: OneOrMany<Tweet<'a>> = b"data",
        includes: Includes<'a> = b"includes",
        errors: Vec<Problem<'a>> = b"errors",
    }
}

json_struct! {
    struct Tweet<'a> {
        id: Text<'a> = b"id",
        author_id: Text<'a> = b"author_id",
        created_at: Text<'a> = b"created_at",
        in_reply_to_user_id: Text<'a> = b"in_reply_to_user_id",
        referenced_tweets: Vec<Reference<'a>> = b"referenced_tweets",
        entities: Entities<'a> = b"entities",
    }
}

json_struct! {
    struct Reference<'a> {
        kind: Text<'a> = b"type",
        id: Text<'a> = b"id",
    }
}

json_struct! {
    struct Entities<'a> {
        mentions: Vec<Mention<'a>> = b"mentions",
        hashtags: Vec<Hashtag<'a>> = b"hashtags",
    }
}

json_struct! {
    struct Mention<'a> {
        start: u64 = b"start",
        username: Text<'a> = b"username",
        id: Text<'a> = b"id",
    }
}

json_struct! {
    struct Hashtag<'a> {
        tag: Text<'a> = b"tag",
    }
}

json_struct! {
    struct Includes<'a> {
        users: Vec<User<'a>> = b"users",
        tweets: Vec<IncludedTweet<'a>> = b"tweets",
    }
}

json_struct! {
    struct User<'a> {
        id: Text<'a> = b"id",
        username: Text<'a> = b"username",
        name: Text<'a> = b"name",
    }
}

json_struct! {
    /// A referenced tweet in `includes.tweets`: only who wrote it matters here.
    struct IncludedTweet<'a> {
        id: Text<'a> = b"id",
        author_id: Text<'a> = b"author_id",
    }
}

json_struct! {
    /// An entry of `errors[]`: a partial error on a page, or the stream's in-band disconnect.
    struct Problem<'a> {
        title: Text<'a> = b"title",
        kind: Text<'a> = b"type",
        disconnect_type: Text<'a> = b"disconnect_type",
        detail: Text<'a> = b"detail",
    }
}

impl Problem<'_> {
    /// The reason, when this entry is the stream's `operational-disconnect`.
    fn disconnect(&self) -> Option<String> {
        let is_disconnect = self.title.as_ref().is_some_and(|t| t.as_str() == "operational-disconnect")
            || self.kind.as_ref().is_some_and(|t| t.as_str().ends_with("/operational-disconnect"));
        if !is_disconnect {
            return None;
        }
        let reason = [&self.disconnect_type, &self.detail]
            .into_iter()
            .flatten()
            .map(Text::as_str)
            .collect::<Vec<_>>()
            .join(": ");
        Some(if reason.is_empty() { "operational-disconnect".to_string() } else { reason })
    }
}

/// Above this many entries `includes` is indexed by hash; below it a linear scan is cheaper than
/// building the map (a stream line carries a handful of users, a page a few hundred).
const LINEAR_SCAN_MAX: usize = 16;

/// Lookups into `includes`, built once per line.
struct Index<'i, 'a> {
    users: &'i [User<'a>],
    tweets: &'i [IncludedTweet<'a>],
    users_by_id: Option<HashMap<&'i str, &'i User<'a>>>,
    tweets_by_id: Option<HashMap<&'i str, &'i str>>,
    /// Lowercased username -> user, built only when a mention lacks its id (pre-2021 data).
    users_by_name: OnceCell<HashMap<String, &'i User<'a>>>,
}

impl<'i, 'a> Index<'i, 'a> {
    fn new(includes: &'i Includes<'a>) -> Self {
        let users = includes.users.as_deref().unwrap_or_default();
        let tweets = includes.tweets.as_deref().unwrap_or_default();
        let users_by_id = (users.len() > LINEAR_SCAN_MAX)
            .then(|| users.iter().filter_map(|u| Some((u.id.as_ref()?.as_str(), u))).collect());
        let tweets_by_id = (tweets.len() > LINEAR_SCAN_MAX).then(|| {
            tweets
                .iter()
                .filter_map(|t| Some((t.id.as_ref()?.as_str(), t.author_id.as_ref()?.as_str())))
                .collect()
        });
        Index { users, tweets, users_by_id, tweets_by_id, users_by_name: OnceCell::new() }
    }

    fn user(&self, id: &str) -> Option<&'i User<'a>> {
        match &self.users_by_id {
            Some(map) => map.get(id).copied(),
            None => self.users.iter().find(|u| u.id.as_ref().is_some_and(|i| i.as_str() == id)),
        }
    }

    fn user_by_username(&self, username: &str) -> Option<&'i User<'a>> {
        self.users_by_name
            .get_or_init(|| {
                self.users
                    .iter()
                    .filter_map(|u| Some((u.username.as_ref()?.as_str().to_lowercase(), u)))
                    .collect()
            })
            .get(&username.to_lowercase())
            .copied()
    }

    /// The author id of a tweet in `includes.tweets`.
    fn tweet_author(&self, id: &str) -> Option<&'i str> {
        match &self.tweets_by_id {
            Some(map) => map.get(id).copied(),
            None => self
                .tweets
                .iter()
                .find(|t| t.id.as_ref().is_some_and(|i| i.as_str() == id))
                .and_then(|t| Some(t.author_id.as_ref()?.as_str())),
        }
    }
}

fn user_ref(key: String, user: Option<&User<'_>>) -> UserRef {
    let user_ref = UserRef::new(key);
    match user {
        Some(u) => user_ref
            .with_handle(u.username.as_ref().map(|s| s.as_str().to_owned()))
            .with_name(u.name.as_ref().map(|s| s.as_str().to_owned())),
        None => user_ref,
    }
}

/// An interaction with `target_id`, with the target's profile when the payload has one
/// (`fallback_handle`: the username of a mention entity whose user is not in `includes`).
fn interact(
    post: &mut Post,
    index: &Index<'_, '_>,
    kind: Kind,
    target_id: &str,
    fallback_handle: Option<&str>,
) {
    let key = Platform::X.user_key(target_id);
    let user = match index.user(target_id) {
        Some(user) => user_ref(key, Some(user)),
        None => UserRef::new(key).with_handle(fallback_handle.map(str::to_owned)),
    };
    post.interact_with(kind, user);
}

fn to_post(tweet: &Tweet<'_>, index: &Index<'_, '_>) -> Option<Post> {
    let id = tweet.id.as_ref()?.as_str();
    let author_id = tweet.author_id.as_ref()?.as_str();
    let author = user_ref(Platform::X.user_key(author_id), index.user(author_id));
    let mut post = Post::new(Platform::X, id, author);
    post.created_at = tweet.created_at.as_ref().and_then(|s| parse_rfc3339(s.as_str()));

    let mut is_retweet = false;
    let mut replied_to = None;
    for reference in tweet.referenced_tweets.as_deref().unwrap_or_default() {
        let (Some(kind), Some(ref_id)) = (&reference.kind, &reference.id) else { continue };
        let ref_id = ref_id.as_str();
        post.add_ref(ref_id);
        match kind.as_str() {
            "retweeted" => {
                is_retweet = true;
                if let Some(author) = index.tweet_author(ref_id) {
                    interact(&mut post, index, Kind::Repost, author, None);
                }
            }
            "quoted" => {
                if let Some(author) = index.tweet_author(ref_id) {
                    interact(&mut post, index, Kind::Quote, author, None);
                }
            }
            "replied_to" => replied_to = Some(ref_id),
            _ => {}
        }
    }
    if let Some(replied_to) = replied_to {
        // `in_reply_to_user_id` is requested by the stream's expansions; the replied-to tweet's author
        // is the same user when only the reference was expanded.
        let target =
            tweet.in_reply_to_user_id.as_ref().map(Text::as_str).or_else(|| index.tweet_author(replied_to));
        if let Some(target) = target {
            interact(&mut post, index, Kind::Reply, target, None);
        }
    }

    let entities = tweet.entities.as_ref();
    let mentions = entities.and_then(|e| e.mentions.as_deref()).unwrap_or_default();
    for (i, mention) in mentions.iter().enumerate() {
        // `RT @author: ` puts the retweeted author's mention at offset 3.
        let rt_prefix = match mention.start {
            Some(start) => start == 3,
            None => i == 0,
        };
        if is_retweet && rt_prefix {
            continue;
        }
        let username = mention.username.as_ref().map(Text::as_str);
        match (&mention.id, username) {
            (Some(id), _) => interact(&mut post, index, Kind::Mention, id.as_str(), username),
            (None, Some(name)) => {
                if let Some(id) = index.user_by_username(name).and_then(|u| u.id.as_ref()) {
                    interact(&mut post, index, Kind::Mention, id.as_str(), None);
                }
            }
            (None, None) => {}
        }
    }

    for tag in entities.and_then(|e| e.hashtags.as_deref()).unwrap_or_default() {
        if let Some(tag) = tag.tag.as_ref() {
            post.add_tag(tag.as_str());
        }
    }
    Some(post)
}

/// Unix seconds of an RFC 3339 time (`2021-04-01T15:52:31.000Z`), `None` when it does not parse.
fn parse_rfc3339(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Interaction;

    fn posts(line: &str) -> Vec<Post> {
        decode(line.as_bytes())
            .expect("decodes")
            .into_iter()
            .map(|r| match r {
                Record::Post(p) => p,
                other => panic!("expected only posts, got {other:?}"),
            })
            .collect()
    }

    fn one_post(line: &str) -> Post {
        let mut posts = posts(line);
        assert_eq!(posts.len(), 1, "expected exactly one post");
        posts.remove(0)
    }

    fn edges(post: &Post) -> Vec<(Kind, &str)> {
        post.interactions.iter().map(|i| (i.kind, i.to.as_str())).collect()
    }

    /// A stream line in the real shape: `data` object, `includes`, `matching_rules` with a numeric id.
    fn stream_line(data: &str, includes: &str) -> String {
        format!(
            r#"{{"data": {data}, "includes": {includes}, "matching_rules": [{{"id": 1377649934414049282, "tag": null}}], "__twarc": {{"url": "https://api.twitter.com/2/tweets/search/stream", "version": "2.3.10"}}}}"#
        )
    }

    const USERS: &str = r#"{"users": [
        {"id": "1", "username": "alice", "name": "Alice A", "verified": false, "public_metrics": {"followers_count": 3}},
        {"id": "2", "username": "Bob_B", "name": "Bob"},
        {"id": "3", "username": "carol", "name": "Carol"}
    ], "tweets": [
        {"id": "200", "author_id": "2", "text": "original by bob", "entities": {"mentions": [{"start": 0, "end": 6, "username": "carol", "id": "3"}]}},
        {"id": "300", "author_id": "3", "text": "carol's tweet"}
    ]}"#;

    #[test]
    fn a_retweet_is_a_repost_of_the_included_author_and_its_rt_mention_is_not_counted() {
        let data = r#"{"id": "100", "author_id": "1", "created_at": "2021-04-01T15:52:31.000Z",
            "text": "RT @Bob_B: original by bob @carol",
            "referenced_tweets": [{"type": "retweeted", "id": "200"}],
            "entities": {"mentions": [{"start": 3, "end": 9, "username": "Bob_B", "id": "2"},
                                      {"start": 28, "end": 34, "username": "carol", "id": "3"}]}}"#;
        let post = one_post(&stream_line(data, USERS));
        assert_eq!(post.platform, Platform::X);
        assert_eq!(post.id, "100");
        assert_eq!(
            post.author,
            UserRef::new("x:1").with_handle(Some("alice".into())).with_name(Some("Alice A".into()))
        );
        assert_eq!(post.created_at, Some(1_617_292_351));
        assert_eq!(
            edges(&post),
            vec![(Kind::Repost, "x:2"), (Kind::Mention, "x:3")],
            "RT @Bob_B is not a mention"
        );
        assert_eq!(
            post.interactions[0],
            Interaction { kind: Kind::Repost, from: "x:1".into(), to: "x:2".into() }
        );
        assert_eq!(post.refs, vec!["200".to_string()]);
        let handles: Vec<_> = post.users.iter().map(|u| (u.key.as_str(), u.handle.as_deref())).collect();
        assert_eq!(handles, vec![("x:2", Some("Bob_B")), ("x:3", Some("carol"))]);
    }

    #[test]
    fn a_reply_goes_to_in_reply_to_user_id_and_its_leading_mention_also_counts() {
        let data = r#"{"id": "101", "author_id": "1", "in_reply_to_user_id": "3", "text": "@carol yes",
            "referenced_tweets": [{"type": "replied_to", "id": "300"}],
            "entities": {"mentions": [{"start": 0, "end": 6, "username": "carol", "id": "3"}]}}"#;
        let post = one_post(&stream_line(data, USERS));
        assert_eq!(edges(&post), vec![(Kind::Reply, "x:3"), (Kind::Mention, "x:3")]);
        assert_eq!(post.refs, vec!["300".to_string()]);
    }

    #[test]
    fn in_reply_to_user_id_without_a_replied_to_reference_is_only_a_mention() {
        let data = r#"{"id": "102", "author_id": "1", "in_reply_to_user_id": "3", "text": "@carol is right",
            "entities": {"mentions": [{"start": 0, "end": 6, "username": "carol", "id": "3"}]}}"#;
        let post = one_post(&stream_line(data, USERS));
        assert_eq!(edges(&post), vec![(Kind::Mention, "x:3")]);
    }

    #[test]
    fn a_quote_goes_to_the_author_of_the_quoted_tweet() {
        let data = r#"{"id": "103", "author_id": "1", "text": "look https://t.co/x",
            "referenced_tweets": [{"type": "quoted", "id": "300"}]}"#;
        let post = one_post(&stream_line(data, USERS));
        assert_eq!(edges(&post), vec![(Kind::Quote, "x:3")]);
        assert_eq!(post.users[0].name.as_deref(), Some("Carol"));
    }

    #[test]
    fn a_self_reply_and_a_self_mention_are_skipped() {
        let data = r#"{"id": "104", "author_id": "1", "in_reply_to_user_id": "1", "text": "@alice 2/2",
            "referenced_tweets": [{"type": "replied_to", "id": "99"}],
            "entities": {"mentions": [{"start": 0, "end": 6, "username": "alice", "id": "1"}]}}"#;
        let post = one_post(&stream_line(data, USERS));
        assert!(post.interactions.is_empty(), "self-loops: {:?}", post.interactions);
        assert!(post.users.is_empty());
    }

    #[test]
    fn a_user_mentioned_twice_is_one_mention() {
        let data = r#"{"id": "105", "author_id": "1", "text": "@carol hi @CAROL",
            "entities": {"mentions": [{"start": 0, "end": 6, "username": "carol", "id": "3"},
                                      {"start": 10, "end": 16, "username": "CAROL", "id": "3"}]}}"#;
        assert_eq!(edges(&one_post(&stream_line(data, USERS))), vec![(Kind::Mention, "x:3")]);
    }

    #[test]
    fn a_mention_without_id_is_resolved_by_username_case_insensitively() {
        let data = r#"{"id": "106", "author_id": "1", "text": "hey @BOB_b and @ghost",
            "entities": {"mentions": [{"start": 4, "end": 10, "username": "BOB_b"},
                                      {"start": 15, "end": 21, "username": "ghost"}]}}"#;
        let post = one_post(&stream_line(data, USERS));
        assert_eq!(edges(&post), vec![(Kind::Mention, "x:2")], "@ghost is not in includes: skipped");
        assert_eq!(post.users[0].handle.as_deref(), Some("Bob_B"), "the profile comes from includes");
    }

    #[test]
    fn a_mention_with_id_but_no_included_user_keeps_its_username_as_handle() {
        let data = r#"{"id": "107", "author_id": "1", "text": "hey @suspended",
            "entities": {"mentions": [{"start": 4, "end": 14, "username": "suspended", "id": "9"}]}}"#;
        let post = one_post(&stream_line(data, USERS));
        assert_eq!(edges(&post), vec![(Kind::Mention, "x:9")]);
        assert_eq!(post.users, vec![UserRef::new("x:9").with_handle(Some("suspended".into()))]);
    }

    #[test]
    fn a_retweet_missing_from_includes_is_skipped_with_its_rt_mention() {
        let data = r#"{"id": "108", "author_id": "1", "text": "RT @gone: something @carol",
            "referenced_tweets": [{"type": "retweeted", "id": "404"}],
            "entities": {"mentions": [{"start": 3, "end": 8, "username": "gone", "id": "7"},
                                      {"start": 21, "end": 27, "username": "carol", "id": "3"}]}}"#;
        let line = format!(
            r#"{{"data": [{data}], "includes": {USERS}, "errors": [{{"resource_id": "404", "title": "Not Found Error", "resource_type": "tweet", "type": "https://api.twitter.com/2/problems/resource-not-found"}}], "meta": {{"result_count": 1}}}}"#
        );
        let post = one_post(&line);
        assert_eq!(edges(&post), vec![(Kind::Mention, "x:3")]);
        assert_eq!(post.refs, vec!["404".to_string()], "the reference is kept even when unresolved");
    }

    #[test]
    fn an_rt_mention_without_offsets_is_the_first_mention() {
        let data = r#"{"id": "109", "author_id": "1", "referenced_tweets": [{"type": "retweeted", "id": "200"}],
            "entities": {"mentions": [{"username": "Bob_B", "id": "2"}, {"username": "carol", "id": "3"}]}}"#;
        assert_eq!(
            edges(&one_post(&stream_line(data, USERS))),
            vec![(Kind::Repost, "x:2"), (Kind::Mention, "x:3")]
        );
    }

    #[test]
    fn a_page_gives_one_post_per_tweet_and_tags_are_lowercased_without_hash() {
        let line = format!(
            r##"{{"data": [
                {{"id": "110", "author_id": "1", "text": "#RustLang is fun", "entities": {{"hashtags": [{{"start": 0, "end": 9, "tag": "RustLang"}}, {{"start": 20, "end": 25, "tag": "rustlang"}}]}}}},
                {{"id": "111", "author_id": "2", "text": "plain"}}
            ], "includes": {USERS}, "meta": {{"newest_id": "111", "result_count": 2, "next_token": "abc"}}}}"##
        );
        let posts = posts(&line);
        assert_eq!(posts.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), vec!["110", "111"]);
        assert_eq!(posts[0].tags, vec!["rustlang".to_string()]);
        assert_eq!(posts[1].author.handle.as_deref(), Some("Bob_B"));
    }

    #[test]
    fn matching_rules_ids_as_numbers_or_strings_are_both_accepted() {
        for rules in [
            r#"[{"id": 1377649934414049282, "tag": null}]"#,
            r#"[{"id": "1377649934414049282", "tag": "t"}]"#,
        ] {
            let line = format!(r#"{{"data": {{"id": "1", "author_id": "2"}}, "matching_rules": {rules}}}"#);
            assert_eq!(posts(&line).len(), 1, "rules {rules}");
        }
    }

    #[test]
    fn a_keep_alive_gives_no_record() {
        for line in ["", "\r\n", "  \n", "\n"] {
            assert!(decode(line.as_bytes()).expect("keep-alive").is_empty(), "line {line:?}");
        }
    }

    #[test]
    fn an_operational_disconnect_line_is_a_disconnect() {
        let line = r#"{"errors": [{"title": "operational-disconnect", "disconnect_type": "OperationalDisconnect", "detail": "This stream has been disconnected for operational reasons.", "type": "https://api.twitter.com/2/problems/operational-disconnect"}], "__twarc": {"version": "2.3.10"}}"#;
        match decode(line.as_bytes()).expect("decodes").as_slice() {
            [Record::Disconnect { reason }] => {
                assert!(reason.starts_with("OperationalDisconnect"), "{reason}")
            }
            other => panic!("expected one disconnect, got {other:?}"),
        }
    }

    #[test]
    fn an_errors_only_line_an_empty_object_and_an_unknown_message_are_ignored() {
        for line in [
            r#"{"errors": [{"title": "Forbidden", "detail": "User has been suspended", "type": "https://api.twitter.com/2/problems/resource-not-found"}]}"#,
            "{}",
            r#"{"meta": {"result_count": 0}}"#,
            r#"{"data": [], "meta": {"result_count": 0}}"#,
            r#"{"some_new_message": {"x": [1, 2.5, null]}, "data": null}"#,
        ] {
            assert!(
                matches!(decode(line.as_bytes()).expect(line).as_slice(), [Record::Ignored]),
                "line {line}"
            );
        }
    }

    #[test]
    fn truncated_or_non_object_json_is_an_error() {
        let truncated = r#"{"data": {"author_id": "1021159080151404544""#;
        assert!(matches!(decode(truncated.as_bytes()), Err(DecodeError::Json(_))));
        assert!(matches!(decode(b"[1, 2]"), Err(DecodeError::Shape(_))));
        assert!(matches!(decode(b"not json"), Err(DecodeError::Shape(_))));
        assert!(matches!(
            decode(br#"{"data": {"id": 1.5e18, "author_id": "1"}}"#),
            Err(DecodeError::Json(_))
        ));
    }

    #[test]
    fn tweets_without_author_are_skipped_and_a_line_of_only_those_is_an_error() {
        let mixed = r#"{"data": [{"id": "1", "text": "no author"}, {"id": "2", "author_id": "5"}]}"#;
        assert_eq!(posts(mixed).len(), 1);
        assert!(matches!(decode(br#"{"data": {"id": "1", "text": "x"}}"#), Err(DecodeError::Shape(_))));
    }

    #[test]
    fn unknown_fields_everywhere_are_tolerated() {
        let line = r#"{"data": {"id": "1", "author_id": "2", "edit_history_tweet_ids": ["1"], "new_field": {"deep": [{"a": 1}]},
            "referenced_tweets": [{"type": "quoted", "id": "9", "extra": true}, {"type": "future_kind", "id": "8"}],
            "entities": {"mentions": [{"start": 0, "end": 2, "username": "c", "id": "3", "x": 1}], "cashtags": [{"tag": "X"}]}},
            "includes": {"users": [{"id": "3", "username": "c", "name": "C", "new": [1]}], "tweets": [{"id": "9", "author_id": "3", "x": {}}], "media": [], "places": [{}]},
            "matching_rules": [{"id": 5, "tag": "t"}], "unknown_top": 1}"#;
        let post = one_post(line);
        assert_eq!(edges(&post), vec![(Kind::Quote, "x:3"), (Kind::Mention, "x:3")]);
        assert_eq!(post.refs, vec!["9".to_string(), "8".to_string()]);
    }

    #[test]
    fn escaped_strings_in_usernames_and_names_are_decoded() {
        let line = r#"{"data": {"id": "1", "author_id": "2", "created_at": "2021-09-22T16:59:09Z",
            "entities": {"mentions": [{"start": 0, "end": 4, "username": "\u0063arol"}]}},
            "includes": {"users": [{"id": "2", "username": "b\u006fb", "name": "Bob \"the\" \ud83e\udd80"},
                                   {"id": "3", "username": "Carol", "name": "Caro\\l"}]}}"#;
        let post = one_post(line);
        assert_eq!(post.author.handle.as_deref(), Some("bob"));
        assert_eq!(post.author.name.as_deref(), Some("Bob \"the\" 🦀"));
        assert_eq!(edges(&post), vec![(Kind::Mention, "x:3")]);
        assert_eq!(post.users[0].name.as_deref(), Some("Caro\\l"));
        assert_eq!(post.created_at, Some(1_632_329_949));
    }

    #[test]
    fn ids_sent_as_integers_become_strings() {
        let post = one_post(r#"{"data": {"id": 1377650090978992134, "author_id": 4602771083}}"#);
        assert_eq!((post.id.as_str(), post.author.key.as_str()), ("1377650090978992134", "x:4602771083"));
    }
}
