//! Graph algorithms checked against an independent reference: NetworkX, on the same edge list, for
//! a graph the demo generator builds through the real write path and served over HTTP.
//!
//! Needs `python3` with `networkx` (`pip install -r .ci/test-requirements.txt`); says SKIPPED when
//! they are absent.

mod common;

use common::app::{enc, networkx_available, spawn_app};
use serde_json::json;
use tagflow::graph::{Mutation, UserOrder};
use tagflow::ingest::decode::x_v2;
use tagflow::ingest::demo::{DemoConfig, DemoGenerator};
use tagflow::ingest::source::to_mutation;
use tagflow::rng::SplitMix64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_path_and_degrees_agree_with_networkx_on_a_generated_graph() {
    if !networkx_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_app(&tmp).await;
    // A sparse generated graph (many users, few posts) so that many pairs are far apart or
    // unreachable, plus users with no edges at all.
    let mut generator = DemoGenerator::new(DemoConfig { users: 4_000, seed: 7, ..DemoConfig::default() });
    let mut mutations: Vec<Mutation> = Vec::new();
    for _ in 0..2_500 {
        let line = generator.next_line();
        mutations.extend(x_v2::decode(line.as_bytes()).unwrap().into_iter().filter_map(to_mutation));
    }
    for i in 0..20 {
        mutations.push(Mutation::AddUser { key: format!("isolated{i}"), handle: None, name: None });
    }
    app_store_submit(&app, mutations).await;

    let (nodes, edges): (Vec<String>, Vec<(String, String)>) = {
        let store = tagflow_store(&app);
        let g = store.graph().read();
        let nodes = g.users_page(UserOrder::Key, None, usize::MAX).items.into_iter().map(|u| u.id).collect();
        let edges = g.ties_page(None, usize::MAX).items.into_iter().map(|t| (t.from, t.to)).collect();
        (nodes, edges)
    };
    assert!(
        nodes.len() > 2_000 && edges.len() > 3_000,
        "a graph worth checking: {} users, {} edges",
        nodes.len(),
        edges.len()
    );
    let mut s = SplitMix64::new(11);
    let pairs: Vec<(String, String)> = (0..1_000)
        .map(|_| {
            let a = &nodes[(s.next_u64() % nodes.len() as u64) as usize];
            let b = &nodes[(s.next_u64() % nodes.len() as u64) as usize];
            (a.clone(), b.clone())
        })
        .collect();

    let input = json!({ "nodes": nodes, "edges": edges, "pairs": pairs });
    let reference = common::app::reference("nx_paths.py", &input);

    let mut counted = [0usize; 4];
    for (i, (a, b)) in pairs.iter().enumerate() {
        for (directed, key) in [(false, "undirected"), (true, "directed")] {
            let want = reference[key][i].as_u64();
            let url = format!("/find_path/{}/{}?directed={directed}", enc(a), enc(b));
            let (status, body) = app.get(&url).await;
            match want {
                Some(h) => {
                    assert_eq!(status, 200, "{a} -> {b} ({key}): networkx says {h} hops, we said {body}");
                    assert_eq!(body["hops"].as_u64(), Some(h), "{a} -> {b} ({key})");
                    counted[usize::from(directed)] += 1;
                }
                None => {
                    assert_eq!(status, 404, "{a} -> {b} ({key}): networkx says unreachable, we said {body}");
                    assert_eq!(body["error"]["code"], "no_path");
                    counted[2 + usize::from(directed)] += 1;
                }
            }
        }
    }
    eprintln!(
        "networkx agreement: reachable undirected/directed {:?}, unreachable {:?}",
        &counted[..2],
        &counted[2..]
    );
    assert!(counted.iter().all(|&n| n >= 20), "reachable and unreachable pairs both checked: {counted:?}");

    // Degrees (distinct neighbours each way) for a sample of users.
    for key in nodes.iter().step_by(37) {
        let (_, user) = app.get(&format!("/vertices/{}", enc(key))).await;
        assert_eq!(user["in_degree"], reference["in_degree"][key], "{key}");
        assert_eq!(user["out_degree"], reference["out_degree"][key], "{key}");
    }
    app.stop().await;
}

async fn app_store_submit(app: &common::app::TestApp, mutations: Vec<Mutation>) {
    let out = tagflow_store(app).submit(mutations).await.unwrap();
    assert!(out.iter().all(Result::is_ok));
}

fn tagflow_store(app: &common::app::TestApp) -> tagflow::store::StoreHandle {
    app.store.clone()
}
