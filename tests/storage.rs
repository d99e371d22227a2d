//! Storage that fails loudly: a full disk (a real tmpfs), damage to every file of a data directory,
//! `kill -9` during checkpoints, `tagflow verify`.

mod common;

use common::process::{run_tagflow, start};
use common::skip::skip;
use serde_json::{json, Value};
use std::path::PathBuf;
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
