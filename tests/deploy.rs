//! The deployment files (Dockerfile, heroku.yml, Procfile, docker-compose.yml, the Ansible-installed
//! systemd unit, the Vagrantfile) agree with the binary, so that they cannot drift apart again: the same
//! start command everywhere, accepted by the real CLI; the same port; only environment variables the
//! binary knows. The Procfile's `web` process is then run for real under honcho, stopped with SIGTERM
//! and restarted on the same data directory.
//!
//! Only loopback traffic; every wait is bounded; children are stopped by a drop guard on failure.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tagflow");

fn repo_file(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A start command as a deployment file writes it: the program as written and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StartCommand {
    origin: &'static str,
    program: String,
    args: Vec<String>,
}

impl StartCommand {
    fn from_words(origin: &'static str, words: Vec<String>) -> Self {
        let mut words = words.into_iter();
        let program = words.next().unwrap_or_else(|| panic!("{origin}: empty start command"));
        StartCommand { origin, program, args: words.collect() }
    }

    fn program_name(&self) -> &str {
        Path::new(&self.program).file_name().and_then(|n| n.to_str()).unwrap_or("")
    }
}

/// The instructions of a Dockerfile as (KEYWORD, rest), continuation lines joined, comments dropped.
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let joined = std::mem::take(&mut current);
        let (keyword, rest) = joined.split_once(char::is_whitespace).unwrap_or((joined.as_str(), ""));
        out.push((keyword.to_ascii_uppercase(), rest.trim().to_owned()));
    }
    out
}

/// The instructions after the last `FROM`: the run image.
fn final_stage(text: &str) -> Vec<(String, String)> {
    let all = dockerfile_instructions(text);
    let last_from = all.iter().rposition(|(k, _)| k == "FROM").expect("Dockerfile has no FROM");
    all[last_from..].to_vec()
}

/// A JSON exec-form array (`["a", "b"]`); shell form is refused because the distroless run image has no
/// shell and Heroku runs an exec-form ENTRYPOINT as it is.
fn exec_form(what: &str, rest: &str) -> Vec<String> {
    serde_json::from_str::<Vec<String>>(rest)
        .unwrap_or_else(|e| panic!("Dockerfile {what} must be in exec form [\"...\"], got `{rest}`: {e}"))
}

fn last_instruction<'a>(stage: &'a [(String, String)], keyword: &str) -> Option<&'a str> {
    stage.iter().rev().find(|(k, _)| k == keyword).map(|(_, rest)| rest.as_str())
}

/// What `docker run IMAGE` (and Heroku's container runtime) executes: ENTRYPOINT followed by CMD.
fn dockerfile_start_command(text: &str) -> StartCommand {
    let stage = final_stage(text);
    let mut words = Vec::new();
    if let Some(entrypoint) = last_instruction(&stage, "ENTRYPOINT") {
        words.extend(exec_form("ENTRYPOINT", entrypoint));
    }
    if let Some(cmd) = last_instruction(&stage, "CMD") {
        words.extend(exec_form("CMD", cmd));
    }
    StartCommand::from_words("Dockerfile ENTRYPOINT+CMD", words)
}

fn dockerfile_healthcheck(text: &str) -> StartCommand {
    let stage = final_stage(text);
    let rest = last_instruction(&stage, "HEALTHCHECK").expect("the run image declares a HEALTHCHECK");
    let cmd = rest.split_once("CMD").map(|(_, c)| c.trim()).expect("HEALTHCHECK ... CMD [...]");
    StartCommand::from_words("Dockerfile HEALTHCHECK", exec_form("HEALTHCHECK CMD", cmd))
}

/// Shell words of a Procfile/heroku.yml command; a leading `exec` only replaces the shell.
fn shell_words(origin: &'static str, command: &str) -> StartCommand {
    assert!(
        !command.contains(['$', '"', '\'', '`', ';', '|', '&', '<', '>']),
        "{origin}: keep the start command free of shell syntax (configuration comes from the \
         environment), got `{command}`"
    );
    let mut words: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
    if words.first().map(String::as_str) == Some("exec") {
        words.remove(0);
    }
    StartCommand::from_words(origin, words)
}

fn procfile_web(text: &str) -> StartCommand {
    let line =
        text.lines().find_map(|l| l.trim().strip_prefix("web:")).expect("the Procfile has a `web:` process");
    shell_words("Procfile web", line.trim())
}

/// heroku.yml's `run: web:` command, if it has one (without it Heroku starts the image's ENTRYPOINT).
fn heroku_run_web(text: &str) -> Option<StartCommand> {
    let mut in_run = false;
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            in_run = line.trim_end() == "run:";
            continue;
        }
        if in_run {
            if let Some(command) = line.trim().strip_prefix("web:") {
                assert!(!command.trim().is_empty(), "heroku.yml run.web must be a one-line command");
                return Some(shell_words("heroku.yml run.web", command.trim()));
            }
        }
    }
    None
}

