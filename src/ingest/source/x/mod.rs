//! The X API v2 filtered-stream source.
//!
//! One task per process: it keeps the stream rules in step with the tracked terms, holds the endless
//! stream open, fills the gap of every outage from recent search, and commits posts together with the
//! resume cursor (`x:since_id`, the newest tweet id seen) through [`super::commit`]. Decoding is
//! [`x_v2::decode`]'s and the reconnect schedule [`Backoff`]'s; this module owns the network and the
//! timing, and knows nothing of the HTTP API that serves the graph.
//!
//! # Life of the task
//!
//! 1. **Rules** (until it succeeds once): `GET /2/tweets/search/stream/rules`; delete the rules tagged
//!    `tagflow:` whose value is no longer tracked (never a rule another tool created); add each tracked
//!    term that no `tagflow:` rule holds, tagged `tagflow:<term>`. A `DuplicateRule` answer means another
//!    tool already has that value: the stream delivers its matches to us too, so it counts as present.
//! 2. **Connect** `GET /2/tweets/search/stream` with the expansions and fields of `PROTOCOLS.md`. No total
//!    request timeout: the response headers must come within the stall timeout, then every read has its
//!    own idle timeout (21 s by default; the server sends a `\r\n` keep-alive every 20 s).
//! 3. **Backfill** after an outage (a start with a persisted cursor, every reconnect): once the stream is
//!    connected, page through `GET /2/tweets/search/recent?since_id=<newest seen>` following
//!    `meta.next_token`. Pages commit without moving the cursor; the last one moves it, so that a crash in
//!    the middle redoes the whole backfill (posts are idempotent) instead of skipping what it had not
//!    reached. Doing it after connecting leaves no gap between the search and the stream.
//! 4. **Read**: chunks are split into lines ([`LineSplitter`], capped at [`MAX_LINE`]), decoded, and
//!    committed as a group when the connection has nothing more ready, or every [`COMMIT_EVERY`] /
//!    [`COMMIT_POSTS`] under a sustained burst. Each commit carries the cursor of the posts it holds.
//!    An `operational-disconnect` line ends the connection; so do a stall, an over-long line, a read
//!    error and the server closing.
//! 5. **Wait** as [`Backoff`] says, showing `backing_off` with the reason in `/status`, and go to 2.
//!    A rejected token (401/403) is retried [`AUTH_ATTEMPTS`] times, then the source stops as `failed`.
//!
//! Rules are in `rules.rs`, the backfill in `backfill.rs`.
//!
//! The bearer token is a sensitive default header of the client: it is in no URL, and every message
//! that reaches a log line or `/status` passes through a redaction as well.

use super::backoff::{Backoff, Failure};
use super::http;
use super::lines::LineSplitter;
use super::supervise::{settle, Next, Verdict};
use super::SourcesError;
use super::{commit, to_mutation};
use crate::graph::{Mutation, Record};
use crate::ingest::decode::x_v2;
use crate::ingest::status::{SourceState, SourceStatus};
use crate::secret::Secret;
use crate::store::{StoreError, StoreHandle};
use futures_util::{FutureExt, StreamExt};
use reqwest::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The X source's settings as `serve` takes them (flattened into its arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct XArgs {
    /// X API base URL (the token is TAGFLOW_X_BEARER_TOKEN, from the environment only).
    #[arg(long, env = "TAGFLOW_X_API_URL", default_value = "https://api.x.com")]
    pub x_api_url: String,
    /// X stream: milliseconds without a byte (keep-alives count) before the connection counts as
    /// stalled and is replaced. Hidden: X sends a keep-alive every 20 s, so only tests change it.
    #[arg(
        long,
        env = "TAGFLOW_X_STALL_TIMEOUT_MS",
        default_value_t = 21_000,
        hide = true,
        value_parser = clap::value_parser!(u64).range(1..=3_600_000)
    )]
    pub x_stall_timeout_ms: u64,
}

/// The environment variable holding the X bearer token (never accepted as a flag).
pub(crate) const ENV_X_BEARER_TOKEN: &str = "TAGFLOW_X_BEARER_TOKEN";

/// X API v2 settings. The token is read from the environment, never from a flag.
#[derive(Debug, Clone)]
pub struct XSettings {
    pub api_url: String,
    pub bearer_token: Option<Secret>,
    /// Silence on the stream (not even a keep-alive) longer than this is a stall: reconnect.
    pub stall_timeout: Duration,
}

