"""The deployment files as a platform team would apply them: the container image
definition passes hadolint; every overlay renders with `kubectl kustomize` and validates
against Kubernetes' schemas (kubernetes-validate, strict); the rendered objects carry
what production needs (probes, resources, non-root, PDBs, an HPA for the proxy, network
policies, scrape annotations, IRSA roles, a migration Job); and every setting the README
documents is either set in the manifests or named there with the reason it is not."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ["dev", "staging", "prod"]
KUBERNETES_VERSION = "1.32.0"
VENV_BIN = Path(sys.executable).parent


def tool(name):
    path = shutil.which(name) or (VENV_BIN / name if (VENV_BIN / name).exists() else None)
    if path is None:
        pytest.fail(f"{name} is missing: scripts/test installs it (kubectl from Debian, the rest from requirements-test.txt)")
    return str(path)


def render(overlay):
    out = subprocess.run(
        [tool("kubectl"), "kustomize", str(DEPLOY / "kubernetes" / "overlays" / overlay)],
        capture_output=True, text=True, check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def objects(overlay):
    return [d for d in yaml.safe_load_all(render(overlay)) if d]


def by_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_the_dockerfile_passes_hadolint():
    out = subprocess.run([tool("hadolint"), str(DEPLOY / "Dockerfile")], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?$", text, re.M)
    assert stages[0][1] == "build", stages
    # `docker build` without --target builds the last stage: strata's runtime image.
    last_image, last_name = stages[-1]
    assert last_image.startswith("gcr.io/distroless/") and not last_name, stages
    final = text[text.rindex("\nFROM "):]
    assert re.search(r"^USER 65532", final, re.M), "runs as a non-root user"
    assert "HEALTHCHECK" in final and 'ENTRYPOINT ["/usr/local/bin/strata"]' in final


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_renders_and_validates(overlay, tmp_path):
    rendered = tmp_path / f"{overlay}.yaml"
    rendered.write_text(render(overlay))
    out = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "--quiet", "-k", KUBERNETES_VERSION, str(rendered)],
        capture_output=True, text=True, check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_has_what_production_needs(overlay):
    docs = objects(overlay)
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {f"strata-{overlay}"}
    deployments = by_kind(docs, "Deployment")
    assert set(deployments) == {"strata-control-plane", "strata-proxy"}
    for name, d in deployments.items():
        pod = d["spec"]["template"]
        assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true", name
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True, name
        (container,) = pod["spec"]["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert {"requests", "limits"} <= set(container["resources"]), name
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
        # The proxy runs the proxy-only image (deploy/Dockerfile `--target proxy`).
        image = "strata-proxy" if name == "strata-proxy" else "strata"
        assert container["image"].startswith(f"ghcr.io/example/{image}:"), name
        # The generated ConfigMap (name with its content hash) is the one referenced.
        (ref,) = [e["configMapRef"]["name"] for e in container["envFrom"]]
        assert ref in by_kind(docs, "ConfigMap"), ref
    assert deployments["strata-control-plane"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["serve"]
    assert deployments["strata-proxy"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["proxy"]
    assert set(by_kind(docs, "PodDisruptionBudget")) == set(deployments)
    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "strata-proxy"
    assert set(by_kind(docs, "NetworkPolicy")) >= set(deployments)
    job = by_kind(docs, "Job")["strata-migrate"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate", "up"]
    for name, account in by_kind(docs, "ServiceAccount").items():
        arn = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        # strata's own roles sit outside /strata/, the path of the roles it manages.
        assert re.fullmatch(rf"arn:aws:iam::\d{{12}}:role/strata-system/strata-{overlay}-[a-z-]+", arn), arn
    (config,) = by_kind(docs, "ConfigMap").values()
    assert config["data"]["STRATA_MIGRATE_ON_START"] == "false", "the Job migrates, not the replicas"
    assert config["data"]["STRATA_SERVE_PROXY"] == "false", "proxies are their own Deployment"
    if overlay == "prod":
        assert deployments["strata-control-plane"]["spec"]["replicas"] >= 2
        assert hpa["spec"]["minReplicas"] >= 2


def readme_settings():
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Configuration"):text.index("## Commands")]
    names = set()
    for row in table.splitlines():
        if not row.startswith("| `"):
            continue
        first = row.split("|")[1]
        names |= set(re.findall(r"STRATA_[A-Z0-9_]+", first))
        # `STRATA_KEY_MAX_DAYS_DEV`, `_STAGING`, `_PROD`
        base = re.findall(r"(STRATA_[A-Z0-9_]+?)_[A-Z]+`", first)
        for suffix in re.findall(r"`(_[A-Z0-9_]+)`", first):
            if base:
                names.add(base[0] + suffix)
    return {n for n in names if not n.startswith("STRATA_TEST_")}


def test_every_readme_setting_is_set_or_accounted_for():
    settings = readme_settings()
    assert len(settings) > 50, settings
    texts = "\n".join(p.read_text() for p in (DEPLOY / "kubernetes").rglob("*") if p.is_file())
    missing = sorted(n for n in settings if not re.search(rf"\b{n}\b", texts))
    assert not missing, f"settings in the README but nowhere in deploy/kubernetes: {missing}"


def test_the_compose_stack_is_wired_like_production():
    """No compose binary can be installed here, so this reads the file: the services
    the local stack needs, images pinned, strata built from deploy/Dockerfile, the
    migration before the control plane, two proxies sharing Redis, loopback ports."""
    import base64

    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "moto", "fake-mantle", "migrate", "control-plane", "proxy-a", "proxy-b"} <= set(services)
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", (DEPLOY / "Dockerfile").read_text(), re.M))
    for name, service in services.items():
        if "build" in service:
            assert service["build"]["dockerfile"] == "deploy/Dockerfile", name
            assert service["build"].get("target", "default") in stages | {"default"}, name
        else:
            image = service["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert services["migrate"]["command"] == ["migrate", "up"]
    control = services["control-plane"]
    assert control["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert control["environment"]["STRATA_MIGRATE_ON_START"] == "false"
    assert control["environment"]["STRATA_SERVE_PROXY"] == "false"
    redis_urls = {services[p]["environment"]["STRATA_REDIS_URL"] for p in ("proxy-a", "proxy-b")}
    assert len(redis_urls) == 1, "both proxies count limits in one Redis"
    for proxy in ("proxy-a", "proxy-b"):
        assert services[proxy]["command"] == ["proxy"]
        assert services[proxy]["build"]["target"] == "proxy", "the proxy-only image"
        assert services[proxy]["depends_on"]["control-plane"]["condition"] == "service_healthy"
    key = control["environment"]["STRATA_KEY_ENCRYPTION_KEY"].split(":-", 1)[1].rstrip("}")
    assert len(base64.b64decode(key)) == 32


def test_every_alert_has_a_runbook_section():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "strata-alerts.yaml").read_text())
    operations = (ROOT / "docs" / "OPERATIONS.md").read_text()
    anchors = {h.strip().lower().replace(" ", "-") for h in re.findall(r"^#+ (.+)$", operations, re.M)}
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    assert len(alerts) >= 10
    for rule in alerts:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        page, anchor = rule["annotations"]["runbook"].split("#")
        assert page == "docs/OPERATIONS.md" and anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in anchors, f"no section for {rule['alert']} in docs/OPERATIONS.md"
