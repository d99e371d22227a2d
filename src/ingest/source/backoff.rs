//! Reconnect delays, as the platforms publish them (X's filtered-stream guidance, also tweepy's
//! constants), shared by every streaming source:
//!
//! - a clean drop after a healthy connection: reconnect at once;
//! - network errors (refused, reset, a stall): linear, +250 ms per attempt, up to 16 s;
//! - HTTP errors (5xx, unexpected statuses): exponential from 5 s, doubling, up to 320 s;
//! - rate limits (429): exponential from 60 s, doubling, up to 960 s, or until the announced reset
//!   when that is later.
//!
//! Counters reset after a healthy connection (one that delivered data).

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Why the last connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The server closed a healthy stream (or asked us to reconnect).
    Dropped,
    /// TCP/TLS failure, a read error or a stall.
    Network,
    /// An HTTP error status other than 429.
    Http,
    /// HTTP 429; `reset_in` is the time until the announced reset, if the server said.
    RateLimited { reset_in: Option<Duration> },
}

/// The reconnect schedule of one source.
#[derive(Debug, Default, Clone)]
pub(crate) struct Backoff {
    network: u32,
    http: u32,
    rate: u32,
}

const NETWORK_STEP: Duration = Duration::from_millis(250);
const NETWORK_MAX: Duration = Duration::from_secs(16);
const HTTP_FIRST: Duration = Duration::from_secs(5);
const HTTP_MAX: Duration = Duration::from_secs(320);
const RATE_FIRST: Duration = Duration::from_secs(60);
const RATE_MAX: Duration = Duration::from_secs(960);

impl Backoff {
    pub fn new() -> Backoff {
        Backoff::default()
    }

    /// The delay before the next attempt after `failure`; advances the schedule.
    pub fn next(&mut self, failure: Failure) -> Duration {
        match failure {
            Failure::Dropped => Duration::ZERO,
            Failure::Network => {
                self.network += 1;
                (NETWORK_STEP * self.network).min(NETWORK_MAX)
            }
            Failure::Http => {
                let d = exponential(HTTP_FIRST, self.http, HTTP_MAX);
                self.http += 1;
                d
            }
            Failure::RateLimited { reset_in } => {
                let d = exponential(RATE_FIRST, self.rate, RATE_MAX);
                self.rate += 1;
                match reset_in {
                    Some(r) if r > d && r <= Duration::from_secs(3600) => r,
                    _ => d,
                }
            }
        }
    }

    /// A connection was healthy: the next failure starts the schedule over.
    pub fn reset(&mut self) {
        *self = Backoff::default();
    }
}

fn exponential(first: Duration, attempt: u32, max: Duration) -> Duration {
    first.saturating_mul(1u32 << attempt.min(16)).min(max)
}

/// Sleeps for `delay` unless cancelled first; returns false if cancelled.
pub(crate) async fn sleep_or_cancel(delay: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(v: &[f64]) -> Vec<Duration> {
        v.iter().map(|s| Duration::from_secs_f64(*s)).collect()
    }

    #[test]
    fn network_errors_back_off_linearly_to_16s() {
        let mut b = Backoff::new();
        let got: Vec<Duration> = (0..66).map(|_| b.next(Failure::Network)).collect();
        assert_eq!(got[..4], secs(&[0.25, 0.5, 0.75, 1.0])[..]);
        assert_eq!(got[63], Duration::from_secs(16));
        assert_eq!(got[65], Duration::from_secs(16), "capped");
    }

    #[test]
    fn http_errors_back_off_exponentially_from_5s_to_320s() {
        let mut b = Backoff::new();
        let got: Vec<Duration> = (0..9).map(|_| b.next(Failure::Http)).collect();
        assert_eq!(got, secs(&[5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 320.0, 320.0]));
    }

    #[test]
    fn rate_limits_back_off_from_60s_or_until_the_announced_reset() {
        let mut b = Backoff::new();
        let rl = Failure::RateLimited { reset_in: None };
        assert_eq!([b.next(rl), b.next(rl), b.next(rl)], [60, 120, 240].map(Duration::from_secs));
        let mut b = Backoff::new();
        let later = Failure::RateLimited { reset_in: Some(Duration::from_secs(600)) };
        assert_eq!(b.next(later), Duration::from_secs(600), "wait for the reset when it is later");
    }

    #[test]
    fn a_drop_reconnects_at_once_and_health_resets_the_schedule() {
        let mut b = Backoff::new();
        assert_eq!(b.next(Failure::Dropped), Duration::ZERO);
        b.next(Failure::Http);
        b.next(Failure::Http);
        b.reset();
        assert_eq!(b.next(Failure::Http), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn sleeping_is_cut_short_by_cancellation() {
        let cancel = CancellationToken::new();
        let start = tokio::time::Instant::now();
        assert!(sleep_or_cancel(Duration::from_secs(320), &cancel).await);
        assert_eq!(start.elapsed(), Duration::from_secs(320), "paused time advances exactly");
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            c2.cancel();
        });
        assert!(!sleep_or_cancel(Duration::from_secs(60), &cancel).await);
        assert_eq!(start.elapsed(), Duration::from_secs(321));
    }
}