impl XArgs {
    /// The settings these arguments and the environment make.
    pub fn settings(&self) -> XSettings {
        XSettings {
            api_url: self.x_api_url.trim_end_matches('/').to_string(),
            bearer_token: crate::secret::from_env(ENV_X_BEARER_TOKEN),
            stall_timeout: Duration::from_millis(self.x_stall_timeout_ms),
        }
    }
}

impl XSettings {
    /// What running the source needs, checked before anything starts.
    ///
    /// # Errors
    /// No token, or an API URL that is not http(s).
    pub fn check(&self) -> Result<(), SourcesError> {
        if self.bearer_token.is_none() {
            return Err(SourcesError::MissingCredential("x", ENV_X_BEARER_TOKEN));
        }
        super::check_url("x", "--x-api-url", &self.api_url, &["http", "https"])
    }
}

mod backfill;
mod rules;

/// The persisted resume position: the newest tweet id seen, as decimal text.
pub const CURSOR: &str = "x:since_id";
/// Tag prefix of the rules this source owns. Rules without it belong to other tools and are kept.
pub(crate) const RULE_TAG_PREFIX: &str = "tagflow:";
/// A line longer than this without a newline means the stream is broken: end the connection.
pub(crate) const MAX_LINE: usize = 1 << 20;
/// Commit at least this often while chunks keep arriving back to back.
pub(crate) const COMMIT_EVERY: Duration = Duration::from_millis(200);
/// Commit at least every this many posts while chunks keep arriving back to back.
pub(crate) const COMMIT_POSTS: usize = 500;
/// Consecutive 401/403 answers before the source gives up and reports `failed`.
pub const AUTH_ATTEMPTS: u32 = 3;

/// `expansions` of the stream and of recent search (`PROTOCOLS.md`).
pub(crate) const EXPANSIONS: &str =
    "author_id,referenced_tweets.id,referenced_tweets.id.author_id,entities.mentions.username,in_reply_to_user_id";
/// `tweet.fields` of the stream and of recent search.
pub(crate) const TWEET_FIELDS: &str =
    "author_id,created_at,conversation_id,entities,in_reply_to_user_id,referenced_tweets,lang";
/// `user.fields` of the stream and of recent search.
pub(crate) const USER_FIELDS: &str = "id,name,username,created_at,public_metrics,verified";

/// Rules and search answers are small and bounded: these requests, unlike the stream, get a total timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A runaway `next_token` chain stops here (100 tweets a page).
const MAX_BACKFILL_PAGES: usize = 500;
/// A search page larger than this is refused rather than buffered.
const MAX_PAGE_BYTES: usize = 32 << 20;
/// Malformed lines: one sample logged per this interval, the rest counted.
const SKIP_LOG_EVERY: Duration = Duration::from_secs(60);

/// Runs the X source until cancelled, or until X refuses the token for good.
///
/// Never returns an error: problems are logged, shown in `status` and retried on the published
/// schedule. A store failure (the disk, a shutdown) stops the source as `failed`.
pub async fn run(
    settings: XSettings,
    track: Vec<String>,
    store: StoreHandle,
    status: Arc<SourceStatus>,
    cancel: CancellationToken,
) {
    let Some(token) = settings.bearer_token.clone().filter(|t| !t.expose().is_empty()) else {
        let reason = format!("no bearer token: set {ENV_X_BEARER_TOKEN}");
        log::error!("source x: {reason}");
        status.set_state(SourceState::Failed { reason });
        return;
    };
    let client = match http::client(Some(token.expose()), ENV_X_BEARER_TOKEN) {
        Ok(c) => c,
        Err(reason) => {
            log::error!("source x: {reason}");
            status.set_state(SourceState::Failed { reason });
            return;
        }
    };
    let saved = match store.cursor(CURSOR) {
        Ok(v) => v.and_then(|v| std::str::from_utf8(&v).ok().and_then(tweet_id)),
        Err(e) => {
            log::warn!("source x: cannot read cursor {CURSOR}: {e}; starting without backfill");
            None
        }
    };
    let mut source = XSource {
        client,
        base: settings.api_url.trim_end_matches('/').to_string(),
        token,
        track,
        stall: settings.stall_timeout,
        store,
        status,
        cancel,
        backoff: Backoff::new(),
        newest: saved,
        saved,
        backfill_since: saved,
        backfill_enabled: true,
        rules_synced: false,
        auth_failures: 0,
        pending: Vec::new(),
        pending_posts: 0,
        skip_log: super::Throttle::new(SKIP_LOG_EVERY),
    };
    source.run().await;
}

