//! The Bluesky Jetstream source: one WebSocket to a Jetstream `subscribe` endpoint, posts and reposts
//! of the whole network in, the ones about the tracked hashtags out to the store's write path.
//!
//! Jetstream has no server-side hashtag filter (`shared/PROTOCOLS.md`, Bluesky Jetstream), so:
//!
//! - a post *matches* when one of its tags (facets and `record.tags`, lowercased by the decoder) is a
//!   tracked term, compared case-insensitively with any leading `#` removed;
//! - the at-URIs of matching posts are remembered, so that a post or repost whose refs (reply parent
//!   or root, quoted post, repost subject) name one is applied too, although it carries no tag. They
//!   are kept in a capped in-memory set and persisted, one marker per matching post
//!   (`bluesky:tagged:<at-uri>`), in the same batch as the post: after a restart, or once evicted
//!   from memory, a lookup of the marker answers. Only matching posts are remembered, not follow-ups
//!   of follow-ups, so attribution does not spread down every thread of the network;
//! - deletes retract only posts the store knows (a retraction of an unknown post would leave a
//!   tombstone for every deletion on Bluesky); identity events update the handles of known users only.
//!
//! Resume: `bluesky:cursor` is the newest `time_us` processed, written in the same batch as the
//! mutations it covers (and on its own every few seconds when nothing matched). A connection resumes
//! 5 s before it, because Jetstream's `time_us` are not strictly ordered on the wire (the recorded
//! corpus has events a few milliseconds out of order), and the replayed events are dropped by the
//! store, which knows every post by id. Skipping events by `time_us` alone would not be exact for the
//! same reason: an event older than the newest one seen may not have been delivered yet.
//!
//! Jetstream sends no heartbeats: the source pings every 20 s to keep the connection through proxies
//! and takes a silence of the idle timeout (60 s; `--jetstream-idle-timeout-ms`) without an event as a
//! stall. Frames and messages are capped at [`MAX_MESSAGE_BYTES`]. Mutations are committed after each
//! burst of frames, or every 200 ms while frames keep coming.

use super::backoff::{Backoff, Failure};
use super::supervise::{give_up, settle, Next, Verdict};
use super::SourcesError;
use super::{commit, to_mutation};
use crate::graph::{Mutation, Platform, Post, Record};
use crate::ingest::decode::jetstream::{self, collection_of};
use crate::ingest::status::{SourceState, SourceStatus};
use crate::store::{StoreError, StoreHandle};
use futures_util::{FutureExt, SinkExt, StreamExt};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::UrlError;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// The Jetstream source's settings as `serve` takes them (flattened into its arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct JetstreamArgs {
    /// Bluesky Jetstream subscribe endpoint.
    #[arg(
        long,
        env = "TAGFLOW_JETSTREAM_URL",
        default_value = "wss://jetstream2.us-east.bsky.network/subscribe"
    )]
    pub jetstream_url: String,
    /// Jetstream: reconnect after this many milliseconds without an event (Jetstream sends no
    /// heartbeats, so silence means a stall). Hidden: the default suits production; tests shorten it.
    #[arg(long, default_value_t = 60_000, hide = true, value_parser = clap::value_parser!(u64).range(100..))]
    pub jetstream_idle_timeout_ms: u64,
}

#[derive(Debug, Clone)]
pub struct JetstreamSettings {
    pub url: String,
    /// No event for this long means the stream stalled: reconnect (`--jetstream-idle-timeout-ms`).
    pub idle_timeout: Duration,
}

impl JetstreamArgs {
    /// The settings these arguments make.
    pub fn settings(&self) -> JetstreamSettings {
        JetstreamSettings {
            url: self.jetstream_url.clone(),
            idle_timeout: Duration::from_millis(self.jetstream_idle_timeout_ms),
        }
    }
}

impl JetstreamSettings {
    /// What running the source needs, checked before anything starts: a ws(s) URL.
    ///
    /// # Errors
    /// The URL does not parse or is not ws(s).
    pub fn check(&self) -> Result<(), SourcesError> {
        super::check_url(NAME, "--jetstream-url", &self.url, &["ws", "wss"])
    }
}

