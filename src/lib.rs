//! tagflow: the live graph of who interacts with whom around a hashtag.
//!
//! Module map, and the way dependencies point (an arrow means "uses"):
//!
//! ```text
//!   main.rs ──> app ──> http ──┐
//!                  ├──> ingest ┼──> store ──> graph
//!                  └───────────┴────────────> graph
//! ```
//!
//! - [`graph`]: the domain core. Users, interactions, the petgraph `StableGraph` and its queries
//!   (paths, degrees, pagination). Depends on petgraph and serde only: no actix, sled or reqwest.
//! - [`store`]: sled persistence. The on-disk key layout, the one write path (`Store::commit`) that
//!   persists a batch of mutations, flushes, then applies it to the in-memory graph; load on start.
//! - [`ingest`]: pure decoders (bytes -> posts -> interactions) and the sources that feed the write
//!   path (files, the demo simulator, live platform streams).
//! - [`http`]: actix-web routes and `ApiError`, the only place that knows HTTP status codes.
//! - [`app`]: wires a [`config::Config`] into a running service that tests can start on port 0.

pub mod analytics;
pub mod analyze;
pub mod app;
pub mod config;
pub mod graph;
pub mod http;
pub mod import;
pub mod ingest;
pub mod rng;
pub mod store;
