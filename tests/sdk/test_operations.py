"""The alert rules in deploy/prometheus name metrics the real processes export: after
this test makes each kind of event happen once (a project reconciled, a chat, an
upstream failure, a 429), every metric an alert reads is on the control plane's or a
proxy's /metrics."""

import re
import time
from pathlib import Path

import openai
import yaml
from conftest import http

ROOT = Path(__file__).resolve().parents[2]
OSS = "openai.gpt-oss-20b"


def families(text):
    return set(re.findall(r"^# TYPE (\S+) ", text, re.M))


def test_alerts_read_metrics_strata_exports(stack):
    project_id, key = stack.project([OSS], name="alerts")
    status, _ = stack.api("PATCH", f"/projects/{project_id}", {"rate_limits": {"rpm": 1, "tpm": None}})
    assert status == 200
    time.sleep(1.5)  # the proxies follow the change within a second
    sdk = openai.OpenAI(base_url=f"{stack.proxies[0]}/v1", api_key=key["secret"], max_retries=0)
    stack.faults(fail_next=[500])
    try:
        sdk.chat.completions.create(model=OSS, messages=[{"role": "user", "content": "x"}])
    except openai.InternalServerError:
        pass
    for _ in range(2):
        try:
            sdk.chat.completions.create(model=OSS, messages=[{"role": "user", "content": "y"}])
        except openai.RateLimitError:
            pass
    exported = families(http("GET", f"{stack.control}/metrics")[1])
    for base in stack.proxies:
        exported |= families(stack.proxy_metrics(base))
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "strata-alerts.yaml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            for name in set(re.findall(r"\bstrata_[a-z_]+", rule["expr"])):
                family = re.sub(r"_(total|bucket|sum|count)$", "", name)
                assert family in exported, f"{rule['alert']} reads {name}, which nothing exports"
