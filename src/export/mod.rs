//! Exports: the selected network handed to the tools researchers finish their work in. Gephi reads
//! GEXF 1.3 (every interaction's time, so its timeline plays the hashtag's history), GraphML and its
//! spreadsheet CSV; NetworkX and igraph read GraphML and GEXF; sigma.js and graphology read their
//! JSON. Served by `GET /export` and written by `tagflow export`.
//!
//! [`prepare`] copies a selection's interactions under one short read lock, then, off the lock,
//! sorts them into edges, applies the cuts (`min_degree`, `top`, `core`, `ego`), names the users
//! kept and attaches the metrics asked for; [`write`] writes that [`Plan`] out in one streaming
//! pass. What is held meanwhile: 12 bytes per selected interaction and the kept users, never the
//! document.

mod command;
mod formats;
mod plan;

pub use command::run;
pub use formats::write;
pub use plan::{prepare, Edge, Node, Plan};

use crate::analytics::report::CommunityParams;
use crate::graph::{GraphError, Selection};

/// The formats, as `format=` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// GEXF 1.3, dynamic: each edge with the times of its interactions.
    Gexf,
    /// GraphML with a typed key for every attribute.
    Graphml,
    /// One of the two tables of Gephi's spreadsheet importer.
    Csv(Table),
    /// graphology's serialization (what sigma.js reads).
    Graphology,
}

/// A CSV export's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Nodes,
    Edges,
}

impl Format {
    pub(crate) const NAMES: [&'static str; 4] = ["gexf", "graphml", "csv", "graphology"];

    /// A format from its name, and for CSV the table (`edges` unless `nodes`).
    ///
    /// # Errors
    /// An unknown format or table, or a table for a format that has none, in a sentence.
    pub fn parse(format: &str, table: Option<&str>) -> Result<Format, String> {
        let format = match format.trim().to_ascii_lowercase().as_str() {
            "gexf" => Format::Gexf,
            "graphml" => Format::Graphml,
            "csv" => Format::Csv(Table::Edges),
            "graphology" | "json" => Format::Graphology,
            other => {
                return Err(format!(
                    "format must be one of {}, not {:?}",
                    Format::NAMES.join(", "),
                    other.chars().take(32).collect::<String>()
                ))
            }
        };
        match (format, table.map(|t| t.trim().to_ascii_lowercase())) {
            (_, None) => Ok(format),
            (Format::Csv(_), Some(t)) if t == "edges" => Ok(Format::Csv(Table::Edges)),
            (Format::Csv(_), Some(t)) if t == "nodes" => Ok(Format::Csv(Table::Nodes)),
            (Format::Csv(_), Some(t)) => {
                Err(format!("table must be nodes or edges, not {:?}", t.chars().take(32).collect::<String>()))
            }
            (_, Some(_)) => Err("table is for format=csv only".into()),
        }
    }

    /// The file name's extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Gexf => "gexf",
            Format::Graphml => "graphml",
            Format::Csv(_) => "csv",
            Format::Graphology => "json",
        }
    }

    /// The media type.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Gexf => "application/gexf+xml; charset=utf-8",
            Format::Graphml => "application/graphml+xml; charset=utf-8",
            Format::Csv(_) => "text/csv; charset=utf-8",
            Format::Graphology => "application/json",
        }
    }
}

/// The metrics a node may carry, computed on the selected network (before the cuts, so that a
/// user's community is the same whatever part of the network is exported).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    pub pagerank: bool,
    pub community: bool,
    pub core: bool,
    pub component: bool,
}

impl Metrics {
    pub(crate) const NAMES: [&'static str; 4] = ["pagerank", "community", "core", "component"];

    /// Metrics from a comma list.
    ///
    /// # Errors
    /// The first unknown name, in a sentence.
    pub fn parse(list: &str) -> Result<Metrics, String> {
        let mut m = Metrics::default();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match name {
                "pagerank" => m.pagerank = true,
                "community" => m.community = true,
                "core" => m.core = true,
                "component" => m.component = true,
                other => {
                    return Err(format!(
                        "unknown metric {:?} in metrics ({})",
                        other.chars().take(32).collect::<String>(),
                        Metrics::NAMES.join(", ")
                    ))
                }
            }
        }
        Ok(m)
    }
}

/// Hops an ego cut reaches at most (as `/vertices/{user}/ego`).
pub(crate) const MAX_HOPS: u32 = 3;

/// The ego cut: a user (key or handle) and how far from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgoCut {
    pub user: String,
    pub hops: u32,
}

/// What to export: a selection (`kinds`, `since`, `until`, `min_weight`), the cuts a user must pass
/// to be kept (all of them; an edge is kept when both its users are), and the metrics to attach.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub sel: Selection,
    /// Users with at least this many distinct neighbours (in plus out) in the selection.
    pub min_degree: u32,
    /// The users of highest degree in the selection (ties by arrival).
    pub top: Option<usize>,
    /// Users whose core number in the selection is at least this (the k-core, undirected).
    pub core: Option<u32>,
    pub ego: Option<EgoCut>,
    pub metrics: Metrics,
    /// How communities are found, for `metrics=community`.
    pub communities: CommunityParams,
    /// PageRank's damping, for `metrics=pagerank`.
    pub damping: f64,
}

