//! The Mastodon source: one server-sent-events stream per tracked hashtag, a backfill of the tag
//! timeline on start and after every reconnect, and boosts from `reblogged_by`.
//!
//! Follows `shared/PROTOCOLS.md` (Mastodon). Three kinds of task share one `Shared` state:
//!
//! - a **reader** per hashtag: connects `GET {streaming}/api/v1/streaming/hashtag?tag=NAME`, walks
//!   `GET {url}/api/v1/timelines/tag/NAME` back to the newest post already seen, then turns each chunk
//!   of the stream into items. It owns the reconnect schedule ([`Backoff`]) and its stream's state;
//! - one **committer**: the only task that builds mutations and commits them. It owns every piece of
//!   state that must stay consistent with the graph: the instance-local id -> uri aliases that `delete`
//!   events need, the per-tag `newest` cursors and the known boosters of each post. Being the single
//!   writer, it needs no locks, and a delete can never race a boost of the same post. It commits
//!   whatever has arrived as soon as it arrives (a calm stream: one commit per chunk; a busy one:
//!   group commits of everything queued behind the previous commit);
//! - one **boost fetcher**: asks `reblogged_by` for posts with `reblogs_count > 0`, within a budget per
//!   minute, and hands the boosters to the committer.
//!
//! What is persisted, always in the same batch as the posts it describes (so a `kill -9` never leaves
//! one without the other), as source cursors:
//!
//! | cursor                                   | value                                              |
//! |------------------------------------------|----------------------------------------------------|
//! | `mastodon:<instance>:<tag>:newest`       | newest instance-local status id seen on that tag   |
//! | `mastodon:alias:<instance>:<local id>`   | the status `uri`, `deleted <uri>` once retracted   |
//! | `mastodon:boosts:<uri>`                  | booster user keys, one per line                    |
//!
//! `delete` events carry the instance-local id while posts are identified by their `uri`: the alias
//! translates one to the other. `<instance>` is the `host[:port]` of the configured URL. The token is
//! sent only in the `Authorization` header (marked sensitive) and never appears in logs, errors or
//! `/status`.
//! Depends on `graph`, `store` and the decoders; knows nothing of HTTP serving.

use super::backoff::{sleep_or_cancel, Backoff, Failure};
use super::commit;
use crate::config::{MastodonSettings, Secret};
use crate::graph::{Kind, Mutation, Platform, Post, Record, UserRef};
use crate::ingest::decode::mastodon::{decode_accounts, decode_event, decode_status, SseEvent, SseParser};
use crate::ingest::status::{SourceState, SourceStatus};
use crate::store::StoreHandle;
use futures_util::StreamExt;
use parking_lot::Mutex;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, DATE};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The name of this source in `/status`.
pub const NAME: &str = "mastodon";

/// Statuses per tag-timeline page (the API's maximum).
const PAGE_LIMIT: u32 = 40;
/// Accounts per `reblogged_by` page (the API's maximum).
const ACCOUNTS_LIMIT: u32 = 80;
/// `reblogged_by` pages followed per post: a post boosted by more than 400 visible accounts is rare,
/// and each page costs a request of the shared rate limit.
const MAX_BOOST_PAGES: usize = 5;
/// Mastodon's REST rate limit: 300 requests per 5 minutes per token.
const RATE_LIMIT: usize = 300;
const RATE_WINDOW: Duration = Duration::from_secs(300);
/// A REST request (not the stream) that takes longer than this has failed.
const REST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest REST body read (a page of 40 statuses is typically 100-400 KiB).
const MAX_BODY: usize = 16 << 20;
/// A stream that stayed open this long was healthy even if no event matched the tag.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// Mutations per commit at most; the committer otherwise commits whatever has arrived.
const MAX_BATCH: usize = 2_000;
/// In-memory caches are dropped (the store stays the truth) when they grow past this.
const MAX_CACHE: usize = 100_000;
/// Boost jobs waiting for the fetcher; more are dropped (a later sighting of the post re-queues it).
const BOOST_QUEUE: usize = 1_024;
/// At most one warning per this interval for skipped payloads; the rest are counted.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Marks an alias whose post was retracted.
const DELETED_PREFIX: &str = "deleted ";

/// Why the source cannot start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MastodonError {
    #[error("mastodon needs --mastodon-url / TAGFLOW_MASTODON_URL")]
    MissingUrl,
    #[error("mastodon needs TAGFLOW_MASTODON_TOKEN in the environment")]
    MissingToken,
    #[error("TAGFLOW_MASTODON_TOKEN contains characters that cannot be sent in an HTTP header")]
    InvalidToken,
    #[error("invalid mastodon url {0:?}: {1}")]
    InvalidUrl(String, String),
    #[error("no term of --track is a usable hashtag (letters, digits and '_' only): {0:?}")]
    NoHashtag(Vec<String>),
}

/// Everything the source needs. [`Options::from_config`] fills it from the service configuration;
/// tests shorten the timeouts.
#[derive(Debug, Clone)]
pub struct Options {
    /// Instance base URL, e.g. `https://mastodon.social`.
    pub url: String,
    /// Streaming base URL; discovered through `GET /api/v2/instance` when `None`.
    pub streaming_url: Option<String>,
    pub token: Secret,
    /// Hashtags, lowercase, without `#`.
    pub tags: Vec<String>,
    /// No byte (not even the 15 s `:thump` heartbeat) for this long: the stream stalled, reconnect.
    pub idle_timeout: Duration,
    /// A stream line or event larger than this ends the connection.
    pub max_event_bytes: usize,
    /// Tag-timeline pages walked back per backfill at most (a first start, or a long outage).
    pub max_backfill_pages: usize,
    /// `reblogged_by` requests per minute at most, across all tags.
    pub boost_fetches_per_minute: usize,
}

impl Options {
    /// The production settings: a 45 s idle timeout (three missed heartbeats), 1 MiB events, 25
    /// backfill pages (1,000 posts), 30 `reblogged_by` requests a minute (a tenth of the rate limit).
    ///
    /// # Errors
    /// A missing URL or token, a token that is not a valid header value, or no usable hashtag.
    pub fn from_config(settings: &MastodonSettings, track: &[String]) -> Result<Options, MastodonError> {
        let url = settings.url.clone().ok_or(MastodonError::MissingUrl)?;
        let token = settings.token.clone().ok_or(MastodonError::MissingToken)?;
        let tags = hashtags(track);
        if tags.is_empty() {
            return Err(MastodonError::NoHashtag(track.to_vec()));
        }
        Ok(Options {
            url,
            streaming_url: settings.streaming_url.clone(),
            token,
            tags,
            idle_timeout: Duration::from_secs(45),
            max_event_bytes: 1 << 20,
            max_backfill_pages: 25,
            boost_fetches_per_minute: 30,
        })
    }
}

