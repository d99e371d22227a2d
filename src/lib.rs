//! tagflow: the live graph of who interacts with whom around a hashtag.
//!
//! Module map, and the way dependencies point (an arrow means "uses"):
//!
//! ```text
//!   main.rs ──> app ──> http ──────┬──> export ──> analytics ──┐
//!    │            ├──> ingest ────┼──> store ─────────────────┼──> graph
//!    ├──> import ─┘               │                           │
//!    ├──> export (command) ───────┘                           │
//!    └──> analyze ────────────────────────────────────────────┘
//! ```
//!
//! - [`graph`]: the domain core. Users, interactions, the petgraph `StableGraph` and its one write
//!   path's mutations (`graph.rs`); paths (`path.rs`); views, pages and the subgraph to draw
//!   (`views.rs`); selections and the per-interaction timeline. Depends on petgraph and serde
//!   (and utoipa, to describe its views in the API's contract) only: no actix, sled or reqwest.
//! - [`store`]: persistence, in sled (the default) or in PostgreSQL shared by replicas (`store::pg`).
//!   The on-disk layout and the one write path (`StoreHandle::submit`) that persists a batch of
//!   mutations, makes it durable, then applies it to the in-memory graph; load on start,
//!   checkpoints, backups, migration between the two.
//! - [`ingest`]: pure decoders (bytes -> posts -> mutations) and the sources that feed the write
//!   path (the demo simulator, X, Mastodon, Jetstream), with their `/status` counters. Each source
//!   owns its settings (its `clap` arguments, flattened into `serve`, and their checks); `config`
//!   uses them, never the other way round.
//! - [`secret`]: credentials, from the environment only, redacted wherever they are printed.
//! - [`analytics`]: the selected network as CSR arrays, the algorithms, the engine that runs them
//!   off the request threads (and paces expensive reads of the live graph), and the typed reports.
//! - [`export`]: the selected network as GEXF, GraphML, CSV or graphology JSON: a plan taken from
//!   the graph and the analytics' results, written in one streaming pass into any `io::Write`.
//! - [`http`]: the route table, its OpenAPI contract, the connection layer, the gate (auth, limits,
//!   CORS), answers kept per graph version, metrics, and `ApiError`, the only place that knows HTTP
//!   status codes.
//! - [`app`]: wires a [`config::Config`] into a running service that tests can start on port 0;
//!   [`import`], [`analyze`], [`export::run`] and [`admin`] (verify, backup, restore, migrate) are
//!   the commands that work on a store no service holds.

pub mod admin;
pub mod analytics;
pub mod analyze;
pub mod app;
pub mod config;
pub mod export;
pub mod graph;
pub mod http;
pub mod import;
pub mod ingest;
pub mod rng;
pub mod secret;
pub mod store;