/// The name of the source in `/status` and in the logs.
pub const NAME: &str = "bluesky";
/// The persisted resume position: the newest `time_us` processed, in decimal.
pub const CURSOR: &str = "bluesky:cursor";
/// Prefix of the persisted marker of a matching post (`bluesky:tagged:<at-uri>`).
pub(crate) const TAGGED_PREFIX: &str = "bluesky:tagged:";
/// How far before the persisted cursor a connection resumes, in microseconds.
pub(crate) const REWIND_US: i64 = 5_000_000;
/// The largest WebSocket message (and frame) accepted. A Jetstream event is a few KiB; this bounds
/// what one bad frame can cost.
pub(crate) const MAX_MESSAGE_BYTES: usize = 1 << 20;

const POST: &str = "app.bsky.feed.post";
const WANTED: &str = "wantedCollections=app.bsky.feed.post&wantedCollections=app.bsky.feed.repost";
const PING_EVERY: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Frames keep arriving for longer than this: commit what they brought anyway.
const GROUP_COMMIT: Duration = Duration::from_millis(200);
/// When nothing matched, the cursor alone is written this often (each write is an fsync).
const CURSOR_EVERY: Duration = Duration::from_secs(2);
/// Pending mutations beyond which a batch is committed at once.
const MAX_PENDING: usize = 2_000;
/// Frames handled before the socket is polled through the `select!` again (ping, stall, cancel).
const MAX_BURST: usize = 1_000;
/// At-URIs of matching posts kept in memory (about 150 bytes each); older ones are looked up.
const TAGGED_CAPACITY: usize = 50_000;
/// Ids of posts retracted lately, so that a replayed delete is not counted twice.
const RETRACTED_CAPACITY: usize = 10_000;
/// At most one warning about malformed events per this long; the others are counted.
const SKIP_LOG_EVERY: Duration = Duration::from_secs(10);

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Runs until cancelled, reconnecting on the published schedule ([`Backoff`]); on cancel it commits
/// what it holds and closes the socket. It gives up ([`SourceState::Failed`]) only on a configuration
/// it cannot use or a store failure.
pub async fn run(
    settings: JetstreamSettings,
    track: Vec<String>,
    store: StoreHandle,
    status: Arc<SourceStatus>,
    cancel: CancellationToken,
) {
    let terms = terms(&track);
    if terms.is_empty() {
        return give_up("bluesky", &*status, format!("no tracked term can be a Bluesky hashtag: {track:?}"));
    }
    if !(settings.url.starts_with("ws://") || settings.url.starts_with("wss://")) {
        return give_up(
            "bluesky",
            &*status,
            format!("jetstream url {:?} is not ws:// or wss://", settings.url),
        );
    }
    let newest = match store.cursor(CURSOR) {
        Ok(v) => v.and_then(|v| parse_cursor(&v)),
        Err(e) => return give_up("bluesky", &*status, format!("cannot read the cursor: {e}")),
    };
    let mut session = Session::new(store, status.clone(), terms, newest);
    let mut backoff = Backoff::new();
    let mut skip_ahead = false;
    for attempt in 0u64.. {
        if attempt > 0 {
            status.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        status.set_state(SourceState::Connecting);
        let cursor = resume_cursor(session.newest, skip_ahead);
        let url = subscribe_url(&settings.url, cursor);
        log::info!("source bluesky: connecting url={url}");
        let connected = tokio::select! {
            _ = cancel.cancelled() => break,
            r = tokio::time::timeout(CONNECT_TIMEOUT, connect(&url)) => r,
        };
        let was_connected = matches!(connected, Ok(Ok(_)));
        let end = match connected {
            Ok(Ok(socket)) => {
                log::info!("source bluesky: streaming cursor={cursor:?}");
                session.stream(socket, settings.idle_timeout, &cancel).await
            }
            Ok(Err(e)) => classify(e),
            Err(_) => End::retry(Failure::Network, format!("connect timed out after {CONNECT_TIMEOUT:?}")),
        };
        // Whatever ended the connection, what it brought is committed before anything else.
        let verdict = match (session.flush(true).await, end) {
            (Err(e), _) => Verdict::Fail(format!("commit failed: {e}")),
            (Ok(()), End::Cancelled) => Verdict::Stop,
            (Ok(()), End::Fatal(reason)) => Verdict::Fail(reason),
            (Ok(()), End::Retry { failure, reason, healthy, oversized }) => {
                // Step over an oversized message until a connection gets past it.
                skip_ahead = oversized || (skip_ahead && !was_connected);
                Verdict::Retry { failure, reason, stalled: false, healthy }
            }
        };
        match settle("bluesky", &*status, &mut backoff, &cancel, verdict).await {
            Next::Again => {}
            Next::Stop => break,
            Next::Failed => return,
        }
    }
    status.set_state(SourceState::Stopped);
    log::info!("source bluesky: stopped cursor={:?}", session.written);
}

/// The subscribe URL for the tracked collections, resuming at `cursor` (microseconds) if given.
pub(crate) fn subscribe_url(base: &str, cursor: Option<i64>) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    match cursor {
        Some(c) => format!("{base}{sep}{WANTED}&cursor={c}"),
        None => format!("{base}{sep}{WANTED}"),
    }
}

