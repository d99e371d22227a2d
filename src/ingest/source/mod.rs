//! Sources: long-running tasks that turn a feed (the demo simulator, a platform stream) into
//! mutations for the store's write path, and report their state in `/status`.

pub mod backoff;
pub mod demo;
mod http;
pub mod jetstream;
pub mod lines;
pub mod mastodon;
mod supervise;
pub mod x;

use super::status::{SourceState, SourceStatus};
use crate::graph::{Mutation, Outcome, Record};
use crate::store::{StoreError, StoreHandle};
use std::sync::atomic::Ordering;

/// A source's settings that cannot run: what `serve` refuses to start with, naming the setting.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum SourcesError {
    #[error("--demo-rate must be between 0.01 and 100000 posts per second, not {0}")]
    DemoRate(f64),
    #[error("--demo-users must be at least 10")]
    DemoUsers,
    #[error("--sources none cannot be combined with other sources")]
    NoneWithOthers,
    #[error("source {0} needs {1} in the environment")]
    MissingCredential(&'static str, &'static str),
    #[error("--track is empty")]
    NoTrack,
    #[error("source {name}: {flag} {url:?} is not a usable URL: {why}")]
    InvalidUrl { name: &'static str, flag: &'static str, url: String, why: String },
    #[error(transparent)]
    Mastodon(#[from] mastodon::MastodonError),
}

/// Checks that `url` parses, names a host, and has one of `schemes`.
fn check_url(
    name: &'static str,
    flag: &'static str,
    url: &str,
    schemes: &[&str],
) -> Result<(), SourcesError> {
    let invalid = |why: String| SourcesError::InvalidUrl { name, flag, url: url.to_string(), why };
    match reqwest::Url::parse(url) {
        Ok(u) if schemes.contains(&u.scheme()) && u.host_str().is_some() => Ok(()),
        Ok(_) => Err(invalid(format!("not a {} URL with a host", schemes.join(" or ")))),
        Err(e) => Err(invalid(e.to_string())),
    }
}

/// Warnings at most once per period: the first, then one per `every` saying how many went unsaid.
#[derive(Debug)]
pub(crate) struct Throttle {
    every: std::time::Duration,
    next: Option<std::time::Instant>,
    unsaid: u64,
}

impl Throttle {
    pub(crate) fn new(every: std::time::Duration) -> Throttle {
        Throttle { every, next: None, unsaid: 0 }
    }

    /// `Some(how many went unsaid since the last)` when a warning may be logged now; counts it
    /// unsaid otherwise.
    pub(crate) fn pass(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        if self.next.is_some_and(|at| now < at) {
            self.unsaid += 1;
            return None;
        }
        self.next = Some(now + self.every);
        Some(std::mem::take(&mut self.unsaid))
    }
}

/// An error and its causes on one line (reqwest's and tungstenite's own messages omit the cause),
/// each cause once even when a message already quotes it. Callers strip what must not be shown
/// (a URL) before: no error here carries headers, so a token cannot appear.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The mutation a decoded record asks for, if any.
pub fn to_mutation(record: Record) -> Option<Mutation> {
    match record {
        Record::Post(p) => Some(Mutation::ApplyPost(p)),
        Record::Edit(p) => Some(Mutation::EditPost(p)),
        Record::Delete { platform, id } => Some(Mutation::RetractPost { platform, id }),
        Record::Profile(u) => Some(Mutation::Profile(u)),
        Record::Disconnect { .. } | Record::Ignored => None,
    }
}

/// What one commit of ingested mutations did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub posts: u64,
    pub interactions: u64,
    pub duplicates: u64,
    pub deleted: u64,
    pub new_users: u64,
}

impl Tally {
    pub fn add(&mut self, o: &Tally) {
        self.posts += o.posts;
        self.interactions += o.interactions;
        self.duplicates += o.duplicates;
        self.deleted += o.deleted;
        self.new_users += o.new_users;
    }

    /// Counts the outcomes of a committed batch.
    pub fn of<'a, E: 'a>(outcomes: impl IntoIterator<Item = &'a Result<Outcome, E>>) -> Tally {
        let mut t = Tally::default();
        for o in outcomes {
            match o {
                Ok(Outcome::PostApplied { interactions, new_users }) => {
                    t.posts += 1;
                    t.interactions += *interactions as u64;
                    t.new_users += *new_users as u64;
                }
                Ok(Outcome::Duplicate) => t.duplicates += 1,
                Ok(Outcome::PostRetracted { .. }) => t.deleted += 1,
                _ => {}
            }
        }
        t
    }

    /// Adds this tally to a source's counters.
    pub(crate) fn report_to(&self, status: &SourceStatus) {
        status.posts.fetch_add(self.posts, Ordering::Relaxed);
        status.interactions.fetch_add(self.interactions, Ordering::Relaxed);
        status.duplicates.fetch_add(self.duplicates, Ordering::Relaxed);
        status.deleted.fetch_add(self.deleted, Ordering::Relaxed);
    }
}

/// How long a source waits before it tries a failed commit again, at most.
const STORE_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(10);

/// Commits a source's mutations (durably) and counts them in its status. While the store cannot
/// make them durable (a full disk, the database unreachable), the source waits and tries the same
/// commit again, showing `backing_off` with the cause: it keeps its place in its stream (the cursor is
/// committed with the posts) and goes on by itself once the store is back.
///
/// # Errors
/// The store is shut down.
pub async fn commit(
    store: &StoreHandle,
    status: &SourceStatus,
    mutations: Vec<Mutation>,
) -> Result<Tally, StoreError> {
    if mutations.is_empty() {
        return Ok(Tally::default());
    }
    let newest = mutations
        .iter()
        .filter_map(|m| match m {
            Mutation::ApplyPost(p) | Mutation::EditPost(p) => p.created_at,
            _ => None,
        })
        .max();
    let mut wait = std::time::Duration::from_millis(250);
    let mut paused: Option<SourceState> = None;
    let outcomes = loop {
        match store.submit(mutations.clone()).await {
            Ok(outcomes) => break outcomes,
            Err(StoreError::Closed) => return Err(StoreError::Closed),
            Err(e) => {
                let reason = format!("the store cannot take its posts: {e}");
                if paused.is_none() {
                    log::warn!("source {}: {reason}; retrying until it can", status.name);
                    paused = Some(status.state());
                }
                let until = chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                status.set_error(reason.clone());
                status.set_state(SourceState::BackingOff { until: until.to_rfc3339(), reason });
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(STORE_RETRY_MAX);
            }
        }
    };
    if let Some(state) = paused {
        log::info!("source {}: the store takes its posts again", status.name);
        status.set_state(state);
    }
    let tally = Tally::of(&outcomes);
    tally.report_to(status);
    if let Some(t) = newest {
        status.saw_post_at(t);
    }
    Ok(tally)
}

#[cfg(test)]
mod throttle_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_throttled_warning_passes_once_per_period_and_counts_the_rest() {
        let mut t = Throttle::new(Duration::from_millis(100));
        assert_eq!(t.pass(), Some(0), "the first passes");
        assert_eq!((t.pass(), t.pass()), (None, None));
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(t.pass(), Some(2), "then one, saying how many went unsaid");
        assert_eq!(t.pass(), None);
    }

    #[test]
    fn an_error_chain_names_each_cause_once() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E(
            "request failed: connection refused",
            Some(Box::new(E("connection refused", Some(Box::new(E("os error 111", None)))))),
        );
        assert_eq!(error_chain(&e), "request failed: connection refused: os error 111");
    }
}