/// The simple `name: value` variables of the playbook (its `vars:` block), quotes removed.
fn playbook_vars() -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in repo_file("provision/playbook.yml").lines() {
        let Some((name, value)) = line.trim().split_once(": ") else { continue };
        if name.starts_with("tagflow_") && !name.contains(' ') && !vars.contains_key(name) {
            vars.insert(name.to_owned(), value.trim().trim_matches('"').to_owned());
        }
    }
    vars
}

/// `{{ name }}` in a template replaced by the playbook variable, as Ansible renders it.
fn render(template: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let end = rest[start..].find("}}").map(|e| start + e).expect("unclosed {{ in template");
        let name = rest[start + 2..end].trim();
        out.push_str(&rest[..start]);
        out.push_str(
            vars.get(name).unwrap_or_else(|| panic!("template variable `{name}` not in playbook vars")),
        );
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

fn systemd_exec_start() -> StartCommand {
    let template = repo_file("provision/templates/tagflow.service.j2");
    let exec = template
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit template has an ExecStart= line");
    let exec = render(exec, &playbook_vars());
    StartCommand::from_words("systemd ExecStart", exec.split_whitespace().map(str::to_owned).collect())
}

fn run_binary(args: &[&str]) -> (ExitStatus, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status, text)
}

/// The help of `tagflow <args> --help`, or a panic naming the origin if the CLI refuses those arguments.
fn accepted_help(command: &StartCommand) -> String {
    let mut args: Vec<&str> = command.args.iter().map(String::as_str).collect();
    args.push("--help");
    let (status, text) = run_binary(&args);
    assert!(
        status.success(),
        "{}: the CLI refuses `tagflow {}` ({status}):\n{text}",
        command.origin,
        command.args.join(" ")
    );
    text
}

/// The `[default: ...]` of an option in clap's help, looked up from the option's line up to the next option.
fn help_default(help: &str, flag: &str) -> Option<String> {
    let start = help.find(flag)?;
    let section = &help[start..];
    let section = section[flag.len()..].find("\n  -").map_or(section, |end| &section[..flag.len() + end]);
    let value = section.split("[default: ").nth(1)?;
    Some(value[..value.find(']')?].to_owned())
}

/// Words of the form `PREFIX...` (upper case, digits, underscores) in a text.
fn env_words<'a>(text: &'a str, prefix: &str) -> BTreeSet<&'a str> {
    text.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .filter(|w| w.starts_with(prefix) && w.len() > prefix.len())
        .collect()
}

/// Environment variables tagflow knows: those its help names (`[env: NAME=...]`) and those its sources
/// read by name (the tokens are env-only, so they have no flag in the help).
fn known_env_vars(help: &str) -> BTreeSet<String> {
    let mut known: BTreeSet<String> =
        help.split("[env: ").skip(1).filter_map(|s| s.split(['=', ']']).next()).map(str::to_owned).collect();
    // The service's variables, and those of its tests and benchmark (TAGFLOW_FIXTURES), which the
    // README may name too.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stack = vec![root.join("src"), root.join("tests"), root.join("examples")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read src/").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = fs::read_to_string(&path).unwrap_or_default();
                for literal in text.split('"').skip(1).step_by(2) {
                    let is_name =
                        literal.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                    if is_name && literal.starts_with("TAGFLOW_") {
                        known.insert(literal.to_owned());
                    }
                }
            }
        }
    }
    // env_logger reads RUST_LOG on the binary's behalf.
    known.insert("RUST_LOG".to_owned());
    known
}