/// The hashtags of the tracking terms: `#RustLang` and `rustlang` both give `rustlang`; terms that
/// cannot be a hashtag (spaces, punctuation) are skipped with a warning. Order kept, duplicates dropped.
pub fn hashtags(track: &[String]) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for term in track {
        let Some(tag) = crate::graph::model::normalize_tag(term) else { continue };
        if !tag.chars().all(|c| c.is_alphanumeric() || c == '_') {
            log::warn!("source mastodon: term={term:?} is not a hashtag; not followed on mastodon");
            continue;
        }
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    tags
}

/// Starts the source: one reader per hashtag, the committer and the boost fetcher. Each task stops
/// when `cancel` fires; the committer last, after committing everything the readers handed over.
///
/// # Errors
/// An invalid URL or token (checked before anything starts).
pub fn start(
    options: Options,
    store: &StoreHandle,
    status: Arc<SourceStatus>,
    cancel: &CancellationToken,
) -> Result<Vec<JoinHandle<()>>, MastodonError> {
    let api = parse_base(&options.url)?;
    let configured_streaming = match &options.streaming_url {
        Some(s) => Some(parse_base(&http_scheme(s))?),
        None => None,
    };
    let mut auth = HeaderValue::from_str(&format!("Bearer {}", options.token.expose()))
        .map_err(|_| MastodonError::InvalidToken)?;
    auth.set_sensitive(true);
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_keepalive(Duration::from_secs(30))
        .user_agent(concat!("tagflow/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| MastodonError::InvalidUrl(options.url.clone(), e.to_string()))?;
    let instance_key = instance_key(&api);
    log::info!(
        "source mastodon: starting url={} streaming={} tags={}",
        shown(&api),
        configured_streaming.as_ref().map_or("<discover>".to_string(), shown),
        options.tags.join(",")
    );
    let shared = Arc::new(Shared {
        client,
        auth,
        api,
        configured_streaming,
        instance_key,
        states: Mutex::new(vec![SourceState::Connecting; options.tags.len()]),
        limiter: RateLimiter::new(RATE_LIMIT, RATE_WINDOW),
        instance: tokio::sync::OnceCell::new(),
        warn: Mutex::new(super::Throttle::new(WARN_EVERY)),
        store: store.clone(),
        status,
        options,
    });
    let (tx, rx) = mpsc::channel::<Msg>(64);
    let (boost_tx, boost_rx) = mpsc::channel::<BoostJob>(BOOST_QUEUE);
    let mut tasks = Vec::new();
    let committer = Committer::new(shared.clone(), boost_tx);
    tasks.push(tokio::spawn(committer.run(rx)));
    tasks.push(tokio::spawn(fetch_boosts(shared.clone(), boost_rx, tx.clone(), cancel.clone())));
    for idx in 0..shared.options.tags.len() {
        tasks.push(tokio::spawn(read_tag(shared.clone(), idx, tx.clone(), cancel.clone())));
    }
    Ok(tasks)
}

// ------------------------------------------------------------------------------------ shared state

/// What the tasks of one source share. Only the committer writes to the store.
struct Shared {
    client: reqwest::Client,
    /// `Bearer <token>`, marked sensitive so that no `Debug` prints it.
    auth: HeaderValue,
    api: Url,
    configured_streaming: Option<Url>,
    instance_key: String,
    options: Options,
    /// The state of each tag's stream; the source shows the most pressing one.
    states: Mutex<Vec<SourceState>>,
    limiter: RateLimiter,
    instance: tokio::sync::OnceCell<Instance>,
    warn: Mutex<super::Throttle>,
    store: StoreHandle,
    status: Arc<SourceStatus>,
}

/// What `GET /api/v2/instance` told us.
#[derive(Debug, Clone)]
struct Instance {
    /// The instance's account domain (`domain`): qualifies local `acct`s. `None`: each account's own
    /// `url` host is used (see the decoder).
    domain: Option<String>,
    streaming: Url,
}

impl Shared {
    fn tag(&self, idx: usize) -> &str {
        &self.options.tags[idx]
    }

    /// Sets one stream's state and shows the most pressing state of all streams.
    fn set_state(&self, idx: usize, state: SourceState) {
        let mut states = self.states.lock();
        if let Some(slot) = states.get_mut(idx) {
            *slot = state;
        }
        if let Some(worst) = states.iter().max_by_key(|s| severity(s)) {
            self.status.set_state(worst.clone());
        }
    }

    /// Counts a payload that could not be decoded; warns at most once per [`WARN_EVERY`].
    fn skip(&self, what: &str, error: &dyn std::fmt::Display) {
        self.status.skipped.fetch_add(1, AtomicOrdering::Relaxed);
        if let Some(unsaid) = self.warn.lock().pass() {
            log::warn!("source mastodon: skipped {what}: {error} (and {unsaid} more since the last warning)");
        }
    }

    /// `GET url` with the token, through the shared rate limit. Network errors, 401/403, 429 and 5xx
    /// become an [`End`]; other statuses are the caller's to judge.
    async fn rest_get(&self, url: Url, cancel: &CancellationToken) -> Result<reqwest::Response, End> {
        if !self.limiter.acquire(cancel).await {
            return Err(End::Cancelled);
        }
        let what = format!("GET {}", url.path());
        let request =
            self.client.get(url).header(AUTHORIZATION, self.auth.clone()).timeout(REST_TIMEOUT).send();
        let response = tokio::select! {
            _ = cancel.cancelled() => return Err(End::Cancelled),
            r = request => r.map_err(|e| End::retry(Failure::Network, format!("{what}: {}", super::error_chain(&e))))?,
        };
        self.observe_rate_limit(response.headers());
        self.judge(&what, response)
    }

    /// Maps the statuses every request treats alike.
    fn judge(&self, what: &str, response: reqwest::Response) -> Result<reqwest::Response, End> {
        let status = response.status();
        match status {
            s if s.is_success() => Ok(response),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(End::Fatal(format!(
                "{what}: the instance refused the token ({status}); check TAGFLOW_MASTODON_TOKEN and its read scope"
            ))),
            StatusCode::TOO_MANY_REQUESTS => {
                let reset_in = reset_in(response.headers());
                self.limiter.block_for(reset_in.unwrap_or(Duration::from_secs(60)));
                if let Some(r) = reset_in {
                    let at = chrono::Utc::now().timestamp() + r.as_secs() as i64;
                    self.status.rate_limit_reset.store(at, AtomicOrdering::Relaxed);
                }
                Err(End::retry(Failure::RateLimited { reset_in }, format!("{what}: rate limited ({status})")))
            }
            s if s.is_server_error() => Err(End::retry(Failure::Http, format!("{what}: {status}"))),
            _ => Ok(response),
        }
    }

    /// Waits until the announced reset when the instance says no request is left.
    fn observe_rate_limit(&self, headers: &HeaderMap) {
        let remaining = headers.get("x-ratelimit-remaining").and_then(|v| v.to_str().ok());
        if remaining.and_then(|r| r.trim().parse::<u64>().ok()) == Some(0) {
            if let Some(r) = reset_in(headers) {
                self.limiter.block_for(r);
                let at = chrono::Utc::now().timestamp() + r.as_secs() as i64;
                self.status.rate_limit_reset.store(at, AtomicOrdering::Relaxed);
            }
        }
    }

    /// The instance's domain and streaming URL, asked once (`GET /api/v2/instance`) and shared by
    /// every stream. An instance without that endpoint streams from its own URL.
    async fn instance(&self, cancel: &CancellationToken) -> Result<&Instance, End> {
        self.instance.get_or_try_init(|| self.discover(cancel)).await
    }

    async fn discover(&self, cancel: &CancellationToken) -> Result<Instance, End> {
        #[derive(Deserialize)]
        struct V2 {
            #[serde(default)]
            domain: Option<String>,
            #[serde(default)]
            configuration: Option<Configuration>,
        }
        #[derive(Deserialize)]
        struct Configuration {
            #[serde(default)]
            urls: Option<Urls>,
        }
        #[derive(Deserialize)]
        struct Urls {
            #[serde(default)]
            streaming: Option<String>,
        }
        let url = join(&self.api, &["api", "v2", "instance"]);
        let response = self.rest_get(url, cancel).await?;
        let code = response.status();
        let v2 = if code.is_success() {
            let body = read_body(response, MAX_BODY).await.map_err(|e| End::retry(Failure::Network, e))?;
            match serde_json::from_slice::<V2>(&body) {
                Ok(v2) => Some(v2),
                Err(e) => {
                    log::warn!("source mastodon: /api/v2/instance is not an instance: {e}");
                    None
                }
            }
        } else {
            log::info!("source mastodon: /api/v2/instance answered {code}; streaming from the instance url");
            None
        };
        let domain = v2.as_ref().and_then(|v| v.domain.clone()).filter(|d| !d.trim().is_empty());
        let discovered =
            v2.and_then(|v| v.configuration?.urls?.streaming).and_then(|s| parse_base(&http_scheme(&s)).ok());
        let streaming = self.configured_streaming.clone().or(discovered).unwrap_or_else(|| self.api.clone());
        log::info!(
            "source mastodon: instance domain={} streaming={}",
            domain.as_deref().unwrap_or("<from account urls>"),
            shown(&streaming)
        );
        Ok(Instance { domain, streaming })
    }

    fn newest_key(&self, idx: usize) -> String {
        format!("mastodon:{}:{}:newest", self.instance_key, self.tag(idx))
    }

    fn alias_key(&self, local_id: &str) -> String {
        format!("mastodon:alias:{}:{local_id}", self.instance_key)
    }
}

/// How pressing a stream's state is: the source shows the worst of its streams.
fn severity(state: &SourceState) -> u8 {
    match state {
        SourceState::Stopped => 0,
        SourceState::Streaming => 1,
        SourceState::Connecting => 2,
        SourceState::Stalled => 3,
        SourceState::BackingOff { .. } => 4,
        SourceState::Failed { .. } => 5,
    }
}

/// How a connection ended.
#[derive(Debug)]
enum End {
    /// The source is stopping.
    Cancelled,
    /// Retrying cannot help (the token was refused): the stream gives up.
    Fatal(String),
    /// Reconnect after the schedule's delay for `failure`.
    Retry { failure: Failure, reason: String, stalled: bool },
}

impl End {
    fn retry(failure: Failure, reason: impl Into<String>) -> End {
        End::Retry { failure, reason: reason.into(), stalled: false }
    }
}

// ------------------------------------------------------------------------------------ rate limits

/// A sliding window of request times, plus a block until an announced reset. Shared by every task
/// of the source (Mastodon limits per token), and reused per minute for the boost budget.
struct RateLimiter {
    limit: usize,
    window: Duration,
    state: Mutex<LimitState>,
}

#[derive(Default)]
struct LimitState {
    sent: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

impl RateLimiter {
    fn new(limit: usize, window: Duration) -> RateLimiter {
        RateLimiter { limit: limit.max(1), window, state: Mutex::new(LimitState::default()) }
    }

    /// Waits for a request slot and takes it; false if cancelled first.
    async fn acquire(&self, cancel: &CancellationToken) -> bool {
        loop {
            let wait = {
                let mut s = self.state.lock();
                let now = Instant::now();
                while s.sent.front().is_some_and(|&t| now.duration_since(t) >= self.window) {
                    s.sent.pop_front();
                }
                match (s.blocked_until, s.sent.front()) {
                    (Some(until), _) if until > now => until - now,
                    (_, Some(&oldest)) if s.sent.len() >= self.limit => (oldest + self.window) - now,
                    _ => {
                        s.blocked_until = None;
                        s.sent.push_back(now);
                        return true;
                    }
                }
            };
            if !sleep_or_cancel(wait, cancel).await {
                return false;
            }
        }
    }

    /// No request before `delay` from now (kept if an existing block ends later).
    fn block_for(&self, delay: Duration) {
        let until = Instant::now() + delay;
        let mut s = self.state.lock();
        if s.blocked_until.is_none_or(|b| b < until) {
            s.blocked_until = Some(until);
        }
    }
}

/// The time until `x-ratelimit-reset` (ISO 8601), measured against the response's `Date` when it has
/// one, so that a skewed local clock does not matter.
fn reset_in(headers: &HeaderMap) -> Option<Duration> {
    let reset = headers.get("x-ratelimit-reset")?.to_str().ok()?;
    let reset = chrono::DateTime::parse_from_rfc3339(reset.trim()).ok()?;
    let now = headers
        .get(DATE)
        .and_then(|d| d.to_str().ok())
        .and_then(|d| chrono::DateTime::parse_from_rfc2822(d.trim()).ok())
        .unwrap_or_else(|| chrono::Utc::now().fixed_offset());
    Some((reset - now).to_std().unwrap_or(Duration::ZERO))
}

// ------------------------------------------------------------------------------------ readers

/// What a reader hands the committer.
#[derive(Debug)]
enum Msg {
    /// Statuses and deletes, in stream or page order. `live` ones advance the tag's newest cursor; a
    /// backfill advances it only once it has reached the newest post seen before ([`Msg::Caught`]).
    Items { idx: usize, items: Vec<Item>, live: bool },
    /// A backfill is complete down to what was seen before: `newest` is the newest id it found. `done`
    /// is answered once that, and everything handed over before it, is durable.
    Caught { idx: usize, newest: Option<String>, done: oneshot::Sender<()> },
    /// The accounts that boosted a post.
    Boosts { job: BoostJob, boosters: Vec<UserRef> },
}

#[derive(Debug)]
enum Item {
    Post {
        post: Box<Post>,
        edit: bool,
        local_id: Option<String>,
        reblogs: u64,
    },
    /// A `delete` event: the instance-local id, to be translated to the post's uri.
    Delete {
        local_id: String,
    },
}

/// One hashtag's stream, reconnected on the published schedule until cancelled or refused.
async fn read_tag(shared: Arc<Shared>, idx: usize, tx: mpsc::Sender<Msg>, cancel: CancellationToken) {
    let tag = shared.tag(idx).to_string();
    let mut backoff = Backoff::new();
    let mut first = true;
    loop {
        if !first {
            shared.status.reconnects.fetch_add(1, AtomicOrdering::Relaxed);
        }
        first = false;
        shared.set_state(idx, SourceState::Connecting);
        match connection(&shared, idx, &tx, &cancel, &mut backoff).await {
            End::Cancelled => break,
            End::Fatal(reason) => {
                log::error!("source mastodon: tag={tag} gave up: {reason}");
                shared.status.set_error(format!("#{tag}: {reason}"));
                shared.set_state(idx, SourceState::Failed { reason });
                return;
            }
            End::Retry { failure, reason, stalled } => {
                let delay = backoff.next(failure);
                log::warn!(
                    "source mastodon: tag={tag} {reason}; reconnecting in {:.2}s",
                    delay.as_secs_f64()
                );
                shared.status.set_error(format!("#{tag}: {reason}"));
                let state = if stalled {
                    SourceState::Stalled
                } else {
                    let until = chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                    SourceState::BackingOff {
                        until: until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        reason,
                    }
                };
                shared.set_state(idx, state);
                if !sleep_or_cancel(delay, &cancel).await {
                    break;
                }
            }
        }
    }
    shared.set_state(idx, SourceState::Stopped);
    log::info!("source mastodon: tag={tag} stopped");
}

/// One connection: open the stream, backfill while the server holds our events, then read.
async fn connection(
    shared: &Shared,
    idx: usize,
    tx: &mpsc::Sender<Msg>,
    cancel: &CancellationToken,
    backoff: &mut Backoff,
) -> End {
    let instance = match shared.instance(cancel).await {
        Ok(i) => i.clone(),
        Err(end) => return end,
    };
    let tag = shared.tag(idx);
    let mut url = join(&instance.streaming, &["api", "v1", "streaming", "hashtag"]);
    url.query_pairs_mut().append_pair("tag", tag);
    let request = shared
        .client
        .get(url)
        .header(AUTHORIZATION, shared.auth.clone())
        .header(ACCEPT, "text/event-stream")
        .send();
    let idle = shared.options.idle_timeout;
    // No total timeout on the stream (it never ends); the response head must come within the idle time.
    let response = tokio::select! {
        _ = cancel.cancelled() => return End::Cancelled,
        r = tokio::time::timeout(idle, request) => match r {
            Err(_) => return End::retry(Failure::Network, "stream: no response head in time"),
            Ok(Err(e)) => return End::retry(Failure::Network, format!("stream: {}", super::error_chain(&e))),
            Ok(Ok(r)) => r,
        },
    };
    let response = match shared.judge("stream", response) {
        Ok(r) if r.status() == StatusCode::OK => r,
        Ok(r) => return End::retry(Failure::Http, format!("stream: {}", r.status())),
        Err(end) => return end,
    };
    let is_sse = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("text/event-stream"));
    if !is_sse {
        return End::retry(Failure::Http, "stream: the streaming url did not answer with text/event-stream");
    }
    if let Err(end) = backfill(shared, idx, instance.domain.as_deref(), tx, cancel).await {
        return end;
    }
    shared.set_state(idx, SourceState::Streaming);
    log::info!("source mastodon: tag={tag} streaming");

    let domain = instance.domain.as_deref();
    let mut body = response.bytes_stream();
    let mut parser = SseParser::new(shared.options.max_event_bytes);
    let opened = Instant::now();
    let mut events = 0u64;
    let mut healthy = false;
    let mut idle_at = Instant::now() + idle;
    loop {
        let chunk = tokio::select! {
            biased;
            _ = cancel.cancelled() => return End::Cancelled,
            _ = tokio::time::sleep_until(idle_at) => {
                return End::Retry {
                    failure: Failure::Network,
                    reason: format!("stream stalled: no data for {:.1}s", idle.as_secs_f64()),
                    stalled: true,
                };
            }
            chunk = body.next() => chunk,
        };
        let bytes = match chunk {
            None if events > 0 || opened.elapsed() >= HEALTHY_AFTER => {
                return End::retry(Failure::Dropped, "the server closed the stream")
            }
            // Closing at once, again and again, is a broken server: do not reconnect in a tight loop.
            None => return End::retry(Failure::Network, "the server closed the stream without an event"),
            Some(Err(e)) => {
                return End::retry(Failure::Network, format!("stream read: {}", super::error_chain(&e)))
            }
            Some(Ok(bytes)) => bytes,
        };
        idle_at = Instant::now() + idle;
        let (parsed, overflow) = match parser.push(&bytes) {
            Ok(parsed) => (parsed, None),
            Err(mut e) => (std::mem::take(&mut e.completed), Some(e)),
        };
        events += parsed.len() as u64;
        let items = items_of(shared, &parsed, domain);
        if !items.is_empty() && tx.send(Msg::Items { idx, items, live: true }).await.is_err() {
            return End::Fatal("the committer stopped".into());
        }
        if let Some(e) = overflow {
            shared.skip("an over-long stream line", &e);
            return End::retry(Failure::Network, format!("stream: {e}"));
        }
        if !healthy && (events > 0 || opened.elapsed() >= HEALTHY_AFTER) {
            healthy = true;
            backoff.reset();
        }
    }
}

/// The items of parsed events; undecodable payloads are counted and skipped, unknown events ignored.
fn items_of(shared: &Shared, events: &[SseEvent], domain: Option<&str>) -> Vec<Item> {
    let mut items = Vec::new();
    for event in events {
        match decode_event(&event.event, event.data.as_bytes(), domain) {
            Ok(records) => {
                for record in records {
                    match record {
                        Record::Post(post) | Record::Edit(post) => {
                            let edit = event.event == "status.update";
                            let meta = Meta::of(event.data.as_bytes());
                            items.push(Item::Post {
                                post: Box::new(post),
                                edit,
                                local_id: meta.id,
                                reblogs: meta.reblogs,
                            });
                        }
                        Record::Delete { id, .. } => items.push(Item::Delete { local_id: id }),
                        Record::Profile(_) | Record::Disconnect { .. } | Record::Ignored => {}
                    }
                }
            }
            Err(e) => shared.skip(&format!("a {:?} event", event.event), &e),
        }
    }
    items
}

/// Walks the tag timeline from the newest page back to the newest post seen before (or an empty page,
/// or the page budget), handing each page to the committer. The tag's cursor moves only once the walk
/// is complete, so that an interrupted backfill is redone rather than leaving a gap.
async fn backfill(
    shared: &Shared,
    idx: usize,
    domain: Option<&str>,
    tx: &mpsc::Sender<Msg>,
    cancel: &CancellationToken,
) -> Result<(), End> {
    let tag = shared.tag(idx);
    let seen = match shared.store.cursor(&shared.newest_key(idx)) {
        Ok(v) => v.and_then(|v| String::from_utf8(v).ok()),
        Err(e) => return Err(End::Fatal(format!("store: {e}"))),
    };
    let mut url = join(&shared.api, &["api", "v1", "timelines", "tag", tag]);
    url.query_pairs_mut().append_pair("limit", &PAGE_LIMIT.to_string());
    let mut top: Option<String> = None;
    let mut pages = 0usize;
    let mut fetched = 0usize;
    loop {
        let response = shared.rest_get(url.clone(), cancel).await?;
        if !response.status().is_success() {
            return Err(End::retry(
                Failure::Http,
                format!("backfill: GET {}: {}", url.path(), response.status()),
            ));
        }
        let next = link_next(response.headers(), &shared.api);
        let body = read_body(response, MAX_BODY).await.map_err(|e| End::retry(Failure::Network, e))?;
        pages += 1;
        let statuses: Vec<&RawValue> = match serde_json::from_slice(&body) {
            Ok(s) => s,
            Err(e) => {
                shared.skip("a tag timeline page", &e);
                break;
            }
        };
        if statuses.is_empty() {
            break;
        }
        let mut reached = false;
        let mut items = Vec::with_capacity(statuses.len());
        for raw in statuses {
            let meta = Meta::of(raw.get().as_bytes());
            if let (Some(id), Some(seen)) = (&meta.id, &seen) {
                if cmp_ids(id, seen) != Ordering::Greater {
                    // Pages are newest first: everything from here on was seen before.
                    reached = true;
                    continue;
                }
            }
            match decode_status(raw.get().as_bytes(), domain) {
                Ok(records) => {
                    for record in records {
                        if let Record::Post(post) = record {
                            items.push(Item::Post {
                                post: Box::new(post),
                                edit: false,
                                local_id: meta.id.clone(),
                                reblogs: meta.reblogs,
                            });
                        }
                    }
                    if let Some(id) = meta.id {
                        if top.as_deref().is_none_or(|t| cmp_ids(&id, t) == Ordering::Greater) {
                            top = Some(id);
                        }
                    }
                }
                Err(e) => shared.skip("a status of the tag timeline", &e),
            }
        }
        fetched += items.len();
        if !items.is_empty() && tx.send(Msg::Items { idx, items, live: false }).await.is_err() {
            return Err(End::Fatal("the committer stopped".into()));
        }
        match next {
            Some(n) if !reached && pages < shared.options.max_backfill_pages => url = n,
            Some(_) if !reached => {
                log::warn!(
                    "source mastodon: tag={tag} backfill stopped after {pages} pages; older posts are not fetched"
                );
                break;
            }
            _ => break,
        }
    }
    log::info!("source mastodon: tag={tag} backfill fetched={fetched} pages={pages}");
    // Streaming starts once the backfill is durable: `/status` says `streaming` only when caught up.
    let (done, committed) = oneshot::channel();
    if tx.send(Msg::Caught { idx, newest: top, done }).await.is_err() {
        return Err(End::Fatal("the committer stopped".into()));
    }
    tokio::select! {
        _ = cancel.cancelled() => Err(End::Cancelled),
        r = committed => r.map_err(|_| End::Fatal("the committer stopped".into())),
    }
}

/// The fields of a status the decoder does not keep: its instance-local id and boost count.
#[derive(Debug, Default)]
struct Meta {
    id: Option<String>,
    reblogs: u64,
}

impl Meta {
    fn of(status: &[u8]) -> Meta {
        /// Mastodon sends ids as strings; forks have sent numbers. Anything else is ignored.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Loose {
            Text(String),
            Number(u64),
            Other(serde::de::IgnoredAny),
        }
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            id: Option<Loose>,
            #[serde(default)]
            reblogs_count: Option<Loose>,
        }
        let Ok(raw) = serde_json::from_slice::<Raw>(status) else { return Meta::default() };
        let id = match raw.id {
            Some(Loose::Text(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(Loose::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let reblogs = match raw.reblogs_count {
            Some(Loose::Number(n)) => n,
            Some(Loose::Text(s)) => s.trim().parse().unwrap_or(0),
            _ => 0,
        };
        Meta { id, reblogs }
    }
}

// ------------------------------------------------------------------------------------ committer

/// An alias's state: the uri of a local id, or that its post was retracted.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Alias {
    Live(String),
    Deleted,
}

/// The single writer of the source (see the module doc).
struct Committer {
    shared: Arc<Shared>,
    newest: Vec<Option<String>>,
    newest_dirty: Vec<bool>,
    aliases: HashMap<String, Alias>,
    boosters: HashMap<String, Vec<String>>,
    pending: Vec<Mutation>,
    jobs: Vec<BoostJob>,
    /// Backfills waiting for their last page to be durable.
    caught: Vec<oneshot::Sender<()>>,
    boost_tx: mpsc::Sender<BoostJob>,
}

impl Committer {
    fn new(shared: Arc<Shared>, boost_tx: mpsc::Sender<BoostJob>) -> Committer {
        let tags = shared.options.tags.len();
        let newest = (0..tags)
            .map(|idx| {
                shared
                    .store
                    .cursor(&shared.newest_key(idx))
                    .ok()
                    .flatten()
                    .and_then(|v| String::from_utf8(v).ok())
            })
            .collect();
        Committer {
            shared,
            newest,
            newest_dirty: vec![false; tags],
            aliases: HashMap::new(),
            boosters: HashMap::new(),
            pending: Vec::new(),
            jobs: Vec::new(),
            caught: Vec::new(),
            boost_tx,
        }
    }

    /// Commits whatever has arrived, as soon as it arrives: one commit per stream chunk when the
    /// stream is calm, larger group commits when messages queue up behind a commit. Returns once every
    /// reader and the fetcher are gone and the last batch is durable.
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        while let Some(msg) = rx.recv().await {
            self.take(msg);
            while self.pending.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(msg) => self.take(msg),
                    Err(_) => break,
                }
            }
            if !self.flush().await {
                return;
            }
        }
        self.flush().await;
    }

    fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Items { idx, items, live } => {
                for item in items {
                    match item {
                        Item::Post { post, edit, local_id, reblogs } => {
                            self.post(idx, *post, edit, local_id, reblogs, live)
                        }
                        Item::Delete { local_id } => self.delete(&local_id),
                    }
                }
            }
            Msg::Caught { idx, newest, done } => {
                if let Some(id) = newest {
                    self.advance(idx, id);
                }
                self.caught.push(done);
            }
            Msg::Boosts { job, boosters } => self.boosts(job, boosters),
        }
    }

    fn post(
        &mut self,
        idx: usize,
        post: Post,
        edit: bool,
        local_id: Option<String>,
        reblogs: u64,
        live: bool,
    ) {
        if let Some(id) = local_id {
            let alias = self.alias(&id);
            match &alias {
                // A late copy of a deleted post: the store keeps it deleted; keep the alias so.
                Some(Alias::Deleted) => {}
                Some(Alias::Live(uri)) if *uri == post.id => {}
                _ => {
                    self.pending.push(Mutation::SetCursor {
                        name: self.shared.alias_key(&id),
                        value: post.id.clone().into_bytes(),
                    });
                    self.remember(id.clone(), Alias::Live(post.id.clone()));
                }
            }
            if reblogs > 0 && alias != Some(Alias::Deleted) {
                self.jobs.push(BoostJob {
                    local_id: id.clone(),
                    uri: post.id.clone(),
                    author: post.author.clone(),
                    tags: post.tags.clone(),
                    reblogs,
                });
            }
            if live {
                self.advance(idx, id);
            }
        }
        self.pending.push(if edit { Mutation::EditPost(post) } else { Mutation::ApplyPost(post) });
    }

    /// Translates a `delete` (an instance-local id) to its post and the boosts of it. Ids never seen
    /// (a post from before tagflow watched, or of another tag) change nothing.
    fn delete(&mut self, local_id: &str) {
        match self.alias(local_id) {
            Some(Alias::Live(uri)) => {
                self.pending.push(Mutation::RetractPost { platform: Platform::Mastodon, id: uri.clone() });
                for booster in self.boosters_of(&uri) {
                    let id = boost_id(&uri, &booster);
                    self.pending.push(Mutation::RetractPost { platform: Platform::Mastodon, id });
                }
                self.pending.push(Mutation::SetCursor {
                    name: self.shared.alias_key(local_id),
                    value: format!("{DELETED_PREFIX}{uri}").into_bytes(),
                });
                self.remember(local_id.to_string(), Alias::Deleted);
            }
            Some(Alias::Deleted) => {}
            None => log::debug!("source mastodon: delete of status id={local_id} never seen"),
        }
    }

    /// Each booster becomes a repost of the post's author, as a post of its own whose id is stable
    /// (`<uri>#reblogged_by/<booster key>`), so that fetching the boosters again counts nothing twice.
    fn boosts(&mut self, job: BoostJob, boosters: Vec<UserRef>) {
        if self.alias(&job.local_id) == Some(Alias::Deleted) {
            return;
        }
        let mut known = self.boosters_of(&job.uri);
        let before = known.len();
        for booster in boosters {
            // A boost of one's own post is a self-loop: nothing to record.
            if booster.key == job.author.key {
                continue;
            }
            let mut post = Post::new(Platform::Mastodon, boost_id(&job.uri, &booster.key), booster.clone());
            post.interact(Kind::Repost, &job.author.key);
            post.see_user(job.author.clone());
            post.tags.clone_from(&job.tags);
            post.refs.push(job.uri.clone());
            self.pending.push(Mutation::ApplyPost(post));
            if !known.contains(&booster.key) {
                known.push(booster.key);
            }
        }
        if known.len() != before {
            self.pending.push(Mutation::SetCursor {
                name: boosts_key(&job.uri),
                value: known.join("\n").into_bytes(),
            });
        }
        if self.boosters.len() >= MAX_CACHE {
            self.boosters.clear();
        }
        self.boosters.insert(job.uri, known);
    }

    fn advance(&mut self, idx: usize, id: String) {
        let (Some(newest), Some(dirty)) = (self.newest.get_mut(idx), self.newest_dirty.get_mut(idx)) else {
            return;
        };
        if newest.as_deref().is_none_or(|n| cmp_ids(&id, n) == Ordering::Greater) {
            *newest = Some(id);
            *dirty = true;
        }
    }

    /// A local id's alias: from memory, else from the store.
    fn alias(&mut self, local_id: &str) -> Option<Alias> {
        if let Some(a) = self.aliases.get(local_id) {
            return Some(a.clone());
        }
        let stored = match self.shared.store.cursor(&self.shared.alias_key(local_id)) {
            Ok(v) => v?,
            Err(e) => {
                log::warn!("source mastodon: reading alias id={local_id}: {e}");
                return None;
            }
        };
        let value = String::from_utf8(stored).ok()?;
        let alias = if value.starts_with(DELETED_PREFIX) { Alias::Deleted } else { Alias::Live(value) };
        self.remember(local_id.to_string(), alias.clone());
        Some(alias)
    }

    fn remember(&mut self, local_id: String, alias: Alias) {
        if self.aliases.len() >= MAX_CACHE {
            self.aliases.clear();
        }
        self.aliases.insert(local_id, alias);
    }

    fn boosters_of(&mut self, uri: &str) -> Vec<String> {
        if let Some(b) = self.boosters.get(uri) {
            return b.clone();
        }
        match self.shared.store.cursor(&boosts_key(uri)) {
            Ok(Some(v)) => {
                String::from_utf8_lossy(&v).lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
            }
            Ok(None) => Vec::new(),
            Err(e) => {
                log::warn!("source mastodon: reading boosters of {uri}: {e}");
                Vec::new()
            }
        }
    }

    /// Commits the pending mutations with the cursors that moved; false if the store failed (the
    /// source then stops: nothing it holds could be made durable).
    async fn flush(&mut self) -> bool {
        for (idx, dirty) in self.newest_dirty.iter_mut().enumerate() {
            if std::mem::take(dirty) {
                if let Some(id) = &self.newest[idx] {
                    self.pending.push(Mutation::SetCursor {
                        name: self.shared.newest_key(idx),
                        value: id.clone().into_bytes(),
                    });
                }
            }
        }
        if self.pending.is_empty() {
            self.caught.drain(..).for_each(|done| {
                let _ = done.send(());
            });
            return true;
        }
        let mutations = std::mem::take(&mut self.pending);
        match commit(&self.shared.store, &self.shared.status, mutations).await {
            Ok(_) => {
                self.caught.drain(..).for_each(|done| {
                    let _ = done.send(());
                });
                for job in self.jobs.drain(..) {
                    if let Err(e) = self.boost_tx.try_send(job) {
                        log::debug!("source mastodon: boost fetch not queued: {e}");
                    }
                }
                true
            }
            Err(e) => {
                let reason = format!("store: {e}");
                log::error!("source mastodon: commit failed: {reason}");
                self.shared.status.set_error(reason.clone());
                let tags = self.shared.options.tags.len();
                for idx in 0..tags {
                    self.shared.set_state(idx, SourceState::Failed { reason: reason.clone() });
                }
                false
            }
        }
    }
}

