//! The change feed: what each durable commit changed in the graph, for consumers that follow it
//! live (`/stream/gephi`). Recorded only while someone listens, after the commit is on disk and
//! applied; sent on a bounded broadcast that never waits: a consumer [`FEED_DEPTH`] commits behind
//! is told it lagged. The feed closes when the writer stops.

use crate::graph::Tie;
use parking_lot::Mutex;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Commits a consumer may fall behind before it is told it lagged.
pub const FEED_DEPTH: usize = 1024;

/// What one commit changed.
#[derive(Debug, Default)]
pub struct Changes {
    /// The graph's version once the commit is applied.
    pub version: u64,
    /// Users created or renamed (their handle now), in no particular order.
    pub users: Vec<(Arc<str>, Option<String>)>,
    /// Edges changed, in the order applied (the edges of removed users first).
    pub ties: Vec<TieChange>,
}

/// An edge's interactions before and after a commit (`None`: no edge).
#[derive(Debug, Clone)]
pub struct TieChange {
    pub from: Arc<str>,
    pub to: Arc<str>,
    pub before: Option<Tie>,
    pub after: Option<Tie>,
}

/// The sending side, shared by the writer (which sends and, stopping, closes it) and the handles
/// (which subscribe).
#[derive(Clone)]
pub(crate) struct Feed(Arc<Mutex<Option<broadcast::Sender<Arc<Changes>>>>>);

impl Feed {
    pub(crate) fn new() -> Feed {
        Feed(Arc::new(Mutex::new(Some(broadcast::channel(FEED_DEPTH).0))))
    }

    /// Whether anyone listens (only then are changes recorded).
    pub(crate) fn listened(&self) -> bool {
        self.0.lock().as_ref().is_some_and(|tx| tx.receiver_count() > 0)
    }

    pub(crate) fn send(&self, changes: Changes) {
        if let Some(tx) = self.0.lock().as_ref() {
            // No receiver left since `listened`: nothing to do.
            let _ = tx.send(Arc::new(changes));
        }
    }

    /// `None` once the writer has stopped.
    pub(crate) fn subscribe(&self) -> Option<broadcast::Receiver<Arc<Changes>>> {
        self.0.lock().as_ref().map(broadcast::Sender::subscribe)
    }

    /// Closes the feed: every consumer sees it end.
    pub(crate) fn close(&self) {
        self.0.lock().take();
    }
}