#[test]
fn start_commands_agree() {
    let dockerfile = repo_file("Dockerfile");
    let mut commands = vec![
        dockerfile_start_command(&dockerfile),
        procfile_web(&repo_file("Procfile")),
        systemd_exec_start(),
    ];
    commands.extend(heroku_run_web(&repo_file("heroku.yml")));

    let bin_name = Path::new(BIN).file_name().and_then(|n| n.to_str()).expect("binary file name");
    let expected_args = vec!["serve".to_owned()];
    for command in &commands {
        assert_eq!(command.program_name(), bin_name, "{}: runs `{}`", command.origin, command.program);
        assert_eq!(command.args, expected_args, "{}: arguments differ from `tagflow serve`", command.origin);
    }

    // Each program path is where that platform puts the binary.
    let docker = &commands[0];
    let final_copy = final_stage(&dockerfile)
        .into_iter()
        .filter(|(k, _)| k == "COPY")
        .any(|(_, rest)| rest.split_whitespace().last() == Some(docker.program.as_str()));
    assert!(final_copy, "the run image never COPYs the binary to {}", docker.program);
    assert_eq!(commands[1].program, "./target/release/tagflow", "Procfile: the Rust buildpack's binary");
    let vars = playbook_vars();
    assert_eq!(commands[2].program, vars["tagflow_bin_path"], "systemd runs what the playbook installs");
    assert!(
        repo_file("provision/playbook.yml").contains("dest: \"{{ tagflow_bin_path }}\""),
        "the playbook installs the binary at tagflow_bin_path"
    );

    // The real CLI accepts those arguments, and the probe can tell: an unknown subcommand is refused.
    let help = accepted_help(docker);
    let (status, _) = run_binary(&["no-such-subcommand", "--help"]);
    assert!(!status.success(), "the CLI accepted an unknown subcommand, so this check proves nothing");
    accepted_help(&dockerfile_healthcheck(&dockerfile));

    // One port everywhere: the binary's default, the image's ENV and EXPOSE, compose, Vagrant, Ansible.
    let default_port = help_default(&help, "--port").expect("`tagflow serve --help` shows --port's default");
    let stage = final_stage(&dockerfile);
    let expose = last_instruction(&stage, "EXPOSE").expect("the run image EXPOSEs its port");
    assert_eq!(expose, default_port, "Dockerfile EXPOSE vs the binary's default PORT");
    let env_line = last_instruction(&stage, "ENV").expect("the run image sets ENV");
    assert!(env_line.contains(&format!("PORT={default_port}")), "Dockerfile ENV PORT: `{env_line}`");
    assert!(env_line.contains("TAGFLOW_DATA_DIR=/data"), "the data dir is the volume: `{env_line}`");
    assert_eq!(last_instruction(&stage, "VOLUME"), Some("[\"/data\"]"));
    assert_eq!(last_instruction(&stage, "STOPSIGNAL"), Some("SIGTERM"));
    let user = last_instruction(&stage, "USER").expect("the run image sets USER");
    assert!(!user.starts_with('0') && !user.starts_with("root"), "the run image runs as root: {user}");
    let compose = repo_file("docker-compose.yml");
    assert!(
        compose.contains(&format!(":{default_port}\"")),
        "compose publishes the container's {default_port}"
    );
    assert!(compose.contains("tagflow-data:/data"), "compose keeps /data in the named volume");
    let vagrantfile = repo_file("Vagrantfile");
    assert!(
        vagrantfile.contains(&format!("GUEST_PORT = {default_port}\n")),
        "Vagrant forwards guest {default_port}"
    );
    assert!(vagrantfile.contains("guest: GUEST_PORT"), "Vagrant's forwarded port uses GUEST_PORT");
    assert_eq!(vars["tagflow_port"], default_port, "the playbook's default tagflow_port");

    // Only environment variables the binary knows, and the env template sets every one it reads.
    let known = known_env_vars(&help);
    let env_template = repo_file("provision/templates/tagflow.env.j2");
    let mut sources: Vec<(&str, String)> = vec![
        ("docker-compose.yml", compose.clone()),
        ("provision/templates/tagflow.env.j2", env_template.clone()),
        ("heroku.yml", repo_file("heroku.yml")),
        ("Dockerfile", dockerfile.clone()),
    ];
    for doc in ["docs/deploy.md", "README.md"] {
        if Path::new(env!("CARGO_MANIFEST_DIR")).join(doc).is_file() {
            sources.push((doc, repo_file(doc)));
        }
    }
    for (file, text) in &sources {
        for name in env_words(text, "TAGFLOW_") {
            assert!(
                known.contains(name),
                "{file} uses {name}, which tagflow does not read (known: {known:?})"
            );
        }
    }
    for name in help.split("[env: ").skip(1).filter_map(|s| s.split(['=', ']']).next()) {
        assert!(
            env_template.contains(&format!("line('{name}'")),
            "`tagflow serve` reads {name} but provision/templates/tagflow.env.j2 never sets it"
        );
    }
}

// ---------------------------------------------------------------------------------------------------
// The Procfile's web process under honcho.

/// honcho from $HONCHO, $PATH, or the virtualenv that .ci/deploy-checks installs.
fn honcho() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("HONCHO") {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("honcho"));
    let cache = std::env::var_os("TAGFLOW_DEPLOY_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/tagflow/deploy-venv")));
    on_path.chain(cache.map(|v| v.join("bin/honcho"))).find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port()
}

/// One HTTP/1.1 exchange on loopback: (status, body). Errors are returned, not panicked, for polling.
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// A running `honcho start web`; dropping it stops honcho (and so the web process) if the test failed.
struct Honcho {
    child: Child,
    log: PathBuf,
}

