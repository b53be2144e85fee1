"""Shared pieces of the end-to-end suite: the `hearth serve` process, clients,
zips built in memory and assertion helpers.

The session fixture `hearth` (conftest.py) starts `$HEARTH_BIN serve` on a free loopback
port with a fresh data directory, waits for `GET /hearth/v1/health`, and
stops it (SIGTERM, then SIGKILL after a bound) at the end. Every wait and
loop here is bounded in count and time; all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import boto3
import botocore.auth
import botocore.config
import pytest
import urllib3
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

REPO = Path(__file__).resolve().parents[2]
WORK = Path(__file__).resolve().parent / ".work"

DEV_ACCOUNT = "000000000000"
DEV_KEY = "test"
DEV_SECRET = "test"
REGION = "us-east-1"
ROLE = f"arn:aws:iam::{DEV_ACCOUNT}:role/lambda-role"

READY_TIMEOUT_S = 30
STOP_TIMEOUT_S = 15
WAITER = {"Delay": 0.25, "MaxAttempts": 240}  # at most ~60 s

# Keep the clients away from whatever AWS configuration the machine has.
for _var in list(os.environ):
    if _var.startswith("AWS_") and _var not in ("AWS_EC2_METADATA_DISABLED",):
        del os.environ[_var]
os.environ["AWS_CONFIG_FILE"] = str(WORK / "no-aws-config")
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(WORK / "no-aws-credentials")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


def hearth_bin() -> Path:
    p = Path(os.environ.get("HEARTH_BIN") or REPO / "target" / "debug" / "hearth")
    if not p.is_file() or not os.access(p, os.X_OK):
        pytest.fail(f"hearth binary not found or not executable at {p} (set HEARTH_BIN)")
    return p


# ---------------------------------------------------------------------------
# Host runtimes


def host_python_runtime() -> str:
    """`python3.<minor>` of /usr/bin/python3 (the interpreter Hearth prefers)."""
    exe = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    out = subprocess.run(
        [exe, "-c", "import sys; print(sys.version_info.minor)"],
        capture_output=True, text=True, timeout=30, check=True,
    )
    return f"python3.{out.stdout.strip()}"


def host_node_runtime() -> str | None:
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        return None
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    v = out.stdout.strip().lstrip("v")
    if not v.split(".")[0].isdigit():
        return None
    return f"nodejs{v.split('.')[0]}.x"


PY_RUNTIME = host_python_runtime()
NODE_RUNTIME = host_node_runtime()


# ---------------------------------------------------------------------------
# Zips built in memory

PY_HANDLER = b"def handler(event, context):\n    return {'ok': True, 'event': event}\n"
NODE_HANDLER = b"exports.handler = async (event) => ({ ok: true, event });\n"
BOOTSTRAP = b"#!/bin/sh\nset -eu\nexit 0\n"

UNIX = 3  # ZipInfo.create_system for Unix: mode bits live in external_attr


def _info(name: str, mode: int) -> zipfile.ZipInfo:
    zi = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
    zi.create_system = UNIX
    zi.external_attr = mode << 16
    zi.compress_type = zipfile.ZIP_DEFLATED
    return zi


def make_zip(
    files: Mapping[str, bytes | str],
    *,
    modes: Mapping[str, int] | None = None,
    symlinks: Mapping[str, str] | None = None,
) -> bytes:
    """A zip of `files` (name -> content). `modes` overrides a file's mode
    (default 0o644); `symlinks` adds entries name -> target stored as links."""
    modes = dict(modes or {})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            if isinstance(data, str):
                data = data.encode()
            zf.writestr(_info(name, 0o100000 | modes.get(name, 0o644)), data)
        for name, target in (symlinks or {}).items():
            zf.writestr(_info(name, 0o120777), target.encode())
    return buf.getvalue()


def nonce() -> str:
    return uuid.uuid4().hex


def py_zip(extra: Mapping[str, bytes | str] | None = None, *, unique: bool = True) -> bytes:
    """A python function's zip with `handler.py` (`handler.handler`). Unique
    content by default, so its digest is the test's own."""
    files: dict[str, bytes | str] = {"handler.py": PY_HANDLER}
    if unique:
        files["nonce.txt"] = nonce()
    files.update(extra or {})
    return make_zip(files)


def node_zip(*, unique: bool = True) -> bytes:
    files: dict[str, bytes | str] = {"index.js": NODE_HANDLER}
    if unique:
        files["nonce.txt"] = nonce()
    return make_zip(files)