/// Why one attempt (rules, connect, backfill, read) ended.
#[derive(Debug)]
enum End {
    Cancelled,
    /// The store refused the commit: nothing more can be kept.
    Store(StoreError),
    /// Wait as the schedule says for `failure`, then try again.
    Retry {
        failure: Failure,
        reason: String,
        /// A 401/403: counted towards giving up.
        auth: bool,
        stalled: bool,
    },
}

impl End {
    fn retry(failure: Failure, reason: impl Into<String>) -> End {
        End::Retry { failure, reason: reason.into(), auth: false, stalled: false }
    }
}

impl From<StoreError> for End {
    fn from(e: StoreError) -> End {
        End::Store(e)
    }
}

struct XSource {
    client: reqwest::Client,
    base: String,
    token: Secret,
    track: Vec<String>,
    stall: Duration,
    store: StoreHandle,
    status: Arc<SourceStatus>,
    cancel: CancellationToken,
    backoff: Backoff,
    /// Newest tweet id seen (committed or pending).
    newest: Option<u128>,
    /// Newest tweet id whose cursor is committed.
    saved: Option<u128>,
    /// The outage to fill: backfill from this id once the stream is connected again.
    backfill_since: Option<u128>,
    /// False once recent search refused this app (no access on its tier): stop asking.
    backfill_enabled: bool,
    rules_synced: bool,
    auth_failures: u32,
    pending: Vec<Mutation>,
    pending_posts: usize,
    skip_log: super::Throttle,
}

