//! `tagflow import`: load files of recorded posts through the same decoders and the same write path
//! as the live service, in group commits; or, with `--url`, stream them to a running service's
//! `POST /ingest`.
//!
//! Files are NDJSON (one record per line: X v2 stream lines or search pages as twarc writes them,
//! v1.1 statuses, Mastodon statuses, Jetstream events) or one JSON document: a v1.1 array, read
//! element by element, or a `{"statuses": [...]}` search response, pretty-printed or not, held whole
//! up to `--max-line`. Broken lines are counted and skipped, over-long ones without being held;
//! importing the same file twice changes nothing.

use crate::config::{ImportArgs, ImportFormat};
use crate::graph::Mutation;
use crate::ingest::decode::Format;
use crate::ingest::source::{to_mutation, Tally};
use crate::ingest::SAMPLE_REASONS;
use crate::store::{self, Outcomes, StoreError, StoreHandle};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How many group commits may be queued ahead of the writer: decoding the next batch overlaps with
/// flushing the previous one.
const IN_FLIGHT: usize = 4;

/// Tries of one body with `--url` when the service answers 429 or 503 with `Retry-After`.
const MAX_ATTEMPTS: u32 = 10;

/// Size of one `POST /ingest` body with `--url`.
const HTTP_BODY_BYTES: usize = 2 << 20;

/// The figures an import prints at the end.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ImportReport {
    pub records: u64,
    pub tally: Tally,
    pub skipped: u64,
    pub reasons: Vec<String>,
    /// Size of the graph after the import (local imports only).
    pub users_after: Option<usize>,
    pub edges_after: Option<usize>,
}

/// Runs the `import` command.
///
/// # Errors
/// Unreadable files, a data directory that cannot be opened, a failed commit, a service that
/// refuses the posts.
pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let progress = !args.quiet;
    // Every file must be readable before anything is opened: a mistyped name must not leave an
    // empty data directory (or half an import) behind.
    for f in args.files.iter().filter(|f| f.as_os_str() != "-") {
        std::fs::File::open(f).with_context(|| format!("cannot open {}", f.display()))?;
    }
    let report = match &args.url {
        Some(url) => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let sink = Sink::Http(HttpSink::new(url, runtime)?);
            import_with(sink, &args.files, args.format, args.batch, args.max_line_bytes(), progress)?
        }
        None => store::offline(&args.store.store_config(), |store, _| {
            import_files(store, &args.files, args.format, args.batch, args.max_line_bytes(), progress)
        })?,
    };
    print_report(&report, started.elapsed().as_secs_f64());
    Ok(())
}

fn print_report(report: &ImportReport, secs: f64) {
    let t = &report.tally;
    println!(
        "imported {} records in {secs:.1}s ({:.0} posts/s): posts={} interactions={} duplicates={} deleted={} \
         new_users={} skipped={}",
        report.records,
        t.posts as f64 / secs.max(1e-9),
        t.posts,
        t.interactions,
        t.duplicates,
        t.deleted,
        t.new_users,
        report.skipped
    );
    if let (Some(u), Some(e)) = (report.users_after, report.edges_after) {
        println!("graph now: users={u} edges={e}");
    }
    for r in &report.reasons {
        println!("  skipped {r}");
    }
}

/// Imports files into an open store. `progress` draws a bar on a terminal (never elsewhere).
///
/// # Errors
/// Unreadable files or a failed commit; broken records are counted, not errors.
pub(crate) fn import_files(
    store: &StoreHandle,
    files: &[PathBuf],
    format: ImportFormat,
    batch: usize,
    max_line: usize,
    progress: bool,
) -> anyhow::Result<ImportReport> {
    let mut report =
        import_with(Sink::Store(StoreSink::new(store)), files, format, batch, max_line, progress)?;
    let g = store.graph().read();
    report.users_after = Some(g.user_count());
    report.edges_after = Some(g.tie_count());
    Ok(report)
}