def provided_zip(*, executable: bool = True, unique: bool = True) -> bytes:
    files: dict[str, bytes | str] = {"bootstrap": BOOTSTRAP}
    if unique:
        files["nonce.txt"] = nonce()
    return make_zip(files, modes={"bootstrap": 0o755 if executable else 0o644})


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def code_sha256(data: bytes) -> str:
    """Lambda's CodeSha256: base64 of the zip's SHA-256 digest."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def unique_name(prefix: str = "fn") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------------------
# Raw signed HTTP


@dataclass
class RawResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def header(self, name: str) -> str | None:
        for k, v in self.headers.items():
            if k.lower() == name.lower():
                return v
        return None


_HTTP = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=10, read=120))


def raw_request(
    endpoint: str,
    method: str,
    path: str,
    body: bytes | str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    access_key: str | None = DEV_KEY,
    secret: str = DEV_SECRET,
    region: str = REGION,
    service: str = "lambda",
    sign: bool = True,
) -> RawResponse:
    """One HTTP request to the server, SigV4-signed as botocore signs (unless
    `sign` is false or `access_key` is None)."""
    assert endpoint.startswith("http://127.0.0.1:"), endpoint
    if isinstance(body, str):
        body = body.encode()
    req = AWSRequest(method=method, url=endpoint + path, data=body or b"", headers=dict(headers or {}))
    if sign and access_key is not None:
        botocore.auth.SigV4Auth(Credentials(access_key, secret), service, region).add_auth(req)
    prepared = req.prepare()
    resp = _HTTP.request(
        method, prepared.url, body=prepared.body, headers=dict(prepared.headers),
        redirect=False, preload_content=True,
    )
    return RawResponse(resp.status, dict(resp.headers), resp.data)


# ---------------------------------------------------------------------------
# The server process


# ---------------------------------------------------------------------------
# Host-side inspection: cgroups, sandbox processes, mounts
#
# Hearth (as root) runs sandbox n as host uid 200000 + n, in cgroups
# `<the daemon's cgroup>/hearth/<sandbox id>` of each hierarchy it uses.

SANDBOX_UID_MIN = 200_000
SANDBOX_UID_MAX = 300_000  # exclusive: the range these tests treat as sandbox uids
# Hierarchies whose controllers Hearth uses (v1), besides the unified one.
_SANDBOX_CONTROLLERS = {"memory", "pids", "cpu", "freezer"}

_JOIN_CGROUP_AND_EXEC = (
    'IFS="$(printf \'\\n_\')"; IFS="${IFS%_}"; '
    'for f in $E2E_CGROUP_PROCS; do echo $$ > "$f" || echo "e2e: cannot join $f" >&2; done; '
    'unset E2E_CGROUP_PROCS; exec "$@"'
)


def is_root() -> bool:
    return os.geteuid() == 0


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy and this process's place in it."""
    mount_point: Path
    version: int            # 1 or 2
    controllers: frozenset  # v1 controllers (and name=...), empty for v2
    own: str                # this process's cgroup path in it, e.g. "/process_api/abc"

    def host_dir(self, rel: str) -> Path:
        return self.mount_point / rel.lstrip("/")


def cgroup_hierarchies() -> list[Hierarchy]:
    """Every cgroup hierarchy mounted here (v1 ones and the unified one)."""
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
        mine = Path("/proc/self/cgroup").read_text()
    except OSError:
        return []
    mounts = []  # (mount_point, root, fstype, superopts)
    for line in mountinfo.splitlines():
        pre, _, post = line.partition(" - ")
        f, g = pre.split(), post.split()
        if len(f) < 5 or len(g) < 3 or g[0] not in ("cgroup", "cgroup2"):
            continue
        mounts.append((Path(f[4]), f[3], g[0], set(g[2].split(","))))
    out: list[Hierarchy] = []
    seen: set[Path] = set()
    for line in mine.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, ctrls, path = parts
        for mp, root, fstype, opts in mounts:
            if mp in seen:
                continue
            if hid == "0" and ctrls == "" and fstype == "cgroup2":
                version, cs = 2, frozenset()
            elif fstype == "cgroup" and ctrls and set(ctrls.split(",")) <= opts:
                version, cs = 1, frozenset(ctrls.split(","))
            else:
                continue
            rel = path
            if root != "/" and (rel == root or rel.startswith(root + "/")):
                rel = rel[len(root):] or "/"
            out.append(Hierarchy(mp, version, cs, rel))
            seen.add(mp)
            break
    return out


