//! The domain core: users, interactions and the interaction graph.
//!
//! Must not depend on actix, sled or reqwest. petgraph indices never leave this module: the rest of
//! the crate speaks in user keys.

mod cut;
#[allow(clippy::module_inception)]
mod graph;
mod lists;
pub mod model;
mod mutation;
mod path;
mod select;
#[cfg(test)]
pub(crate) mod testkit;
mod tie;
mod timeline;
mod views;

pub(crate) use cut::Cut;
pub use graph::{Graph, GraphError, TieSlot};
pub use model::{Interaction, Kind, Platform, Post, Record, UserRef};
pub use mutation::{validate_key, Mutation, Outcome, Rejection, MAX_KEY_CHARS};
pub use path::{Hop, PathView, PATH_STEP, QUICK_PATH_BUDGET};
pub use select::{Extract, Interactions, KindSet, PairDetail, Selection, UserRefOwned};
pub use tie::{civil_from_days, clamp_time, push_rfc3339, rfc3339, KindCounts, Tie, TIE_BYTES};
pub use timeline::MAX_UID;
pub(crate) use timeline::{Purge, Stamp};
pub(crate) use views::heaviest;
pub use views::{
    decode_pair, encode_pair, parse_user_cursor, DegreeOrder, InOut, Page, Subgraph, TieView, UserDetail,
    UserOrder, UserView,
};