impl XSource {
    async fn run(&mut self) {
        log::info!("source x: starting api={} track={:?} cursor={:?}", self.base, self.track, self.saved);
        let mut first = true;
        loop {
            if self.cancel.is_cancelled() {
                break;
            }
            if !first {
                self.status.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            first = false;
            self.status.set_state(SourceState::Connecting);
            let ended = self.attempt().await;
            // Whatever ended the attempt, what was decoded is kept (a partial line is not).
            let ended = match self.commit_pending(true).await {
                Ok(()) => ended,
                Err(e) => End::Store(e),
            };
            // Whatever happened, the next connection must cover what this one may have missed.
            if self.backfill_since.is_none() {
                self.backfill_since = self.newest;
            }
            let verdict = match ended {
                End::Cancelled => Verdict::Stop,
                End::Store(e) => Verdict::Fail(format!("commit failed: {e}")),
                End::Retry { failure, reason, auth, stalled } => {
                    let reason = self.redact(reason);
                    self.auth_failures += u32::from(auth);
                    if auth && self.auth_failures >= AUTH_ATTEMPTS {
                        Verdict::Fail(format!(
                            "{reason}; X refused the bearer token {} times in a row, giving up: \
                             check {ENV_X_BEARER_TOKEN} and the app's access level, then restart",
                            self.auth_failures
                        ))
                    } else {
                        // The stream resets the schedule itself once it is healthy; a drop is a
                        // healthy stream's, or the server asking for a reconnect.
                        Verdict::Retry { failure, reason, stalled, healthy: failure == Failure::Dropped }
                    }
                }
            };
            match settle("x", &*self.status, &mut self.backoff, &self.cancel, verdict).await {
                Next::Again => {}
                Next::Stop => break,
                Next::Failed => return,
            }
        }
        self.status.set_state(SourceState::Stopped);
        log::info!("source x: stopped cursor={:?}", self.saved);
    }

    /// One connection: rules (until synced once), connect, backfill (after an outage), read.
    async fn attempt(&mut self) -> End {
        if !self.rules_synced {
            if let Err(ended) = self.sync_rules().await {
                return ended;
            }
            self.rules_synced = true;
        }
        let response = match self.connect().await {
            Ok(r) => r,
            Err(ended) => return ended,
        };
        self.auth_failures = 0;
        self.status.set_state(SourceState::Streaming);
        log::info!("source x: stream connected");
        if let Some(since) = self.backfill_since {
            if self.backfill_enabled {
                let newest = self.newest;
                let backfilled = self.backfill(since).await;
                if backfilled.is_err() {
                    // The pages already committed stay (they are idempotent), but the cursor must not
                    // claim the gap is filled: forget their ids.
                    self.newest = newest;
                }
                match backfilled {
                    Ok(()) => {}
                    Err(End::Retry { reason, .. }) => {
                        // The stream is fine: keep it, and try the gap again on the next reconnect.
                        let reason = self.redact(format!("backfill since_id={since}: {reason}"));
                        log::warn!("source x: {reason}");
                        self.status.set_error(reason);
                    }
                    Err(ended) => return ended,
                }
            } else {
                self.backfill_since = None;
            }
        }
        self.read(response).await
    }

    // ---- rules ----

    /// Sends a bounded request; any answer but a success is the failure it stands for.
    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> Result<Response, End> {
        let response = self.send_any(request, what).await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.failure_of(response, what).await)
        }
    }

    /// Sends a bounded request and returns whatever status it answers.
    async fn send_any(&self, request: reqwest::RequestBuilder, what: &str) -> Result<Response, End> {
        let sent = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Err(End::Cancelled),
            r = request.timeout(REQUEST_TIMEOUT).send() => r,
        };
        sent.map_err(|e| End::retry(Failure::Network, format!("{what}: {}", http::request_error(e))))
    }

    async fn json_of<T: serde::de::DeserializeOwned>(
        &self,
        response: Response,
        what: &str,
    ) -> Result<T, End> {
        let body = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Err(End::Cancelled),
            b = response.bytes() => b,
        };
        let body =
            body.map_err(|e| End::retry(Failure::Network, format!("{what}: {}", http::request_error(e))))?;
        serde_json::from_slice(&body)
            .map_err(|e| End::retry(Failure::Http, format!("{what}: unexpected answer: {e}")))
    }

    /// The failure an error status stands for; records the rate-limit reset of a 429.
    async fn failure_of(&self, response: Response, what: &str) -> End {
        let code = response.status();
        let reset = response
            .headers()
            .get("x-rate-limit-reset")
            .and_then(|v| v.to_str().ok()?.trim().parse::<i64>().ok());
        let detail = problem_text(&http::read_prefix(response, 16 << 10).await);
        let reason = format!("{what}: HTTP {code} {detail}").trim_end().to_string();
        match code {
            StatusCode::TOO_MANY_REQUESTS => {
                let reset_in = reset.and_then(|r| {
                    self.status.rate_limit_reset.store(r, Ordering::Relaxed);
                    let left = r - chrono::Utc::now().timestamp();
                    (left > 0).then(|| Duration::from_secs(left as u64))
                });
                End::retry(Failure::RateLimited { reset_in }, reason)
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                End::Retry { failure: Failure::Http, reason, auth: true, stalled: false }
            }
            _ => End::retry(Failure::Http, reason),
        }
    }

    // ---- stream ----

    async fn connect(&self) -> Result<Response, End> {
        let request = self.client.get(format!("{}/2/tweets/search/stream", self.base)).query(&[
            ("expansions", EXPANSIONS),
            ("tweet.fields", TWEET_FIELDS),
            ("user.fields", USER_FIELDS),
        ]);
        // No total timeout on the stream: only its headers must come within the stall timeout.
        let sent = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Err(End::Cancelled),
            r = tokio::time::timeout(self.stall, request.send()) => r,
        };
        let response = match sent {
            Err(_) => {
                let reason = format!("stream: no answer within {:?}", self.stall);
                return Err(End::retry(Failure::Network, reason));
            }
            Ok(Err(e)) => {
                return Err(End::retry(Failure::Network, format!("stream: {}", http::request_error(e))))
            }
            Ok(Ok(r)) => r,
        };
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.failure_of(response, "stream").await)
        }
    }

    /// Reads the stream until it ends; commits as it goes.
    async fn read(&mut self, response: Response) -> End {
        let mut body = std::pin::pin!(response.bytes_stream());
        let mut lines = LineSplitter::new(MAX_LINE);
        let mut healthy = false;
        loop {
            let next = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return End::Cancelled,
                r = tokio::time::timeout(self.stall, body.next()) => r,
            };
            let chunk = match next {
                Err(_) => {
                    let reason = format!("stream stalled: no data for {:.1}s", self.stall.as_secs_f64());
                    return End::Retry { failure: Failure::Network, reason, auth: false, stalled: true };
                }
                Ok(None) => return self.closed(healthy, &mut lines),
                Ok(Some(Err(e))) => {
                    return End::retry(Failure::Network, format!("stream read: {}", http::request_error(e)))
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            if !healthy {
                // Data flows: the next failure starts the schedule over.
                healthy = true;
                self.backoff.reset();
            }
            let mut end = self.take_chunk(&chunk, &mut lines);
            // Group commit: take what has already arrived, within the limits, then commit once.
            let started = Instant::now();
            while end.is_none() && self.pending_posts < COMMIT_POSTS && started.elapsed() < COMMIT_EVERY {
                match body.next().now_or_never() {
                    Some(Some(Ok(chunk))) => end = self.take_chunk(&chunk, &mut lines),
                    Some(Some(Err(e))) => {
                        end = Some(End::retry(
                            Failure::Network,
                            format!("stream read: {}", http::request_error(e)),
                        ))
                    }
                    Some(None) => end = Some(self.closed(healthy, &mut lines)),
                    None => break,
                }
            }
            if let Err(e) = self.commit_pending(true).await {
                return End::Store(e);
            }
            if let Some(end) = end {
                return end;
            }
        }
    }

    /// The server ended the body.
    fn closed(&mut self, healthy: bool, lines: &mut LineSplitter) -> End {
        if let Some(partial) = lines.take_partial() {
            self.skip("stream: the connection ended inside a line", &partial);
        }
        if healthy {
            End::retry(Failure::Dropped, "stream closed by the server")
        } else {
            End::retry(Failure::Network, "stream closed before sending anything")
        }
    }

    /// Decodes the lines a chunk completes; `Some` when the connection must end.
    fn take_chunk(&mut self, chunk: &[u8], lines: &mut LineSplitter) -> Option<End> {
        let complete = match lines.push(chunk) {
            Ok(complete) => complete,
            Err(e) => {
                self.skip(&format!("stream: {e}"), &[]);
                return Some(End::retry(Failure::Network, format!("stream: {e}")));
            }
        };
        let mut end = None;
        for line in complete {
            if let Some(reason) = self.take_line(&line) {
                end = Some(End::retry(Failure::Dropped, format!("operational-disconnect: {reason}")));
            }
        }
        end
    }

    /// Decodes one line into the pending batch; returns the reason of an in-band disconnect.
    fn take_line(&mut self, line: &[u8]) -> Option<String> {
        let records = match x_v2::decode(line) {
            Ok(records) => records,
            Err(e) => {
                self.skip(&format!("stream: malformed line: {e}"), line);
                return None;
            }
        };
        let mut disconnect = None;
        for record in records {
            match record {
                Record::Disconnect { reason } => disconnect = Some(reason),
                other => self.push(other),
            }
        }
        disconnect
    }

    fn push(&mut self, record: Record) {
        if let Record::Post(post) | Record::Edit(post) = &record {
            self.pending_posts += 1;
            if let Some(id) = tweet_id(&post.id) {
                self.newest = self.newest.max(Some(id));
            }
        }
        self.pending.extend(to_mutation(record));
    }

    /// Commits the pending batch, with the cursor when `advance` and it moved.
    async fn commit_pending(&mut self, advance: bool) -> Result<(), StoreError> {
        let mut batch = std::mem::take(&mut self.pending);
        self.pending_posts = 0;
        let moved = advance && self.newest > self.saved;
        if moved {
            if let Some(id) = self.newest {
                batch.push(Mutation::SetCursor {
                    name: CURSOR.to_string(),
                    value: id.to_string().into_bytes(),
                });
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        commit(&self.store, &self.status, batch).await?;
        if moved {
            self.saved = self.newest;
        }
        Ok(())
    }

    // ---- backfill ----

    /// Counts a record that could not be used; logs a sample at most once a minute.
    fn skip(&mut self, what: &str, sample: &[u8]) {
        self.status.skipped.fetch_add(1, Ordering::Relaxed);
        let Some(unsaid) = self.skip_log.pass() else { return };
        let shown = String::from_utf8_lossy(&sample[..sample.len().min(160)]).into_owned();
        let message = self.redact(format!(
            "source x: skipped: {what} sample={shown:?} (+{unsaid} more skipped since the last sample)"
        ));
        log::warn!("{message}");
    }

    /// Removes the token from a message bound for a log line or `/status`. Requests carry the token
    /// only in a header, so this should never find it; it is the last line of defence.
    fn redact(&self, message: String) -> String {
        let token = self.token.expose();
        if token.len() >= 4 && message.contains(token) {
            message.replace(token, "<redacted>")
        } else {
            message
        }
    }
}

/// A rule or tweet id as text: a JSON string, or an integer (serde_json keeps those exact as u64).
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_u64() => n.as_u64().map(|n| n.to_string()),
        _ => None,
    }
}

