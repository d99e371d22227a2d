//! Storage that fails loudly: a full disk (a real tmpfs), damage to every file of a data directory,
//! `kill -9` during checkpoints, `tagflow verify`.

mod common;

use common::process::{run_tagflow, run_tagflow_with, start};
use common::skip::skip;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A small tmpfs, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u32) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&path)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Tmpfs { path, _dir: dir })
    }

    /// Writes a ballast file until the file system is full; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let ballast = self.path.join("ballast");
        let mut f = std::fs::File::create(&ballast).unwrap();
        let block = vec![0xA5u8; 64 << 10];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        ballast
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

async fn post_edge(client: &reqwest::Client, base: &str, from: &str, to: &str) -> (u16, Value) {
    let r = client
        .post(format!("{base}/aristas"))
        .json(&json!({"from": from, "to": to, "kind": "mention"}))
        .send()
        .await
        .expect("the service answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_with_507_reports_degraded_and_recovers_when_space_frees() {
    let fs = match Tmpfs::mount(48) {
        Ok(fs) => fs,
        Err(e) => {
            return skip("a_full_disk_...", "permission to mount a tmpfs", &format!("run as root: {e}"))
        }
    };
    let data = fs.path.join("data");
    let server = start(&data, &["--sources", "none"], &[]);
    let base = server.url("");
    let client = reqwest::Client::new();
    let mut acked = Vec::new();
    for i in 0..50 {
        let (status, _) = post_edge(&client, &base, "a", &format!("t{i}")).await;
        assert_eq!(status, 201);
        acked.push(format!("t{i}"));
    }
    let ballast = fs.fill();
    // sled writes into space its files already hold before it needs more: write until refused.
    let mut refused = None;
    for i in 50..20_000 {
        let (status, body) = post_edge(&client, &base, "a", &format!("t{i}")).await;
        match status {
            201 => acked.push(format!("t{i}")),
            _ => {
                refused = Some((status, body));
                break;
            }
        }
    }
    let (status, body) = refused.expect("a write on a full disk is refused");
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["error"]["code"], "storage_full", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("full"), "{body}");
    let status: Value = client.get(format!("{base}/status")).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["status"], "DEGRADED", "{status}");
    assert_eq!(status["store"]["health"], "storage_full", "{status}");
    assert!(status["store"]["failing"]["failed_commits"].as_u64().unwrap() >= 1);
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "tagflow_store_failing 1"), "{metrics}");
    let (ok, _, err) = run_tagflow(&["healthcheck", "--port", &server.port.to_string()]);
    assert!(!ok, "the health check fails while writes cannot be made durable");
    assert!(err.contains("DEGRADED"), "{err}");
    // Reads go on meanwhile.
    let r = client.get(format!("{base}/vertices/a")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Space comes back: writes recover by themselves.
    std::fs::remove_file(&ballast).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut recovered = false;
    let mut last = (0, Value::Null);
    while Instant::now() < deadline {
        last = post_edge(&client, &base, "a", "after").await;
        if last.0 == 201 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "writes recover once space is freed: last answer {last:?}");
    acked.push("after".into());
    let status: Value = client.get(format!("{base}/status")).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["status"], "OK", "{status}");
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "tagflow_store_failing 0"), "{metrics}");
    let (ok, _, err) = run_tagflow(&["healthcheck", "--port", &server.port.to_string()]);
    assert!(ok, "{err}");

    // A stop whose final checkpoint cannot be written exits non-zero.
    let ballast = fs.fill();
    let (exit, log) = server.terminate(Duration::from_secs(30));
    assert!(!exit.success(), "a failed final flush must not exit 0; log:\n{}", log.join("\n"));
    std::fs::remove_file(&ballast).unwrap();

    // Nothing acknowledged was lost, through all of it.
    let server = start(&data, &["--sources", "none"], &[]);
    let base = server.url("");
    for to in &acked {
        let r = client.get(format!("{base}/aristas/a/{to}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "a -> {to} was acknowledged");
    }
    let (exit, log) = server.terminate(Duration::from_secs(30));
    assert!(exit.success(), "{}", log.join("\n"));
}

/// Everything acknowledged that a damaged directory must give back exactly or refuse.
#[derive(Debug, PartialEq)]
struct State {
    users: String,
    edges: String,
    stamps: Vec<(u32, u32, tagflow::graph::Kind, u32)>,
    cursors: Vec<Option<Vec<u8>>>,
    posts: Vec<bool>,
}

const CURSORS: [&str; 2] = ["x", "mastodon"];

fn state(h: &tagflow::store::StoreHandle) -> State {
    let g = h.graph().read();
    let users =
        serde_json::to_string(&g.users_page(tagflow::graph::UserOrder::Key, None, usize::MAX).items).unwrap();
    let edges = serde_json::to_string(&g.ties_page(None, usize::MAX).items).unwrap();
    let mut stamps = Vec::new();
    g.for_each_stamp(|a, b, k, at| stamps.push((a, b, k, at)));
    stamps.sort_unstable_by_key(|&(a, b, k, at)| (a, b, k.index(), at));
    drop(g);
    State {
        users,
        edges,
        stamps,
        cursors: CURSORS.iter().map(|c| h.cursor(c).unwrap()).collect(),
        posts: (0..400)
            .map(|i| h.has_post(tagflow::graph::Platform::Mastodon, &i.to_string()).unwrap())
            .collect(),
    }
}

mod corruption {
    use super::*;
    use tagflow::graph::{Kind, Mutation, Platform, Post, UserRef};
    use tagflow::store::{self, StoreConfig, StoreError, StoreHandle};

    fn open(dir: &Path) -> Result<(StoreHandle, store::Writer), StoreError> {
        let mut config = StoreConfig::new(dir);
        config.checkpoint_min_bytes = 16 << 10;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match store::open(&config) {
                Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                other => return other.map(|(h, w, _)| (h, w)),
            }
        }
    }

    fn post(i: u32) -> Post {
        let mut p = Post::new(Platform::Mastodon, i.to_string(), UserRef::new(format!("m:{}", i % 37)));
        p.created_at = Some(1_700_000_000 + i64::from(i));
        p.interact(Kind::Reply, &format!("m:{}", (i * 7) % 41));
        p.interact(Kind::Mention, &format!("m:{}", (i * 3) % 53));
        p
    }

    /// A directory with a snapshot file (several checkpoints were taken), log records after it,
    /// post records and cursors in sled, and a manifest that vouches for all of it; left as a
    /// `kill -9` would leave it. Returns it and what it holds.
    fn pristine() -> (tempfile::TempDir, State) {
        let dir = tempfile::tempdir().unwrap();
        let (h, w) = open(dir.path()).unwrap();
        for round in 0..8u32 {
            let mut batch: Vec<Mutation> =
                (round * 50..round * 50 + 50).map(|i| Mutation::ApplyPost(post(i))).collect();
            batch.push(Mutation::SetCursor {
                name: CURSORS[(round % 2) as usize].into(),
                value: round.to_le_bytes().to_vec(),
            });
            batch.push(Mutation::RetractPost { platform: Platform::Mastodon, id: (round * 13).to_string() });
            h.submit_blocking(batch).unwrap();
            // Let the background checkpoint finish before the next round starts another.
            std::thread::sleep(Duration::from_millis(150));
        }
        for i in 0..20 {
            h.submit_blocking(vec![Mutation::AddInteraction {
                from: format!("late{i}"),
                to: "m:1".into(),
                kind: Kind::Quote,
                at: 1_700_100_000,
            }])
            .unwrap();
        }
        let want = state(&h);
        // Past the manifest's lag: it vouches for the whole log.
        std::thread::sleep(Duration::from_millis(1600));
        h.crash_for_tests();
        drop(h);
        w.join().unwrap();
        assert!(std::fs::read_dir(dir.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("checkpoint-")));
        (dir, want)
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(files(&p));
            } else {
                out.push(p);
            }
        }
        out.sort();
        out
    }

    fn copy_dir(from: &Path, to: &Path) {
        for f in files(from) {
            let target = to.join(f.strip_prefix(from).unwrap());
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(&f, &target).unwrap();
        }
    }

    /// One way of damaging a file.
    #[derive(Debug, Clone)]
    enum Damage {
        Delete,
        TruncateTo(u64),
        Flip(Vec<u64>),
    }

    fn damages(len: u64, seed: u64) -> Vec<Damage> {
        let mut out = vec![Damage::Delete, Damage::TruncateTo(0), Damage::TruncateTo(len / 2)];
        if len > 1 {
            out.push(Damage::TruncateTo(len - 1));
        }
        if len > 4096 {
            out.push(Damage::TruncateTo(len - 4096));
        }
        if len == 0 {
            return out;
        }
        for k in 0..24 {
            out.push(Damage::Flip(vec![len * k / 24 + (seed + k) % (len / 24).max(1)]));
        }
        let mut rng = tagflow::rng::SplitMix64::new(seed);
        for _ in 0..3 {
            out.push(Damage::Flip((0..16).map(|_| rng.below(len)).collect()));
        }
        out
    }

    fn apply(file: &Path, d: &Damage) {
        match d {
            Damage::Delete => std::fs::remove_file(file).unwrap(),
            Damage::TruncateTo(n) => {
                std::fs::OpenOptions::new().write(true).open(file).unwrap().set_len(*n).unwrap()
            }
            Damage::Flip(at) => {
                let mut bytes = std::fs::read(file).unwrap();
                for &i in at {
                    bytes[i as usize] ^= 0x5A;
                }
                std::fs::write(file, bytes).unwrap();
            }
        }
    }

    /// `tagflow verify` checks a directory without changing it: counts when intact, leftovers noted
    /// (not removed), damage named with a non-zero exit.
    #[test]
    fn verify_reports_an_intact_directory_and_names_damage_without_changing_anything() {
        let (dir, want) = pristine();
        let leftover = dir.path().join("checkpoint-00000099.tfs");
        std::fs::write(&leftover, b"cut short").unwrap();
        let path = dir.path().display().to_string();
        let (ok, out, err) = run_tagflow(&["verify", "--json", "--data-dir", &path]);
        assert!(ok, "{err}");
        let report: Value = serde_json::from_str(&out).unwrap();
        let users: Vec<Value> = serde_json::from_str(&want.users).unwrap();
        let edges: Vec<Value> = serde_json::from_str(&want.edges).unwrap();
        assert_eq!(report["users"], users.len());
        assert_eq!(report["edges"], edges.len());
        assert_eq!(report["interactions"], want.stamps.len());
        assert!(report["log_records"].as_u64().unwrap() > 0, "{report}");
        assert!(report["notes"].to_string().contains("checkpoint-00000099.tfs"), "{report}");
        assert!(leftover.exists(), "verify changes nothing");
        let snapshot = dir.path().join(report["snapshot"].as_str().unwrap());
        apply(&snapshot, &Damage::Flip(vec![100]));
        let (ok, _, err) = run_tagflow(&["verify", "--data-dir", &dir.path().display().to_string()]);
        assert!(!ok, "damage is a failure");
        assert!(err.contains(report["snapshot"].as_str().unwrap()) && err.contains("checksum"), "{err}");
    }

    /// Every file of a data directory in turn, deleted, truncated and with bytes flipped: each case
    /// opens with everything acknowledged, or is refused with an error that names the damage. Never
    /// a smaller graph served, never a panic.
    #[test]
    fn every_damage_to_a_data_directory_is_refused_or_harmless_never_served() {
        let (pristine, want) = pristine();
        let (mut intact, mut refused, mut cases) = (0, 0, 0);
        let mut failures = Vec::new();
        let mut refusals = std::collections::BTreeMap::<String, usize>::new();
        for (n, file) in files(pristine.path()).into_iter().enumerate() {
            let rel = file.strip_prefix(pristine.path()).unwrap().to_path_buf();
            let len = std::fs::metadata(&file).unwrap().len();
            for d in damages(len, n as u64) {
                cases += 1;
                let case = tempfile::tempdir().unwrap();
                copy_dir(pristine.path(), case.path());
                apply(&case.path().join(&rel), &d);
                let what = format!("{} {d:?}", rel.display());
                let opened = std::panic::catch_unwind(|| match open(case.path()) {
                    Ok((h, w)) => {
                        let got = state(&h);
                        h.crash_for_tests();
                        drop(h);
                        let _ = w.join();
                        Ok(got)
                    }
                    Err(e) => Err(e.to_string()),
                });
                match opened {
                    Ok(Ok(got)) if got == want => {
                        intact += 1;
                        if std::env::var("TAGFLOW_SHOW_CASES").is_ok() {
                            eprintln!("{what}: opened intact");
                        }
                    }
                    Ok(Ok(_)) => {
                        failures.push(format!("{what}: opened with other data than was acknowledged"))
                    }
                    Ok(Err(e)) if e.contains("corrupt") || e.contains("damaged") => {
                        refused += 1;
                        if std::env::var("TAGFLOW_SHOW_CASES").is_ok() {
                            eprintln!("{what}: {e}");
                        }
                        *refusals.entry(rel.display().to_string()).or_default() += 1;
                        // The error says where: the file, or sled's files when sled's are damaged.
                        let named = e.contains(&*rel.to_string_lossy())
                            || e.contains("sled")
                            || e.contains("MANIFEST")
                            || e.contains("log record");
                        if !named {
                            failures.push(format!("{what}: refused without naming the damage: {e}"));
                        }
                    }
                    Ok(Err(e)) => failures.push(format!("{what}: refused with an unclear error: {e}")),
                    Err(_) => failures.push(format!("{what}: panicked")),
                }
            }
        }
        eprintln!(
            "corruption suite: {cases} cases: {intact} opened intact, {refused} refused ({refusals:?})"
        );
        assert!(cases >= 100, "{cases} cases");
        assert!(failures.is_empty(), "{} of {cases} cases failed:\n{}", failures.len(), failures.join("\n"));
        assert!(refused > cases / 4, "most damage is caught: {refused} of {cases} refused");
    }
}