impl Honcho {
    fn start(honcho: &Path, app: &Path, port: u16, data: &Path, run: usize) -> Self {
        let log = app.join(format!("honcho-{run}.log"));
        let out = fs::File::create(&log).expect("create honcho log");
        let err = out.try_clone().expect("clone log handle");
        let child = Command::new(honcho)
            .args(["start", "--no-colour", "web"])
            .current_dir(app)
            .env("PORT", port.to_string())
            .env("TAGFLOW_HOST", "127.0.0.1")
            .env("TAGFLOW_DATA_DIR", data)
            .env("TAGFLOW_SOURCES", "none")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", honcho.display()));
        Honcho { child, log }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for_status(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, body)) = http(port, "GET", "/status", None) {
                assert!(body.contains("\"OK\""), "/status answered 200 without OK: {body}");
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("honcho exited ({status}) before /status answered:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "/status did not answer within 30 s:\n{}", self.log());
            sleep(Duration::from_millis(100));
        }
    }

    fn signal(&self, signal: &str) {
        // std has no kill(2) with a signal; kill(1) is in every base system.
        let _ = Command::new("kill").args([signal, &self.child.id().to_string()]).status();
    }

    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGTERM as Heroku sends it, then a check that the web process itself exited 0.
    fn stop_cleanly(mut self) {
        self.signal("-TERM");
        // honcho SIGKILLs a process still running 5 s after its SIGTERM; give it that and a margin.
        let status = self.wait(Duration::from_secs(15));
        let log = self.log();
        let status = status.unwrap_or_else(|| panic!("honcho still running 15 s after SIGTERM:\n{log}"));
        // honcho's own status is 143 after a SIGTERM it received (foreman's convention); the web
        // process's status is in its log line.
        assert!(matches!(status.code(), Some(0 | 143)), "honcho exited with {status}:\n{log}");
        assert!(
            log.contains("web.1 stopped (rc=0)"),
            "the web process did not exit 0 on SIGTERM (rc=-9 means honcho had to SIGKILL it):\n{log}"
        );
    }
}

impl Drop for Honcho {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal("-TERM");
            if self.wait(Duration::from_secs(10)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// The Dockerfile's HEALTHCHECK command, run as Docker runs it in the container (same PORT).
fn healthcheck(port: u16) -> ExitStatus {
    let command = dockerfile_healthcheck(&repo_file("Dockerfile"));
    let mut child = Command::new(BIN)
        .args(&command.args)
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the healthcheck");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().expect("wait for the healthcheck") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the healthcheck ran longer than 15 s (Docker's HEALTHCHECK --timeout is 5 s)");
        }
        sleep(Duration::from_millis(50));
    }
}

#[test]
fn procfile_web_process_under_honcho() {
    let Some(honcho) = honcho() else {
        assert!(
            std::env::var_os("TAGFLOW_REQUIRE_HONCHO").is_none(),
            "TAGFLOW_REQUIRE_HONCHO is set but honcho is not on PATH (run .ci/deploy-checks)"
        );
        common::skip::skip("procfile_web_process_under_honcho", "honcho", "pip install honcho");
        return;
    };
    let app = tempfile::tempdir().expect("temp dir");
    let data = app.path().join("tagflow-data");
    // The real Procfile, with the test build where the Rust buildpack leaves the release binary.
    fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("Procfile"), app.path().join("Procfile"))
        .expect("copy Procfile");
    fs::create_dir_all(app.path().join("target/release")).expect("mkdir target/release");
    std::os::unix::fs::symlink(BIN, app.path().join("target/release/tagflow")).expect("symlink binary");
    let port = free_port();

    let mut first = Honcho::start(&honcho, app.path(), port, &data, 1);
    first.wait_for_status(port);
    assert!(healthcheck(port).success(), "the Dockerfile's HEALTHCHECK fails against a serving tagflow");
    let (status, body) = http(port, "POST", "/vertices", Some(r#"{"id":"alice"}"#)).expect("POST /vertices");
    assert_eq!(status, 201, "POST /vertices: {body}");
    first.stop_cleanly();
    assert!(!healthcheck(port).success(), "the Dockerfile's HEALTHCHECK passes with nothing listening");

    let mut second = Honcho::start(&honcho, app.path(), port, &data, 2);
    second.wait_for_status(port);
    let (status, body) = http(port, "GET", "/vertices/alice", None).expect("GET /vertices/alice");
    assert_eq!(status, 200, "alice, acknowledged before SIGTERM, is gone after the restart: {body}");
    assert!(body.contains("alice"), "GET /vertices/alice: {body}");
    second.stop_cleanly();
}