fn import_with(
    sink: Sink<'_>,
    files: &[PathBuf],
    format: ImportFormat,
    batch: usize,
    max_line: usize,
    progress: bool,
) -> anyhow::Result<ImportReport> {
    let total: u64 = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    // indicatif draws nothing when stderr is not a terminal, so logs and pipes stay clean.
    let bar = if progress {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut imp = Importer {
        sink,
        format: format.into_format(),
        batch: batch.max(1),
        report: ImportReport::default(),
        bar: &bar,
        name: String::new(),
        max_line,
    };
    for path in files {
        imp.file(path).with_context(|| format!("importing {}", path.display()))?;
    }
    imp.sink.finish(&mut imp.report)?;
    bar.finish_and_clear();
    Ok(imp.report)
}

/// Where decoded records go.
enum Sink<'a> {
    Store(StoreSink<'a>),
    Http(HttpSink),
}

struct StoreSink<'a> {
    store: &'a StoreHandle,
    pending: Vec<Mutation>,
    in_flight: VecDeque<tokio::sync::oneshot::Receiver<Outcomes>>,
}

impl<'a> StoreSink<'a> {
    fn new(store: &'a StoreHandle) -> Self {
        StoreSink { store, pending: Vec::new(), in_flight: VecDeque::new() }
    }

    fn flush(&mut self, report: &mut ImportReport) -> anyhow::Result<()> {
        if !self.pending.is_empty() {
            let batch = std::mem::take(&mut self.pending);
            self.in_flight.push_back(self.store.enqueue_blocking(batch)?);
        }
        self.drain(IN_FLIGHT, report)
    }

    /// Waits for queued commits until at most `keep` are outstanding.
    fn drain(&mut self, keep: usize, report: &mut ImportReport) -> anyhow::Result<()> {
        while self.in_flight.len() > keep {
            let Some(rx) = self.in_flight.pop_front() else { break };
            let outcomes = rx.blocking_recv().map_err(|_| StoreError::Closed)??;
            report.tally.add(&Tally::of(&outcomes));
        }
        Ok(())
    }
}

/// Sends NDJSON bodies to `POST {url}/ingest` and adds up what the service reports.
struct HttpSink {
    url: String,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    body: Vec<u8>,
    /// The first of `TAGFLOW_API_TOKEN`'s tokens, sent with every request.
    token: Option<String>,
}

impl HttpSink {
    fn new(url: &str, runtime: tokio::runtime::Runtime) -> anyhow::Result<HttpSink> {
        let base = url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            anyhow::bail!("--url must start with http:// or https://, not {base:?}");
        }
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(120)).build()?;
        Ok(HttpSink {
            url: format!("{base}/ingest"),
            client,
            runtime,
            body: Vec::with_capacity(HTTP_BODY_BYTES),
            token: crate::http::auth::tokens(std::env::var(crate::http::auth::ENV_API_TOKEN).ok())
                .into_iter()
                .next(),
        })
    }

    fn push(&mut self, record: &[u8], report: &mut ImportReport) -> anyhow::Result<()> {
        self.body.extend_from_slice(record);
        self.body.push(b'\n');
        if self.body.len() >= HTTP_BODY_BYTES {
            self.send(report)?;
        }
        Ok(())
    }

    fn send(&mut self, report: &mut ImportReport) -> anyhow::Result<()> {
        if self.body.is_empty() {
            return Ok(());
        }
        let body = std::mem::replace(&mut self.body, Vec::with_capacity(HTTP_BODY_BYTES));
        self.post(actix_web::web::Bytes::from(body), report)
    }

    /// Posts one body of NDJSON records. A body the service finds too large (413) is split in two
    /// and each half sent; a single record it refuses is counted as skipped, and the import goes on.
    fn post(&self, body: actix_web::web::Bytes, report: &mut ImportReport) -> anyhow::Result<()> {
        let answer = match self.runtime.block_on(self.request(body.clone()))? {
            Some(answer) => answer,
            None => {
                let records = body.trim_ascii_end();
                let mid = records.len() / 2;
                let newline = |b: &u8| *b == b'\n';
                let cut = records[mid..]
                    .iter()
                    .position(newline)
                    .map(|i| mid + i)
                    .or_else(|| records[..mid].iter().rposition(newline));
                return match cut {
                    Some(cut) => {
                        self.post(body.slice(..=cut), report)?;
                        self.post(body.slice(cut + 1..), report)
                    }
                    None => {
                        report.skipped += 1;
                        if report.reasons.len() < SAMPLE_REASONS {
                            let url = &self.url;
                            report.reasons.push(format!(
                                "a record of {} bytes: larger than {url} accepts (413)",
                                records.len()
                            ));
                        }
                        Ok(())
                    }
                };
            }
        };
        let t = &mut report.tally;
        t.posts += answer.accepted;
        t.interactions += answer.interactions;
        t.duplicates += answer.duplicates;
        t.deleted += answer.deleted;
        t.new_users += answer.new_users;
        report.skipped += answer.skipped;
        for r in answer.reasons {
            if report.reasons.len() < SAMPLE_REASONS {
                report.reasons.push(format!("(server) {r}"));
            }
        }
        Ok(())
    }

    /// One `POST /ingest`: the service's answer, or `None` if it refused the body as too large.
    async fn request(
        &self,
        body: actix_web::web::Bytes,
    ) -> anyhow::Result<Option<crate::ingest::IngestAnswer>> {
        let (client, url) = (&self.client, &self.url);
        // A service over its rate says when to come back: wait that long (a few times at most).
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request =
                client.post(url).header("content-type", "application/x-ndjson").body(body.clone());
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let resp = request.send().await.with_context(|| format!("POST {url}"))?;
            let status = resp.status();
            if status.as_u16() == 413 {
                return Ok(None);
            }
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .filter(|_| matches!(status.as_u16(), 429 | 503 | 507) && attempt < MAX_ATTEMPTS);
            if let Some(secs) = retry_after {
                log::info!("import: {url} answered {status}; retrying in {secs} s");
                tokio::time::sleep(std::time::Duration::from_secs(secs.clamp(1, 60))).await;
                continue;
            }
            if !status.is_success() {
                let text = resp.text().await.unwrap_or_default();
                anyhow::bail!("POST {url} answered {status}: {}", text.chars().take(300).collect::<String>());
            }
            return resp
                .json::<crate::ingest::IngestAnswer>()
                .await
                .map(Some)
                .with_context(|| format!("reading the answer of POST {url}"));
        }
    }
}

