//! Bluesky Jetstream: one JSON event (`{did, time_us, kind, commit | identity | account}`) in,
//! [`Record`]s out, with the `time_us` every event carries so the source can move its cursor.
//!
//! Pure: no I/O, no state. Follows `shared/PROTOCOLS.md` (Bluesky Jetstream):
//!
//! - `commit` `create` of `app.bsky.feed.post`: a post `at://<did>/app.bsky.feed.post/<rkey>` by
//!   `bsky:<did>` (no handle: Jetstream never carries one) with a reply to the DID of
//!   `record.reply.parent.uri`, a quote of the DID of `record.embed.record.uri` (or
//!   `record.embed.record.record.uri` for record-with-media) when that URI is a post, and a mention per
//!   `app.bsky.richtext.facet#mention`. Tags are the `#tag` facets and `record.tags[]`, lowercased;
//!   refs are the reply parent, the reply root and the quoted post;
//! - `commit` `create` of `app.bsky.feed.repost`: a post (the repost record's at-URI) reposting the DID
//!   of `subject.uri` (`via`, the repost it was seen through, is not an interaction);
//! - `commit` `delete` of a post or a repost: [`Record::Delete`] of its at-URI;
//! - `identity` with a handle: [`Record::Profile`];
//! - everything else (likes, follows, blocks, profile updates, `account` events, other collections):
//!   [`Record::Ignored`].
//!
//! Likes are most of the firehose, so the envelope is parsed first with the record skipped, and only
//! posts and reposts parse the record, into borrowed typed structs.

use super::text::{null_as_empty, unix_seconds, Text};
use super::DecodeError;
use crate::graph::{Kind, Platform, Post, Record, UserRef};
use serde::Deserialize;

const POST: &str = "app.bsky.feed.post";
const REPOST: &str = "app.bsky.feed.repost";
const MENTION: &str = "app.bsky.richtext.facet#mention";
const TAG: &str = "app.bsky.richtext.facet#tag";

/// One decoded Jetstream event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetstreamEvent {
    /// The event's cursor position (microseconds), present on every event, ignored ones included.
    pub time_us: i64,
    /// The repository (account) the event is about.
    pub did: String,
    /// What the event means for the graph; `[Record::Ignored]` when nothing.
    pub records: Vec<Record>,
}

#[derive(Debug, Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    did: Text<'a>,
    time_us: i64,
    #[serde(borrow, default)]
    kind: Option<Text<'a>>,
    /// `commit.record` is skipped here: it is parsed again, typed, only for posts and reposts.
    #[serde(borrow, default)]
    commit: Option<CommitHead<'a>>,
    #[serde(borrow, default)]
    identity: Option<Identity<'a>>,
}

#[derive(Debug, Deserialize)]
struct CommitHead<'a> {
    #[serde(borrow)]
    operation: Text<'a>,
    #[serde(borrow)]
    collection: Text<'a>,
    #[serde(borrow)]
    rkey: Text<'a>,
}

#[derive(Debug, Deserialize)]
struct Identity<'a> {
    #[serde(borrow, default)]
    handle: Option<Text<'a>>,
}

/// The second pass: `{commit: {record: R}}`, everything else skipped.
#[derive(Debug, Deserialize)]
struct WithRecord<R> {
    commit: CommitRecord<R>,
}

#[derive(Debug, Deserialize)]
struct CommitRecord<R> {
    record: R,
}

#[derive(Debug, Deserialize)]
struct PostRecord<'a> {
    #[serde(rename = "createdAt", borrow, default)]
    created_at: Option<Text<'a>>,
    #[serde(borrow, default)]
    reply: Option<ReplyRef<'a>>,
    #[serde(borrow, default)]
    embed: Option<Embed<'a>>,
    #[serde(borrow, default, deserialize_with = "null_as_empty")]
    facets: Vec<Facet<'a>>,
    #[serde(borrow, default, deserialize_with = "null_as_empty")]
    tags: Vec<Text<'a>>,
}

#[derive(Debug, Deserialize)]
struct ReplyRef<'a> {
    #[serde(borrow, default)]
    parent: Option<StrongRef<'a>>,
    #[serde(borrow, default)]
    root: Option<StrongRef<'a>>,
}