/// What a data directory no service holds gives back (see [`State`]).
fn contents(dir: &Path) -> State {
    let (h, w, _) = tagflow::store::open(&tagflow::store::StoreConfig::new(dir)).expect("open");
    let got = state(&h);
    h.close_blocking();
    drop(h);
    w.join().unwrap();
    got
}

/// The whole path a researcher takes: `tagflow backup --url` from a service that keeps ingesting
/// (its `GET /backup` needs the API token), `tagflow restore` into a new directory that opens; then
/// `tagflow backup --data-dir` of the stopped service's directory restores to exactly its contents;
/// and a damaged archive is refused with nothing left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_end_to_end_while_the_service_ingests() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let token = "backup-test-token-0123456789";
    let server = start(&data, &["--sources", "demo", "--demo-rate", "2000"], &[("TAGFLOW_API_TOKEN", token)]);
    let base = server.url("");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let client = reqwest::Client::new();
    let r = client.get(format!("{base}/backup")).send().await.unwrap();
    assert_eq!(r.status(), 401, "a backup hands over everything: it needs the API token");
    let r = client.get(format!("{base}/backup")).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/gzip");
    let commit: u64 = r.headers()["x-tagflow-commit"].to_str().unwrap().parse().unwrap();
    assert!(commit > 0);
    let body = r.bytes().await.unwrap();
    let counts = tagflow::store::check_archive(&body[..]).unwrap();
    assert_eq!(counts.seq, commit);
    assert!(counts.users > 10 && counts.stamps > 10, "{counts:?}");

    let archive = tmp.path().join("campaign.tfbackup.gz");
    let (a, out) = (archive.to_str().unwrap().to_string(), base.clone());
    let (ok, stdout, err) = tokio::task::spawn_blocking(move || {
        run_tagflow_with(&["backup", "--url", &out, "--out", &a], &[("TAGFLOW_API_TOKEN", token)])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(stdout.contains("backed up commit"), "{stdout}");
    let restored = tmp.path().join("restored");
    let (ok, stdout, err) = run_tagflow_with(
        &["restore", archive.to_str().unwrap(), "--data-dir", restored.to_str().unwrap()],
        &[],
    );
    assert!(ok, "{err}");
    assert!(stdout.contains("restored commit"), "{stdout}");
    let (ok, _, err) = run_tagflow_with(&["verify", "--data-dir", restored.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    let (exit, log) = server.terminate(Duration::from_secs(30));
    assert!(exit.success(), "{}", log.join("\n"));

    // At rest: a backup of the directory restores to exactly its contents.
    let at_rest = tmp.path().join("at-rest.tfbackup.gz");
    let (ok, _, err) = run_tagflow_with(
        &["backup", "--data-dir", data.to_str().unwrap(), "--out", at_rest.to_str().unwrap(), "--quiet"],
        &[],
    );
    assert!(ok, "{err}");
    let again = tmp.path().join("again");
    let (ok, _, err) =
        run_tagflow_with(&["restore", at_rest.to_str().unwrap(), "--data-dir", again.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    let (got, want) = {
        let (again, data) = (again.clone(), data.clone());
        tokio::task::spawn_blocking(move || (contents(&again), contents(&data))).await.unwrap()
    };
    assert!(!want.stamps.is_empty());
    assert_eq!(got, want, "users, edges and timeline restore exactly");

    // A damaged archive: refused, naming the damage; nothing left behind.
    let mut bytes = std::fs::read(&at_rest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&at_rest, bytes).unwrap();
    let broken = tmp.path().join("broken");
    let (ok, _, err) = run_tagflow_with(
        &["restore", at_rest.to_str().unwrap(), "--data-dir", broken.to_str().unwrap()],
        &[],
    );
    assert!(!ok);
    assert!(err.contains("damaged") || err.contains("corrupt"), "{err}");
    assert!(!broken.exists());
}
