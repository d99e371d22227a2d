//! `tagflow analyze`: the analytics routes' answers on a data directory that no service holds,
//! printed as a table for people or as the route's JSON body for scripts (`--json`).
//!
//! Opens the directory like the service does (so it must not be held), takes the same snapshot,
//! runs the same engine and builds the same report as `GET /analytics/...`, then prints it. Shows
//! what it is doing on a terminal: loading a big directory and computing take seconds.

use crate::analytics::engine::Engine;
use crate::analytics::report::{self, UsersQuery};
use crate::config::{Analysis, AnalyzeArgs, StoreArgs};
use crate::store;
use anyhow::bail;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

/// Runs the `analyze` command.
///
/// # Errors
/// A missing or held data directory, bad parameters, a failed analysis.
pub fn run(args: AnalyzeArgs) -> anyhow::Result<()> {
    let sel = args.selection.selection().map_err(anyhow::Error::msg)?;
    let cp = args.communities.params().map_err(anyhow::Error::msg)?;
    if !(0.0..1.0).contains(&args.damping) {
        bail!("--damping must be at least 0 and below 1");
    }
    let limit = args.limit as usize;
    let samples = args.samples.map(|s| s as usize);
    let body = offline(&args.store, args.threads, args.quiet, |engine, bar, runtime| {
        bar.set_message(format!("computing {:?}", args.analysis));
        runtime
            .block_on(async {
                match args.analysis {
                    Analysis::Pagerank => {
                        let q = UsersQuery {
                            limit,
                            damping: args.damping,
                            communities: cp,
                            ..UsersQuery::default()
                        };
                        report::users(engine, sel, &q).await.map(json)
                    }
                    Analysis::Communities => report::communities(engine, sel, &cp, limit, 3).await.map(json),
                    Analysis::Components => report::components(engine, sel, args.strong).await.map(json),
                    Analysis::Cores => report::cores(engine, sel).await.map(json),
                    Analysis::Bridges => report::bridges(engine, sel, &cp, limit, samples).await.map(json),
                }
            })
            .map_err(anyhow::Error::from)
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        print!("{}", render(args.analysis, &body));
    }
    Ok(())
}

/// Opens a data directory no service holds (as the service would), starts the analytics engine
/// on it, and runs `work` with a spinner that says what is going on (drawn on a terminal only),
/// then closes the directory, whatever `work` returned. What `analyze` and `export` share.
///
/// # Errors
/// A missing or held data directory, or `work`'s.
pub(crate) fn offline<T>(
    store_args: &StoreArgs,
    threads: Option<u16>,
    quiet: bool,
    work: impl FnOnce(&Arc<Engine>, &ProgressBar, &tokio::runtime::Runtime) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let dir = &store_args.data_dir;
    let place = match &store_args.database_url {
        Some(db) => db.shown().to_string(),
        None if !dir.join("conf").is_file() => {
            bail!("{} is not a tagflow data directory (give --data-dir or TAGFLOW_DATA_DIR)", dir.display())
        }
        None => dir.display().to_string(),
    };
    let bar = spinner(!quiet, "{spinner} [{elapsed_precise}] {msg}");
    bar.set_message(format!("loading {place}"));
    let result = store::offline(&store_args.store_config(), |store, loaded| {
        bar.println(format!(
            "loaded {} users and {} edges in {:.1}s",
            loaded.users,
            loaded.ties,
            loaded.elapsed.as_secs_f64()
        ));
        let threads =
            threads.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), usize::from);
        let engine = Engine::new(store.graph().clone(), threads)?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        work(&engine, &bar, &runtime)
    });
    bar.finish_and_clear();
    result
}

/// A report as the JSON tree the table is rendered from.
fn json<T: serde::Serialize>(report: T) -> Value {
    serde_json::to_value(report).unwrap_or(Value::Null)
}