/// `com.atproto.repo.strongRef` (`{uri, cid}`); only the uri matters here.
#[derive(Debug, Deserialize)]
struct StrongRef<'a> {
    #[serde(borrow, default)]
    uri: Option<Text<'a>>,
}

/// `embed.record` is a strongRef for `app.bsky.embed.record`, and `{record: strongRef}` for
/// `app.bsky.embed.recordWithMedia`; other embeds (images, external, video) have no `record`.
#[derive(Debug, Deserialize)]
struct Embed<'a> {
    #[serde(borrow, default)]
    record: Option<EmbedRecord<'a>>,
}

#[derive(Debug, Deserialize)]
struct EmbedRecord<'a> {
    #[serde(borrow, default)]
    uri: Option<Text<'a>>,
    #[serde(borrow, default)]
    record: Option<StrongRef<'a>>,
}

#[derive(Debug, Deserialize)]
struct Facet<'a> {
    #[serde(borrow, default, deserialize_with = "null_as_empty")]
    features: Vec<Feature<'a>>,
}

#[derive(Debug, Deserialize)]
struct Feature<'a> {
    #[serde(rename = "$type", borrow, default)]
    kind: Option<Text<'a>>,
    #[serde(borrow, default)]
    did: Option<Text<'a>>,
    #[serde(borrow, default)]
    tag: Option<Text<'a>>,
}

#[derive(Debug, Deserialize)]
struct RepostRecord<'a> {
    #[serde(rename = "createdAt", borrow, default)]
    created_at: Option<Text<'a>>,
    #[serde(borrow, default)]
    subject: Option<StrongRef<'a>>,
}

/// Decodes one Jetstream event (the text of one WebSocket frame).
///
/// # Errors
///
/// [`DecodeError::Json`] when the event is not JSON, lacks `did` or `time_us`, or a post or repost
/// record has fields of the wrong type; [`DecodeError::Shape`] for a repost without a subject URI.
pub fn decode(event: &[u8]) -> Result<JetstreamEvent, DecodeError> {
    let envelope: Envelope = serde_json::from_slice(event)?;
    let did = envelope.did.as_str();
    let records = match (envelope.kind.as_ref().map(Text::as_str), &envelope.commit, &envelope.identity) {
        (Some("commit"), Some(commit), _) => decode_commit(event, did, envelope.time_us, commit)?,
        (Some("identity"), _, Some(identity)) => match identity.handle.as_ref().map(Text::as_str) {
            Some(handle) if !handle.is_empty() => {
                let user = UserRef::new(Platform::Bsky.user_key(did)).with_handle(Some(handle.to_owned()));
                Record::Profile(user)
            }
            _ => Record::Ignored,
        },
        _ => Record::Ignored,
    };
    Ok(JetstreamEvent { time_us: envelope.time_us, did: did.to_owned(), records: vec![records] })
}

fn decode_commit(event: &[u8], did: &str, time_us: i64, commit: &CommitHead) -> Result<Record, DecodeError> {
    let collection = commit.collection.as_str();
    if collection != POST && collection != REPOST {
        return Ok(Record::Ignored);
    }
    let uri = format!("at://{did}/{collection}/{}", commit.rkey.as_str());
    match commit.operation.as_str() {
        "delete" => Ok(Record::Delete { platform: Platform::Bsky, id: uri }),
        "create" if collection == POST => {
            let record: WithRecord<PostRecord> = serde_json::from_slice(event)?;
            Ok(Record::Post(post(uri, did, time_us, &record.commit.record)))
        }
        "create" => {
            let record: WithRecord<RepostRecord> = serde_json::from_slice(event)?;
            Ok(Record::Post(repost(uri, did, time_us, &record.commit.record)?))
        }
        // Posts and reposts are immutable in the app; an `update` would be another client's experiment.
        _ => Ok(Record::Ignored),
    }
}

