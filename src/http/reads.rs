//! What keeps reads of the live graph cheap on the request threads: the orders of users by degree
//! held for a second, and the allowance of walking that path searches share.

use crate::graph::{DegreeOrder, UserOrder};
use std::sync::Arc;

/// The first pages of users by degree (see [`DegreeOrder`]), one order per degree: remade when the
/// graph has changed and the one held is over a second old (or ten times what making it took), so
/// that listing the busiest users is O(limit) on the request threads and costs the write path
/// nothing. A page may lag the graph by
/// that second, or by as long as the next order takes to make; the users' figures shown are read
/// when it is served.
///
/// An order is made off the request threads, one at a time per degree: while it is made, requests
/// are served the order held (only the very first waits for one). Made on a request thread by
/// every request that found it stale, it blocked that thread and all its connections, `/status`
/// too, for 100-170 ms at 22M edges, eight times over under eight clients.
#[derive(Default)]
pub struct DegreeOrders(parking_lot::Mutex<[Slot; 3]>);

/// A degree's order, when it was made and how long making it took; whether a new one is being made.
#[derive(Default)]
struct Slot {
    held: Option<(std::time::Instant, std::time::Duration, Arc<DegreeOrder>)>,
    making: bool,
}

/// How long an order is kept while the graph changes: a second, or ten times what making it took
/// (at 22M edges 100-170 ms: its maker then takes a tenth of a core at most, not a sixth).
fn keep_for(took: std::time::Duration) -> std::time::Duration {
    (took * 10).max(std::time::Duration::from_secs(1))
}

impl DegreeOrders {
    pub(super) async fn get(
        self: &Arc<Self>,
        graph: &crate::store::SharedGraph,
        order: UserOrder,
    ) -> Option<Arc<DegreeOrder>> {
        let slot = match order {
            UserOrder::Key => return None,
            UserOrder::Degree => 0,
            UserOrder::InDegree => 1,
            UserOrder::OutDegree => 2,
        };
        let version = graph.read().version();
        let held = {
            let mut slots = self.0.lock();
            let s = &mut slots[slot];
            let held =
                s.held.as_ref().map(|(made, took, held)| (made.elapsed() < keep_for(*took), held.clone()));
            match held {
                Some((young, held)) if held.version == version || young => return Some(held),
                Some((_, held)) if s.making => return Some(held),
                held => {
                    s.making = true;
                    held.map(|(_, h)| h)
                }
            }
        };
        let (this, graph) = (self.clone(), graph.clone());
        let making = tokio::task::spawn_blocking(move || {
            // Cleared however making ends, a panic included.
            struct Done(Arc<DegreeOrders>, usize);
            impl Drop for Done {
                fn drop(&mut self) {
                    self.0 .0.lock()[self.1].making = false;
                }
            }
            let _done = Done(this.clone(), slot);
            let started = std::time::Instant::now();
            let made = Arc::new(DegreeOrder::make(|| graph.read(), order)?);
            this.0.lock()[slot].held = Some((std::time::Instant::now(), started.elapsed(), made.clone()));
            Some(made)
        });
        match held {
            // Served the one held; the new one lands in the slot when made.
            Some(held) => {
                drop(making);
                Some(held)
            }
            None => making.await.ok().flatten(),
        }
    }
}

/// What path searches may walk on the request threads: about a tenth of a core (adjacency entries
/// per second, a token bucket shared by every client). Near users' paths cost a few entries and
/// are answered there; when misses between far users use it up, searches go to the paced pool of
/// expensive reads, so that a flood of them cannot take the request threads from the writes.
pub struct PathWalks(parking_lot::Mutex<Bucket>);

/// A token bucket, what both budgets of the request threads keep: tokens fill at `rate` a second,
/// up to `cap`.
struct Bucket {
    tokens: f64,
    at: std::time::Instant,
    rate: f64,
    cap: f64,
}

impl Bucket {
    fn full(rate: f64, cap: f64) -> Bucket {
        Bucket { tokens: cap, at: std::time::Instant::now(), rate, cap }
    }

    /// The tokens there are now, filled for the time since the last call.
    fn fill(&mut self) -> f64 {
        let now = std::time::Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.cap);
        self.at = now;
        self.tokens
    }
}