def sandbox_hierarchies() -> list[Hierarchy]:
    """The hierarchies Hearth places sandboxes in: v1 memory/pids/cpu(/freezer) and v2."""
    return [h for h in cgroup_hierarchies() if h.version == 2 or h.controllers & _SANDBOX_CONTROLLERS]


class ServerCgroup:
    """A cgroup of its own for one `hearth serve` (in each sandbox hierarchy),
    under the test process's cgroup: `<own>/hearth-e2e-<hash of the data dir>`."""

    def __init__(self, name: str, dirs: list[tuple[Hierarchy, Path]]):
        self.name = name
        self.dirs = dirs

    @classmethod
    def create(cls, data_dir: Path) -> "ServerCgroup | None":
        if not is_root():
            return None
        name = "hearth-e2e-" + hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:12]
        dirs = []
        for h in sandbox_hierarchies():
            d = h.host_dir(h.own) / name
            try:
                d.mkdir(exist_ok=True)
            except OSError:
                continue
            dirs.append((h, d))
        return cls(name, dirs) if dirs else None

    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for _, d in self.dirs]

    def rel_paths(self) -> list[str]:
        """The server's cgroup path in each hierarchy, as /proc/<pid>/cgroup shows it."""
        return [("/" + h.own.strip("/") + "/" + self.name).replace("//", "/") for h, _ in self.dirs]

    def sandbox_parents(self) -> list[Path]:
        """The daemon's `<server cgroup>/hearth*` directories (it names them
        `hearth` or `hearth-<digest>`), in every hierarchy."""
        out = []
        for _, d in self.dirs:
            try:
                out.extend(sorted(p for p in d.iterdir() if p.is_dir() and p.name.startswith("hearth")))
            except OSError:
                pass
        return out

    def sandbox_cgroup_dirs(self) -> list[Path]:
        """Every sandbox cgroup `<server cgroup>/hearth*/<sandbox>`, in every hierarchy."""
        out = []
        for parent in self.sandbox_parents():
            try:
                out.extend(sorted(p for p in parent.iterdir() if p.is_dir()))
            except OSError:
                pass
        return out

    def memory_hierarchy_dir(self) -> "tuple[Hierarchy, Path] | None":
        """The server's cgroup in the hierarchy that holds the memory
        controller (v1 `memory`, else the unified one), or None."""
        for h, d in self.dirs:
            if h.version == 1 and "memory" in h.controllers:
                return h, d
        for h, d in self.dirs:
            if h.version == 2:
                try:
                    if "memory" in (d / "cgroup.controllers").read_text().split():
                        return h, d
                except OSError:
                    pass
        return None

    def memory_sandbox_cgroups(self) -> list[Path]:
        """The sandbox cgroups `<server cgroup>/hearth*/<sandbox>` of the
        memory hierarchy only (one per sandbox)."""
        found = self.memory_hierarchy_dir()
        if found is None:
            return []
        _, d = found
        out: list[Path] = []
        try:
            parents = [p for p in d.iterdir() if p.is_dir() and p.name.startswith("hearth")]
        except OSError:
            return []
        for parent in parents:
            try:
                out.extend(p for p in parent.iterdir() if p.is_dir())
            except OSError:
                pass
        return sorted(out)

    def contains(self, proc: "HostProcess") -> bool:
        rels = self.rel_paths()
        return any(p == r or p.startswith(r + "/") for p in proc.cgroups.values() for r in rels)

    def remove(self) -> None:
        """rmdir the server's cgroups, deepest first (best effort: a busy one stays)."""
        for _, d in self.dirs:
            if not d.exists():
                continue
            subdirs = sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            for p in [*subdirs, d]:
                try:
                    p.rmdir()
                except OSError:
                    pass


@dataclass
class HostProcess:
    pid: int
    uid: int
    ppid: int
    cmdline: str
    cgroups: dict  # hierarchy controllers ("memory", "" for v2) -> path
    state: str = "?"  # R, S, D, Z (zombie), ...


