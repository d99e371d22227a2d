"""Run the systemd unit that provision/playbook.yml installed, the way systemd would, on a machine
without systemd as PID 1: as the unit's User/Group, with its EnvironmentFile, WorkingDirectory and
ExecStart. Checks the installed files' owners and modes, that /status answers, that a write survives
SIGTERM and a restart, and that each stop is an exit 0 within TimeoutStopSec.

usage: unit-smoke.py UNIT_PATH [EXPECTED_BINARY]
Only loopback traffic; every wait is bounded; the service is killed if anything fails.
"""

import grp
import json
import os
import pwd
import shlex
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


def fail(message, log=None):
    print(f"unit-smoke: FAILED: {message}")
    if log:
        print("---- service output ----")
        print(log)
    sys.exit(1)


def parse_unit(path):
    service, section = {}, None
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            key, _, value = line.partition("=")
            if section == "Service":
                service[key.strip()] = value.strip()
    return service


def parse_env_file(path):
    """The subset of systemd's EnvironmentFile= syntax the template writes: KEY="value" with \\ escapes."""
    env = {}
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            key, sep, value = line.partition("=")
            if not sep:
                continue
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                body, out, i = value[1:-1], [], 0
                while i < len(body):
                    if body[i] == "\\" and i + 1 < len(body) and value[0] == '"':
                        out.append(body[i + 1])
                        i += 2
                    else:
                        out.append(body[i])
                        i += 1
                value = "".join(out)
            env[key.strip()] = value
    return env


def expect_mode(path, mode, owner, group, kind):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        fail(f"{path} is missing")
    if kind == "dir" and not stat.S_ISDIR(st.st_mode) or kind == "file" and not stat.S_ISREG(st.st_mode):
        fail(f"{path} is not a {kind}")
    actual = (stat.S_IMODE(st.st_mode), pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name)
    if actual != (mode, owner, group):
        fail(f"{path}: expected {oct(mode)} {owner}:{group}, found {oct(actual[0])} {actual[1]}:{actual[2]}")
    print(f"unit-smoke: ok {path} {oct(mode)} {owner}:{group}")


def http(port, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Service:
    def __init__(self, unit, env, log_path):
        self.log_path = log_path
        self.log = open(log_path, "ab")
        argv = shlex.split(unit["ExecStart"])
        self.proc = subprocess.Popen(
            argv, env=env, cwd=unit.get("WorkingDirectory", "/"), user=unit["User"],
            group=unit.get("Group", unit["User"]), extra_groups=[], stdin=subprocess.DEVNULL,
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_for_status(self, port):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                fail(f"the service exited with {self.proc.returncode} before /status answered", self.output())
            try:
                status, body = http(port, "GET", "/status")
                if status == 200 and json.loads(body).get("status") == "OK":
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        fail("/status did not answer OK within 60 s", self.output())

    def stop(self, timeout):
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            fail(f"still running {timeout} s after SIGTERM (systemd would SIGKILL it)", self.output())
        if rc != 0:
            fail(f"exit status {rc} after SIGTERM, expected 0", self.output())
        print(f"unit-smoke: ok SIGTERM -> exit 0 in {time.monotonic() - started:.1f} s")

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def main():
    unit_path = sys.argv[1]
    expected_binary = sys.argv[2] if len(sys.argv) > 2 else None
    unit = parse_unit(unit_path)
    for key in ("User", "EnvironmentFile", "ExecStart", "WorkingDirectory", "TimeoutStopSec"):
        if key not in unit:
            fail(f"{unit_path} has no {key}=")
    user, group = unit["User"], unit.get("Group", unit["User"])
    binary = shlex.split(unit["ExecStart"])[0]

    expect_mode(unit_path, 0o644, "root", "root", "file")
    expect_mode(unit["EnvironmentFile"], 0o600, "root", "root", "file")
    expect_mode(unit["WorkingDirectory"], 0o750, user, group, "dir")
    expect_mode(binary, 0o755, "root", "root", "file")
    if expected_binary:
        with open(binary, "rb") as a, open(expected_binary, "rb") as b:
            if a.read() != b.read():
                fail(f"{binary} differs from {expected_binary}")
        print(f"unit-smoke: ok {binary} is {expected_binary}")
    if pwd.getpwnam(user).pw_shell not in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false"):
        fail(f"user {user} has a login shell")

    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    env.update(parse_env_file(unit["EnvironmentFile"]))
    port = int(env.get("PORT", "8080"))
    stop_timeout = int(unit["TimeoutStopSec"].rstrip("s"))
    vertex = f"deploy-check-{os.getpid()}-{int(time.time())}"

    # This installation is the check's own (made by the playbook run just before): start its data
    # directory empty, so that data left by an older build on this machine cannot decide the result.
    data_dir = env.get("TAGFLOW_DATA_DIR", unit["WorkingDirectory"])
    if os.path.isdir(data_dir):
        for name in os.listdir(data_dir):
            path = os.path.join(data_dir, name)
            subprocess.run(["rm", "-rf", "--", path], check=True)
        print(f"unit-smoke: ok emptied {data_dir} for a fresh start")

    log_path = tempfile.mkstemp(prefix="tagflow-unit-smoke-", suffix=".log")[1]
    service = Service(unit, env, log_path)
    try:
        service.wait_for_status(port)
        print(f"unit-smoke: ok /status answers on port {port} (as {user}, env from {unit['EnvironmentFile']})")
        status, body = http(port, "POST", "/vertices", {"id": vertex})
        if status != 201:
            fail(f"POST /vertices answered {status}: {body}", service.output())
        service.stop(stop_timeout)

        service = Service(unit, env, log_path)
        service.wait_for_status(port)
        status, body = http(port, "GET", f"/vertices/{vertex}")
        if status != 200 or vertex not in body:
            fail(f"{vertex}, written before SIGTERM, is not there after the restart: {status} {body}",
                 service.output())
        print(f"unit-smoke: ok {vertex} survived SIGTERM and a restart")
        service.stop(stop_timeout)
    finally:
        service.kill()
    os.unlink(log_path)


if __name__ == "__main__":
    main()