/// The tracked terms as Bluesky tags: trimmed, without `#`, lowercased. A term with white space can
/// never be a tag and is left out (with a warning).
pub fn terms(track: &[String]) -> HashSet<String> {
    let mut out = HashSet::new();
    for t in track {
        let tag = crate::graph::model::normalize_tag(t).unwrap_or_default();
        if tag.is_empty() || tag.contains(char::is_whitespace) {
            log::warn!("source bluesky: term {t:?} cannot be a hashtag; not tracked on Bluesky");
        } else {
            out.insert(tag);
        }
    }
    out
}

/// The cursor of the next connection: [`REWIND_US`] before the newest event processed, or just after
/// it when an oversized message must be stepped over; `None` (live) when nothing was ever processed.
fn resume_cursor(newest: Option<i64>, skip_ahead: bool) -> Option<i64> {
    newest.map(|t| if skip_ahead { t.saturating_add(1) } else { t.saturating_sub(REWIND_US).max(0) })
}

fn parse_cursor(v: &[u8]) -> Option<i64> {
    let parsed = std::str::from_utf8(v).ok().and_then(|s| s.trim().parse::<i64>().ok());
    if parsed.is_none() {
        log::warn!("source bluesky: ignoring an unreadable cursor {:?}", String::from_utf8_lossy(v));
    }
    parsed
}

async fn connect(url: &str) -> Result<Socket, tungstenite::Error> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let (socket, _response) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
    Ok(socket)
}

/// How a connection (or an attempt at one) ended.
#[derive(Debug)]
enum End {
    Cancelled,
    /// Retrying cannot help (an unusable URL).
    Fatal(String),
    Retry {
        failure: Failure,
        reason: String,
        /// The connection delivered events: the backoff starts over.
        healthy: bool,
        /// A message over [`MAX_MESSAGE_BYTES`] broke it: resume after the newest event instead of
        /// rewinding, or the same message would break every connection.
        oversized: bool,
    },
}

impl End {
    fn retry(failure: Failure, reason: String) -> End {
        End::Retry { failure, reason, healthy: false, oversized: false }
    }
}

/// The failure of a connection attempt.
fn classify(e: tungstenite::Error) -> End {
    match e {
        tungstenite::Error::Http(response) => {
            let status = response.status();
            let failure = if status.as_u16() == 429 {
                let reset_in = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                Failure::RateLimited { reset_in }
            } else {
                Failure::Http
            };
            End::retry(failure, format!("handshake refused: HTTP {status}"))
        }
        tungstenite::Error::Url(UrlError::UnableToConnect(to)) => {
            End::retry(Failure::Network, format!("unable to connect to {to}"))
        }
        tungstenite::Error::Url(e) => End::Fatal(format!("jetstream url unusable: {e}")),
        e => End::retry(Failure::Network, format!("connect failed: {e}")),
    }
}

/// What the source keeps across connections: the filter state, the batch being built, the cursor.
struct Session {
    store: StoreHandle,
    status: Arc<SourceStatus>,
    terms: HashSet<String>,
    /// At-URIs of matching posts (a cache of the persisted markers).
    tagged: CappedSet,
    /// Ids of posts retracted lately.
    retracted: CappedSet,
    pending: Vec<Mutation>,
    /// When the first pending mutation was queued.
    pending_since: Option<Instant>,
    /// Posts and users the pending batch adds, which the store does not know yet.
    pending_posts: HashSet<String>,
    pending_users: HashSet<String>,
    /// The newest `time_us` processed, and the newest one committed.
    newest: Option<i64>,
    written: Option<i64>,
    last_write: Instant,
    skips: super::Throttle,
}

