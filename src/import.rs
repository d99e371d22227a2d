//! `tagflow import`: load files of recorded posts into a data directory through the same decoders
//! and the same write path as the live service, in group commits.
//!
//! Files are NDJSON (one record per line: X v2 stream lines or search pages as twarc writes them,
//! v1.1 statuses, Mastodon statuses, Jetstream events) or one JSON document (a v1.1 array or
//! `{"statuses": [...]}` search response, pretty-printed or not). Broken lines are counted and
//! skipped; importing the same file twice changes nothing.

use crate::config::{ImportArgs, ImportFormat};
use crate::graph::Mutation;
use crate::ingest::decode::{self, DecodeError, Format};
use crate::ingest::source::{to_mutation, Tally};
use crate::store::{self, StoreConfig, StoreError, StoreHandle};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::Instant;

/// How many group commits may be queued ahead of the writer: decoding the next batch overlaps with
/// flushing the previous one.
const IN_FLIGHT: usize = 4;

/// How many skip reasons the summary quotes.
const SAMPLE_REASONS: usize = 5;

/// The figures an import prints at the end.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub records: u64,
    pub tally: Tally,
    pub skipped: u64,
    pub reasons: Vec<String>,
    pub users_after: usize,
    pub edges_after: usize,
}

/// Runs the `import` command.
///
/// # Errors
/// Unreadable files, a data directory that cannot be opened, a failed commit.
pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    if args.url.is_some() {
        anyhow::bail!("--url needs the HTTP collector (POST /ingest), which this build does not have yet");
    }
    let mut config = StoreConfig::new(&args.store.data_dir);
    config.cache_bytes = args.store.cache_mb << 20;
    let (store, writer, _) = store::open(&config)?;
    let started = Instant::now();
    let result = import_files(&store, &args.files, args.format, args.batch.max(1), !args.quiet);
    store.close_blocking();
    drop(store);
    writer.join();
    let report = result?;
    let secs = started.elapsed().as_secs_f64();
    let t = &report.tally;
    println!(
        "imported {} records in {secs:.1}s ({:.0} posts/s): posts={} interactions={} duplicates={} deleted={} new_users={} skipped={}",
        report.records,
        t.posts as f64 / secs.max(1e-9),
        t.posts,
        t.interactions,
        t.duplicates,
        t.deleted,
        t.new_users,
        report.skipped
    );
    println!("graph now: users={} edges={}", report.users_after, report.edges_after);
    for r in &report.reasons {
        println!("  skipped: {r}");
    }
    Ok(())
}

/// Imports files into an open store. `progress` draws a bar on a terminal (never elsewhere).
///
/// # Errors
/// Unreadable files or a failed commit; broken records are counted, not errors.
pub fn import_files(
    store: &StoreHandle,
    files: &[std::path::PathBuf],
    format: ImportFormat,
    batch: usize,
    progress: bool,
) -> anyhow::Result<ImportReport> {
    let total: u64 = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
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
        store,
        batch,
        pending: Vec::new(),
        in_flight: VecDeque::new(),
        report: ImportReport::default(),
        bar: &bar,
    };
    for path in files {
        imp.file(path, format).with_context(|| format!("importing {}", path.display()))?;
    }
    imp.flush()?;
    imp.drain(0)?;
    bar.finish_and_clear();
    let mut report = imp.report;
    let g = store.graph().read();
    report.users_after = g.user_count();
    report.edges_after = g.tie_count();
    Ok(report)
}

type Pending = tokio::sync::oneshot::Receiver<
    Result<Vec<Result<crate::graph::Outcome, crate::graph::Rejection>>, StoreError>,
>;

struct Importer<'a> {
    store: &'a StoreHandle,
    batch: usize,
    pending: Vec<Mutation>,
    in_flight: VecDeque<Pending>,
    report: ImportReport,
    bar: &'a ProgressBar,
}

impl Importer<'_> {
    fn file(&mut self, path: &Path, format: ImportFormat) -> anyhow::Result<()> {
        let reader: Box<dyn Read> = if path == Path::new("-") {
            Box::new(std::io::stdin())
        } else {
            Box::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?)
        };
        let mut reader = BufReader::with_capacity(1 << 20, reader);
        // A file whose first record does not fit on its first line is one JSON document (a
        // pretty-printed v1.1 array or search response): read it whole.
        let first = first_byte(&mut reader)?;
        if first == Some(b'[') {
            return self.document(reader, format);
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
            if line_no == 1 && trimmed == b"{" {
                let mut doc = line.clone();
                reader.read_to_end(&mut doc)?;
                self.bar.inc(doc.len() as u64);
                return self.document(BufReader::new(&doc[..]), format);
            }
            self.record(trimmed, format, || format!("line {line_no}"))?;
        }
        Ok(())
    }

    fn document(&mut self, mut reader: impl Read, format: ImportFormat) -> anyhow::Result<()> {
        let mut doc = Vec::new();
        reader.read_to_end(&mut doc)?;
        self.bar.inc(doc.len() as u64);
        let trimmed = doc.trim_ascii();
        // An array of records: decode each element on its own, so one bad element is one skip.
        if trimmed.first() == Some(&b'[') {
            match serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(trimmed) {
                Ok(items) => {
                    for (i, item) in items.iter().enumerate() {
                        self.record(item.get().as_bytes(), format, || format!("element {i}"))?;
                    }
                    return Ok(());
                }
                Err(e) => {
                    self.skip(format!("document: {e}"));
                    return Ok(());
                }
            }
        }
        self.record(trimmed, format, || "document".to_string())
    }

    fn record(
        &mut self,
        bytes: &[u8],
        format: ImportFormat,
        place: impl Fn() -> String,
    ) -> anyhow::Result<()> {
        self.report.records += 1;
        let fmt = match format {
            ImportFormat::Auto => decode::sniff(bytes),
            ImportFormat::XV2 => Some(Format::XV2),
            ImportFormat::XV1 => Some(Format::XV1),
            ImportFormat::Mastodon => Some(Format::Mastodon),
            ImportFormat::Jetstream => Some(Format::Jetstream),
        };
        let decoded = match fmt {
            Some(f) => decode::decode(f, bytes),
            None => Err(match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Err(e) => DecodeError::Json(e),
                Ok(_) => DecodeError::Shape("not a format tagflow knows".into()),
            }),
        };
        match decoded {
            Ok(records) => {
                self.pending.extend(records.into_iter().filter_map(to_mutation));
                if self.pending.len() >= self.batch {
                    self.flush()?;
                }
            }
            Err(e) => self.skip(format!("{}: {e}", place())),
        }
        Ok(())
    }

    fn skip(&mut self, reason: String) {
        self.report.skipped += 1;
        if self.report.reasons.len() < SAMPLE_REASONS {
            log::warn!("import: skipped {reason}");
            self.report.reasons.push(reason);
        }
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        self.in_flight.push_back(self.store.enqueue_blocking(batch)?);
        self.drain(IN_FLIGHT)
    }

    /// Waits for queued commits until at most `keep` are outstanding.
    fn drain(&mut self, keep: usize) -> anyhow::Result<()> {
        while self.in_flight.len() > keep {
            let Some(rx) = self.in_flight.pop_front() else { break };
            let outcomes = rx.blocking_recv().map_err(|_| StoreError::Closed)??;
            let t = Tally::of(&outcomes);
            self.report.tally.add(&t);
            self.bar.set_message(format!("{} posts", self.report.tally.posts));
        }
        Ok(())
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