impl Request {
    /// Everything of a selection, no metrics.
    pub fn new(sel: Selection) -> Request {
        Request {
            sel,
            min_degree: 0,
            top: None,
            core: None,
            ego: None,
            metrics: Metrics::default(),
            communities: CommunityParams::default(),
            damping: 0.85,
        }
    }

    /// Checks what the types cannot state: the one place both the route and the command do.
    ///
    /// # Errors
    /// What is wrong, in a sentence.
    pub fn check(&self) -> Result<(), String> {
        if self.top == Some(0) {
            return Err("top must be at least 1".into());
        }
        if self.core == Some(0) {
            return Err("core must be at least 1 (every user is in the 0-core)".into());
        }
        if let Some(ego) = &self.ego {
            if !(1..=MAX_HOPS).contains(&ego.hops) {
                return Err(format!("hops must be from 1 to {MAX_HOPS}"));
            }
            if ego.user.is_empty() {
                return Err("ego must name a user (a key, or @handle)".into());
            }
        }
        if !(0.0..1.0).contains(&self.damping) {
            return Err("damping must be at least 0 and below 1".into());
        }
        Ok(())
    }

    /// A file name that says what is in the file: the first term watched, the kinds when not all,
    /// the window, the table: `tagflow-rustlang-repost+reply-20261101T000000Z--now.gexf`.
    pub fn file_name(&self, track: &[String], format: Format) -> String {
        let term: String = track
            .first()
            .map(|t| {
                t.chars()
                    .filter(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
                    .take(40)
                    .collect::<String>()
            })
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "graph".into());
        let mut name = format!("tagflow-{term}");
        if self.sel.kinds != crate::graph::KindSet::ALL {
            name.push('-');
            name.push_str(&self.sel.kinds.names().join("+"));
        }
        let stamp = |t: Option<i64>, open: &str| match t {
            None => open.to_string(),
            Some(t) => crate::graph::rfc3339(t).replace(['-', ':'], ""),
        };
        if self.sel.is_windowed() {
            name.push_str(&format!("-{}--{}", stamp(self.sel.since, "start"), stamp(self.sel.until, "now")));
        }
        if let Format::Csv(table) = format {
            name.push_str(match table {
                Table::Nodes => "-nodes",
                Table::Edges => "-edges",
            });
        }
        format!("{name}.{}", format.extension())
    }

    /// The request in words, for the file's own description.
    pub fn describe(&self) -> String {
        let s = &self.sel;
        let mut parts = vec![format!("kinds={}", s.kinds.names().join(","))];
        if let Some(t) = s.since {
            parts.push(format!("since={}", crate::graph::rfc3339(t)));
        }
        if let Some(t) = s.until {
            parts.push(format!("until={}", crate::graph::rfc3339(t)));
        }
        parts.push(format!("min_weight={}", s.min_weight));
        if self.min_degree > 0 {
            parts.push(format!("min_degree={}", self.min_degree));
        }
        if let Some(n) = self.top {
            parts.push(format!("top={n}"));
        }
        if let Some(k) = self.core {
            parts.push(format!("core={k}"));
        }
        if let Some(e) = &self.ego {
            parts.push(format!("ego={} hops={}", e.user, e.hops));
        }
        parts.join(" ")
    }
}

/// Why an export could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The ego cut names a user the graph does not have, or a handle several users share.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// An analysis or the preparation failed (a bug): the message, for the log.
    #[error("export failed: {0}")]
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_tables_parse_and_refuse_what_they_do_not_know() {
        assert_eq!(Format::parse("GEXF", None), Ok(Format::Gexf));
        assert_eq!(Format::parse("csv", None), Ok(Format::Csv(Table::Edges)));
        assert_eq!(Format::parse("csv", Some("nodes")), Ok(Format::Csv(Table::Nodes)));
        assert!(Format::parse("csv", Some("both")).unwrap_err().contains("nodes or edges"));
        assert!(Format::parse("gexf", Some("nodes")).unwrap_err().contains("csv only"));
        assert!(Format::parse("dot", None).unwrap_err().contains("gexf, graphml, csv, graphology"));
        assert_eq!(
            Metrics::parse("pagerank, core").unwrap(),
            Metrics { pagerank: true, core: true, ..Metrics::default() }
        );
        assert!(Metrics::parse("betweenness").unwrap_err().contains("unknown metric"));
    }

    #[test]
    fn requests_check_their_cuts_and_name_their_files() {
        let mut r = Request::new(Selection::default());
        assert_eq!(r.check(), Ok(()));
        assert_eq!(r.file_name(&["#rustlang".into()], Format::Gexf), "tagflow-rustlang.gexf");
        r.sel = Selection::parse(Some("reply,repost"), Some("2026-11-01T00:00:00Z"), None, 1).unwrap();
        assert_eq!(
            r.file_name(&[], Format::Csv(Table::Nodes)),
            "tagflow-graph-repost+reply-20261101T000000Z--now-nodes.csv"
        );
        r.top = Some(0);
        assert!(r.check().unwrap_err().contains("top"));
        r.top = None;
        r.ego = Some(EgoCut { user: "alice".into(), hops: 4 });
        assert!(r.check().unwrap_err().contains("hops"));
        r.ego = Some(EgoCut { user: "alice".into(), hops: 2 });
        assert_eq!(r.check(), Ok(()));
        assert!(r.describe().contains("ego=alice hops=2"));
    }
}