impl Session {
    fn new(
        store: StoreHandle,
        status: Arc<SourceStatus>,
        terms: HashSet<String>,
        cursor: Option<i64>,
    ) -> Self {
        Session {
            store,
            status,
            terms,
            tagged: CappedSet::new(TAGGED_CAPACITY),
            retracted: CappedSet::new(RETRACTED_CAPACITY),
            pending: Vec::new(),
            pending_since: None,
            pending_posts: HashSet::new(),
            pending_users: HashSet::new(),
            newest: cursor,
            written: cursor,
            last_write: Instant::now(),
            skips: super::Throttle::new(SKIP_LOG_EVERY),
        }
    }

    /// Reads one connection until it ends or `cancel` fires.
    async fn stream(&mut self, mut socket: Socket, idle: Duration, cancel: &CancellationToken) -> End {
        self.status.set_state(SourceState::Streaming);
        let every = PING_EVERY.min(idle / 3).max(Duration::from_millis(50));
        let mut ping = tokio::time::interval_at(Instant::now() + every, every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_event = Instant::now();
        let mut healthy = false;
        loop {
            let end = tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    // Commit first: the socket's close handshake may take long on a bad network.
                    let end = match self.flush(true).await {
                        Ok(()) => End::Cancelled,
                        Err(e) => End::Fatal(format!("commit failed: {e}")),
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
                    return end;
                }
                // Frames first: after a slow commit, waiting frames are no stall.
                frame = socket.next() => {
                    let mut read = self.frame(frame);
                    let (mut frames, mut events) = (1, 0);
                    // The rest of the burst: whatever is already readable, without waiting.
                    loop {
                        match read {
                            Read::Event => events += 1,
                            Read::Control => {}
                            Read::End(_) => break,
                        }
                        if frames >= MAX_BURST || self.commit_due() {
                            break;
                        }
                        match socket.next().now_or_never() {
                            Some(frame) => {
                                read = self.frame(frame);
                                frames += 1;
                            }
                            None => break,
                        }
                    }
                    if events > 0 {
                        healthy = true;
                        last_event = Instant::now();
                    }
                    if let Err(e) = self.flush(false).await {
                        return End::Fatal(format!("commit failed: {e}"));
                    }
                    match read {
                        Read::End(end) => Some(end.with_health(healthy)),
                        Read::Event | Read::Control => None,
                    }
                }
                _ = ping.tick() => {
                    match tokio::time::timeout(every, socket.send(Message::Ping(Default::default()))).await {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(End::retry(Failure::Network, format!("ping failed: {e}"))),
                        Err(_) => Some(End::retry(Failure::Network, "ping timed out".into())),
                    }
                }
                _ = tokio::time::sleep_until(last_event + idle) => {
                    self.status.set_state(SourceState::Stalled);
                    Some(End::Retry {
                        failure: Failure::Network,
                        reason: format!("stalled: no event for {idle:?}"),
                        healthy,
                        oversized: false,
                    })
                }
            };
            if let Some(end) = end {
                return end;
            }
        }
    }

    fn commit_due(&self) -> bool {
        self.pending.len() >= MAX_PENDING || self.pending_since.is_some_and(|t| t.elapsed() >= GROUP_COMMIT)
    }

    /// Handles one frame read from the socket.
    fn frame(&mut self, frame: Option<Result<Message, tungstenite::Error>>) -> Read {
        match frame {
            Some(Ok(Message::Text(text))) => self.event(text.as_bytes()),
            Some(Ok(Message::Binary(bytes))) => self.event(&bytes),
            // Pongs (and pings, answered by tungstenite) prove the socket, not the stream: a server
            // that answers pings but sends no events is stalled all the same.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => return Read::Control,
            Some(Ok(Message::Close(frame))) => {
                let why =
                    frame.map_or_else(|| "no reason".to_string(), |f| format!("{} {}", f.code, f.reason));
                return Read::End(End::retry(Failure::Dropped, format!("server closed: {why}")));
            }
            Some(Err(e)) => {
                let oversized = matches!(e, tungstenite::Error::Capacity(_));
                if oversized {
                    self.status.skipped.fetch_add(1, Ordering::Relaxed);
                }
                let reason = format!("read failed: {e}");
                return Read::End(End::Retry {
                    failure: Failure::Network,
                    reason,
                    healthy: false,
                    oversized,
                });
            }
            None => return Read::End(End::retry(Failure::Dropped, "server closed the stream".into())),
        }
        Read::Event
    }

