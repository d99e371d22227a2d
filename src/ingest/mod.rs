//! Ingest: pure decoders from platform payloads to posts, and the sources that feed the write path.

pub mod decode;
pub mod demo;
pub mod source;
pub mod status;

use crate::graph::Mutation;
use crate::store::StoreHandle;
use decode::{DecodeError, Format};
pub use source::SourcesError;
use status::Registry;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running source: its tasks, and the status they report to.
pub(crate) struct Running {
    pub status: Arc<status::SourceStatus>,
    pub tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Waits until every task has stopped, or until `deadline`; a task that panicked or is still
    /// running then shows its source as failed in `/status`.
    pub(crate) async fn stop_by(self, deadline: tokio::time::Instant) {
        let Running { status, tasks } = self;
        for task in tasks {
            let abort = task.abort_handle();
            match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    log::error!("source {}: a task ended abnormally: {e}", status.name);
                    status.set_state(status::SourceState::Failed {
                        reason: format!("a task ended abnormally: {e}"),
                    });
                }
                Err(_) => {
                    abort.abort();
                    log::warn!("source {}: did not stop in time; abandoned", status.name);
                    status.set_state(status::SourceState::Failed { reason: "did not stop in time".into() });
                }
            }
        }
    }
}

/// A source of posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum SourceKind {
    /// The built-in simulator: realistic X-shaped posts, no credentials.
    Demo,
    /// X API v2 filtered stream (needs TAGFLOW_X_BEARER_TOKEN).
    X,
    /// A Mastodon instance's hashtag stream (TAGFLOW_MASTODON_URL, TAGFLOW_MASTODON_TOKEN).
    Mastodon,
    /// Bluesky Jetstream (no credentials).
    Bluesky,
    /// No source: API and `POST /ingest` only.
    None,
}

/// Which sources to run and their settings, as `serve` takes them (flattened into its arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct SourcesArgs {
    /// Sources to run, comma separated. Default: x if TAGFLOW_X_BEARER_TOKEN is set, mastodon if
    /// TAGFLOW_MASTODON_URL and TAGFLOW_MASTODON_TOKEN are, otherwise the demo.
    #[arg(long, env = "TAGFLOW_SOURCES", value_delimiter = ',')]
    pub sources: Vec<SourceKind>,
    /// Run the demo simulator (same as --sources demo).
    #[arg(long)]
    pub demo: bool,
    /// Terms to follow, comma separated: hashtags (#rustlang) or words.
    #[arg(long, env = "TAGFLOW_TRACK", value_delimiter = ',', default_value = "#rustlang")]
    pub track: Vec<String>,
    #[command(flatten)]
    pub demo_settings: source::demo::DemoArgs,
    #[command(flatten)]
    pub x: source::x::XArgs,
    #[command(flatten)]
    pub mastodon: source::mastodon::MastodonArgs,
    #[command(flatten)]
    pub jetstream: source::jetstream::JetstreamArgs,
}

/// Which sources run, on which terms, with their settings: checked once, when the configuration is
/// made, the same way for every source; [`start_sources`] then starts them.
#[derive(Debug, Clone)]
pub struct Sources {
    pub kinds: Vec<SourceKind>,
    /// The demo is in `kinds` because nothing else was configured, not because it was asked for: it
    /// then runs only on a directory it made (see [`crate::app`]).
    pub demo_by_default: bool,
    pub track: Vec<String>,
    pub demo: source::demo::DemoSettings,
    pub x: source::x::XSettings,
    pub mastodon: source::mastodon::MastodonSettings,
    pub jetstream: source::jetstream::JetstreamSettings,
}

impl SourcesArgs {
    /// The sources to run (those the environment configures when none is named, else the demo),
    /// each one's settings checked.
    ///
    /// # Errors
    /// [`SourcesError`] naming the first setting that cannot work.
    pub fn resolve(&self) -> Result<Sources, SourcesError> {
        let demo = self.demo_settings.settings()?;
        let (x, mastodon, jetstream) =
            (self.x.settings(), self.mastodon.settings(), self.jetstream.settings());
        let mut kinds: Vec<SourceKind> = Vec::new();
        let mut demo_by_default = false;
        for s in self.sources.iter().copied().chain(self.demo.then_some(SourceKind::Demo)) {
            if !kinds.contains(&s) {
                kinds.push(s);
            }
        }
        if kinds.contains(&SourceKind::None) {
            if kinds.len() > 1 {
                return Err(SourcesError::NoneWithOthers);
            }
            kinds.clear();
        } else if kinds.is_empty() {
            // Nothing named: run what the environment configures, else the demo.
            if x.bearer_token.is_some() {
                kinds.push(SourceKind::X);
            }
            if mastodon.url.is_some() && mastodon.token.is_some() {
                kinds.push(SourceKind::Mastodon);
            }
            if kinds.is_empty() {
                kinds.push(SourceKind::Demo);
                demo_by_default = true;
            }
        }
        let track: Vec<String> =
            self.track.iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty() && t != "#").collect();
        if track.is_empty() {
            return Err(SourcesError::NoTrack);
        }
        for kind in &kinds {
            match kind {
                SourceKind::X => x.check()?,
                SourceKind::Mastodon => mastodon.check(&track)?,
                SourceKind::Bluesky => jetstream.check()?,
                SourceKind::Demo | SourceKind::None => {}
            }
        }
        Ok(Sources { kinds, demo_by_default, track, demo, x, mastodon, jetstream })
    }
}

