//! Ingest: pure decoders from platform payloads to posts, and the sources that feed the write path.

pub mod decode;
pub mod demo;
pub mod source;
pub mod status;

use crate::config::{Config, SourceKind};
use crate::graph::Mutation;
use crate::store::StoreHandle;
use decode::{DecodeError, Format};
use status::Registry;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Starts every configured source as a task; each stops when `cancel` fires, after committing
/// what it holds.
///
/// # Errors
/// A source whose configuration is incomplete.
pub fn start_sources(
    config: &Config,
    store: &StoreHandle,
    registry: &Arc<Registry>,
    cancel: &CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut tasks = Vec::new();
    for kind in &config.sources {
        match kind {
            SourceKind::Demo => {
                let status = registry.register("demo");
                tasks.push(tokio::spawn(source::demo::run(
                    config.demo.clone(),
                    config.track.clone(),
                    store.clone(),
                    status,
                    cancel.clone(),
                )));
            }
            SourceKind::Bluesky => {
                let status = registry.register(source::jetstream::NAME);
                tasks.push(tokio::spawn(source::jetstream::run(
                    config.jetstream.clone(),
                    config.track.clone(),
                    store.clone(),
                    status,
                    cancel.clone(),
                )));
            }
            SourceKind::X => {
                let status = registry.register("x");
                tasks.push(tokio::spawn(source::x::run(
                    config.x.clone(),
                    config.track.clone(),
                    store.clone(),
                    status,
                    cancel.clone(),
                )));
            }
            SourceKind::Mastodon => {
                let options = source::mastodon::Options::from_config(&config.mastodon, &config.track)?;
                tasks.extend(source::mastodon::start(options, store, registry, cancel)?);
            }
            SourceKind::None => {}
        }
    }
    Ok(tasks)
}

/// Decodes one record, detecting its format when `format` is `None`.
///
/// # Errors
/// Not JSON, or JSON in no shape tagflow knows.
pub fn decode_record(bytes: &[u8], format: Option<Format>) -> decode::Decoded {
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
pub struct Collected {
    pub records: u64,
    pub mutations: Vec<Mutation>,
    pub skipped: u64,
    pub reasons: Vec<String>,
}

/// How many skip reasons a report quotes.
pub const SAMPLE_REASONS: usize = 5;

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