/// A tweet id as a number, for "newest" comparisons: decimal digits only, compared as integers (as
/// text, "999" would sort after "1000"; as f64, 19-digit ids lose their last digits).
pub(crate) fn tweet_id(s: &str) -> Option<u128> {
    let s = s.trim();
    if s.is_empty() || s.len() > 38 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The recent-search query for the tracked terms: OR-joined, a multi-word term grouped (in a rule,
/// words side by side mean AND).
pub(crate) fn search_query(track: &[String]) -> String {
    track
        .iter()
        .map(|t| if t.split_whitespace().nth(1).is_some() { format!("({t})") } else { t.clone() })
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// `title`, `connection_issue` and `detail` of an X problem body, or the start of a non-JSON body.
fn problem_text(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            // A problem is either the body itself or the first entry of `errors`.
            let p = if v.get("title").is_some() {
                &v
            } else {
                v.get("errors").and_then(|e| e.get(0)).unwrap_or(&v)
            };
            let field = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_owned);
            [field("title"), field("connection_issue"), field("detail").or_else(|| field("message"))]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ")
        }
        Err(_) => String::from_utf8_lossy(body).split_whitespace().collect::<Vec<_>>().join(" "),
    };
    text.chars().take(240).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tweet_ids_compare_as_numbers_not_text_or_floats() {
        assert!(tweet_id("1000") > tweet_id("999"), "text order would say otherwise");
        // Two 19-digit ids one apart are equal as f64; as integers they are not.
        let (a, b) = ("1377650529766154240", "1377650529766154241");
        assert_eq!(a.parse::<f64>().unwrap(), b.parse::<f64>().unwrap());
        assert!(tweet_id(b) > tweet_id(a));
        assert_eq!(tweet_id(" 42 "), Some(42));
        for bad in ["", "-1", "1e5", "12a", "1.0", &"9".repeat(39)] {
            assert_eq!(tweet_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn search_query_or_joins_terms_and_groups_phrases() {
        let track = ["#rustlang".to_string(), "rust lang".to_string(), "ferris".to_string()];
        assert_eq!(search_query(&track), "#rustlang OR (rust lang) OR ferris");
        assert_eq!(search_query(&track[..1]), "#rustlang");
    }

    #[test]
    fn problem_bodies_are_summarised() {
        let too_many = br#"{"title":"ConnectionException","detail":"This stream is currently at the maximum allowed connection limit.","connection_issue":"TooManyConnections","type":"https://api.twitter.com/2/problems/streaming-connection"}"#;
        assert_eq!(
            problem_text(too_many),
            "ConnectionException: TooManyConnections: This stream is currently at the maximum allowed connection limit."
        );
        let plain = br#"{"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429}"#;
        assert_eq!(problem_text(plain), "Too Many Requests: Too Many Requests");
        let nested = br#"{"errors":[{"message":"Invalid or expired token","code":89}]}"#;
        assert_eq!(problem_text(nested), "Invalid or expired token");
        assert_eq!(problem_text(b"<html>\n Bad   gateway</html>"), "<html> Bad gateway</html>");
        assert_eq!(problem_text(&[b'x'; 1000]).len(), 240, "bounded");
    }

    #[test]
    fn rule_ids_are_read_as_strings_or_integers_never_floats() {
        assert_eq!(id_text(&json!("1377649934414049282")), Some("1377649934414049282".into()));
        assert_eq!(id_text(&json!(1377649934414049282u64)), Some("1377649934414049282".into()));
        assert_eq!(id_text(&json!(1.5)), None);
        assert_eq!(id_text(&json!(null)), None);
    }
}