fn boost_id(uri: &str, booster_key: &str) -> String {
    format!("{uri}#reblogged_by/{booster_key}")
}

fn boosts_key(uri: &str) -> String {
    format!("mastodon:boosts:{uri}")
}

// ------------------------------------------------------------------------------------ boosts

/// A post whose boosters should be asked for.
#[derive(Debug, Clone)]
struct BoostJob {
    local_id: String,
    uri: String,
    author: UserRef,
    tags: Vec<String>,
    reblogs: u64,
}

/// Fetches `reblogged_by` for the posts the committer queues, within the per-minute budget and the
/// shared rate limit. A post is asked again in this run only when its boost count grew.
async fn fetch_boosts(
    shared: Arc<Shared>,
    mut jobs: mpsc::Receiver<BoostJob>,
    tx: mpsc::Sender<Msg>,
    cancel: CancellationToken,
) {
    let budget = RateLimiter::new(shared.options.boost_fetches_per_minute, Duration::from_secs(60));
    let mut asked: HashMap<String, u64> = HashMap::new();
    loop {
        let job = tokio::select! {
            _ = cancel.cancelled() => return,
            job = jobs.recv() => match job {
                Some(job) => job,
                None => return,
            },
        };
        if asked.get(&job.uri).is_some_and(|&n| n >= job.reblogs) {
            continue;
        }
        // A 429 blocks the shared limiter until the reset; try the same post again after it.
        for _attempt in 0..3 {
            match boosters(&shared, &budget, &job, &cancel).await {
                Ok(users) => {
                    if asked.len() >= MAX_CACHE {
                        asked.clear();
                    }
                    asked.insert(job.uri.clone(), job.reblogs);
                    if tx.send(Msg::Boosts { job, boosters: users }).await.is_err() {
                        return;
                    }
                    break;
                }
                Err(End::Cancelled) => return,
                Err(End::Retry { failure: Failure::RateLimited { .. }, .. }) => continue,
                Err(End::Retry { reason, .. } | End::Fatal(reason)) => {
                    log::warn!("source mastodon: boosters of {} not fetched: {reason}", job.uri);
                    break;
                }
            }
        }
    }
}

