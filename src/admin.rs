//! The commands that look after a data directory: `tagflow verify` checks one no service holds,
//! `tagflow backup` archives a running service's store (`GET /backup`) or a directory's, and
//! `tagflow restore` rebuilds a directory (or an empty database) from an archive; `tagflow migrate`
//! moves a graph between a directory and a database.

use crate::config::{BackupArgs, MigrateArgs, RestoreArgs, VerifyArgs};
use crate::store::{self, Counts};
use anyhow::Context;
use indicatif::ProgressBar;
use std::io::Write;
use std::path::Path;

/// `tagflow verify`: everything opening checks, without serving or changing the directory.
///
/// # Errors
/// The directory is damaged (the error names the file, the record and what is lost), held by a
/// running service, or not a data directory.
pub fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let report = store::verify(&args.data_dir)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("{}: OK", args.data_dir.display());
    println!(
        "  {} users, {} edges, {} interactions, {} posts seen",
        report.users, report.edges, report.interactions, report.seen_posts
    );
    match &report.snapshot {
        Some(file) => println!("  snapshot {file} covers the log up to record {}", report.covered_seq),
        None => println!("  no snapshot yet"),
    }
    println!("  {} log records after it, the last {}", report.log_records, report.last_seq);
    for note in &report.notes {
        println!("  note: {note}");
    }
    Ok(())
}

/// `tagflow backup`: the archive of a running service (`--url`) or of a data directory.
///
/// # Errors
/// The service refused or the transfer broke, the archive it sent is damaged, the directory cannot
/// be opened, or the file cannot be written. The output file is only ever complete.
pub fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let tmp = args.out.with_extension("partial");
    let bar =
        crate::analyze::spinner(!args.quiet, "{spinner} [{elapsed_precise}] {bytes} {bytes_per_sec} {msg}");
    let written = match (&args.url, &args.data_dir) {
        (Some(url), _) => fetch(url, &tmp, &bar),
        (None, Some(dir)) => backup_dir(dir, &tmp, &bar),
        (None, None) => unreachable!("clap requires --url or --data-dir"),
    };
    bar.finish_and_clear();
    let counts = match written {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, &args.out)
        .with_context(|| format!("renaming {} to {}", tmp.display(), args.out.display()))?;
    let bytes = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    println!(
        "backed up commit {} to {} in {:.1}s: {} bytes, {}",
        counts.seq,
        args.out.display(),
        started.elapsed().as_secs_f64(),
        bytes,
        describe(&counts)
    );
    Ok(())
}

/// `tagflow restore`: a new data directory from an archive, then opened and checked.
///
/// # Errors
/// The archive is damaged (nothing is left behind), or the directory is not new.
pub fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let file = std::fs::File::open(&args.archive)
        .with_context(|| format!("cannot open {}", args.archive.display()))?;
    let what = || format!("restoring {}", args.archive.display());
    let counts = match (&args.data_dir, &args.database_url) {
        (Some(dir), _) => store::restore(file, dir).with_context(what)?,
        (None, Some(db)) => {
            let counts =
                store::restore_into_database(std::io::BufReader::new(file), db).with_context(what)?;
            println!("restored commit {} into {}: {}", counts.seq, db.shown(), describe(&counts));
            return Ok(());
        }
        (None, None) => unreachable!("clap requires --data-dir or --database-url"),
    };
    let dir = args.data_dir.as_deref().expect("restored into a directory");
    print_restored(&counts, dir)
}

/// What a restore or migration into a directory made, checked by opening it.
fn print_restored(counts: &Counts, dir: &Path) -> anyhow::Result<()> {
    let check = store::verify(dir)?;
    println!(
        "restored commit {} into {}: {}; the directory opens with {} users and {} edges",
        counts.seq,
        dir.display(),
        describe(counts),
        check.users,
        check.edges
    );
    Ok(())
}

/// `tagflow migrate`: a data directory into an empty database, or a database into a new directory.
///
/// # Errors
/// The source cannot be read (held by a service, damaged, unreachable), or the destination is not
/// empty or cannot be written.
pub fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let bar = crate::analyze::spinner(true, "{spinner} [{elapsed_precise}] {msg}");
    match (&args.from_data_dir, &args.from, &args.to, &args.to_data_dir) {
        (Some(dir), None, Some(db), None) => {
            bar.set_message(format!("{} -> {}", dir.display(), db.shown()));
            let counts = store::migrate_to_database(dir, db)
                .with_context(|| format!("migrating {} into {}", dir.display(), db.shown()));
            bar.finish_and_clear();
            let counts = counts?;
            println!(
                "migrated {} into {} in {:.1}s: {}",
                dir.display(),
                db.shown(),
                started.elapsed().as_secs_f64(),
                describe(&counts)
            );
            Ok(())
        }
        (None, Some(db), _, Some(dir)) => {
            bar.set_message(format!("{} -> {}", db.shown(), dir.display()));
            let counts = store::migrate_to_dir(db, dir)
                .with_context(|| format!("migrating {} into {}", db.shown(), dir.display()));
            bar.finish_and_clear();
            print_restored(&counts?, dir)
        }
        _ => anyhow::bail!("give --from-data-dir DIR --to URL, or --from URL --to-data-dir DIR"),
    }
}

fn describe(c: &Counts) -> String {
    format!(
        "{} users, {} edges, {} interactions, {} posts seen, {} post records and cursors",
        c.users, c.ties, c.stamps, c.seen, c.records
    )
}

/// Backs up a directory no service holds.
fn backup_dir(dir: &Path, out: &Path, bar: &ProgressBar) -> anyhow::Result<Counts> {
    if !dir.join("conf").is_file() {
        anyhow::bail!("{} is not a tagflow data directory", dir.display());
    }
    store::offline(&store::StoreConfig::new(dir), |handle, _| {
        let backup = handle.backup_blocking()?;
        let file = std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
        let mut file = std::io::BufWriter::new(file);
        let counts = backup.write(bar.wrap_write(&mut file))?;
        file.flush()?;
        file.get_ref().sync_all()?;
        anyhow::Ok(counts)
    })
}

/// Streams a running service's `GET /backup` into `out`, then reads it back whole to check it.
fn fetch(url: &str, out: &Path, bar: &ProgressBar) -> anyhow::Result<Counts> {
    let base = url.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        anyhow::bail!("--url must start with http:// or https://, not {base:?}");
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let token =
        crate::http::auth::tokens(std::env::var(crate::http::auth::ENV_API_TOKEN).ok()).into_iter().next();
    runtime.block_on(async {
        use futures_util::StreamExt;
        let mut request = reqwest::Client::new().get(format!("{base}/backup"));
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let resp = request.send().await.with_context(|| format!("GET {base}/backup"))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            anyhow::bail!(
                "GET {base}/backup answered {status}: {}",
                text.chars().take(300).collect::<String>()
            );
        }
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?,
        );
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.with_context(|| format!("GET {base}/backup broke off"))?;
            file.write_all(&chunk)?;
            bar.inc(chunk.len() as u64);
        }
        file.flush()?;
        file.get_ref().sync_all()?;
        anyhow::Ok(())
    })?;
    bar.set_message("checking");
    let file = std::fs::File::open(out)?;
    store::check_archive(file).map_err(|e| anyhow::anyhow!("the backup {base}/backup sent is not whole: {e}"))
}
