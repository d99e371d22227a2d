//! The demo source: the built-in simulator's posts, stamped with the real time, fed through the real
//! X v2 decoder and the real write path at a steady rate. No credentials, no network.

use super::SourcesError;
use super::{commit, to_mutation};
use crate::ingest::decode::{x_v2, DecodeError};
use crate::ingest::demo::{DemoConfig, DemoGenerator};
use crate::ingest::status::{SourceState, SourceStatus};
use crate::store::StoreHandle;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The demo's settings as `serve` takes them (flattened into its arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Demo: posts per second.
    #[arg(long, env = "TAGFLOW_DEMO_RATE", default_value_t = 20.0)]
    pub demo_rate: f64,
    /// Demo: number of simulated users.
    #[arg(long, env = "TAGFLOW_DEMO_USERS", default_value_t = 2_000)]
    pub demo_users: u32,
    /// Demo: seed of the simulator (the same seed replays the same posts).
    #[arg(long, env = "TAGFLOW_DEMO_SEED", default_value_t = 42)]
    pub demo_seed: u64,
}

#[derive(Debug, Clone)]
pub struct DemoSettings {
    pub rate: f64,
    pub users: u32,
    pub seed: u64,
}

impl DemoArgs {
    /// The settings, checked (the demo's arguments are checked whether or not it runs).
    ///
    /// # Errors
    /// A rate outside 0.01 to 100,000 posts a second, or fewer than 10 users.
    pub fn settings(&self) -> Result<DemoSettings, SourcesError> {
        if !(0.01..=100_000.0).contains(&self.demo_rate) || self.demo_rate.is_nan() {
            return Err(SourcesError::DemoRate(self.demo_rate));
        }
        if self.demo_users < 10 {
            return Err(SourcesError::DemoUsers);
        }
        Ok(DemoSettings { rate: self.demo_rate, users: self.demo_users, seed: self.demo_seed })
    }
}

/// Commits per second: posts are grouped per tick so a fast demo is not one fsync per post.
const TICKS_PER_SECOND: f64 = 5.0;

/// Runs until cancelled. A restart resumes the simulation where it stopped (the number of posts
/// generated is the persisted cursor), so replays are never counted twice.
pub async fn run(
    settings: DemoSettings,
    track: Vec<String>,
    store: StoreHandle,
    status: Arc<SourceStatus>,
    cancel: CancellationToken,
) {
    let cursor_name = format!("demo:{}:{}", settings.seed, settings.users);
    let resume: u64 = match store.cursor(&cursor_name) {
        Ok(Some(v)) => std::str::from_utf8(&v).ok().and_then(|s| s.parse().ok()).unwrap_or(0),
        _ => 0,
    };
    let hashtags: Vec<String> = track.iter().filter_map(|t| crate::graph::model::normalize_tag(t)).collect();
    let mut config = DemoConfig { users: settings.users, seed: settings.seed, ..DemoConfig::default() };
    if !hashtags.is_empty() {
        config.hashtags = hashtags;
    }
    let mut generator = DemoGenerator::new(config);
    // Fast-forward over what earlier runs already committed.
    let mut line = Vec::with_capacity(4096);
    for _ in 0..resume {
        line.clear();
        generator.write_next(&mut line);
    }
    let mut generated = resume;
    status.set_state(SourceState::Streaming);
    log::info!(
        "source demo: streaming rate={}/s users={} resumed_at={resume}",
        settings.rate,
        settings.users
    );
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / TICKS_PER_SECOND));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut owed = 0.0f64;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = interval.tick() => {}
        }
        owed += settings.rate / TICKS_PER_SECOND;
        let n = owed.floor() as u64;
        owed -= n as f64;
        if n == 0 {
            continue;
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut mutations = Vec::with_capacity(n as usize + 1);
        for _ in 0..n {
            line.clear();
            generator.write_next_at(&mut line, now_ms);
            generated += 1;
            match x_v2::decode(&line) {
                Ok(records) => mutations.extend(records.into_iter().filter_map(to_mutation)),
                Err(e) => skip(&status, &e),
            }
        }
        mutations.push(crate::graph::Mutation::SetCursor {
            name: cursor_name.clone(),
            value: generated.to_string().into_bytes(),
        });
        if let Err(e) = commit(&store, &status, mutations).await {
            log::error!("source demo: commit failed: {e}");
            status.set_state(SourceState::Failed { reason: e.to_string() });
            return;
        }
    }
    status.set_state(SourceState::Stopped);
    log::info!("source demo: stopped after {generated} posts");
}

fn skip(status: &SourceStatus, e: &DecodeError) {
    status.skipped.fetch_add(1, Ordering::Relaxed);
    log::warn!("source demo: skipped a generated line: {e}");
}