/// Every page of `GET /api/v1/statuses/:id/reblogged_by`, up to [`MAX_BOOST_PAGES`].
async fn boosters(
    shared: &Shared,
    budget: &RateLimiter,
    job: &BoostJob,
    cancel: &CancellationToken,
) -> Result<Vec<UserRef>, End> {
    let domain = shared.instance.get().and_then(|i| i.domain.clone());
    let mut url = join(&shared.api, &["api", "v1", "statuses", &job.local_id, "reblogged_by"]);
    url.query_pairs_mut().append_pair("limit", &ACCOUNTS_LIMIT.to_string());
    let mut users = Vec::new();
    for _ in 0..MAX_BOOST_PAGES {
        if !budget.acquire(cancel).await {
            return Err(End::Cancelled);
        }
        let response = shared.rest_get(url.clone(), cancel).await?;
        if response.status() == StatusCode::NOT_FOUND {
            // Deleted (or made private) since: its delete, if we may see it, comes on the stream.
            break;
        }
        if !response.status().is_success() {
            return Err(End::retry(Failure::Http, format!("GET {}: {}", url.path(), response.status())));
        }
        let next = link_next(response.headers(), &shared.api);
        let body = read_body(response, MAX_BODY).await.map_err(|e| End::retry(Failure::Network, e))?;
        match decode_accounts(&body, domain.as_deref()) {
            Ok(page) if page.is_empty() => break,
            Ok(page) => users.extend(page),
            Err(e) => {
                shared.skip("a reblogged_by page", &e);
                break;
            }
        }
        match next {
            Some(n) => url = n,
            None => break,
        }
    }
    Ok(users)
}