impl Sink<'_> {
    fn finish(&mut self, report: &mut ImportReport) -> anyhow::Result<()> {
        match self {
            Sink::Store(s) => {
                s.flush(report)?;
                s.drain(0, report)
            }
            Sink::Http(h) => h.send(report),
        }
    }
}

struct Importer<'a, 'b> {
    sink: Sink<'a>,
    format: Option<Format>,
    batch: usize,
    report: ImportReport,
    bar: &'b ProgressBar,
    /// The file being read, as skip reasons name it (`-` is standard input).
    name: String,
    /// Longest line (or opened document) held; longer ones are skipped unread.
    max_line: usize,
}

impl Importer<'_, '_> {
    fn file(&mut self, path: &Path) -> anyhow::Result<()> {
        self.name = if path == Path::new("-") { "stdin".to_string() } else { path.display().to_string() };
        let reader: Box<dyn Read> = if path == Path::new("-") {
            Box::new(std::io::stdin())
        } else {
            Box::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?)
        };
        let mut reader = BufReader::with_capacity(1 << 20, reader);
        // A file that starts with `[` is an array of records (a v1.1 archive): read element by
        // element. Otherwise NDJSON, unless its first line opens a document it does not close (see
        // `opened_document`).
        if first_byte(&mut reader)? == Some(b'[') {
            return self.array(reader);
        }
        self.ndjson(&mut reader, 0, true)
    }

    /// Reads NDJSON records, one a line, after line `line_no`; with `first`, the first line may open a
    /// pretty-printed document.
    fn ndjson(&mut self, reader: &mut impl BufRead, mut line_no: u64, first: bool) -> anyhow::Result<()> {
        let mut line = Vec::with_capacity(64 << 10);
        while let Some(read) = read_line(reader, &mut line, self.max_line)? {
            self.bar.inc(read.consumed as u64);
            line_no += 1;
            if read.oversized {
                self.oversized(line_no, read.consumed);
                continue;
            }
            let trimmed = line.trim_ascii();
            if trimmed.is_empty() {
                continue;
            }
            if first && line_no == 1 && starts_a_document(trimmed) {
                let first = std::mem::take(&mut line);
                return self.opened_document(reader, first);
            }
            self.record(trimmed, || format!("line {line_no}"))?;
        }
        Ok(())
    }

    /// The first line opens a JSON value it does not close: a pretty-printed document (a v2 search
    /// page, a `{"statuses": [...]}` response), or a broken first line of NDJSON. Lines are gathered,
    /// at most `--max-line` bytes in all, until they close it (it is then one document and NDJSON
    /// goes on after it); if they never do, or grow past the limit, they were NDJSON lines all along.
    fn opened_document(&mut self, reader: &mut impl BufRead, mut doc: Vec<u8>) -> anyhow::Result<()> {
        let mut line = Vec::new();
        let mut line_no = 1u64;
        while let Some(read) = read_line(reader, &mut line, self.max_line)? {
            self.bar.inc(read.consumed as u64);
            line_no += 1;
            if read.oversized || doc.len() + line.len() > self.max_line {
                self.lines_of(&doc)?;
                if read.oversized {
                    self.oversized(line_no, read.consumed);
                } else if !line.trim_ascii().is_empty() {
                    self.record(line.trim_ascii(), || format!("line {line_no}"))?;
                }
                return self.ndjson(reader, line_no, false);
            }
            doc.extend_from_slice(&line);
            // A pretty-printed document closes with `}` or `]` alone on its line: only then parse.
            let closes = matches!(line.trim_ascii(), b"}" | b"]");
            if closes && serde_json::from_slice::<serde::de::IgnoredAny>(&doc).is_ok() {
                self.document(&doc[..])?;
                return self.ndjson(reader, line_no, false);
            }
        }
        self.lines_of(&doc)
    }

    /// The lines of `held` (the first lines of the file) as NDJSON records.
    fn lines_of(&mut self, held: &[u8]) -> anyhow::Result<()> {
        for (i, l) in held.split(|&b| b == b'\n').enumerate() {
            let l = l.trim_ascii();
            if !l.is_empty() {
                self.record(l, || format!("line {}", i + 1))?;
            }
        }
        Ok(())
    }

    fn oversized(&mut self, line_no: u64, bytes: usize) {
        self.report.records += 1;
        self.skip(format!(
            "line {line_no}: {bytes} bytes, over --max-line ({} bytes): skipped unread",
            self.max_line
        ));
    }

    /// A JSON array of records, element by element as it is read: only one element is held at a
    /// time. An element that does not decode is one skip; JSON that breaks off ends the array there
    /// (what came before is kept) and is one skip.
    fn array(&mut self, reader: impl Read) -> anyhow::Result<()> {
        use serde::de::{Deserializer as _, SeqAccess, Visitor};
        struct Elements<'i, 'a, 'b> {
            importer: &'i mut Importer<'a, 'b>,
            /// A failure of the sink (a commit), which must end the import, not count as a skip.
            failed: &'i mut Option<anyhow::Error>,
        }
        impl<'de> Visitor<'de> for Elements<'_, '_, '_> {
            type Value = ();
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of records")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                let mut i = 0usize;
                while let Some(item) = seq.next_element::<Box<serde_json::value::RawValue>>()? {
                    if let Err(e) = self.importer.record(item.get().as_bytes(), || format!("element {i}")) {
                        *self.failed = Some(e);
                        return Ok(());
                    }
                    i += 1;
                }
                Ok(())
            }
        }
        let mut failed = None;
        let reader = std::io::BufReader::with_capacity(1 << 20, self.bar.wrap_read(reader));
        let mut de = serde_json::Deserializer::from_reader(reader);
        let parsed = (&mut de).deserialize_seq(Elements { importer: self, failed: &mut failed });
        if let Some(e) = failed {
            return Err(e);
        }
        if let Err(e) = parsed.and_then(|()| de.end()) {
            self.skip(format!("document: {e}"));
        }
        Ok(())
    }

    /// One JSON document held whole (bounded by `--max-line`, see `opened_document`).
    fn document(&mut self, doc: &[u8]) -> anyhow::Result<()> {
        self.record(doc.trim_ascii(), || "document".to_string())
    }

    fn record(&mut self, bytes: &[u8], place: impl Fn() -> String) -> anyhow::Result<()> {
        self.report.records += 1;
        match &mut self.sink {
            Sink::Store(s) => match crate::ingest::decode_record(bytes, self.format) {
                Ok(records) => {
                    s.pending.extend(records.into_iter().filter_map(to_mutation));
                    if s.pending.len() >= self.batch {
                        s.flush(&mut self.report)?;
                        self.bar.set_message(format!("{} posts", self.report.tally.posts));
                    }
                }
                Err(e) => self.skip(format!("{}: {e}", place())),
            },
            Sink::Http(h) => {
                // The service decodes; records must be one line each, so re-encode multi-line ones.
                if bytes.contains(&b'\n') {
                    match serde_json::from_slice::<serde_json::Value>(bytes) {
                        Ok(v) => h.push(v.to_string().as_bytes(), &mut self.report)?,
                        Err(e) => self.skip(format!("{}: malformed json: {e}", place())),
                    }
                } else {
                    h.push(bytes, &mut self.report)?;
                }
            }
        }
        Ok(())
    }

    /// Counts a broken record; the first few reasons are kept, naming the file and the place in it.
    fn skip(&mut self, reason: String) {
        self.report.skipped += 1;
        if self.report.reasons.len() < SAMPLE_REASONS {
            let reason = format!("{}, {reason}", self.name);
            log::warn!("import: skipped {reason}");
            self.report.reasons.push(reason);
        }
    }
}