fn post(uri: String, did: &str, time_us: i64, record: &PostRecord) -> Post {
    let mut post = Post::new(Platform::Bsky, uri, UserRef::new(Platform::Bsky.user_key(did)));
    post.created_at = created_at(record.created_at.as_ref(), time_us);
    if let Some(reply) = &record.reply {
        let parent = reply.parent.as_ref().and_then(|p| p.uri.as_ref()).map(Text::as_str);
        if let Some(parent) = parent {
            if let Some(parent_did) = did_of(parent) {
                post.interact(Kind::Reply, &Platform::Bsky.user_key(parent_did));
            }
            post.add_ref(parent);
        }
        if let Some(root) = reply.root.as_ref().and_then(|r| r.uri.as_ref()) {
            post.add_ref(root.as_str());
        }
    }
    if let Some(quoted) = record
        .embed
        .as_ref()
        .and_then(|e| e.record.as_ref())
        .and_then(|r| r.uri.as_ref().or_else(|| r.record.as_ref().and_then(|inner| inner.uri.as_ref())))
    {
        let quoted = quoted.as_str();
        // An embedded feed generator, list or starter pack is not a quote.
        if collection_of(quoted) == Some(POST) {
            if let Some(quoted_did) = did_of(quoted) {
                post.interact(Kind::Quote, &Platform::Bsky.user_key(quoted_did));
            }
            post.add_ref(quoted);
        }
    }
    for feature in record.facets.iter().flat_map(|f| &f.features) {
        match feature.kind.as_ref().map(Text::as_str) {
            Some(MENTION) => {
                if let Some(mentioned) =
                    feature.did.as_ref().map(Text::as_str).filter(|d| d.starts_with("did:"))
                {
                    post.interact(Kind::Mention, &Platform::Bsky.user_key(mentioned));
                }
            }
            Some(TAG) => {
                if let Some(tag) = &feature.tag {
                    post.add_tag(tag.as_str());
                }
            }
            _ => {}
        }
    }
    for tag in &record.tags {
        post.add_tag(tag.as_str());
    }
    post
}

fn repost(uri: String, did: &str, time_us: i64, record: &RepostRecord) -> Result<Post, DecodeError> {
    let subject = record.subject.as_ref().and_then(|s| s.uri.as_ref()).map(Text::as_str);
    let subject = subject.ok_or_else(|| DecodeError::Shape("repost without subject uri".into()))?;
    let mut post = Post::new(Platform::Bsky, uri, UserRef::new(Platform::Bsky.user_key(did)));
    post.created_at = created_at(record.created_at.as_ref(), time_us);
    if let Some(author) = did_of(subject) {
        post.interact(Kind::Repost, &Platform::Bsky.user_key(author));
    }
    post.add_ref(subject);
    Ok(post)
}

/// `record.createdAt` (client-set), else the event time.
fn created_at(record_time: Option<&Text>, time_us: i64) -> Option<i64> {
    record_time.and_then(|t| unix_seconds(t.as_str())).or(Some(time_us.div_euclid(1_000_000)))
}

/// The DID of an at-URI (`at://did:plc:abc/app.bsky.feed.post/3k...` -> `did:plc:abc`); `None` when it
/// is not an at-URI or its authority is a handle rather than a DID (a handle is no stable key).
pub(crate) fn did_of(at_uri: &str) -> Option<&str> {
    let authority = at_uri.strip_prefix("at://")?.split(['/', '?', '#']).next()?;
    (authority.len() > "did:".len() && authority.starts_with("did:")).then_some(authority)
}