/// Starts every configured source as a task; each stops when `cancel` fires, after committing what
/// it holds. On a shared database, each runs only while this replica holds its lock (see [`led`]).
pub(crate) fn start_sources(
    config: &Sources,
    store: &StoreHandle,
    registry: &Arc<Registry>,
    cancel: &CancellationToken,
) -> Vec<Running> {
    let mut running = Vec::new();
    for kind in &config.kinds {
        let (track, ctx) = (&config.track, (registry, store, cancel));
        running.push(match kind {
            SourceKind::Demo => spawn("demo", config.demo.clone(), track, ctx, source::demo::run),
            SourceKind::X => spawn("x", config.x.clone(), track, ctx, source::x::run),
            SourceKind::Mastodon => {
                spawn(source::mastodon::NAME, config.mastodon.clone(), track, ctx, source::mastodon::run)
            }
            SourceKind::Bluesky => {
                spawn(source::jetstream::NAME, config.jetstream.clone(), track, ctx, source::jetstream::run)
            }
            SourceKind::None => continue,
        });
    }
    running
}

/// What starting a source needs besides its settings: where it reports, the store, the stop.
type Ctx<'a> = (&'a Arc<Registry>, &'a StoreHandle, &'a CancellationToken);

/// Registers source `name` and spawns its task: `run(settings, track, store, status, token)`, the
/// one signature every source has, supervised by [`led`].
fn spawn<S, R, Fut>(
    name: &str,
    settings: S,
    track: &[String],
    (registry, store, cancel): Ctx<'_>,
    run: R,
) -> Running
where
    S: Clone + Send + 'static,
    R: Fn(S, Vec<String>, StoreHandle, Arc<status::SourceStatus>, CancellationToken) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let status = registry.register(name);
    let (st, h, track) = (status.clone(), store.clone(), track.to_vec());
    let task = led(store, &status, cancel, move |token| {
        run(settings.clone(), track.clone(), h.clone(), st.clone(), token)
    });
    Running { status, tasks: vec![task] }
}

/// How often a replica on standby asks whether it can take a source over (a source whose replica
/// died runs again within this: its lock went with the dead replica's session), and how often a
/// replica running one checks that it still holds the lock.
const ELECTION_POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// Spawns the task of a source: `run(token)` once this process leads it (see [`leading`]), until
/// `cancel` fires. On a shared database, a replica that finds its lock gone (its session was lost
/// and another replica took the source over) cancels its run, which commits what it holds, and
/// stands by again: one replica at a time runs each source.
fn led<F, Fut>(
    store: &StoreHandle,
    status: &Arc<status::SourceStatus>,
    cancel: &CancellationToken,
    run: F,
) -> JoinHandle<()>
where
    F: Fn(CancellationToken) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    stand_by(store, status);
    let (store, status, cancel) = (store.clone(), status.clone(), cancel.clone());
    tokio::spawn(async move {
        loop {
            if !leading(&store, &status, &cancel).await {
                return;
            }
            let token = cancel.child_token();
            let running = run(token.clone());
            tokio::pin!(running);
            if store.replication().is_none() {
                return running.await;
            }
            tokio::select! {
                () = &mut running => return,
                () = lost(&store, &status) => {
                    log::warn!("source {}: another replica holds it now; stopping it here", status.name);
                    token.cancel();
                    running.await;
                    stand_by(&store, &status);
                }
            }
        }
    })
}

/// Resolves once the database says this replica no longer holds the source's lock.
async fn lost(store: &StoreHandle, status: &status::SourceStatus) {
    let name = format!("source:{}", status.name);
    loop {
        tokio::time::sleep(ELECTION_POLL).await;
        let (s, n) = (store.clone(), name.clone());
        if let Ok(Ok(false)) = tokio::task::spawn_blocking(move || s.lead(&n)).await {
            return;
        }
    }
}

/// On a shared database, a source stands by until its replica is known to lead it.
fn stand_by(store: &StoreHandle, status: &status::SourceStatus) {
    if store.replication().is_some() {
        status.set_state(status::SourceState::Standby { reason: "asking the database who runs it".into() });
    }
}