/// True when a first line opens a JSON value that it does not close (a pretty-printed document).
fn starts_a_document(line: &[u8]) -> bool {
    matches!(
        serde_json::from_slice::<serde::de::IgnoredAny>(line),
        Err(e) if e.classify() == serde_json::error::Category::Eof
    )
}

/// A line read by [`read_line`]: its bytes in the file, and whether it was over the limit (then
/// none of it is kept).
struct LineRead {
    consumed: usize,
    oversized: bool,
}

/// Reads one line (with its newline) into `buf`, keeping at most `max` bytes of it: a longer line is
/// read through and dropped as it goes, never held whole. `None` at the end of the input.
fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> std::io::Result<Option<LineRead>> {
    buf.clear();
    let (mut consumed, mut oversized) = (0, false);
    loop {
        let chunk = match reader.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok((consumed > 0).then_some(LineRead { consumed, oversized }));
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if !oversized {
            // The newline itself does not count against the limit.
            let body = if done { take - 1 } else { take };
            if buf.len() + body > max {
                oversized = true;
                *buf = Vec::new();
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
        }
        reader.consume(take);
        consumed += take;
        if done {
            return Ok(Some(LineRead { consumed, oversized }));
        }
    }
}

fn first_byte(reader: &mut impl BufRead) -> std::io::Result<Option<u8>> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(None);
        }
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => return Ok(Some(buf[i])),
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader of one `len`-byte line of `x`, then `rest`, produced as it is read.
    struct Endless {
        left: usize,
        rest: std::io::Cursor<Vec<u8>>,
    }

    impl Read for Endless {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.left == 0 {
                return self.rest.read(out);
            }
            let n = out.len().min(self.left);
            out[..n].fill(b'x');
            self.left -= n;
            Ok(n)
        }
    }

    #[test]
    fn a_line_over_the_limit_is_read_through_without_being_held() {
        let mut r = BufReader::with_capacity(
            64 << 10,
            Endless { left: 256 << 20, rest: std::io::Cursor::new(b"\n{\"a\":1}\nlast".to_vec()) },
        );
        let mut buf = Vec::new();
        let first = read_line(&mut r, &mut buf, 1 << 20).unwrap().unwrap();
        assert!(first.oversized);
        assert_eq!(first.consumed, (256 << 20) + 1);
        assert!(buf.capacity() <= 2 << 20, "held {} bytes of a 256 MiB line", buf.capacity());
        let second = read_line(&mut r, &mut buf, 1 << 20).unwrap().unwrap();
        assert!(!second.oversized);
        assert_eq!(buf, b"{\"a\":1}\n");
        read_line(&mut r, &mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!(buf, b"last", "a last line without a newline");
        assert!(read_line(&mut r, &mut buf, 1 << 20).unwrap().is_none());
        // Exactly at the limit is kept; one byte over is not.
        let mut r = BufReader::new(&b"abcd\nabcde\n"[..]);
        assert!(!read_line(&mut r, &mut buf, 4).unwrap().unwrap().oversized);
        assert!(read_line(&mut r, &mut buf, 4).unwrap().unwrap().oversized);
    }
}
