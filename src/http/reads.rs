//! What keeps reads of the live graph cheap on the request threads: the orders of users by degree
//! held for a second, and the allowance of walking that path searches share.

use crate::graph::{DegreeOrder, UserOrder};
use std::sync::Arc;

/// The first pages of users by degree (see [`DegreeOrder`]), one order per degree: remade when the
/// graph has changed and the one held is over a second old, so that listing the busiest users is
/// O(limit) on the request threads and costs the write path nothing. A page may lag the graph by
/// that second; the users' figures shown are read when it is served.
#[derive(Default)]
pub struct DegreeOrders(parking_lot::Mutex<[Option<HeldOrder>; 3]>);

/// A degree order and when it was made.
type HeldOrder = (std::time::Instant, Arc<DegreeOrder>);

impl DegreeOrders {
    pub(super) fn get(
        &self,
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
        if let Some((made, held)) = &self.0.lock()[slot] {
            if held.version == version || made.elapsed() < std::time::Duration::from_secs(1) {
                return Some(held.clone());
            }
        }
        let copy = graph.read().listed_degrees(order)?;
        let ranked = Arc::new(copy.sorted());
        self.0.lock()[slot] = Some((std::time::Instant::now(), ranked.clone()));
        Some(ranked)
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