    /// Decodes one event and queues what it means for the graph.
    fn event(&mut self, bytes: &[u8]) {
        let event = match jetstream::decode(bytes) {
            Ok(event) => event,
            Err(e) => {
                self.status.skipped.fetch_add(1, Ordering::Relaxed);
                if let Some(unsaid) = self.skips.pass() {
                    log::warn!(
                        "source bluesky: skipped a malformed event: {e} ({unsaid} more since the last warning)"
                    );
                }
                return;
            }
        };
        self.newest = Some(self.newest.map_or(event.time_us, |n| n.max(event.time_us)));
        for record in event.records {
            self.route(record);
        }
    }

    fn route(&mut self, record: Record) {
        match &record {
            Record::Post(post) | Record::Edit(post) => {
                let matches = self.matches(post);
                if !matches && !post.refs.iter().any(|r| self.is_tagged(r)) {
                    return;
                }
                if matches && self.tagged.insert(&post.id) {
                    self.queue(Mutation::SetCursor { name: tagged_key(&post.id), value: b"1".to_vec() });
                }
                self.pending_posts.insert(post.id.clone());
                self.pending_users.insert(post.author.key.clone());
                self.pending_users.extend(post.interactions.iter().map(|i| i.to.clone()));
            }
            Record::Delete { platform, id } => {
                if self.retracted.contains(id) || !self.knows_post(*platform, id) {
                    return;
                }
                self.retracted.insert(id);
            }
            Record::Profile(user) => {
                if !self.pending_users.contains(&user.key) && !self.store.graph().read().contains(&user.key) {
                    return;
                }
            }
            Record::Disconnect { .. } | Record::Ignored => return,
        }
        if let Some(m) = to_mutation(record) {
            self.queue(m);
        }
    }

    fn queue(&mut self, m: Mutation) {
        self.pending.push(m);
        self.pending_since.get_or_insert_with(Instant::now);
    }

    fn matches(&self, post: &Post) -> bool {
        post.tags.iter().any(|t| self.terms.contains(&t.to_lowercase()))
    }

    /// Whether `uri` is a matching post: remembered, or persisted before a restart or an eviction.
    fn is_tagged(&mut self, uri: &str) -> bool {
        if self.tagged.contains(uri) {
            return true;
        }
        if collection_of(uri) != Some(POST) {
            return false;
        }
        match self.store.cursor(&tagged_key(uri)) {
            Ok(Some(_)) => {
                self.tagged.insert(uri);
                true
            }
            Ok(None) => false,
            Err(e) => {
                log::warn!("source bluesky: cannot look up {uri}: {e}");
                false
            }
        }
    }

    fn knows_post(&self, platform: Platform, id: &str) -> bool {
        if self.pending_posts.contains(id) {
            return true;
        }
        self.store.has_post(platform, id).unwrap_or_else(|e| {
            log::warn!("source bluesky: cannot look up {id}: {e}");
            false
        })
    }

    /// Commits the pending mutations with the cursor that covers them. With nothing pending, writes
    /// the cursor alone if it moved and `always` is set or the last write is a while ago.
    async fn flush(&mut self, always: bool) -> Result<(), StoreError> {
        let moved = self.newest.is_some() && self.newest != self.written;
        if self.pending.is_empty() && !(moved && (always || self.last_write.elapsed() >= CURSOR_EVERY)) {
            return Ok(());
        }
        let mut batch = std::mem::take(&mut self.pending);
        if let (true, Some(t)) = (moved, self.newest) {
            batch.push(Mutation::SetCursor { name: CURSOR.to_string(), value: t.to_string().into_bytes() });
        }
        commit(&self.store, &self.status, batch).await?;
        self.written = self.newest;
        self.last_write = Instant::now();
        self.pending_since = None;
        self.pending_posts.clear();
        self.pending_users.clear();
        Ok(())
    }
}

