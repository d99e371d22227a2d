//! Sources: long-running tasks that turn a feed (the demo simulator, a platform stream) into
//! mutations for the store's write path, and report their state in `/status`.

pub mod backoff;
pub mod demo;
pub mod jetstream;
pub mod lines;
pub mod mastodon;
pub mod x;

use super::status::SourceStatus;
use crate::graph::{Mutation, Outcome, Record};
use crate::store::{StoreError, StoreHandle};
use std::sync::atomic::Ordering;

/// The mutation a decoded record asks for, if any.
pub fn to_mutation(record: Record) -> Option<Mutation> {
    match record {
        Record::Post(p) => Some(Mutation::ApplyPost(p)),
        Record::Edit(p) => Some(Mutation::EditPost(p)),
        Record::Delete { platform, id } => Some(Mutation::RetractPost { platform, id }),
        Record::Profile(u) => Some(Mutation::Profile(u)),
        Record::Disconnect { .. } | Record::Ignored => None,
    }
}

/// What one commit of ingested mutations did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub posts: u64,
    pub interactions: u64,
    pub duplicates: u64,
    pub deleted: u64,
    pub new_users: u64,
}

impl Tally {
    pub fn add(&mut self, o: &Tally) {
        self.posts += o.posts;
        self.interactions += o.interactions;
        self.duplicates += o.duplicates;
        self.deleted += o.deleted;
        self.new_users += o.new_users;
    }

    /// Counts the outcomes of a committed batch.
    pub fn of<'a, E: 'a>(outcomes: impl IntoIterator<Item = &'a Result<Outcome, E>>) -> Tally {
        let mut t = Tally::default();
        for o in outcomes {
            match o {
                Ok(Outcome::PostApplied { interactions, new_users }) => {
                    t.posts += 1;
                    t.interactions += *interactions as u64;
                    t.new_users += *new_users as u64;
                }
                Ok(Outcome::Duplicate) => t.duplicates += 1,
                Ok(Outcome::PostRetracted { .. }) => t.deleted += 1,
                _ => {}
            }
        }
        t
    }

    /// Adds this tally to a source's counters.
    pub fn report_to(&self, status: &SourceStatus) {
        status.posts.fetch_add(self.posts, Ordering::Relaxed);
        status.interactions.fetch_add(self.interactions, Ordering::Relaxed);
        status.duplicates.fetch_add(self.duplicates, Ordering::Relaxed);
        status.deleted.fetch_add(self.deleted, Ordering::Relaxed);
    }
}

/// Commits a source's mutations (durably) and counts them in its status.
///
/// # Errors
/// The store failed or is shut down.
pub async fn commit(
    store: &StoreHandle,
    status: &SourceStatus,
    mutations: Vec<Mutation>,
) -> Result<Tally, StoreError> {
    if mutations.is_empty() {
        return Ok(Tally::default());
    }
    let newest = mutations
        .iter()
        .filter_map(|m| match m {
            Mutation::ApplyPost(p) | Mutation::EditPost(p) => p.created_at,
            _ => None,
        })
        .max();
    let outcomes = store.submit(mutations).await?;
    let tally = Tally::of(&outcomes);
    tally.report_to(status);
    if let Some(t) = newest {
        status.saw_post_at(t);
    }
    Ok(tally)
}
