//! Pure decoders: one input record (a stream line, an event, an array element) in, [`Record`]s out.
//!
//! They do no I/O and keep no state, so the file importer, `POST /ingest` and the live sources share
//! them. The rules they follow are those of `shared/PROTOCOLS.md`; each submodule documents its quirks.

use crate::graph::Record;

pub mod jetstream;
pub mod mastodon;
pub mod sse;
mod text;
pub mod x_v1;
pub mod x_v2;

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

/// Detects the format of one JSON record from its top-level keys, without decoding it.
///
/// X v2 has `data`, `includes` or `matching_rules` (or only `errors`: an errors line); v1.1 has `id_str`
/// or `statuses`; Jetstream has `did` and `time_us`; Mastodon has `account` and `uri` (a Status) or
/// `stream` and `event` (a WebSocket frame; `filters_changed` has no `payload`). An array is sniffed by
/// its first element.
/// Keys are compared as written (an escaped key never matches). Scans the record once at most, and stops
/// as soon as a key decides, so the first key of an X v2 line (`data`) costs a few bytes.
///
/// Returns `None` for anything else, including input that is not JSON; a record truncated after its
/// deciding key still sniffs, and its decoder then reports it malformed.
pub fn sniff(record: &[u8]) -> Option<Format> {
    let mut scan = Scanner { bytes: record, pos: 0 };
    scan.skip_ws();
    if scan.eat(b'[') {
        scan.skip_ws();
    }
    if !scan.eat(b'{') {
        return None;
    }
    let (mut did, mut time_us, mut account, mut uri) = (false, false, false, false);
    let (mut stream, mut event, mut errors) = (false, false, false);
    loop {
        scan.skip_ws();
        let Some(key) = scan.string() else { break };
        match key {
            b"data" | b"includes" | b"matching_rules" => return Some(Format::XV2),
            b"id_str" | b"statuses" => return Some(Format::XV1),
            b"did" => did = true,
            b"time_us" => time_us = true,
            b"account" => account = true,
            b"uri" => uri = true,
            b"stream" => stream = true,
            b"event" => event = true,
            b"errors" => errors = true,
            _ => {}
        }
        if did && time_us {
            return Some(Format::Jetstream);
        }
        if (account && uri) || (stream && event) {
            return Some(Format::Mastodon);
        }
        scan.skip_ws();
        if !scan.eat(b':') || scan.skip_value().is_none() {
            break;
        }
        scan.skip_ws();
        if !scan.eat(b',') {
            break;
        }
    }
    errors.then_some(Format::XV2)
}

/// Decodes one record of a known format with the decoder of that format.
///
/// # Errors
///
/// As the format's decoder.
pub fn decode(format: Format, record: &[u8]) -> Decoded {
    match format {
        Format::XV2 => x_v2::decode(record),
        Format::XV1 => x_v1::decode(record),
        // A Status, a page of them or a WebSocket frame; the instance is unknown here, so local accts
        // are qualified with the host of each account's `url`.
        Format::Mastodon => mastodon::decode(record, None),
        Format::Jetstream => jetstream::decode(record).map(|event| event.records),
    }
}

/// A forward-only JSON tokenizer for [`sniff`]: it recognises strings and nesting, nothing more.
struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn skip_ws(&mut self) {
        while self.bytes.get(self.pos).is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        let hit = self.bytes.get(self.pos) == Some(&byte);
        self.pos += usize::from(hit);
        hit
    }

    /// The raw bytes of the string at the cursor (escapes left as written), or `None`.
    fn string(&mut self) -> Option<&'a [u8]> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.pos;
        loop {
            match *self.bytes.get(self.pos)? {
                b'"' => break,
                b'\\' => self.pos += 2,
                _ => self.pos += 1,
            }
        }
        self.pos += 1;
        Some(&self.bytes[start..self.pos - 1])
    }

    /// Moves past one value; `None` at the end of input.
    fn skip_value(&mut self) -> Option<()> {
        self.skip_ws();
        let mut depth = 0usize;
        loop {
            let byte = *self.bytes.get(self.pos)?;
            match byte {
                b'"' => {
                    self.string()?;
                }
                b'{' | b'[' => {
                    depth += 1;
                    self.pos += 1;
                }
                // At depth 0 this closes the enclosing object: the value was empty (malformed).
                b'}' | b']' if depth == 0 => return Some(()),
                b'}' | b']' => {
                    depth -= 1;
                    self.pos += 1;
                }
                b',' if depth == 0 => return Some(()),
                _ if depth == 0 && byte.is_ascii_whitespace() => return Some(()),
                _ => self.pos += 1,
            }
            // A string or a container that ends at depth 0 is the whole value.
            if depth == 0 && matches!(byte, b'"' | b'}' | b']') {
                return Some(());
            }
        }
    }
}
