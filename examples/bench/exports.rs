//! The exports part of the benchmark: the whole graph written in every format, as `GET /export`
//! and `tagflow export` write it. Prints, per format, the time to prepare (copy, sort, cut, name)
//! and to write, the rate in edges per second, the bytes, and the memory the export held at its
//! peak beyond the loaded graph, next to what an analytics snapshot of the same selection holds;
//! writes the rates into `exports.json` for `bench/export_peers.py` to compare igraph and networkit
//! with.

use serde_json::json;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tagflow::analytics::engine::{self, Engine};
use tagflow::export::{self, Format, Request, Table};
use tagflow::graph::Selection;
use tagflow::store::StoreHandle;

/// A sink that counts what it is given (the disk's speed is not the export's).
struct Counted(u64);

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// This process's resident memory now and at its peak, in KiB.
fn memory_kib() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak (`VmHWM`) to the current resident memory (Linux: `clear_refs` 5).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub fn measure(handle: &StoreHandle, out: &Path, threads: usize) -> anyhow::Result<()> {
    let engine: Arc<Engine> = Engine::new(handle.graph().clone(), threads)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let sel = Selection::default();
    let snapshot_mib = {
        let (net, _) = engine::snapshot(handle.graph(), &sel, None, &mut Default::default());
        net.undirected();
        (net.bytes() + 12 * net.undirected().adjacency_len() + 4 * net.users()) as f64 / 1048576.0
    };
    let mut rates = serde_json::Map::new();
    for (name, format, gzip) in [
        ("gexf", Format::Gexf, false),
        ("gexf.gz", Format::Gexf, true),
        ("graphml", Format::Graphml, false),
        ("csv edges", Format::Csv(Table::Edges), false),
        ("csv nodes", Format::Csv(Table::Nodes), false),
        ("graphology", Format::Graphology, false),
    ] {
        reset_peak();
        let (before, _) = memory_kib();
        let t = Instant::now();
        let plan = runtime.block_on(export::prepare(&engine, &Request::new(sel)))?;
        let prepared = t.elapsed();
        let t = Instant::now();
        let mut sink = Counted(0);
        if gzip {
            let mut gz = flate2::write::GzEncoder::new(&mut sink, flate2::Compression::fast());
            export::write(&plan, format, &mut gz, &mut |_| {})?;
            gz.finish()?;
        } else {
            export::write(&plan, format, &mut sink, &mut |_| {})?;
        }
        let written = t.elapsed();
        let (_, peak) = memory_kib();
        let total = (prepared + written).as_secs_f64();
        let edges = plan.edge_count() as f64;
        println!(
            "export {name:<10}: {} users, {} edges, {} interactions: prepared in {:.2}s, written in {:.2}s = \
             {:.2}M edges/s overall, {:.0} MB; peak memory +{:.0} MiB over the loaded graph (the plan holds \
             {:.0} MiB; an analytics snapshot of the same selection {:.0} MiB)",
            plan.users().len(),
            plan.edge_count(),
            plan.interaction_count(),
            prepared.as_secs_f64(),
            written.as_secs_f64(),
            edges / total / 1e6,
            sink.0 as f64 / 1e6,
            mib(peak.saturating_sub(before)),
            plan.bytes() as f64 / 1048576.0,
            snapshot_mib,
        );
        rates.insert(name.into(), json!({ "edges_per_s": edges / total, "bytes": sink.0, "seconds": total }));
    }
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("exports.json"), serde_json::to_vec_pretty(&rates)?)?;
    Ok(())
}