/// Waits until this process may run the source: at once on a data directory; on a shared database,
/// once it holds the source's lock (one replica at a time runs each source, and resumes from the
/// cursor committed with its posts). False if cancelled first.
async fn leading(store: &StoreHandle, status: &status::SourceStatus, cancel: &CancellationToken) -> bool {
    let name = format!("source:{}", status.name);
    loop {
        let asked = {
            let (store, name) = (store.clone(), name.clone());
            tokio::task::spawn_blocking(move || store.lead(&name)).await
        };
        let reason = match asked {
            Ok(Ok(true)) => {
                if store.replication().is_some() {
                    log::info!("source {}: this replica runs it", status.name);
                }
                return true;
            }
            Ok(Ok(false)) => "another replica runs it".to_string(),
            Ok(Err(e)) => format!("cannot ask the database who runs it: {e}"),
            Err(e) => format!("cannot ask the database who runs it: {e}"),
        };
        status.set_state(status::SourceState::Standby { reason });
        tokio::select! {
            () = cancel.cancelled() => return false,
            () = tokio::time::sleep(ELECTION_POLL) => {}
        }
    }
}

/// Decodes one record, detecting its format when `format` is `None`.
///
/// # Errors
/// Not JSON, or JSON in no shape tagflow knows.
pub(crate) fn decode_record(bytes: &[u8], format: Option<Format>) -> decode::Decoded {
    match format.or_else(|| decode::sniff(bytes)) {
        Some(f) => decode::decode(f, bytes),
        None => Err(match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Err(e) => DecodeError::Json(e),
            Ok(_) => DecodeError::Shape("not a payload format tagflow knows".into()),
        }),
    }
}

/// The mutations of a body of NDJSON records, with the records that could not be decoded counted
/// and the first few reasons kept.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    pub records: u64,
    pub mutations: Vec<Mutation>,
    pub skipped: u64,
    pub reasons: Vec<String>,
}

/// The answer of `POST /ingest`: what the service made of a body of records. One type for the
/// server that writes it and `tagflow import --url` that reads it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub(crate) struct IngestAnswer {
    /// Non-blank lines read.
    pub records: u64,
    /// Posts new to the graph.
    pub accepted: u64,
    pub interactions: u64,
    pub duplicates: u64,
    pub deleted: u64,
    pub new_users: u64,
    /// Lines that could not be decoded, and the first few reasons.
    pub skipped: u64,
    pub reasons: Vec<String>,
}

/// How many skip reasons a report quotes.
pub(crate) const SAMPLE_REASONS: usize = 5;

impl Collected {
    /// Decodes one record into this collection.
    pub fn record(&mut self, bytes: &[u8], format: Option<Format>, place: impl FnOnce() -> String) {
        self.records += 1;
        match decode_record(bytes, format) {
            Ok(records) => self.mutations.extend(records.into_iter().filter_map(source::to_mutation)),
            Err(e) => self.skip(format!("{}: {e}", place())),
        }
    }

    pub fn skip(&mut self, reason: String) {
        self.skipped += 1;
        if self.reasons.len() < SAMPLE_REASONS {
            self.reasons.push(reason);
        }
    }

    /// Decodes every non-blank line of an NDJSON body.
    pub fn ndjson(body: &[u8], format: Option<Format>) -> Collected {
        let mut c = Collected::default();
        for (i, line) in body.split(|&b| b == b'\n').enumerate() {
            let line = line.trim_ascii();
            if !line.is_empty() {
                c.record(line, format, || format!("line {}", i + 1));
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn sources_stop_together_under_one_deadline_and_a_panic_shows_failed() {
        let running = |name: &str, task: JoinHandle<()>| Running {
            status: status::SourceStatus::new(name),
            tasks: vec![task],
        };
        let stuck_a = running("a", tokio::spawn(std::future::pending()));
        let stuck_b = running("b", tokio::spawn(std::future::pending()));
        let panicked = running("c", tokio::spawn(async { panic!("a bug in a source") }));
        let clean = running("d", tokio::spawn(async {}));
        let statuses: Vec<_> =
            [&stuck_a, &stuck_b, &panicked, &clean].iter().map(|r| r.status.clone()).collect();
        for s in &statuses {
            s.set_state(status::SourceState::Streaming);
        }
        let started = std::time::Instant::now();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
        futures_util::future::join_all([stuck_a, stuck_b, panicked, clean].map(|r| r.stop_by(deadline)))
            .await;
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(550),
            "two stuck sources waited one deadline, not two: {took:?}"
        );
        let state = |i: usize| statuses[i].report();
        for i in 0..3 {
            assert!(matches!(state(i).state, status::SourceState::Failed { .. }), "{:?}", state(i));
        }
        assert_eq!(state(3).state, status::SourceState::Streaming, "a clean stop keeps its state");
    }
}
