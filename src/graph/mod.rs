//! The domain core: users, interactions and the interaction graph.
//!
//! Must not depend on actix, sled or reqwest. petgraph indices never leave this module: the rest of
//! the crate speaks in user keys.

pub mod model;

pub use model::{Interaction, Kind, Platform, Post, Record, UserRef};
