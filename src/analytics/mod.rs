//! Analysis of the interaction network: who drives it (PageRank), which camps there are
//! (Leiden/Louvain communities), who bridges them (betweenness), how dense its core is (k-cores),
//! how it splits (components), the strongest path between two users and a user's neighbourhood.
//!
//! Every algorithm runs on a [`Network`]: a compact immutable copy of one selection (kinds, time
//! window, minimum weight) of the live graph, never on the live graph itself. [`engine`] runs them on
//! a dedicated thread pool, shares identical concurrent requests and caches results until the graph
//! changes. Knows the graph, never HTTP or disk.

pub mod community;
pub mod engine;
pub mod network;
pub mod pagerank;
pub mod paths;
pub mod report;
pub mod structure;

pub use network::{Network, Undirected};
