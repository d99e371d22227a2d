//! The real `tagflow` binary as a child process: a server for crash (`kill -9`) and signal tests,
//! or a command run to its end.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs `tagflow ARGS...` to its end: whether it succeeded, its standard output and error.
pub fn run_tagflow<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (bool, String, String) {
    run_tagflow_with(args, &[])
}

/// [`run_tagflow`] with these environment variables (and none of the developer's token or URL).
pub fn run_tagflow_with<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    env: &[(&str, &str)],
) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tagflow"));
    cmd.args(args).env_remove("TAGFLOW_API_TOKEN").env_remove("TAGFLOW_URL").env_remove("DATABASE_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run tagflow");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub struct ServerProcess {
    pub child: Child,
    pub port: u16,
    /// Everything the process logged so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

/// Starts `tagflow serve` on 127.0.0.1 with a free port and waits until it listens.
pub fn start(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> ServerProcess {
    try_start(dir, extra, env).unwrap_or_else(|log| panic!("server did not start; log:\n{}", log.join("\n")))
}

/// Like [`start`], but returns the log if the process exits or never listens.
pub fn try_start(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Result<ServerProcess, Vec<String>> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tagflow"));
    cmd.args(["serve", "--host", "127.0.0.1", "--port", "0", "--data-dir"])
        .arg(dir)
        .args(extra)
        .env("RUST_LOG", "info")
        .env_remove("PORT")
        // The developer's own settings must not choose the sources of a test.
        .env_remove("TAGFLOW_SOURCES")
        .env_remove("TAGFLOW_X_BEARER_TOKEN")
        .env_remove("TAGFLOW_MASTODON_URL")
        .env_remove("TAGFLOW_MASTODON_TOKEN")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn tagflow");
    let stderr = child.stderr.take().expect("piped stderr");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(port) = line.split("listening on 127.0.0.1:").nth(1) {
                let _ = tx.send(port.trim().parse::<u16>().ok());
            }
            sink.lock().unwrap().push(line);
        }
        let _ = tx.send(None);
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Some(port)) => Ok(ServerProcess { child, port, log }),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            let lines = log.lock().unwrap().clone();
            Err(lines)
        }
    }
}

impl ServerProcess {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    /// SIGTERM, then waits (bounded) for the exit status.
    pub fn terminate(mut self, within: Duration) -> (std::process::ExitStatus, Vec<String>) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                std::thread::sleep(Duration::from_millis(100));
                let log = self.log.lock().unwrap().clone();
                return (status, log);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "no exit within {within:?} after SIGTERM; log:\n{}",
                    self.log.lock().unwrap().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
