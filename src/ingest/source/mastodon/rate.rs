//! The instance's rate limit (300 requests in 5 minutes by default): one budget shared by the
//! backfills and the boost fetcher, kept from the `X-RateLimit-*` headers each answer carries.

use super::*;

/// A sliding window of request times, plus a block until an announced reset. Shared by every task
/// of the source (Mastodon limits per token), and reused per minute for the boost budget.
pub(super) struct RateLimiter {
    pub(super) limit: usize,
    pub(super) window: Duration,
    pub(super) state: Mutex<LimitState>,
}

#[derive(Default)]
pub(super) struct LimitState {
    pub(super) sent: VecDeque<Instant>,
    pub(super) blocked_until: Option<Instant>,
}

impl RateLimiter {
    pub(super) fn new(limit: usize, window: Duration) -> RateLimiter {
        RateLimiter { limit: limit.max(1), window, state: Mutex::new(LimitState::default()) }
    }

    /// Waits for a request slot and takes it; false if cancelled first.
    pub(super) async fn acquire(&self, cancel: &CancellationToken) -> bool {
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
    pub(super) fn block_for(&self, delay: Duration) {
        let until = Instant::now() + delay;
        let mut s = self.state.lock();
        if s.blocked_until.is_none_or(|b| b < until) {
            s.blocked_until = Some(until);
        }
    }
}

/// The time until `x-ratelimit-reset` (ISO 8601), measured against the response's `Date` when it has
/// one, so that a skewed local clock does not matter.
pub(super) fn reset_in(headers: &HeaderMap) -> Option<Duration> {
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
