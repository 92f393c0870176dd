"""The real processes the SDK suite talks to, started once per session:

- the fake Mantle (`fake-mantle`, Chat Completions with faults on demand),
- `strata serve` (control plane + reconciler against moto and the fake; its embedded
  proxy is replica A),
- `strata proxy` (replica B), following that control plane.

Both proxies count rate limits and budgets in one Redis (STRATA_TEST_REDIS_URL, default
the machine's at 127.0.0.1:6379; scripts/test starts one when none answers).

Needs STRATA_TEST_MOTO_URL (scripts/test starts moto) and the debug binaries
(scripts/test builds them; STRATA_BIN / FAKE_MANTLE_BIN override).
"""

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from strata_helpers import free_port, http, wait_until  # noqa: E402  (shared with tests/ui)

ROOT = Path(__file__).resolve().parents[2]
STRATA = os.environ.get("STRATA_BIN", str(ROOT / "target/debug/strata"))
FAKE_MANTLE = os.environ.get("FAKE_MANTLE_BIN", str(ROOT / "target/debug/fake-mantle"))


def redis_answers(url):
    """Whether a Redis at `redis://host:port[/db]` answers PING."""
    rest = url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, _, port = rest.partition(":")
    try:
        with socket.create_connection((host, int(port or 6379)), timeout=2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class Stack:
    def __init__(self, workdir: Path):
        moto = os.environ.get("STRATA_TEST_MOTO_URL")
        if not moto:
            raise RuntimeError(
                "STRATA_TEST_MOTO_URL is not set: run scripts/test (it starts moto), or start "
                ".venv/bin/moto_server -H 127.0.0.1 -p 5055 and export STRATA_TEST_MOTO_URL"
            )
        for binary in (STRATA, FAKE_MANTLE):
            if not os.access(binary, os.X_OK):
                raise RuntimeError(f"{binary} is missing: cargo build --bins (scripts/test does)")
        redis = os.environ.get("STRATA_TEST_REDIS_URL", "redis://127.0.0.1:6379")
        if not redis_answers(redis):
            raise RuntimeError(
                f"no Redis answers at {redis}: run scripts/test (it starts one), or start "
                "redis-server --port 6379 --save '' and/or export STRATA_TEST_REDIS_URL"
            )
        self.workdir = workdir
        self.procs = []
        mantle_port, self.control_port, proxy_a = free_port(), free_port(), free_port()
        self.mantle = f"http://127.0.0.1:{mantle_port}"
        self.control = f"http://127.0.0.1:{self.control_port}"
        self.env = {
            "AWS_ENDPOINT_URL": moto,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            # Scheduled cost refreshes would take Cost Explorer answers other tests
            # queued in the shared moto.
            "STRATA_COST_REFRESH_INTERVAL_SECS": "0",
            "STRATA_MANTLE_URL": f"{self.mantle}/{{region}}/v1",
            "STRATA_LOG": "info",
            "STRATA_PROXY_USAGE_FLUSH_SECS": "1",
            # Short, so the SDK's retry of a timeout is quick to test.
            "STRATA_PROXY_UPSTREAM_TIMEOUT_SECS": "2",
            "STRATA_REDIS_URL": redis,
            # This session's own keys in a Redis other runs may share.
            "STRATA_REDIS_KEY_PREFIX": f"strata-sdk-{uuid.uuid4().hex[:12]}",
        }
        # Every proxied call is authorized as AWS does: by the project role's policy in moto.
        self.spawn("fake-mantle", [FAKE_MANTLE, f"127.0.0.1:{mantle_port}", "--enforce-iam", moto], {})
        wait_until(lambda: http("GET", f"{self.mantle}/_fake/stats")[0] == 200, 10, "the fake Mantle")
        self.spawn(
            "serve",
            [STRATA, "serve"],
            {
                "STRATA_LISTEN": f"127.0.0.1:{self.control_port}",
                "STRATA_PROXY_LISTEN": f"127.0.0.1:{proxy_a}",
                "STRATA_DATABASE_URL": f"sqlite://{workdir}/strata.db?mode=rwc",
                "STRATA_COST_ALLOCATION_TAGS": "",
                "STRATA_RECONCILE_POLL_MS": "100",
            },
        )
        wait_until(lambda: (workdir / "strata-admin.token").exists(), 30, "strata serve's first start")
        self.admin = (workdir / "strata-admin.token").read_text().strip()
        self.proxies = [f"http://127.0.0.1:{proxy_a}", self.start_proxy()]
        for p in self.proxies:
            wait_until(lambda p=p: http("GET", f"{p}/readyz")[0] == 200, 20, f"the proxy at {p}")

    def spawn(self, name, argv, env):
        log = open(self.workdir / f"{name}-{len(self.procs)}.log", "w")
        proc = subprocess.Popen(
            argv, cwd=self.workdir, env={**os.environ, **self.env, **env},
            stdout=log, stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def start_proxy(self, extra_env=None):
        """Another `strata proxy` replica; returns its base URL."""
        port = free_port()
        self.last_proxy = self.spawn(
            "proxy",
            [STRATA, "proxy"],
            {
                "STRATA_PROXY_LISTEN": f"127.0.0.1:{port}",
                "STRATA_CONTROL_PLANE_URL": self.control,
                **(extra_env or {}),
            },
        )
        return f"http://127.0.0.1:{port}"

    def api(self, method, path, body=None):
        return http(method, f"{self.control}/api/v1{path}", self.admin, body)

    def project(self, models, name="sdk", **settings):
        """A project reconciled onto moto and the fake Mantle, and a key for it;
        `settings` go into the create (e.g. data_retention="standard")."""
        status, p = self.api(
            "POST",
            "/projects",
            {"name": f"{name}-{uuid.uuid4().hex[:8]}", "environment": "dev", "team": "sdk",
             "region": "us-east-1", "allowed_models": models, **settings},
        )
        assert status == 201, p
        wait_until(
            lambda: (self.api("GET", f"/projects/{p['id']}")[1].get("aws") or {}).get("mantle_project_id"),
            20, "the reconciler to provision the project",
        )
        return p["id"], self.key(p["id"])

    def token(self, subject, role):
        """A token from strata's own issuer (`strata token mint` on serve's database)."""
        out = subprocess.run(
            [STRATA, "token", "mint", "--subject", subject, "--role", role],
            cwd=self.workdir, capture_output=True, text=True, check=True,
            env={**os.environ, **self.env, "STRATA_DATABASE_URL": f"sqlite://{self.workdir}/strata.db?mode=rwc"},
        )
        return out.stdout.strip()

    def key(self, project_id, **body):
        status, k = self.api("POST", f"/projects/{project_id}/keys", {"name": "sdk", **body})
        assert status == 201, k
        return k

    def proxy_metrics(self, base):
        return http("GET", f"{base}/metrics")[1]

    def faults(self, **faults):
        status, _ = http("POST", f"{self.mantle}/_fake/faults", body=faults)
        assert status == 204

    def fake_stats(self):
        return http("GET", f"{self.mantle}/_fake/stats")[1]

    def stop(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("stack"))
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def clear_faults(stack):
    stack.faults()
    yield
    stack.faults()