/// The collection (NSID) of an at-URI (`app.bsky.feed.post`), `None` when it names none.
pub(crate) fn collection_of(at_uri: &str) -> Option<&str> {
    let mut parts = at_uri.strip_prefix("at://")?.split(['/', '?', '#']);
    parts.next()?;
    parts.next().filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const ALICE: &str = "did:plc:u4lmvw4wwzaql3z5kcf3r7h4";
    const BOB: &str = "did:plc:i5y2f3gtpjxs3qg6fwgb6jb4";
    const CAROL: &str = "did:plc:ajg5c7huhiibhwandhdscpdq";

    fn commit(did: &str, operation: &str, collection: &str, rkey: &str, record: Option<Value>) -> Vec<u8> {
        let mut commit =
            json!({"rev": "3mptbyp7lu223", "operation": operation, "collection": collection, "rkey": rkey});
        if let Some(record) = record {
            commit["record"] = record;
            commit["cid"] = json!("bafyreifzanogmt75wega3mdkjqiv5rg6usowy6hr3nrlvioezvu7jur3cq");
        }
        let event =
            json!({"did": did, "time_us": 1_783_175_888_384_849_i64, "kind": "commit", "commit": commit});
        serde_json::to_vec(&event).expect("serialises")
    }

    fn post_record(extra: Value) -> Value {
        let mut record =
            json!({"$type": POST, "createdAt": "2026-07-04T14:38:07.112Z", "langs": ["en"], "text": "hi"});
        if let (Some(record), Some(extra)) = (record.as_object_mut(), extra.as_object()) {
            record.extend(extra.clone());
        }
        record
    }

    fn strong_ref(uri: &str) -> Value {
        json!({"cid": "bafyreiainko5un5pbcdosvxpbisjnjzemojnry6nsgtdftdgslbu37kxai", "uri": uri})
    }

    fn post_uri(did: &str, rkey: &str) -> String {
        format!("at://{did}/{POST}/{rkey}")
    }

    fn one_post(event: &[u8]) -> Post {
        let decoded = decode(event).expect("decodes");
        assert_eq!(decoded.time_us, 1_783_175_888_384_849);
        match decoded.records.as_slice() {
            [Record::Post(post)] => post.clone(),
            other => panic!("expected one post, got {other:?}"),
        }
    }

    fn edges(post: &Post) -> Vec<(Kind, &str)> {
        post.interactions.iter().map(|i| (i.kind, i.to.as_str())).collect()
    }

    #[test]
    fn a_reply_links_to_the_parent_author_and_refs_parent_and_root() {
        let reply = json!({"reply": {"parent": strong_ref(&post_uri(BOB, "3mpt7u2vlgs2c")),
                                     "root": strong_ref(&post_uri(CAROL, "3mptb7zj4lc2q"))}});
        let post = one_post(&commit(ALICE, "create", POST, "3mptbyp7lu223", Some(post_record(reply))));
        assert_eq!(post.platform, Platform::Bsky);
        assert_eq!(post.id, post_uri(ALICE, "3mptbyp7lu223"));
        assert_eq!(post.author, UserRef::new(format!("bsky:{ALICE}")), "no handle in Jetstream");
        assert_eq!(
            edges(&post),
            vec![(Kind::Reply, format!("bsky:{BOB}").as_str())],
            "to the parent, not the root"
        );
        assert_eq!(post.refs, vec![post_uri(BOB, "3mpt7u2vlgs2c"), post_uri(CAROL, "3mptb7zj4lc2q")]);
        assert_eq!(post.created_at, Some(1_783_175_887));
    }

    #[test]
    fn a_reply_in_ones_own_thread_is_a_skipped_self_loop() {
        let own = post_uri(ALICE, "3mptbyospqk2i");
        let reply = json!({"reply": {"parent": strong_ref(&own), "root": strong_ref(&own)}});
        let post = one_post(&commit(ALICE, "create", POST, "3mptbyou7ls2i", Some(post_record(reply))));
        assert!(post.interactions.is_empty());
        assert_eq!(post.refs, vec![own], "parent and root deduplicated");
    }

    #[test]
    fn a_quote_is_an_embedded_post_record_with_or_without_media() {
        let quoted = post_uri(BOB, "3lwlumdwf522i");
        let cases = [
            (json!({"$type": "app.bsky.embed.record", "record": strong_ref(&quoted)}), true, "record"),
            (
                json!({"$type": "app.bsky.embed.recordWithMedia",
                       "media": {"$type": "app.bsky.embed.images", "images": []},
                       "record": {"$type": "app.bsky.embed.record", "record": strong_ref(&quoted)}}),
                true,
                "recordWithMedia",
            ),
            (
                json!({"$type": "app.bsky.embed.record",
                       "record": strong_ref(&format!("at://{BOB}/app.bsky.feed.generator/whats-hot"))}),
                false,
                "a feed generator is not a quote",
            ),
            (
                json!({"$type": "app.bsky.embed.external", "external": {"uri": "https://example.com", "title": "t"}}),
                false,
                "a link card",
            ),
        ];
        for (embed, is_quote, what) in cases {
            let post =
                one_post(&commit(ALICE, "create", POST, "3k", Some(post_record(json!({"embed": embed})))));
            if is_quote {
                assert_eq!(edges(&post), vec![(Kind::Quote, format!("bsky:{BOB}").as_str())], "{what}");
                assert_eq!(post.refs, vec![quoted.clone()], "{what}");
            } else {
                assert!(post.interactions.is_empty() && post.refs.is_empty(), "{what}: {post:?}");
            }
        }
    }

    #[test]
    fn mention_facets_link_and_tag_facets_and_record_tags_are_matched_case_insensitively() {
        let facets = json!({
            "facets": [
                {"index": {"byteStart": 0, "byteEnd": 20},
                 "features": [{"$type": TAG, "tag": "HowToTellAiToShutUp"}]},
                {"index": {"byteStart": 21, "byteEnd": 30},
                 "features": [{"$type": MENTION, "did": BOB}, {"$type": MENTION, "did": BOB}]},
                {"index": {"byteStart": 31, "byteEnd": 40},
                 "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://denikn.cz/2113523"}]},
                {"index": {"byteStart": 41, "byteEnd": 50}, "features": [{"$type": MENTION, "did": ALICE}]}
            ],
            "tags": ["RustLang", "howtotellaitoshutup"]
        });
        let post = one_post(&commit(ALICE, "create", POST, "3k", Some(post_record(facets))));
        assert_eq!(
            edges(&post),
            vec![(Kind::Mention, format!("bsky:{BOB}").as_str())],
            "once, and never oneself"
        );
        assert_eq!(post.tags, vec!["howtotellaitoshutup", "rustlang"]);
    }

    #[test]
    fn a_repost_links_to_the_subject_author() {
        let subject = post_uri(BOB, "3mpt6c57uy22u");
        let record = json!({"$type": REPOST, "createdAt": "2026-07-04T14:38:07.594Z", "subject": strong_ref(&subject),
                            "via": strong_ref(&format!("at://{CAROL}/{REPOST}/3mpta65gqot2j"))});
        let post = one_post(&commit(ALICE, "create", REPOST, "3mptbypowzs2e", Some(record)));
        assert_eq!(post.id, format!("at://{ALICE}/{REPOST}/3mptbypowzs2e"));
        assert_eq!(
            edges(&post),
            vec![(Kind::Repost, format!("bsky:{BOB}").as_str())],
            "`via` is no interaction"
        );
        assert_eq!(post.refs, vec![subject]);
        let no_subject = json!({"$type": REPOST, "createdAt": "2026-07-04T14:38:07.594Z"});
        assert!(matches!(
            decode(&commit(ALICE, "create", REPOST, "3k", Some(no_subject))),
            Err(DecodeError::Shape(_))
        ));
    }

    #[test]
    fn deletes_of_posts_and_reposts_name_their_at_uri() {
        for collection in [POST, REPOST] {
            let event = decode(&commit(ALICE, "delete", collection, "3mpt73z3ejc2p", None)).expect("delete");
            let id = format!("at://{ALICE}/{collection}/3mpt73z3ejc2p");
            assert_eq!(event.records, vec![Record::Delete { platform: Platform::Bsky, id }], "{collection}");
        }
    }

    #[test]
    fn likes_follows_updates_and_account_events_are_ignored_but_keep_their_time() {
        let like = json!({"$type": "app.bsky.feed.like", "createdAt": "2024-09-09T19:46:02.102Z",
                          "subject": strong_ref(&post_uri(BOB, "3l3pte3p2e325"))});
        let follow = json!({"$type": "app.bsky.graph.follow", "createdAt": "2026-05-25T14:23:27.319Z", "subject": BOB});
        let account = br#"{"did":"did:plc:ufbl","time_us":1725516665333808,"kind":"account","account":{"active":true,"did":"did:plc:ufbl","seq":1409753013,"time":"2024-09-05T06:11:04.870Z"}}"#;
        let inputs = [
            commit(ALICE, "create", "app.bsky.feed.like", "3l3qo2vuowo2b", Some(like)),
            commit(ALICE, "create", "app.bsky.graph.follow", "3mmoojocxvr2s", Some(follow)),
            commit(ALICE, "delete", "app.bsky.graph.follow", "3l3dn7tku762u", None),
            commit(ALICE, "update", POST, "3k", Some(post_record(json!({})))),
            commit(
                ALICE,
                "create",
                "place.stream.broadcast.origin",
                "x",
                Some(json!({"reply": 5, "embed": "odd"})),
            ),
        ];
        for input in &inputs {
            let event = decode(input).expect("decodes");
            assert_eq!((event.time_us, event.did.as_str()), (1_783_175_888_384_849, ALICE));
            assert_eq!(event.records, vec![Record::Ignored], "{}", String::from_utf8_lossy(input));
        }
        let event = decode(account).expect("account event");
        assert_eq!((event.time_us, event.records), (1_725_516_665_333_808, vec![Record::Ignored]));
    }

    #[test]
    fn an_identity_event_with_a_handle_is_a_profile_update() {
        let with_handle = br#"{"did":"did:plc:ufbl4k27gp6kzas5glhz7fim","time_us":1725516665234703,"kind":"identity","identity":{"did":"did:plc:ufbl4k27gp6kzas5glhz7fim","handle":"yohenrique.bsky.social","seq":1409752997,"time":"2024-09-05T06:11:04.870Z"}}"#;
        let profile = UserRef::new("bsky:did:plc:ufbl4k27gp6kzas5glhz7fim")
            .with_handle(Some("yohenrique.bsky.social".into()));
        assert_eq!(decode(with_handle).expect("identity").records, vec![Record::Profile(profile)]);
        let without = br#"{"did":"did:plc:g4ut","time_us":1779719010267528,"kind":"identity","identity":{"did":"did:plc:g4ut","seq":30340180350,"time":"2026-05-25T14:23:29.950Z"}}"#;
        assert_eq!(decode(without).expect("identity").records, vec![Record::Ignored]);
    }

    #[test]
    fn created_at_falls_back_to_the_event_time() {
        for created in [json!(null), json!("yesterday")] {
            let record = json!({"$type": POST, "createdAt": created, "text": "x"});
            assert_eq!(
                one_post(&commit(ALICE, "create", POST, "3k", Some(record))).created_at,
                Some(1_783_175_888)
            );
        }
        let offset = json!({"$type": POST, "createdAt": "2026-07-04T14:38:02+00:00"});
        assert_eq!(
            one_post(&commit(ALICE, "create", POST, "3k", Some(offset))).created_at,
            Some(1_783_175_882)
        );
    }

    #[test]
    fn malformed_events_are_errors() {
        let truncated = br#"{"did":"did:plc:a","time_us":1,"kind":"commit","commit":{"operation":"create""#;
        assert!(matches!(decode(truncated), Err(DecodeError::Json(_))), "truncated");
        assert!(
            matches!(decode(br#"{"did":"did:plc:a","kind":"account"}"#), Err(DecodeError::Json(_))),
            "no time_us"
        );
        assert!(matches!(decode(br#"{"time_us":1,"kind":"account"}"#), Err(DecodeError::Json(_))), "no did");
        let bad_facets = post_record(json!({"facets": "not a list"}));
        assert!(matches!(
            decode(&commit(ALICE, "create", POST, "3k", Some(bad_facets))),
            Err(DecodeError::Json(_))
        ));
        assert!(
            matches!(decode(&commit(ALICE, "create", POST, "3k", None)), Err(DecodeError::Json(_))),
            "no record"
        );
    }

    #[test]
    fn the_format_dispatcher_returns_the_records() {
        use crate::ingest::decode::{decode as dispatch, Format};
        let event = commit(ALICE, "delete", POST, "3k", None);
        assert_eq!(
            dispatch(Format::Jetstream, &event).expect("decodes"),
            decode(&event).expect("same").records
        );
    }

    #[test]
    fn at_uri_parts() {
        let uri = "at://did:plc:ajg5c7huhiibhwandhdscpdq/app.bsky.feed.post/3mptb7zj4lc2q";
        assert_eq!(did_of(uri), Some("did:plc:ajg5c7huhiibhwandhdscpdq"));
        assert_eq!(collection_of(uri), Some(POST));
        assert_eq!(did_of("at://did:web:example.com"), Some("did:web:example.com"));
        assert_eq!(collection_of("at://did:web:example.com"), None);
        assert_eq!(did_of("at://alice.bsky.social/app.bsky.feed.post/3k"), None, "a handle is no key");
        assert_eq!(did_of("https://bsky.app/profile/did:plc:x"), None);
        assert_eq!(did_of("at://did:"), None);
        assert_eq!(collection_of("at://did:plc:x//3k"), None);
    }
}
