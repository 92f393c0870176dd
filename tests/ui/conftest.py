"""`strata serve` with projects and Cost Explorer figures for the browser test.

The figures arrive the way production gets them: answers seeded in moto's Cost
Explorer, then `strata costs refresh` against the same database. Needs
STRATA_TEST_MOTO_URL (scripts/test starts moto), the debug `strata` binary and Debian's
Chromium (scripts/test installs it; STRATA_CHROMIUM overrides the path).
"""

import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from strata_helpers import free_port, http, wait_until  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
STRATA = os.environ.get("STRATA_BIN", str(ROOT / "target/debug/strata"))
CHROMIUM = os.environ.get("STRATA_CHROMIUM", "/usr/bin/chromium")
# Screenshots land here (scripts/test prints the path).
SHOTS = ROOT / "target" / "ui-screenshots"


def moto_lock_path(moto):
    """The directory the Rust tests take as moto's Cost Explorer lock
    (strata_testkit::moto::lock_cost_results): moto hands queued answers to whichever
    request comes next, so one seeder at a time."""
    name = "".join(c if c.isalnum() else "-" for c in moto)
    return Path(tempfile.gettempdir()) / f"strata-moto-ce-{name}"


class Site:
    def __init__(self, workdir: Path):
        self.moto = os.environ.get("STRATA_TEST_MOTO_URL")
        if not self.moto:
            raise RuntimeError(
                "STRATA_TEST_MOTO_URL is not set: run scripts/test (it starts moto), or start "
                ".venv/bin/moto_server -H 127.0.0.1 -p 5055 and export STRATA_TEST_MOTO_URL"
            )
        if not os.access(STRATA, os.X_OK):
            raise RuntimeError(f"{STRATA} is missing: cargo build --bin strata (scripts/test does)")
        if not os.access(CHROMIUM, os.X_OK):
            raise RuntimeError(
                f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/test does), "
                "or set STRATA_CHROMIUM"
            )
        self.workdir = workdir
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "STRATA_DATABASE_URL": f"sqlite://{workdir}/strata.db?mode=rwc",
            "STRATA_LISTEN": f"127.0.0.1:{port}",
            "STRATA_SERVE_PROXY": "false",
            "STRATA_RECONCILER": "false",
            "STRATA_COST_REFRESH_INTERVAL_SECS": "0",
            "STRATA_COST_TAG_KEYS": "CostCenter",
            "STRATA_LOG": "warn",
            "AWS_ENDPOINT_URL": self.moto,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        self.log = open(workdir / "serve.log", "w")
        self.proc = subprocess.Popen(
            [STRATA, "serve"], cwd=workdir, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        wait_until(lambda: (workdir / "strata-admin.token").exists(), 30, "strata serve's first start")
        wait_until(lambda: http("GET", f"{self.url}/readyz")[0] == 200, 30, "strata serve")
        self.admin = (workdir / "strata-admin.token").read_text().strip()

    def api(self, method, path, body=None):
        return http(method, f"{self.url}/api/v1{path}", self.admin, body)

    def mint(self, subject, role):
        out = subprocess.run(
            [STRATA, "token", "mint", "--subject", subject, "--role", role, "--ttl", "1h"],
            cwd=self.workdir, env=self.env, capture_output=True, text=True, check=True,
        )
        return out.stdout.strip().splitlines()[-1]

    def project(self, name, team, **extra):
        status, p = self.api(
            "POST", "/projects",
            {"name": name, "environment": "prod", "team": team, "region": "us-east-1",
             "allowed_models": ["openai.gpt-oss-120b"], **extra},
        )
        assert status == 201, p
        return p

    def refresh_costs(self, by_project, by_cost_center):
        """Seeds moto with one answer per tag key (in the order the refresh asks) and
        runs `strata costs refresh`."""
        lock = moto_lock_path(self.moto)
        deadline = time.monotonic() + 60
        while True:
            try:
                lock.mkdir()
                break
            except FileExistsError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{lock} is held; if no test runs, remove it")
                time.sleep(0.05)
        try:
            body = json.dumps({"results": [by_project, by_cost_center]}).encode()
            req = urllib.request.Request(
                f"{self.moto}/moto-api/static/ce/cost-and-usage-results", data=body, method="POST",
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=10) as r:
                assert r.status == 201
            out = subprocess.run(
                [STRATA, "costs", "refresh", "--cost-history-days", "20",
                 # A service name of its own: moto keys answers by the request body.
                 "--cost-services", f"strata-ui-test-{os.getpid()}-{time.time_ns()}"],
                cwd=self.workdir, env=self.env, capture_output=True, text=True,
            )
            assert out.returncode == 0, out.stdout + out.stderr
            return out.stdout
        finally:
            lock.rmdir()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def cost_results(days, groups_by_day, key):
    """One `GetCostAndUsage` answer: per day, (environment, value, dollars) groups."""
    return {
        "GroupDefinitions": [
            {"Type": "TAG", "Key": "strata:environment"}, {"Type": "TAG", "Key": key},
        ],
        "ResultsByTime": [
            {
                "TimePeriod": {"Start": str(d), "End": str(d + datetime.timedelta(days=1))},
                "Total": {},
                "Groups": [
                    {"Keys": [f"strata:environment${env}", f"{key}${value}"],
                     "Metrics": {"UnblendedCost": {"Amount": amount, "Unit": "USD"}}}
                    for env, value, amount in groups_by_day(d)
                ],
                "Estimated": False,
            }
            for d in days
        ],
        "DimensionValueAttributes": [],
    }


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    s = Site(tmp_path_factory.mktemp("ui"))
    yield s
    s.stop()
