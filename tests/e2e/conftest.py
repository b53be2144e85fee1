"""End-to-end fixtures: a real `hearth serve` process and real clients.

See hearth_e2e.py for the server wrapper and helpers. Every wait is bounded;
all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Iterable

import pytest

from hearth_e2e import WORK, HearthServer, unique_name


# ---------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def work_dir() -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    run = WORK / f"run-{os.getpid()}"
    # Drop the state of earlier runs (it can be large), but never that of a
    # run whose pytest process is still alive.
    for old in WORK.glob("run-*"):
        try:
            pid = int(old.name.split("-", 1)[1])
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(old, ignore_errors=True)
        except PermissionError:
            pass
    run.mkdir(parents=True)
    return run


@pytest.fixture(scope="session")
def start_server(work_dir: Path) -> Iterable[Callable[..., HearthServer]]:
    """Factory: start an extra server on its own (or a given) data dir.
    Every server it started is stopped at the end of the session."""
    started: list[HearthServer] = []

    def start(name: str | None = None, data_dir: Path | None = None, config: str | None = None) -> HearthServer:
        name = name or unique_name("srv")
        config_path = None
        if config is not None:
            config_path = work_dir / name / "hearth.toml"
            config_path.parent.mkdir(parents=True, exist_ok=True)
            config_path.write_text(config)
        srv = HearthServer(data_dir or work_dir / name / "data", work_dir / name / "server.log", config=config_path)
        started.append(srv)
        return srv.start()

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def hearth(work_dir: Path) -> Iterable[HearthServer]:
    srv = HearthServer(work_dir / "main" / "data", work_dir / "main" / "server.log")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def lam(hearth: HearthServer):
    """The dev account's boto3 lambda client."""
    return hearth.client()


@pytest.fixture(scope="session")
def lam_novalidate(hearth: HearthServer):
    """Same, without botocore's client-side parameter checks (so out-of-range
    values reach the server)."""
    return hearth.client(parameter_validation=False)


@pytest.fixture(scope="session")
def second_account(hearth: HearthServer) -> dict:
    """A second (non-admin) account created through the CLI:
    {AccountId, AccessKeyId, SecretAccessKey}."""
    cp = hearth.cli("accounts", "create", unique_name("second"), "--json")
    acct = json.loads(cp.stdout)
    for k in ("AccountId", "AccessKeyId", "SecretAccessKey"):
        assert isinstance(acct.get(k), str) and acct[k], (k, cp.stdout)
    return acct


@pytest.fixture
def fresh_account(hearth: HearthServer) -> dict:
    """A brand-new account (admin API) for tests that count things."""
    return hearth.create_account()


@pytest.fixture
def fresh_client(hearth: HearthServer, fresh_account: dict):
    return hearth.account_client(fresh_account)


@pytest.fixture(autouse=True)
def _server_log_on_failure(request, hearth: HearthServer):
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        sys.stderr.write("\n" + hearth.log_tail(40) + "\n")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


