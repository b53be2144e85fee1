"""`hearth bench --quick` end to end: it runs every section against nodes it
starts itself, writes a report, and `hearth bench --validate` accepts it.

Only the report's shape is checked, never a speed: the sections exist, every
scenario has samples and finite percentiles, every figure is finite, every
chart is an SVG file, and every baseline that could not run is skipped with a
reason. The bench runs in a session of its own, killed as a whole if it
outlives its bound, so no node it started can outlive the test.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from hearth_e2e import hearth_bin

BENCH_TIMEOUT_S = 600  # --quick takes well under 2 minutes; this is a bound
VALIDATE_TIMEOUT_S = 60

SECTIONS = {
    "warm": ["direct-c1", "hearth-c1", "direct-c2", "hearth-c2", "direct-c8", "hearth-c8"],
    "first-invoke": ["runtime-warm", "provisioned", "provisioned-warm", "shell-warm", "cold"],
    "density": [],
    "policy-replay": [],
    "async": ["accept-idle", "accept-c8", "start-after-202"],
    "vm": [
        "floor-create", "vm-create", "floor-first-run", "vm-boot", "floor-exit", "vm-exit",
        "in-process", "fork-restore", "fork", "reset", "reset-rerun",
    ],
    "engine": ["native", "inprocess-wasmi", "inprocess-aot", "vm-wasmi", "vm-aot"],
    # Measured where `hearth runtimes install python` has run (the bench's
    # default data directory); here it says why not.
    "python": [],
}
VM_FIGURES = {"cow-page", "fork-pages", "forks-alive-ms", "forks-alive-memavailable", "accounting-error", "accounting-cost"}
# Measured, or skipped with the reason (a host without bwrap, crun or node).
PEERS = {"first-invoke": ["fork-exec", "bwrap", "crun", "node-runtime-warm"], "warm": ["runtime-api"]}


def run_hearth(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """`hearth ARGS` with no HEARTH_* variables (as `HearthServer.cli` runs
    it), in a new session; on timeout the whole session is killed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    proc = subprocess.Popen(
        [str(hearth_bin()), *args], env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"hearth {' '.join(args)} ran over {timeout} s\nstdout: {out}\nstderr: {err[-4000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "report"
    cp = run_hearth("bench", "--quick", "--out", str(out), timeout=BENCH_TIMEOUT_S)
    assert cp.returncode == 0, f"hearth bench exited {cp.returncode}\nstdout: {cp.stdout}\nstderr: {cp.stderr[-4000:]}"
    for title in ("== Warm invoke ==", "== First invoke of a fresh function ==", "== Asynchronous invocation =="):
        assert title in cp.stdout, cp.stdout
    assert "report.md" in cp.stdout, cp.stdout
    return out


@pytest.fixture(scope="module")
def report(report_dir: Path) -> dict:
    return json.loads((report_dir / "report.json").read_text())


def finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def test_validate_accepts_the_report(report_dir: Path):
    cp = run_hearth("bench", "--validate", str(report_dir), timeout=VALIDATE_TIMEOUT_S)
    assert cp.returncode == 0, (cp.stdout, cp.stderr)


def test_validate_refuses_a_report_missing_a_chart(report_dir: Path, tmp_path: Path):
    broken = tmp_path / "broken"
    shutil.copytree(report_dir, broken)
    chart = sorted((broken / "charts").glob("*.svg"))[0]
    chart.unlink()
    cp = run_hearth("bench", "--validate", str(broken), timeout=VALIDATE_TIMEOUT_S)
    assert cp.returncode != 0, (cp.stdout, cp.stderr)
    assert chart.name in cp.stderr, cp.stderr


def test_every_section_is_there(report: dict):
    assert report["quick"] is True
    assert isinstance(report["machine"], dict)
    ids = [s["id"] for s in report["sections"]]
    assert sorted(ids) == sorted(SECTIONS), ids


def test_every_scenario_has_numbers(report: dict):
    for section in report["sections"]:
        have = {sc["id"] for sc in section["scenarios"]}
        skipped = {sk["id"] for sk in section["skipped"]}
        if section["id"] == "vm" and "vm" in skipped:
            # A host without /dev/kvm: the whole section says why.
            assert not os.path.exists("/dev/kvm"), section["skipped"]
            continue
        want = SECTIONS[section["id"]]
        if section["id"] == "engine" and "engine-vm" in skipped:
            # No /dev/kvm: the in-process and native rows only.
            assert not os.path.exists("/dev/kvm"), section["skipped"]
            want = [i for i in want if not i.startswith("vm-")]
        missing = [i for i in want if i not in have]
        assert not missing, (section["id"], missing, have)
        for peer in PEERS.get(section["id"], []):
            assert peer in have or peer in skipped, (section["id"], peer)
        for sc in section["scenarios"]:
            m = sc["summary"]
            assert m["count"] > 0, (section["id"], sc["id"])
            assert len(sc["samples"]) == m["count"], (section["id"], sc["id"])
            for key in ("p50", "p90", "p99", "max"):
                assert finite(m[key]), (section["id"], sc["id"], key, m[key])
        for fig in section["figures"]:
            assert finite(fig["value"]), (section["id"], fig)


def test_figures_and_curves(report: dict):
    by_id = {s["id"]: s for s in report["sections"]}
    if os.path.exists("/dev/kvm"):
        vm = {f["id"] for f in by_id["vm"]["figures"]}
        assert VM_FIGURES <= vm, vm
    warm = {f["id"] for f in by_id["warm"]["figures"]}
    assert {"throughput-hearth-c8", "throughput-direct-c8"} <= warm, warm
    density = {f["id"] for f in by_id["density"]["figures"]}
    assert {"pss", "private", "memavailable-drop", "fit-24g-pss"} <= density, density
    assert {f["id"] for f in by_id["async"]["figures"]} >= {"accepted-per-s"}
    curves = by_id["policy-replay"]["curves"]
    assert curves, "no replay curves"
    for c in curves:
        assert c["points"], c["policy"]
        for p in c["points"]:
            for key in ("cold_start_pct", "p75_function_cold_rate", "idle_gb_s"):
                assert finite(p[key]), (c["policy"], key, p)


def test_skips_have_reasons(report: dict):
    for section in report["sections"]:
        for sk in section["skipped"]:
            assert isinstance(sk.get("reason"), str) and sk["reason"].strip(), (section["id"], sk)


def test_every_chart_is_an_svg_file(report: dict, report_dir: Path):
    md = (report_dir / "report.md").read_text()
    files = [c["file"] for s in report["sections"] for c in s["charts"]]
    assert files, "no charts"
    for f in files:
        svg = (report_dir / "charts" / f).read_text()
        assert svg.lstrip().startswith("<svg"), f
        assert f"(charts/{f})" in md, f
    kinds = {c["kind"]["type"] for s in report["sections"] for c in s["charts"]}
    assert kinds == {"latency-cdf", "replay-curves"}, kinds
