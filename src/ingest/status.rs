//! What each running source reports: its state and counters, shown per source in `/status`.
//!
//! Sources update these lock-free (atomics) on their hot path; the state, which changes rarely, sits
//! behind a mutex. Nothing here ever holds a credential.

use parking_lot::Mutex;
use serde::Serialize;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// Where a source is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SourceState {
    Connecting,
    Streaming,
    /// Waiting before the next attempt; `until` is RFC 3339.
    BackingOff {
        until: String,
        reason: String,
    },
    /// No bytes for too long: reconnecting.
    Stalled,
    /// Gave up (bad credentials, a configuration the platform refuses).
    Failed {
        reason: String,
    },
    Stopped,
    /// On a shared database, another replica runs this source; this one takes it over if that one
    /// goes away.
    Standby {
        reason: String,
    },
}

impl SourceState {
    /// The state's name, as `/status` spells it.
    pub fn label(&self) -> &'static str {
        match self {
            SourceState::Connecting => "connecting",
            SourceState::Streaming => "streaming",
            SourceState::BackingOff { .. } => "backing_off",
            SourceState::Stalled => "stalled",
            SourceState::Failed { .. } => "failed",
            SourceState::Stopped => "stopped",
            SourceState::Standby { .. } => "standby",
        }
    }
}

/// Counters and state of one source.
#[derive(Debug)]
pub struct SourceStatus {
    pub name: String,
    state: Mutex<SourceState>,
    pub posts: AtomicU64,
    pub interactions: AtomicU64,
    pub duplicates: AtomicU64,
    pub skipped: AtomicU64,
    pub reconnects: AtomicU64,
    pub deleted: AtomicU64,
    /// Unix seconds of the newest post ingested (0: none yet).
    pub last_post_at: AtomicI64,
    /// Unix seconds when the platform's rate limit resets, when known (0: unknown).
    pub rate_limit_reset: AtomicI64,
    last_error: Mutex<Option<String>>,
}

/// The JSON shape of a source in `/status`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SourceReport {
    pub name: String,
    #[serde(flatten)]
    pub state: SourceState,
    pub posts: u64,
    pub interactions: u64,
    pub duplicates: u64,
    pub skipped: u64,
    pub deleted: u64,
    pub reconnects: u64,
    pub last_post_at: Option<String>,
    pub rate_limit_reset: Option<String>,
    pub last_error: Option<String>,
}

impl SourceStatus {
    pub fn new(name: impl Into<String>) -> Arc<SourceStatus> {
        Arc::new(SourceStatus {
            name: name.into(),
            state: Mutex::new(SourceState::Connecting),
            posts: AtomicU64::new(0),
            interactions: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            deleted: AtomicU64::new(0),
            last_post_at: AtomicI64::new(0),
            rate_limit_reset: AtomicI64::new(0),
            last_error: Mutex::new(None),
        })
    }

    pub(crate) fn set_state(&self, state: SourceState) {
        *self.state.lock() = state;
    }

    pub fn state(&self) -> SourceState {
        self.state.lock().clone()
    }

    /// Remembers the latest problem (already free of secrets) for `/status`.
    pub(crate) fn set_error(&self, error: impl Into<String>) {
        *self.last_error.lock() = Some(error.into());
    }

    pub fn add(&self, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Notes a post's time if it is the newest seen.
    pub(crate) fn saw_post_at(&self, at: i64) {
        self.last_post_at.fetch_max(at, Ordering::Relaxed);
    }

    pub fn report(&self) -> SourceReport {
        let time = |a: &AtomicI64| {
            let v = a.load(Ordering::Relaxed);
            (v > 0).then(|| crate::graph::rfc3339(v))
        };
        SourceReport {
            name: self.name.clone(),
            state: self.state(),
            posts: self.posts.load(Ordering::Relaxed),
            interactions: self.interactions.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            deleted: self.deleted.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            last_post_at: time(&self.last_post_at),
            rate_limit_reset: time(&self.rate_limit_reset),
            last_error: self.last_error.lock().clone(),
        }
    }
}

/// Every source of the running service, for `/status`.
#[derive(Debug, Default)]
pub struct Registry {
    sources: Mutex<Vec<Arc<SourceStatus>>>,
}

impl Registry {
    pub fn register(&self, name: impl Into<String>) -> Arc<SourceStatus> {
        let s = SourceStatus::new(name);
        self.sources.lock().push(s.clone());
        s
    }

    pub fn reports(&self) -> Vec<SourceReport> {
        self.all().iter().map(|s| s.report()).collect()
    }

    /// The sources themselves, for readers of their counters (`/metrics`).
    pub fn all(&self) -> Vec<Arc<SourceStatus>> {
        self.sources.lock().clone()
    }
}
