//! `tagflow export`: a data directory that no service holds, written as GEXF, GraphML, CSV or
//! graphology JSON, with the selection and cuts of `GET /export` and the same [`Plan`] behind it.
//!
//! Writes `FILE.partial` and renames it when complete, so that a failed or interrupted export never
//! leaves a truncated file under the name asked for; shows a progress bar on a terminal.

use super::{EgoCut, Format, Metrics, Plan, Request};
use crate::analyze::offline;
use crate::config::ExportArgs;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::Path;

/// Runs the `export` command.
///
/// # Errors
/// A missing or held data directory, bad parameters, an unknown ego user, a file that cannot be
/// written.
pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let format = Format::parse(&args.format, args.table.as_deref()).map_err(anyhow::Error::msg)?;
    let mut request = Request::new(args.selection.selection().map_err(anyhow::Error::msg)?);
    request.min_degree = args.min_degree;
    request.top = args.top.map(|n| n as usize);
    request.core = args.core;
    request.ego = args.ego.clone().map(|user| EgoCut { user, hops: args.hops.unwrap_or(1) });
    if let Some(list) = &args.metrics {
        request.metrics = Metrics::parse(list).map_err(anyhow::Error::msg)?;
    }
    request.communities = args.communities.params().map_err(anyhow::Error::msg)?;
    request.damping = args.damping;
    request.check().map_err(anyhow::Error::msg)?;
    let (users, edges) = offline(&args.store, args.threads, args.quiet, |engine, bar, runtime| {
        bar.set_message("selecting, cutting and naming");
        let plan = runtime.block_on(super::prepare(engine, &request))?;
        bar.println(format!(
            "{} users, {} edges, {} interactions selected",
            plan.users().len(),
            plan.edge_count(),
            plan.interaction_count()
        ));
        let total = (plan.users().len() + plan.edge_count()) as u64;
        bar.set_length(total);
        bar.set_position(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] writing {bar:30} {percent}% of users and edges, {per_sec}, {eta} left",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        write_out(&plan, format, &args.out, bar)?;
        Ok((plan.users().len(), plan.edge_count()))
    })?;
    if args.out.as_os_str() != "-" {
        eprintln!("wrote {} users and {} edges to {}", users, edges, args.out.display());
    }
    Ok(())
}

/// Writes the plan to `out` (`-`: standard output), through `out.partial` and a rename.
fn write_out(plan: &Plan, format: Format, out: &Path, bar: &ProgressBar) -> anyhow::Result<()> {
    let mut progress = |n: u64| bar.inc(n);
    if out.as_os_str() == "-" {
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        super::write(plan, format, &mut lock, &mut progress).context("cannot write to standard output")?;
        return Ok(());
    }
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    let file =
        std::fs::File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    let result = (|| -> std::io::Result<()> {
        if out.extension().is_some_and(|e| e == "gz") {
            let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
            super::write(plan, format, &mut gz, &mut progress)?;
            gz.finish()?.sync_all()
        } else {
            let mut file = file;
            super::write(plan, format, &mut file, &mut progress)?;
            file.flush()?;
            file.sync_all()
        }
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e).with_context(|| format!("cannot write {}", partial.display()));
    }
    std::fs::rename(&partial, out)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), out.display()))
}