/// A spinner on stderr (drawn on a terminal only) with `template` (indicatif's), for long work.
pub(crate) fn spinner(show: bool, template: &str) -> ProgressBar {
    // indicatif draws nothing when stderr is not a terminal, so pipes and logs stay clean.
    let bar = if show {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A report as text: a line on the network, then the analysis as an aligned table.
pub(crate) fn render(analysis: Analysis, body: &Value) -> String {
    let mut out = String::new();
    let net = &body["network"];
    let window = match (net["since"].as_str(), net["until"].as_str()) {
        (None, None) => "all time".to_string(),
        (s, u) => format!("{} to {}", s.unwrap_or("the start"), u.unwrap_or("now")),
    };
    let kinds: Vec<&str> = net["kinds"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let _ = writeln!(
        out,
        "network: {} users, {} edges, {} interactions ({}; {window}; min weight {}); took {} ms\n",
        int(&net["users"]),
        int(&net["edges"]),
        int(&net["interactions"]),
        kinds.join(","),
        net["min_weight"],
        body["took_ms"],
    );
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    let rows: Vec<Vec<String>>;
    let header: &[&str];
    match analysis {
        Analysis::Pagerank => {
            header = &[
                "#",
                "user",
                "handle",
                "pagerank",
                "in_strength",
                "in_degree",
                "out_degree",
                "core",
                "community",
            ];
            rows = list(&body["users"])
                .enumerate()
                .map(|(i, u)| {
                    vec![
                        (i + 1).to_string(),
                        text(&u["id"]),
                        text(&u["handle"]),
                        format!("{:.6}", u["pagerank"].as_f64().unwrap_or(0.0)),
                        int(&u["in_strength"]),
                        int(&u["in_degree"]),
                        int(&u["out_degree"]),
                        text(&u["core"]),
                        text(&u["community"]),
                    ]
                })
                .collect();
        }
        Analysis::Communities => {
            let _ = writeln!(
                out,
                "{} communities ({}, resolution {}), modularity {:.4}\n",
                int(&body["count"]),
                text(&body["algorithm"]),
                body["resolution"],
                body["modularity"].as_f64().unwrap_or(0.0)
            );
            header = &["community", "users", "inner weight", "leaders (by pagerank)"];
            rows = list(&body["communities"])
                .map(|c| {
                    let leaders: Vec<String> = list(&c["top_users"]).map(|u| text(&u["handle"])).collect();
                    vec![text(&c["id"]), int(&c["size"]), int(&c["internal_weight"]), leaders.join(", ")]
                })
                .collect();
        }
        Analysis::Components => {
            let share = body["largest"]["share"].as_f64().unwrap_or(0.0) * 100.0;
            let _ = writeln!(
                out,
                "{} {} component{}; the largest holds {} users ({share:.1}%)\n",
                int(&body["count"]),
                text(&body["mode"]),
                if body["count"] == 1 { "" } else { "s" },
                int(&body["largest"]["size"])
            );
            header = &["#", "users"];
            rows = list(&body["sizes"])
                .take(20)
                .enumerate()
                .map(|(i, s)| vec![(i + 1).to_string(), int(s)])
                .collect();
        }
        Analysis::Cores => {
            let _ = writeln!(out, "max core: {}\n", body["max_core"]);
            header = &["k", "users with core k", "users in the k-core"];
            rows = list(&body["cores"])
                .filter(|c| c["users"] != 0)
                .map(|c| vec![text(&c["k"]), int(&c["users"]), int(&c["k_core_size"])])
                .collect();
        }
        Analysis::Bridges => {
            if body["samples"] == net["users"] {
                let _ = writeln!(out, "betweenness exact: every user was a source\n");
            } else {
                let _ = writeln!(
                    out,
                    "betweenness estimated from {} sampled sources, within ±{:.4} at 95% confidence\n",
                    int(&body["samples"]),
                    body["error_bound"].as_f64().unwrap_or(0.0)
                );
            }
            header = &["#", "user", "handle", "betweenness", "community", "reaches (community:weight)"];
            rows = list(&body["users"])
                .enumerate()
                .map(|(i, u)| {
                    let reach: Vec<String> = list(&u["communities"])
                        .take(6)
                        .map(|c| format!("{}:{}", c["id"], c["weight"]))
                        .collect();
                    vec![
                        (i + 1).to_string(),
                        text(&u["id"]),
                        text(&u["handle"]),
                        format!("{:.6}", u["betweenness"].as_f64().unwrap_or(0.0)),
                        text(&u["community"]),
                        reach.join(" "),
                    ]
                })
                .collect();
        }
    }
    table(&mut out, header, &rows);
    out
}

fn list(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

/// An integer with thousands separators (`null` as `-`).
fn int(v: &Value) -> String {
    let Some(n) = v.as_u64() else { return if v.is_null() { "-".into() } else { v.to_string() } };
    let digits = n.to_string();
    let mut s = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            s.push(',');
        }
        s.push(c);
    }
    s
}

/// Columns padded to their widest cell; the last column is left as it is.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |out: &mut String, cells: Vec<&str>| {
        let last = cells.len() - 1;
        for (i, c) in cells.iter().enumerate() {
            if i == last {
                let _ = write!(out, "{c}");
            } else {
                let _ = write!(out, "{c:<w$}  ", w = width[i]);
            }
        }
        out.push('\n');
    };
    line(out, header.to_vec());
    for r in rows {
        line(out, r.iter().map(String::as_str).collect());
    }
}
