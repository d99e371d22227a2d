//! Pure decoders: one input record (a stream line, an event, an array element) in, [`Record`]s out.
//!
//! They do no I/O and keep no state, so the file importer, `POST /ingest` and the live sources share
//! them. The rules they follow are those of `shared/PROTOCOLS.md`; each submodule documents its quirks.

use crate::graph::Record;

/// Why an input record could not be decoded. The record is counted and skipped, never fatal.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON at all (a truncated line, garbage).
    #[error("malformed json: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but not in any shape this decoder knows.
    #[error("unrecognised payload: {0}")]
    Shape(String),
}

/// The payload formats tagflow understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// X API v2: filtered-stream lines, search/lookup pages (`{data, includes, meta}`) as twarc writes them.
    XV2,
    /// X API v1.1 statuses: one status object, or a `{"statuses": [...]}` search response.
    XV1,
    /// A Mastodon `Status` entity, or a streaming WebSocket frame `{stream, event, payload}`.
    Mastodon,
    /// A Bluesky Jetstream event `{did, time_us, kind, commit}`.
    Jetstream,
}

/// The outcome of decoding one input record.
pub type Decoded = Result<Vec<Record>, DecodeError>;
