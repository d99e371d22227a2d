//! What keeps reads of the live graph cheap on the request threads: the orders of users by degree
//! held for a second, and the allowance of walking that path searches share.

use crate::graph::{DegreeOrder, UserOrder};
use std::sync::Arc;

/// The first pages of users by degree (see [`DegreeOrder`]), one order per degree: remade when the
/// graph has changed and the one held is over a second old, so that listing the busiest users is
/// O(limit) on the request threads and costs the write path nothing. A page may lag the graph by
/// that second, or by as long as the next order takes to make; the users' figures shown are read
/// when it is served.
///
/// An order is made off the request threads, one at a time per degree: while it is made, requests
/// are served the order held (only the very first waits for one). Made on a request thread by
/// every request that found it stale, it blocked that thread and all its connections, `/status`
/// too, for 100-170 ms at 22M edges, eight times over under eight clients.
#[derive(Default)]
pub struct DegreeOrders(parking_lot::Mutex<[Slot; 3]>);

/// A degree's order and when it was made; whether a new one is being made.
#[derive(Default)]
struct Slot {
    held: Option<(std::time::Instant, Arc<DegreeOrder>)>,
    making: bool,
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
            let held = s.held.as_ref().map(|(made, held)| (made.elapsed(), held.clone()));
            match held {
                Some((age, held)) if held.version == version || age < std::time::Duration::from_secs(1) => {
                    return Some(held)
                }
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
            let made = Arc::new(DegreeOrder::make(|| graph.read(), order)?);
            this.0.lock()[slot].held = Some((std::time::Instant::now(), made.clone()));
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
pub struct PathWalks(parking_lot::Mutex<(f64, std::time::Instant)>);

/// Adjacency entries per second the request threads may walk, and the most saved up.
const PATH_WALKS_PER_SECOND: f64 = 20_000_000.0;
const PATH_WALKS_BURST: f64 = 2_000_000.0;

impl Default for PathWalks {
    fn default() -> Self {
        PathWalks(parking_lot::Mutex::new((PATH_WALKS_BURST, std::time::Instant::now())))
    }
}

impl PathWalks {
    /// Takes `n` entries if they are there.
    pub(super) fn take(&self, n: u64) -> bool {
        let mut bucket = self.0.lock();
        let now = std::time::Instant::now();
        let refill = now.duration_since(bucket.1).as_secs_f64() * PATH_WALKS_PER_SECOND;
        *bucket = ((bucket.0 + refill).min(PATH_WALKS_BURST), now);
        let enough = bucket.0 >= n as f64;
        if enough {
            bucket.0 -= n as f64;
        }
        enough
    }

    /// Returns what a search took and did not walk.
    pub(super) fn give_back(&self, n: u64) {
        let mut bucket = self.0.lock();
        bucket.0 = (bucket.0 + n as f64).min(PATH_WALKS_BURST);
    }
}