def host_processes(include_dead: bool = False) -> list[HostProcess]:
    """A snapshot of the host's live processes (those still there while
    read). Zombies are dead (they run nothing and hold no memory; their
    new parent, the host's init, reaps them in its own time): left out
    unless `include_dead`."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            cg = Path(f"/proc/{pid}/cgroup").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        uid = ppid = -1
        state = "?"
        for line in status.splitlines():
            if line.startswith("Uid:"):
                uid = int(line.split()[1])
            elif line.startswith("PPid:"):
                ppid = int(line.split()[1])
            elif line.startswith("State:"):
                state = line.split()[1]
        if state in ("Z", "X") and not include_dead:
            continue
        cgroups = {}
        for line in cg.splitlines():
            parts = line.split(":", 2)
            if len(parts) == 3:
                cgroups[parts[1]] = parts[2]
        out.append(HostProcess(pid, uid, ppid, cmd, cgroups, state))
    return out


def is_sandbox_cgroup(path: str) -> bool:
    """`.../hearth[-<digest>]/<sandbox id>[/...]`: a cgroup path of a sandbox
    (the test servers' own cgroups are `hearth-e2e-*`)."""
    parts = [p for p in path.split("/") if p]
    return any(p.startswith("hearth") and not p.startswith("hearth-e2e-") and i + 1 < len(parts)
               for i, p in enumerate(parts))


def sandbox_cgroup_dirs(proc: HostProcess) -> list[Path]:
    """The host directories of a sandbox process's own cgroups, in every hierarchy."""
    by_ctrl = {(",".join(sorted(h.controllers)) if h.version == 1 else ""): h for h in cgroup_hierarchies()}
    out = []
    for ctrls, path in proc.cgroups.items():
        if not is_sandbox_cgroup(path):
            continue
        h = by_ctrl.get(",".join(sorted(ctrls.split(","))) if ctrls else "")
        if h is not None:
            rel = path
            out.append(h.mount_point / rel.lstrip("/"))
    return out


def cgroup_memory_limit(d: Path) -> int | None:
    """A cgroup's memory limit in bytes (v1 memory.limit_in_bytes, v2
    memory.max; None if it has none or is gone)."""
    for name in ("memory.limit_in_bytes", "memory.max"):
        try:
            text = (d / name).read_text().strip()
        except OSError:
            continue
        return None if text == "max" else int(text)
    return None


def cgroup_procs(d: Path) -> list[int]:
    """The pids in a cgroup (empty if it is gone)."""
    try:
        return [int(x) for x in (d / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def processes_of_uid(uid: int, server: "HearthServer | None" = None) -> list[HostProcess]:
    """Live processes running as `uid`; with `server`, only those in its
    cgroup (every daemon numbers its sandbox uids from the same base, so two
    servers can each have a sandbox with the same uid)."""
    procs = [p for p in host_processes() if p.uid == uid]
    if server is not None and server.cgroup is not None:
        procs = [p for p in procs if server.cgroup.contains(p)]
    return procs


def sandbox_uid_processes() -> list[HostProcess]:
    return [p for p in host_processes() if SANDBOX_UID_MIN <= p.uid < SANDBOX_UID_MAX]


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` in this (the host's) mount namespace."""
    root = str(Path(path).resolve())
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        f = line.split()
        if len(f) > 4:
            mp = f[4].replace("\\040", " ")
            if mp == root or mp.startswith(root + "/"):
                out.append(mp)
    return out


def wait_until(pred: Callable[[], object], timeout: float, interval: float = 0.2, what: str = "condition"):
    """Polls `pred` until it returns something truthy (returned), at most
    `timeout` seconds; then returns the last falsy value."""
    deadline = time.monotonic() + timeout
    last = None
    for _ in range(int(timeout / interval) + 2):
        last = pred()
        if last:
            return last
        if time.monotonic() > deadline:
            break
        time.sleep(interval)
    return last


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HearthServer:
    """One `hearth serve` process on a loopback port and a data directory."""

    def __init__(self, data_dir: Path, log_path: Path, port: int | None = None, *, via_env: bool = False,
                 config: Path | None = None):
        self.config = config  # a TOML config file passed with --config
        self.via_env = via_env  # pass listen address and data dir as HEARTH_* variables, not flags
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.port = port or free_port()
        self.url_port = free_port()  # the Function URL listener's
        self.proc: subprocess.Popen | None = None
        self._log = None
        # The server's own cgroup (one per server, kept across restarts): see ServerCgroup.
        self.cgroup: ServerCgroup | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url_endpoint(self) -> str:
        """Where this server serves Function URLs."""
        return f"http://127.0.0.1:{self.url_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    # -- lifecycle --------------------------------------------------------

    def start(self, timeout: float = READY_TIMEOUT_S) -> "HearthServer":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
        env.setdefault("RUST_BACKTRACE", "1")
        env["NO_COLOR"] = "1"
        args = [str(hearth_bin()), "serve"]
        if self.via_env:
            env.update(HEARTH_LISTEN=f"127.0.0.1:{self.port}", HEARTH_DATA_DIR=str(self.data_dir),
                       HEARTH_FUNCTION_URLS_LISTEN=f"127.0.0.1:{self.url_port}")
        else:
            args += ["--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir),
                     "--function-urls-listen", f"127.0.0.1:{self.url_port}"]
        if self.config is not None:
            args += ["--config", str(self.config)]
        # Each server runs in a cgroup of its own, as a daemon does under its
        # service manager: two daemons in one cgroup would share (and reap)
        # each other's sandbox cgroups. A shell joins it, then execs hearth.
        if self.cgroup is None:
            self.cgroup = ServerCgroup.create(self.data_dir)
        if self.cgroup is not None and self.cgroup.procs_files():
            env["E2E_CGROUP_PROCS"] = "\n".join(str(p) for p in self.cgroup.procs_files())
            args = ["/bin/sh", "-c", _JOIN_CGROUP_AND_EXEC, "hearth-e2e-join", *args]
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        last_err = None
        for _ in range(int(timeout / 0.05) + 1):
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"hearth serve exited with {self.proc.returncode} before it was ready\n{self.log_tail()}"
                )
            try:
                r = _HTTP.request("GET", self.endpoint + "/hearth/v1/health", timeout=2.0, retries=False)
                if r.status == 200:
                    return
                last_err = f"status {r.status}"
            except urllib3.exceptions.HTTPError as e:
                last_err = repr(e)
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"hearth serve not ready after {timeout}s ({last_err})\n{self.log_tail()}")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`."""
        rc = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
                rc = None
        elif self.proc is not None:
            rc = self.proc.returncode
        self._close_log()
        if self.cgroup is not None:
            self.cgroup.remove()
        return rc

    def kill9(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT_S)
        self._close_log()

    def restart(self, timeout: float = READY_TIMEOUT_S) -> "HearthServer":
        """Start a new process on the same data dir (and port, if it is free)."""
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", self.port))
        except OSError:
            self.port = free_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", self.url_port))
        except OSError:
            self.url_port = free_port()
        return self.start(timeout)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return f"--- last lines of {self.log_path} ---\n" + "\n".join(lines[-n:])

    # -- clients ----------------------------------------------------------

    def client(
        self,
        access_key: str = DEV_KEY,
        secret: str = DEV_SECRET,
        region: str = REGION,
        **config: object,
    ):
        """A boto3 `lambda` client for this server (no retries)."""
        cfg = dict(retries={"max_attempts": 0}, connect_timeout=10, read_timeout=120)
        cfg.update(config)
        return boto3.session.Session().client(
            "lambda",
            endpoint_url=self.endpoint,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret,
            config=botocore.config.Config(**cfg),
        )

    def raw(self, method: str, path: str, body: bytes | str | None = None, **kw) -> RawResponse:
        return raw_request(self.endpoint, method, path, body, **kw)

    # -- admin API --------------------------------------------------------

    def create_account(self, name: str | None = None) -> dict:
        """POST /hearth/v1/accounts as the dev admin; returns the 201 body."""
        name = name or unique_name("acct")
        r = self.raw("POST", "/hearth/v1/accounts", json.dumps({"Name": name}),
                     headers={"Content-Type": "application/json"})
        assert r.status == 201, (r.status, r.body)
        return r.json()

    def account_client(self, account: Mapping[str, str], **kw):
        return self.client(account["AccessKeyId"], account["SecretAccessKey"], **kw)

    # -- capacity (admin API, metrics) -------------------------------------

    def pools(self) -> dict:
        """GET /hearth/v1/pools as the dev admin."""
        r = self.raw("GET", "/hearth/v1/pools")
        assert r.status == 200, (r.status, r.body[:2000])
        return r.json()

    def metrics(self) -> "Metrics":
        """GET /metrics (unsigned), parsed."""
        r = self.raw("GET", "/metrics", sign=False)
        assert r.status == 200, (r.status, r.body[:2000])
        return Metrics.parse(r.body.decode("utf-8"))

    def put_capacity(self, account_id: str, settings: Mapping[str, object]) -> dict:
        """PUT /hearth/v1/accounts/{id}/capacity as the dev admin; returns the stored settings."""
        r = self.raw("PUT", f"/hearth/v1/accounts/{account_id}/capacity", json.dumps(dict(settings)),
                     headers={"Content-Type": "application/json"})
        assert r.status == 200, (r.status, r.body[:2000])
        return r.json()

    def get_capacity(self, account_id: str) -> dict:
        r = self.raw("GET", f"/hearth/v1/accounts/{account_id}/capacity")
        assert r.status == 200, (r.status, r.body[:2000])
        return r.json()

    # -- CLI --------------------------------------------------------------

    def cli(
        self,
        *args: str,
        access_key: str = DEV_KEY,
        secret: str = DEV_SECRET,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
        env.update(
            HEARTH_ENDPOINT=self.endpoint,
            AWS_ACCESS_KEY_ID=access_key,
            AWS_SECRET_ACCESS_KEY=secret,
            AWS_DEFAULT_REGION=REGION,
            AWS_REGION=REGION,
        )
        cp = subprocess.run(
            [str(hearth_bin()), *args], env=env, capture_output=True, text=True,
            timeout=timeout, stdin=subprocess.DEVNULL,
        )
        if check and cp.returncode != 0:
            raise AssertionError(
                f"hearth {' '.join(args)} exited {cp.returncode}\nstdout: {cp.stdout}\nstderr: {cp.stderr}"
            )
        return cp


# ---------------------------------------------------------------------------
# Helpers shared by the test modules


LAMBDA_TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
}
_ACCOUNT_ROLES: dict[tuple[str, str], str] = {}  # (endpoint, access key) -> role ARN


def role_for(client) -> str:
    """A function role for the client's account: ROLE (made up) for the dev
    account, whose roles a node does not check by default; for any other
    account its own `lambda-role`, created through IAM once."""
    creds = client._get_credentials()
    if creds.access_key == DEV_KEY:
        return ROLE
    key = (client.meta.endpoint_url, creds.access_key)
    if key not in _ACCOUNT_ROLES:
        iam = boto3.session.Session().client(
            "iam", endpoint_url=client.meta.endpoint_url, region_name=REGION,
            aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key,
            config=botocore.config.Config(retries={"max_attempts": 0}),
        )
        try:
            role = iam.create_role(RoleName="lambda-role", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST_POLICY))
        except iam.exceptions.EntityAlreadyExistsException:
            role = iam.get_role(RoleName="lambda-role")
        _ACCOUNT_ROLES[key] = role["Role"]["Arn"]
    return _ACCOUNT_ROLES[key]


def create_fn(client, name: str | None = None, *, zip_bytes: bytes | None = None,
              runtime: str | None = None, handler: str = "handler.handler", wait: bool = True,
              **kw) -> dict:
    """CreateFunction with sensible defaults (a role of the client's account,
    see role_for); waits for Active unless told not to."""
    name = name or unique_name()
    zip_bytes = zip_bytes if zip_bytes is not None else py_zip()
    resp = client.create_function(
        FunctionName=name, Runtime=runtime or PY_RUNTIME, Role=role_for(client), Handler=handler,
        Code={"ZipFile": zip_bytes}, **kw,
    )
    if wait:
        client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAITER)
    return resp


def expect_error(fn: Callable, *args, code: str | Iterable[str], status: int | Iterable[int] | None = None,
                 message: str | None = None, message_contains: str | None = None, **kwargs) -> dict:
    """Calls fn, expects a ClientError with `code` (one or any of several),
    the HTTP `status`, and a message; returns the error response."""
    with pytest.raises(ClientError) as ei:
        fn(*args, **kwargs)
    err = ei.value.response
    codes = {code} if isinstance(code, str) else set(code)
    got = err.get("Error", {}).get("Code")
    got_status = err.get("ResponseMetadata", {}).get("HTTPStatusCode")
    assert got in codes, f"expected {codes}, got {got} ({got_status}): {err.get('Error')}"
    if status is not None:
        statuses = {status} if isinstance(status, int) else set(status)
        assert got_status in statuses, f"expected HTTP {statuses}, got {got_status}: {err.get('Error')}"
    assert got_status is not None and got_status < 500, err
    msg = err.get("Error", {}).get("Message")
    assert msg, f"error without a message: {err}"
    if message is not None:
        assert msg == message, f"message {msg!r} != {message!r}"
    if message_contains is not None:
        assert message_contains in msg, f"{message_contains!r} not in {msg!r}"
    return err


def list_all_functions(client, page_size: int = 50, max_pages: int = 200) -> list[dict]:
    out: list[dict] = []
    marker = None
    for _ in range(max_pages):
        kw = {"MaxItems": page_size}
        if marker:
            kw["Marker"] = marker
        page = client.list_functions(**kw)
        out.extend(page.get("Functions", []))
        marker = page.get("NextMarker")
        if not marker:
            return out
    raise AssertionError(f"ListFunctions still paging after {max_pages} pages")


def blob_path(data_dir: Path, zip_bytes: bytes) -> Path:
    return Path(data_dir) / "code" / "blobs" / f"{sha256_hex(zip_bytes)}.zip"


def assert_not_stored(client, name: str) -> None:
    """After a refused create: no such function, and it is not listed."""
    expect_error(client.get_function, FunctionName=name, code="ResourceNotFoundException", status=404)
    names = {f["FunctionName"] for f in list_all_functions(client)}
    assert name not in names, f"refused function {name} is listed"


def assert_no_blob(data_dir: Path, zip_bytes: bytes) -> None:
    """A refused code package left no blob in the content-addressed store."""
    p = blob_path(data_dir, zip_bytes)
    assert not p.exists(), f"refused code left a blob behind: {p}"


# ---------------------------------------------------------------------------
# Invocations


@dataclass
class Invocation:
    """What boto3's invoke() returned, decoded."""
    status: int
    payload: bytes
    function_error: str | None
    log: str | None  # the decoded X-Amz-Log-Result, if any
    executed_version: str | None
    request_id: str
    response: dict

    def json(self):
        return json.loads(self.payload.decode("utf-8"))

    @property
    def report(self) -> str:
        """The log tail's REPORT line."""
        assert self.log is not None, "no log tail (invoke with tail=True)"
        lines = [ln for ln in self.log.splitlines() if ln.startswith("REPORT RequestId:")]
        assert lines, f"no REPORT line in the log tail:\n{self.log}"
        return lines[-1]

    @property
    def cold(self) -> bool:
        """Whether this invocation initialised its sandbox (Init Duration in REPORT)."""
        return "Init Duration:" in self.report

    @property
    def placement(self) -> str | None:
        """`X-Hearth-Placement`: where the sandbox that served it came from."""
        return self.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-hearth-placement")

    def describe(self) -> str:
        return (f"status={self.status} error={self.function_error} version={self.executed_version} "
                f"placement={self.placement} "
                f"payload={self.payload[:600]!r}\nlog:\n{self.log}")


NO_PAYLOAD = object()  # invoke without a body (the handler then gets {})


def invoke(client, name: str, payload: object = NO_PAYLOAD, *, qualifier: str | None = None, tail: bool = True,
           client_context: str | None = None, raw_payload: bytes | None = None, **kw) -> Invocation:
    """boto3 invoke (RequestResponse): `payload` is JSON-encoded (None is
    `null`; leave it out to send no body) unless `raw_payload` gives the exact bytes."""
    args: dict = {"FunctionName": name}
    if raw_payload is not None:
        args["Payload"] = raw_payload
    elif payload is not NO_PAYLOAD:
        args["Payload"] = json.dumps(payload).encode()
    if qualifier is not None:
        args["Qualifier"] = qualifier
    if tail:
        args["LogType"] = "Tail"
    if client_context is not None:
        args["ClientContext"] = client_context
    args.update(kw)
    r = client.invoke(**args)
    body = r["Payload"].read()
    log = base64.b64decode(r["LogResult"]).decode("utf-8", errors="replace") if r.get("LogResult") else None
    return Invocation(
        status=r["StatusCode"], payload=body, function_error=r.get("FunctionError"), log=log,
        executed_version=r.get("ExecutedVersion"), request_id=r["ResponseMetadata"]["RequestId"], response=r,
    )


def invoke_ok(client, name: str, payload: object = NO_PAYLOAD, **kw) -> Invocation:
    """An invocation that must succeed (200, no function error); returns it."""
    inv = invoke(client, name, payload, **kw)
    assert inv.status == 200 and inv.function_error is None, inv.describe()
    return inv


def invoke_error(client, name: str, payload: object = NO_PAYLOAD, **kw) -> tuple[Invocation, dict]:
    """An invocation that must end in a function error; returns it and its body."""
    inv = invoke(client, name, payload, **kw)
    assert inv.status == 200, inv.describe()
    assert inv.function_error == "Unhandled", inv.describe()
    body = inv.json()
    assert isinstance(body, dict), inv.describe()
    return inv, body


REPORT_RE = (
    r"^REPORT RequestId: (?P<id>[0-9a-f-]{36})\tDuration: \d+(\.\d+)? ms\tBilled Duration: \d+ ms\t"
    r"Memory Size: (?P<mem>\d+) MB\tMax Memory Used: (?P<used>\d+) MB\t(Init Duration: \d+(\.\d+)? ms\t)?$"
)


def assert_log_frame(inv: Invocation, *, version: str = "$LATEST", memory_mb: int | None = None,
                     min_used_mb: int = 0) -> list[str]:
    """The log tail reads START / output / END / REPORT for this invocation's
    request id; returns the lines between START and END."""
    import re

    assert inv.log is not None, "no log tail"
    lines = inv.log.splitlines()
    rid = inv.request_id
    starts = [i for i, ln in enumerate(lines) if ln.startswith(f"START RequestId: {rid}")]
    ends = [i for i, ln in enumerate(lines) if ln == f"END RequestId: {rid}"]
    assert starts, f"no START line for {rid}:\n{inv.log}"
    assert lines[starts[-1]] == f"START RequestId: {rid} Version: {version}", lines[starts[-1]]
    assert ends and ends[-1] > starts[-1], f"no END line after START for {rid}:\n{inv.log}"
    m = re.match(REPORT_RE, inv.report)
    assert m, f"REPORT line not as Lambda writes it: {inv.report!r}"
    assert m.group("id") == rid
    if memory_mb is not None:
        assert int(m.group("mem")) == memory_mb, inv.report
    assert int(m.group("used")) >= min_used_mb, inv.report
    return lines[starts[-1] + 1:ends[-1]]


# ---------------------------------------------------------------------------
# Function code of the invoke and isolation suites (tests/e2e/functions/)

FUNCTIONS_DIR = Path(__file__).resolve().parent / "functions"
NODE_ABSENT = "no node on this host (/usr/bin/node is absent): the nodejs cases need it"


@dataclass(frozen=True)
class Lang:
    """A language the invoke suite runs each case in."""
    key: str       # "python" | "node"
    runtime: str   # e.g. python3.11, nodejs20.x
    module: str    # the handler's module: "app" | "index"
    filename: str  # "app.py" | "index.js"
    source: str    # the suite's function (functions/invoke_app.*)

    @property
    def handler(self) -> str:
        return f"{self.module}.handler"

    def zip(self, source: str | None = None, extra: Mapping[str, bytes | str] | None = None) -> bytes:
        files: dict[str, bytes | str] = {self.filename: source if source is not None else self.source,
                                         "nonce.txt": nonce()}
        files.update(extra or {})
        return make_zip(files)


def lang(key: str) -> Lang:
    if key == "python":
        return Lang("python", PY_RUNTIME, "app", "app.py", (FUNCTIONS_DIR / "invoke_app.py").read_text())
    if key == "node":
        if NODE_RUNTIME is None:
            pytest.skip(NODE_ABSENT)
        return Lang("node", NODE_RUNTIME, "index", "index.js", (FUNCTIONS_DIR / "invoke_app.js").read_text())
    raise ValueError(key)


# Parametrize a test over both languages; node is skipped (with the reason
# printed by -rs) only when the host has no node.
LANGS = [
    pytest.param("python", id="python"),
    pytest.param("node", id="node", marks=pytest.mark.skipif(NODE_RUNTIME is None, reason=NODE_ABSENT)),
]


# ---------------------------------------------------------------------------
# Prometheus text (GET /metrics)


@dataclass
class Metrics:
    """Samples of a Prometheus text exposition: (name, labels) -> value."""
    samples: list  # [(name, {label: value}, float)]

    @classmethod
    def parse(cls, text: str) -> "Metrics":
        import re

        line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$')
        label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
        out = []
        for line in text.splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            m = line_re.match(line.strip())
            assert m, f"not a Prometheus sample line: {line!r}"
            labels = {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in label_re.findall(m.group(3) or "")}
            out.append((m.group(1), labels, float(m.group(4))))
        return cls(out)

    def names(self) -> set:
        return {n for n, _, _ in self.samples}

    def get(self, name: str, **labels: str) -> float | None:
        """The value of the one sample `name` whose labels include `labels`
        (None if there is none; the sum if several match)."""
        vals = [v for n, ls, v in self.samples if n == name and all(ls.get(k) == x for k, x in labels.items())]
        return sum(vals) if vals else None

    def value(self, name: str, **labels: str) -> float:
        """Like get, 0 when absent (counters not yet incremented)."""
        v = self.get(name, **labels)
        return 0.0 if v is None else v