// ------------------------------------------------------------------------------------ helpers

/// Compares two instance-local status ids: decimal strings numerically (by length, then digits),
/// anything else (a fork's fixed-width ids) bytewise.
pub fn cmp_ids(a: &str, b: &str) -> Ordering {
    let decimal = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if decimal(a) && decimal(b) {
        let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    } else {
        a.cmp(b)
    }
}

/// The `rel="next"` target of a `Link` header, only when it stays on the instance's origin: the
/// token is sent with every request, and must not follow a link elsewhere.
fn link_next(headers: &HeaderMap, api: &Url) -> Option<Url> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        for (target, params) in parse_links(value) {
            let next = params.split(';').any(|p| {
                let p = p.trim();
                p.strip_prefix("rel=")
                    .is_some_and(|rel| rel.trim_matches('"').split_ascii_whitespace().any(|r| r == "next"))
            });
            if !next {
                continue;
            }
            match Url::parse(target) {
                Ok(url) if url.origin() == api.origin() => return Some(url),
                Ok(url) => {
                    log::warn!(
                        "source mastodon: not following a next link to another origin: {}",
                        url.origin().ascii_serialization()
                    );
                    return None;
                }
                Err(_) => return None,
            }
        }
    }
    None
}

/// `<target>; params, <target>; params` into (target, params) pairs.
fn parse_links(value: &str) -> Vec<(&str, &str)> {
    let mut links = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let Some(len) = rest[open + 1..].find('>') else { break };
        let target = &rest[open + 1..open + 1 + len];
        let after = &rest[open + 2 + len..];
        // The parameters run to the next link's `<` (a `<` cannot appear unquoted in them).
        let end = after.find('<').unwrap_or(after.len());
        links.push((target, after[..end].trim_end().trim_end_matches(',')));
        rest = &after[end..];
    }
    links
}

