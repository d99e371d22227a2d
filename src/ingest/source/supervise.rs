//! What a streaming source does after each connection ends, the same for X, Mastodon and Jetstream:
//! the same `/status` states for the same situations, one backoff policy, one way to log it. Each
//! source decides what its own endings mean ([`Verdict`]); [`settle`] does the rest.

use super::backoff::{sleep_or_cancel, Backoff, Failure};
use crate::ingest::status::{SourceState, SourceStatus};
use tokio_util::sync::CancellationToken;

/// What a connection's end comes to.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// The source is stopping.
    Stop,
    /// Retrying cannot help (a refused token, an unusable URL, a commit the store refused).
    Fail(String),
    /// Try again after the schedule's delay for `failure`.
    Retry {
        failure: Failure,
        reason: String,
        /// No data within the stall timeout: shown as `stalled` while waiting, not `backing_off`.
        stalled: bool,
        /// The connection delivered data: the schedule starts over.
        healthy: bool,
    },
}

/// What to do next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Connect again (the wait, if any, is over).
    Again,
    /// Stopped (cancelled): the caller shows `stopped`.
    Stop,
    /// Given up: `failed` is shown.
    Failed,
}

/// Where a source shows itself: its status, or one stream of it (each of Mastodon's hashtags).
pub(crate) trait Shown {
    fn state(&self, state: SourceState);
    fn error(&self, message: &str);
}

impl Shown for SourceStatus {
    fn state(&self, state: SourceState) {
        self.set_state(state);
    }
    fn error(&self, message: &str) {
        self.set_error(message.to_string());
    }
}

/// The source (or stream) cannot go on: logged as an error, shown `failed` with the reason.
pub(crate) fn give_up(name: &str, shown: &impl Shown, reason: String) {
    log::error!("source {name}: {reason}");
    shown.error(&reason);
    shown.state(SourceState::Failed { reason });
}

/// After a connection of source `name` ended as `verdict`: gives up (`failed`, logged as an error),
/// or waits as `backoff` says (showing `backing_off` with the reason and when it ends, or `stalled`
/// after a stall; a clean drop of a healthy stream reconnects at once) unless cancelled meanwhile.
pub(crate) async fn settle(
    name: &str,
    shown: &impl Shown,
    backoff: &mut Backoff,
    cancel: &CancellationToken,
    verdict: Verdict,
) -> Next {
    let (failure, reason, stalled, healthy) = match verdict {
        Verdict::Stop => return Next::Stop,
        Verdict::Fail(reason) => {
            give_up(name, shown, reason);
            return Next::Failed;
        }
        Verdict::Retry { failure, reason, stalled, healthy } => (failure, reason, stalled, healthy),
    };
    if healthy {
        backoff.reset();
    }
    // A server that accepts and drops at once must not be hammered: only a healthy stream's drop
    // reconnects without delay.
    let failure = if failure == Failure::Dropped && !healthy { Failure::Network } else { failure };
    let delay = backoff.next(failure);
    if delay.is_zero() {
        log::info!("source {name}: reconnecting at once: {reason}");
        return if cancel.is_cancelled() { Next::Stop } else { Next::Again };
    }
    log::warn!("source {name}: {reason}; retrying in {:.2}s", delay.as_secs_f64());
    shown.error(&reason);
    shown.state(if stalled {
        SourceState::Stalled
    } else {
        let until = chrono::Utc::now().timestamp() + delay.as_secs_f64().ceil() as i64;
        SourceState::BackingOff { until: crate::graph::rfc3339(until), reason }
    });
    if sleep_or_cancel(delay, cancel).await {
        Next::Again
    } else {
        Next::Stop
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use std::time::Duration;

    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);

    impl Shown for Seen {
        fn state(&self, state: SourceState) {
            self.0.lock().push(state.label().to_string());
        }
        fn error(&self, message: &str) {
            self.0.lock().push(format!("error: {message}"));
        }
    }

    async fn run(
        seen: &Seen,
        backoff: &mut Backoff,
        cancel: &CancellationToken,
        v: Verdict,
    ) -> (Next, Vec<String>) {
        seen.0.lock().clear();
        let next = settle("t", seen, backoff, cancel, v).await;
        (next, seen.0.lock().clone())
    }

    fn retry(failure: Failure, stalled: bool, healthy: bool) -> Verdict {
        Verdict::Retry { failure, reason: "why".into(), stalled, healthy }
    }

    /// The same situation shows the same way whatever the source: a stall is `stalled` while
    /// waiting, other failures `backing_off`; a healthy stream's drop reconnects at once and says no
    /// error; an unhealthy one's waits like a network error; a verdict of failure is `failed`.
    #[tokio::test(start_paused = true)]
    async fn every_source_shows_the_same_states_for_the_same_endings() {
        let cancel = CancellationToken::new();
        let mut backoff = Backoff::new();
        let seen = Seen::default();
        assert_eq!(
            run(&seen, &mut backoff, &cancel, retry(Failure::Network, true, false)).await,
            (Next::Again, vec!["error: why".into(), "stalled".into()])
        );
        assert_eq!(
            run(&seen, &mut backoff, &cancel, retry(Failure::Http, false, false)).await,
            (Next::Again, vec!["error: why".into(), "backing_off".into()])
        );
        assert_eq!(
            run(&seen, &mut backoff, &cancel, retry(Failure::Dropped, false, true)).await,
            (Next::Again, vec![])
        );
        // Healthy reset the schedule: the next network failure waits the first step again.
        let t = tokio::time::Instant::now();
        run(&seen, &mut backoff, &cancel, retry(Failure::Network, false, false)).await;
        assert_eq!(t.elapsed(), Duration::from_millis(250));
        let t = tokio::time::Instant::now();
        run(&seen, &mut backoff, &cancel, retry(Failure::Dropped, false, false)).await;
        assert_eq!(t.elapsed(), Duration::from_millis(500), "an unhealthy drop waits as a network error");
        assert_eq!(
            run(&seen, &mut backoff, &cancel, Verdict::Fail("no".into())).await,
            (Next::Failed, vec!["error: no".into(), "failed".into()])
        );
        assert_eq!(run(&seen, &mut backoff, &cancel, Verdict::Stop).await.0, Next::Stop);
        cancel.cancel();
        assert_eq!(
            run(&seen, &mut backoff, &cancel, retry(Failure::Http, false, false)).await.0,
            Next::Stop,
            "cancelled while waiting"
        );
    }
}
