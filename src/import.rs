//! `tagflow import`: load files of recorded posts through the same decoders and the same write path
//! as the live service, in group commits; or, with `--url`, stream them to a running service's
//! `POST /ingest`.
//!
//! Files are NDJSON (one record per line: X v2 stream lines or search pages as twarc writes them,
//! v1.1 statuses, Mastodon statuses, Jetstream events) or one JSON document (a v1.1 array or
//! `{"statuses": [...]}` search response, pretty-printed or not). Broken lines are counted and
//! skipped; importing the same file twice changes nothing.

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
pub struct ImportReport {
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
            import_with(sink, &args.files, args.format, args.batch, progress)?
        }
        None => {
            let config = args.store.store_config();
            let (store, writer, _) = store::open(&config)?;
            let result = import_files(&store, &args.files, args.format, args.batch, progress);
            store.close_blocking();
            drop(store);
            let flushed = writer.join();
            let report = result?;
            flushed?;
            report
        }
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
pub fn import_files(
    store: &StoreHandle,
    files: &[PathBuf],
    format: ImportFormat,
    batch: usize,
    progress: bool,
) -> anyhow::Result<ImportReport> {
    let mut report = import_with(Sink::Store(StoreSink::new(store)), files, format, batch, progress)?;
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
        let (client, url) = (&self.client, &self.url);
        let body = actix_web::web::Bytes::from(body);
        let answer: crate::ingest::IngestAnswer = self.runtime.block_on(async {
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
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                    .filter(|_| matches!(status.as_u16(), 429 | 503) && attempt < MAX_ATTEMPTS);
                if let Some(secs) = retry_after {
                    log::info!("import: {url} answered {status}; retrying in {secs} s");
                    tokio::time::sleep(std::time::Duration::from_secs(secs.clamp(1, 60))).await;
                    continue;
                }
                if !status.is_success() {
                    let text = resp.text().await.unwrap_or_default();
                    anyhow::bail!(
                        "POST {url} answered {status}: {}",
                        text.chars().take(300).collect::<String>()
                    );
                }
                return resp
                    .json::<crate::ingest::IngestAnswer>()
                    .await
                    .with_context(|| format!("reading the answer of POST {url}"));
            }
        })?;
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
        // A file that starts with `[`, or whose first line is a lone `{`, is one JSON document (a
        // v1.1 array, a pretty-printed search response): read it whole. Otherwise, NDJSON.
        if first_byte(&mut reader)? == Some(b'[') {
            return self.document(reader);
        }
        let mut line = Vec::with_capacity(64 << 10);
        let mut line_no = 0u64;
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            self.bar.inc(n as u64);
            line_no += 1;
            let trimmed = line.trim_ascii();
            if trimmed.is_empty() {
                continue;
            }
            if line_no == 1 && starts_a_document(trimmed) {
                let mut doc = line.clone();
                reader.read_to_end(&mut doc)?;
                if serde_json::from_slice::<serde::de::IgnoredAny>(&doc).is_ok() {
                    return self.document(&doc[..]);
                }
                // Not one document after all (a truncated first line): go on line by line.
                self.bar.inc(doc.len().saturating_sub(n) as u64);
                for (i, l) in doc.split(|&b| b == b'\n').enumerate() {
                    let l = l.trim_ascii();
                    if !l.is_empty() {
                        self.record(l, || format!("line {}", i + 1))?;
                    }
                }
                return Ok(());
            }
            self.record(trimmed, || format!("line {line_no}"))?;
        }
        Ok(())
    }

    fn document(&mut self, mut reader: impl Read) -> anyhow::Result<()> {
        let mut doc = Vec::new();
        reader.read_to_end(&mut doc)?;
        self.bar.inc(doc.len() as u64);
        let trimmed = doc.trim_ascii();
        if trimmed.first() == Some(&b'[') {
            // An array of records: each element on its own, so one bad element is one skip.
            match serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(trimmed) {
                Ok(items) => {
                    for (i, item) in items.iter().enumerate() {
                        self.record(item.get().as_bytes(), || format!("element {i}"))?;
                    }
                }
                Err(e) => self.skip(format!("document: {e}")),
            }
            return Ok(());
        }
        self.record(trimmed, || "document".to_string())
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