/// Reads a body up to `max` bytes.
async fn read_body(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > max {
                    return Err(format!("response body over {max} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(format!("reading the response: {}", super::error_chain(&e))),
        }
    }
}

/// `ws://` and `wss://` (how `/api/v2/instance` names the streaming host) to their HTTP twins: the
/// server-sent-events endpoint is plain HTTP on the same host.
fn http_scheme(url: &str) -> String {
    let url = url.trim();
    if let Some(rest) = url.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = url.strip_prefix("ws://") {
        format!("http://{rest}")
    } else {
        url.to_string()
    }
}

fn parse_base(url: &str) -> Result<Url, MastodonError> {
    let trimmed = url.trim().trim_end_matches('/');
    let parsed =
        Url::parse(trimmed).map_err(|e| MastodonError::InvalidUrl(url.to_string(), e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(MastodonError::InvalidUrl(url.to_string(), "not an http(s) url".into()));
    }
    Ok(parsed)
}

/// `base` with path segments appended (each percent-encoded), query cleared.
fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// A URL for the log, without any user name or password it was given with.
fn shown(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

/// `host[:port]` of the instance URL: the namespace of this source's cursors.
fn instance_key(api: &Url) -> String {
    let host = api.host_str().unwrap_or("instance").to_ascii_lowercase();
    match api.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_become_lowercase_hashtags_with_or_without_the_hash() {
        let track: Vec<String> = ["#RustLang", "rustlang", " #Fediverse ", "rust lang", "c++", "#", "日本語"]
            .map(String::from)
            .to_vec();
        assert_eq!(hashtags(&track), vec!["rustlang", "fediverse", "日本語"]);
    }

    #[test]
    fn ids_compare_numerically_as_decimal_strings() {
        let cases = [
            ("117020580518794573", "117020580489281910", Ordering::Greater, "same length"),
            ("99", "100", Ordering::Less, "shorter is smaller, not bytewise"),
            ("0100", "100", Ordering::Equal, "leading zeros"),
            ("117020593741189701", "117020593741189701", Ordering::Equal, "equal"),
            ("AbC", "AbD", Ordering::Less, "non-decimal ids bytewise"),
        ];
        for (a, b, want, what) in cases {
            assert_eq!(cmp_ids(a, b), want, "{what}");
        }
    }

    #[test]
    fn link_next_is_followed_only_on_the_instance_origin() {
        let api = Url::parse("http://localhost:3000").expect("url");
        let mut h = HeaderMap::new();
        // The recorded header of cassettes/test_hashtag_tl, as Mastodon 4.6 sends it.
        h.insert(
            reqwest::header::LINK,
            HeaderValue::from_static(
                "<http://localhost:3000/api/v1/timelines/tag/hoot?max_id=117020593741189701>; rel=\"next\", \
                 <http://localhost:3000/api/v1/timelines/tag/hoot?min_id=117020593741189701>; rel=\"prev\"",
            ),
        );
        assert_eq!(
            link_next(&h, &api).map(|u| u.to_string()),
            Some("http://localhost:3000/api/v1/timelines/tag/hoot?max_id=117020593741189701".into())
        );
        h.insert(
            reqwest::header::LINK,
            HeaderValue::from_static("<http://localhost:3000/x?min_id=1>; rel=\"prev\""),
        );
        assert_eq!(link_next(&h, &api), None, "only prev");
        h.insert(
            reqwest::header::LINK,
            HeaderValue::from_static("<https://evil.example/next>; rel=\"next\""),
        );
        assert_eq!(link_next(&h, &api), None, "another origin would receive the token");
        assert_eq!(link_next(&HeaderMap::new(), &api), None, "no header");
    }

    #[test]
    fn the_rate_limit_reset_is_measured_against_the_server_date() {
        let mut h = HeaderMap::new();
        // Recorded pair from cassettes/test_hashtag_tl__1: Date 13:55:55, reset 14:00:00.990979.
        h.insert("x-ratelimit-reset", HeaderValue::from_static("2026-08-01T14:00:00.990979Z"));
        h.insert(DATE, HeaderValue::from_static("Sat, 01 Aug 2026 13:55:55 GMT"));
        assert_eq!(reset_in(&h), Some(Duration::from_millis(245_990) + Duration::from_nanos(979_000)));
        h.insert(DATE, HeaderValue::from_static("Sat, 01 Aug 2026 14:10:00 GMT"));
        assert_eq!(reset_in(&h), Some(Duration::ZERO), "a reset in the past: go now");
        h.insert("x-ratelimit-reset", HeaderValue::from_static("soon"));
        assert_eq!(reset_in(&h), None);
    }

    #[test]
    fn streaming_urls_from_the_instance_become_http() {
        assert_eq!(http_scheme("wss://streaming.mastodon.social"), "https://streaming.mastodon.social");
        assert_eq!(http_scheme("ws://localhost:4000"), "http://localhost:4000");
        assert_eq!(http_scheme("https://a.example"), "https://a.example");
        let base = parse_base("https://mastodon.example/").expect("base");
        assert_eq!(
            join(&base, &["api", "v1", "timelines", "tag", "日本"]).as_str(),
            "https://mastodon.example/api/v1/timelines/tag/%E6%97%A5%E6%9C%AC"
        );
        assert_eq!(instance_key(&parse_base("http://127.0.0.1:4000").expect("base")), "127.0.0.1:4000");
        assert_eq!(shown(&parse_base("https://u:p@a.example").expect("base")), "https://a.example/");
        assert!(parse_base("ftp://x").is_err());
        assert!(parse_base("not a url").is_err());
    }

    #[test]
    fn meta_reads_the_local_id_and_boost_count_loosely() {
        let m = Meta::of(br#"{"id":"117020585505579935","reblogs_count":1,"uri":"u"}"#);
        assert_eq!((m.id.as_deref(), m.reblogs), (Some("117020585505579935"), 1));
        let m = Meta::of(br#"{"id":42,"reblogs_count":"3"}"#);
        assert_eq!((m.id.as_deref(), m.reblogs), (Some("42"), 3));
        let m = Meta::of(br#"{"id":null,"reblogs_count":[]}"#);
        assert_eq!((m.id, m.reblogs), (None, 0));
        assert_eq!(Meta::of(b"{broken").id, None);
    }

    #[test]
    fn the_worst_stream_state_is_shown() {
        let mut states = [SourceState::Streaming, SourceState::Stalled, SourceState::Connecting];
        assert_eq!(states.iter().max_by_key(|s| severity(s)), Some(&SourceState::Stalled));
        states[0] = SourceState::Failed { reason: "401".into() };
        assert!(matches!(states.iter().max_by_key(|s| severity(s)), Some(SourceState::Failed { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn the_limiter_spaces_requests_over_its_window_and_honours_a_block() {
        let cancel = CancellationToken::new();
        let limiter = RateLimiter::new(2, Duration::from_secs(60));
        let start = Instant::now();
        assert!(limiter.acquire(&cancel).await && limiter.acquire(&cancel).await);
        assert_eq!(start.elapsed(), Duration::ZERO, "a burst up to the limit");
        assert!(limiter.acquire(&cancel).await);
        assert_eq!(start.elapsed(), Duration::from_secs(60), "the third waits for the window");
        limiter.block_for(Duration::from_secs(300));
        assert!(limiter.acquire(&cancel).await);
        assert_eq!(start.elapsed(), Duration::from_secs(360), "a 429 blocks until the reset");
        cancel.cancel();
        limiter.block_for(Duration::from_secs(300));
        assert!(!limiter.acquire(&cancel).await, "cancellation ends the wait");
    }

    #[test]
    fn options_need_a_url_a_token_and_a_hashtag_and_never_print_the_token() {
        let settings = MastodonSettings {
            url: Some("https://mastodon.example".into()),
            streaming_url: None,
            token: Some("secret-test-token".into()),
        };
        let o = Options::from_config(&settings, &["#Rust".into()]).expect("valid");
        assert_eq!(o.tags, vec!["rust"]);
        assert!(!format!("{o:?}").contains("secret-test-token"));
        let none = MastodonSettings { token: None, ..settings.clone() };
        assert_eq!(Options::from_config(&none, &["#rust".into()]).unwrap_err(), MastodonError::MissingToken);
        assert!(matches!(Options::from_config(&settings, &["a b".into()]), Err(MastodonError::NoHashtag(_))));
    }
}