/// What one frame meant for the read loop.
enum Read {
    /// An event, processed (or counted as skipped).
    Event,
    /// A ping, a pong: the socket lives, the stream may not.
    Control,
    /// The connection is over.
    End(End),
}

impl End {
    fn with_health(self, was_healthy: bool) -> End {
        match self {
            End::Retry { failure, reason, healthy, oversized } => {
                End::Retry { failure, reason, healthy: healthy || was_healthy, oversized }
            }
            other => other,
        }
    }
}

/// The persisted marker name of a matching post.
pub(crate) fn tagged_key(uri: &str) -> String {
    format!("{TAGGED_PREFIX}{uri}")
}

/// A set of strings holding at most `cap`, forgetting the oldest first. Interactions with a post
/// cluster in the hours after it, so oldest-first is close to least-recently-used here.
struct CappedSet {
    set: HashSet<Arc<str>>,
    order: VecDeque<Arc<str>>,
    cap: usize,
}

impl CappedSet {
    fn new(cap: usize) -> CappedSet {
        CappedSet { set: HashSet::new(), order: VecDeque::new(), cap: cap.max(1) }
    }

    fn contains(&self, v: &str) -> bool {
        self.set.contains(v)
    }

    /// Adds `v`; returns false if it was there already.
    fn insert(&mut self, v: &str) -> bool {
        if self.set.contains(v) {
            return false;
        }
        if self.order.len() >= self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        let v: Arc<str> = Arc::from(v);
        self.set.insert(v.clone());
        self.order.push_back(v);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;
    use serde_json::json;
    use tokio_tungstenite::tungstenite::http;

    const ANA: &str = "did:plc:u4lmvw4wwzaql3z5kcf3r7h4";
    const BEN: &str = "did:plc:i5y2f3gtpjxs3qg6fwgb6jb4";

    fn post_event(did: &str, rkey: &str, time_us: i64, record: serde_json::Value) -> Vec<u8> {
        let mut record = record;
        record["$type"] = json!(POST);
        record["createdAt"] = json!("2026-07-04T14:38:07.112Z");
        let event = json!({"did": did, "time_us": time_us, "kind": "commit",
            "commit": {"rev": "3mptbyp7lu223", "operation": "create", "collection": POST, "rkey": rkey,
                       "record": record, "cid": "bafyreifzanogmt75wega3mdkjqiv5rg6usowy6hr3nrlvioezvu7jur3cq"}});
        serde_json::to_vec(&event).expect("serialises")
    }

    #[test]
    fn the_subscribe_url_names_both_collections_and_the_cursor() {
        assert_eq!(
            subscribe_url("wss://jetstream2.us-east.bsky.network/subscribe", None),
            "wss://jetstream2.us-east.bsky.network/subscribe\
             ?wantedCollections=app.bsky.feed.post&wantedCollections=app.bsky.feed.repost"
        );
        assert_eq!(
            subscribe_url("ws://127.0.0.1:1/subscribe?compress=false", Some(1_783_175_885_000_000)),
            "ws://127.0.0.1:1/subscribe?compress=false\
             &wantedCollections=app.bsky.feed.post&wantedCollections=app.bsky.feed.repost&cursor=1783175885000000"
        );
    }

    #[test]
    fn terms_lose_their_hash_and_case_and_phrases_are_left_out() {
        let track = ["#RustLang", " tokio ", "two words", "#", "#ÉTÉ"].map(String::from);
        let want: HashSet<String> = ["rustlang", "tokio", "été"].map(String::from).into();
        assert_eq!(terms(&track), want);
    }

    #[test]
    fn the_capped_set_forgets_the_oldest_first() {
        let mut s = CappedSet::new(2);
        assert!(s.insert("a") && s.insert("b"));
        assert!(!s.insert("a"), "already there");
        assert!(s.insert("c"));
        assert!(!s.contains("a") && s.contains("b") && s.contains("c"));
    }

    #[test]
    fn cursors_resume_five_seconds_early_or_just_after_an_oversized_event() {
        assert_eq!(parse_cursor(b"1783175888384849"), Some(1_783_175_888_384_849));
        assert_eq!(parse_cursor(b"soon"), None, "an unreadable cursor means: stream live");
        assert_eq!(resume_cursor(None, false), None, "nothing seen yet: live");
        assert_eq!(resume_cursor(Some(1_783_175_888_384_849), false), Some(1_783_175_883_384_849));
        assert_eq!(resume_cursor(Some(1_783_175_888_384_849), true), Some(1_783_175_888_384_850));
        assert_eq!(resume_cursor(Some(1_000), false), Some(0));
    }

    #[test]
    fn connection_failures_follow_the_published_schedule() {
        let response = |status: u16, retry_after: Option<&str>| {
            let mut b = http::Response::builder().status(status);
            if let Some(r) = retry_after {
                b = b.header("retry-after", r);
            }
            tungstenite::Error::Http(Box::new(b.body(None).expect("a response")))
        };
        let failure = |e| match classify(e) {
            End::Retry { failure, .. } => Some(failure),
            _ => None,
        };
        assert_eq!(
            failure(response(429, Some("120"))),
            Some(Failure::RateLimited { reset_in: Some(Duration::from_secs(120)) })
        );
        assert_eq!(failure(response(503, None)), Some(Failure::Http));
        assert_eq!(failure(tungstenite::Error::ConnectionClosed), Some(Failure::Network));
        assert_eq!(
            failure(tungstenite::Error::Url(UrlError::UnableToConnect("h".into()))),
            Some(Failure::Network)
        );
        assert!(matches!(classify(tungstenite::Error::Url(UrlError::NoHostName)), End::Fatal(_)), "no retry");
    }

    #[tokio::test]
    async fn a_wss_url_fails_as_an_error_when_tls_does_not_come_up() {
        // A TCP server that hangs up during the TLS handshake: an error, not a panic, which shows
        // that rustls finds its crypto provider and root certificates (no OpenSSL involved).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            if let Ok((socket, _)) = listener.accept().await {
                drop(socket);
            }
        });
        let url = format!("wss://127.0.0.1:{port}/subscribe");
        let r = tokio::time::timeout(Duration::from_secs(10), connect(&url)).await.expect("no hang");
        assert!(r.is_err());
    }

    #[tokio::test]
    async fn follow_ups_are_found_by_the_persisted_marker_once_memory_forgot_the_matching_post() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, writer, _) = crate::store::open(&StoreConfig::new(dir.path())).expect("store");
        let status = SourceStatus::new(NAME);
        let mut s = Session::new(store.clone(), status.clone(), terms(&["#Rust".to_string()]), None);
        let tagged = format!("at://{ANA}/{POST}/3p1");
        s.event(&post_event(ANA, "3p1", 10, json!({"text": "#rust", "tags": ["RUST"]})));
        s.event(b"{\"did\":");
        assert_eq!(status.skipped.load(Ordering::Relaxed), 1);
        assert_eq!(s.pending.len(), 2, "the post and its marker: {:?}", s.pending);
        s.flush(false).await.expect("commit");
        assert_eq!(store.cursor(CURSOR).expect("read"), Some(b"10".to_vec()), "written with the post");
        assert_eq!(store.cursor(&tagged_key(&tagged)).expect("read"), Some(b"1".to_vec()));

        s.tagged = CappedSet::new(1);
        let reply = json!({"text": "yes", "reply": {"parent": {"uri": tagged, "cid": "x"}, "root": {"uri": tagged, "cid": "x"}}});
        s.event(&post_event(BEN, "3r2", 11, reply));
        assert!(
            matches!(s.pending.as_slice(), [Mutation::ApplyPost(p)] if p.id.ends_with("/3r2")),
            "{:?}",
            s.pending
        );
        assert!(s.tagged.contains(&tagged), "found on disk, remembered again");
        s.flush(false).await.expect("commit");
        assert_eq!(status.posts.load(Ordering::Relaxed), 2);
        assert_eq!(status.interactions.load(Ordering::Relaxed), 1, "ben replied to ana");

        // Nothing pending and the cursor written: no commit at all.
        let commits = store.stats().commits.load(Ordering::Relaxed);
        s.flush(true).await.expect("nothing to do");
        assert_eq!(store.stats().commits.load(Ordering::Relaxed), commits);
        store.close().await;
        drop((s, store));
        writer.join().expect("the store stops cleanly");
    }
}