/// Adjacency entries per second the request threads may walk, and the most saved up.
const PATH_WALKS_PER_SECOND: f64 = 20_000_000.0;
const PATH_WALKS_BURST: f64 = 2_000_000.0;

impl Default for PathWalks {
    fn default() -> Self {
        PathWalks(parking_lot::Mutex::new(Bucket::full(PATH_WALKS_PER_SECOND, PATH_WALKS_BURST)))
    }
}

impl PathWalks {
    /// Takes `n` entries if they are there.
    pub(super) fn take(&self, n: u64) -> bool {
        let mut bucket = self.0.lock();
        let enough = bucket.fill() >= n as f64;
        if enough {
            bucket.tokens -= n as f64;
        }
        enough
    }

    /// Returns what a search took and did not walk.
    pub(super) fn give_back(&self, n: u64) {
        let mut bucket = self.0.lock();
        bucket.tokens = (bucket.tokens + n as f64).min(bucket.cap);
    }
}

/// Writes first: while the store is taking writes, reads on the request threads share a budget of
/// `--reads-while-writing` a second (a token bucket, a tenth of a second's worth saved up); a read
/// over it waits its turn, at most [`MAX_TURN`]. Below the budget no read waits, and with no
/// writes none does: dashboards and researchers never notice it, but clients hammering reads can
/// no longer take the cores the writes need (measured: eight connections asking for a hub's edges
/// as fast as they could cost the writes half their rate). `/status` and `/` never wait.
pub struct WritesFirst(Option<parking_lot::Mutex<Bucket>>);

/// The longest a read waits for its turn: past it, it is served anyway (a flood of connections
/// then gets at most its number of reads per `MAX_TURN`).
const MAX_TURN: std::time::Duration = std::time::Duration::from_millis(100);

impl WritesFirst {
    /// `per_second`: the reads served while writes are taken; `None`: no budget.
    pub fn new(per_second: Option<std::num::NonZeroU32>) -> WritesFirst {
        WritesFirst(per_second.map(|r| {
            let r = f64::from(r.get());
            parking_lot::Mutex::new(Bucket::full(r, r / 10.0))
        }))
    }

    /// How long a read waits before it is served, given whether the store is taking writes.
    pub(super) fn turn(&self, writing: bool) -> Option<std::time::Duration> {
        let mut bucket = self.0.as_ref().filter(|_| writing)?.lock();
        let per_second = bucket.rate;
        // Tokens below zero are turns given out: how far below is how long the next one waits.
        let tokens = bucket.fill();
        bucket.tokens = (tokens - 1.0).max(-per_second * MAX_TURN.as_secs_f64());
        (tokens < 1.0).then(|| std::time::Duration::from_secs_f64((1.0 - tokens) / per_second).min(MAX_TURN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wait_only_past_their_budget_and_only_while_writes_are_taken() {
        let first = WritesFirst::new(std::num::NonZeroU32::new(1_000));
        // No writes: never.
        assert!((0..1_000).all(|_| first.turn(false).is_none()));
        // A tenth of a second's worth saved up, then each read a thousandth of a second after the
        // one before, up to the longest turn.
        assert!((0..100).all(|_| first.turn(true).is_none()));
        let turns: Vec<_> = (0..300).map(|_| first.turn(true).expect("over the budget")).collect();
        assert!(turns.windows(2).all(|w| w[0] <= w[1]), "turns come in order");
        assert!(turns[0] <= std::time::Duration::from_millis(2), "{:?}", turns[0]);
        assert!((95..=101).contains(&turns[99].as_millis()), "{:?}", turns[99]);
        assert_eq!(turns[299], MAX_TURN);
        // Off: never.
        let off = WritesFirst::new(None);
        assert!((0..1_000).all(|_| off.turn(true).is_none()));
    }

    #[test]
    fn an_order_that_is_costly_to_make_is_kept_longer() {
        let ms = std::time::Duration::from_millis;
        assert_eq!(keep_for(ms(20)), ms(1_000));
        assert_eq!(keep_for(ms(150)), ms(1_500));
    }
}
