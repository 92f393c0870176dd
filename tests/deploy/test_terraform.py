"""strata's own IAM in deploy/terraform, checked without a Terraform binary (none can be
installed here): the module parses (python-hcl2), checkov finds nothing, and the
policies grant exactly the AWS actions strata's code calls — every one, and nothing
else — to the role that makes each call."""

import os
import re
import tomllib
import shutil
import subprocess
import sys
from pathlib import Path

import hcl2
import pytest

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "deploy" / "terraform"
AWS_SOURCES = ROOT / "aws" / "src"

# strata's name for a service → IAM's action prefix.
PREFIX = {"iam": "iam", "ce": "ce", "bedrock-mantle": "bedrock-mantle", "tagging": "tag", "sts": "sts"}
# bedrock-mantle's actions as AWS's Service Authorization Reference lists them
# ("Actions, resources, and condition keys for Amazon Bedrock Powered by AWS Mantle").
MANTLE_ACTIONS = {f"bedrock-mantle:{a}" for a in """
    ArchiveProject AssociateCustomizedModel CallWithBearerToken CancelFineTuningJob
    CancelInference CreateCustomizedModel CreateFile CreateFineTuningJob CreateInference
    CreateProject CreateReservation DeleteCustomizedModel DeleteFile DeleteInference
    DeleteReservation DisassociateCustomizedModel GetAccountDataRetention
    GetCustomizedModel GetFile GetFineTuningJob GetInference GetModel GetProject
    GetReservation ListCustomizedModelAssociations ListCustomizedModels ListFiles
    ListFineTuningJobs ListModels ListProjects ListReservations ListTagsForResource
    PutAccountDataRetention TagResource UntagResource UpdateProject UpdateReservation
""".split()}
# Calls no IAM permission is needed for.
NEEDS_NO_PERMISSION = {"sts:GetCallerIdentity"}
# Calls the proxy makes (assuming project roles); everything else is the control plane's.
PROXY_CALLS = {"sts:AssumeRole"}


def unquote(value):
    return value[1:-1] if isinstance(value, str) and value.startswith('"') and value.endswith('"') else value


def code_calls():
    """Every (service, operation) the aws crate counts, read from its `track` calls."""
    calls = set()
    for source in AWS_SOURCES.glob("*.rs"):
        text = source.read_text()
        consts = dict(re.findall(r'const ([A-Z_]+): &str = "([^"]+)";', text))
        if "crate::sigv4::MANTLE_SERVICE" in text:
            consts["SERVICE"] = "bedrock-mantle"
        for service, operation in re.findall(r'\.track\(\s*(SERVICE|"[a-z-]+")\s*,\s*([A-Z_]+|"[A-Za-z]+")', text):
            service = consts.get(service, unquote(service))
            operation = consts.get(operation, unquote(operation))
            calls.add(f"{PREFIX[service]}:{operation}")
    return calls


def policy_actions(name):
    module = hcl2.load((TERRAFORM / "main.tf").open())
    for block in module["data"]:
        documents = block.get('"aws_iam_policy_document"', {})
        if f'"{name}"' in documents:
            return {unquote(a) for s in documents[f'"{name}"']["statement"] for a in s["actions"]}
    raise AssertionError(f"no policy document {name} in main.tf")


def test_the_module_parses():
    for path in TERRAFORM.glob("*.tf"):
        assert hcl2.load(path.open()), path


def test_the_code_calls_are_found():
    calls = code_calls()
    # A few the reconciler, the cost ingester and the proxy certainly make.
    assert {"iam:CreateRole", "iam:PutRolePolicy", "bedrock-mantle:CreateProject",
            "ce:GetCostAndUsage", "tag:TagResources", "sts:AssumeRole"} <= calls, calls


def test_each_role_is_granted_exactly_what_strata_calls_with_it():
    calls = code_calls() - NEEDS_NO_PERMISSION
    control_plane = policy_actions("control_plane")
    proxy = policy_actions("proxy")
    assert control_plane == calls - PROXY_CALLS, (
        f"missing: {sorted(calls - PROXY_CALLS - control_plane)}; "
        f"granted but never called: {sorted(control_plane - (calls - PROXY_CALLS))}"
    )
    assert proxy == PROXY_CALLS


def test_every_mantle_action_strata_grants_is_one_aws_documents():
    """The project roles' actions (policies/mantle-routes.toml, rendered by strata) and the
    control plane's Mantle actions (Terraform) must be real IAM actions: a misspelt one
    grants nothing and fails only against AWS."""
    with (ROOT / "policies" / "mantle-routes.toml").open("rb") as f:
        routes = tomllib.load(f)
    project_role = {a for r in routes["route"] for a in r["actions"]} | set(routes["model_scoped_actions"])
    assert {"bedrock-mantle:CreateInference", "bedrock-mantle:GetInference"} <= project_role
    control_plane = {a for a in policy_actions("control_plane") if a.startswith("bedrock-mantle:")}
    assert control_plane, "the control plane manages Mantle projects"
    unknown = (project_role | control_plane) - MANTLE_ACTIONS
    assert not unknown, f"not bedrock-mantle actions AWS documents: {sorted(unknown)}"
    template = (ROOT / "policies" / "iam" / "inference-policy.json").read_text()
    assert "arn:{{partition}}:" in template and "arn:aws:" not in template, "ARNs follow the region's partition"
    assert "bedrock:" not in template, "strata never calls Bedrock runtime: no bedrock:InvokeModel* grant"


def test_project_role_actions_are_scoped_to_strata_managed_roles():
    module = hcl2.load((TERRAFORM / "main.tf").open())
    statements = next(
        b['"aws_iam_policy_document"']['"control_plane"']["statement"]
        for b in module["data"] if '"control_plane"' in b.get('"aws_iam_policy_document"', {})
    )
    for statement in statements:
        actions = [unquote(a) for a in statement["actions"]]
        if any(a.startswith("iam:") for a in actions):
            assert statement["resources"] == ["${local.project_roles}"], statement
            (condition,) = statement["condition"]
            assert "strata:managed-by" in unquote(condition["variable"]) or "managed_tag" in condition["variable"], statement
    text = (TERRAFORM / "main.tf").read_text()
    assert 'project_roles = "arn:${local.partition}:iam::${local.account}:role/strata/*"' in text
    assert 'path                 = "/strata-system/"' in text, "strata's own roles sit outside /strata/"


def test_checkov_finds_nothing():
    checkov = shutil.which("checkov") or str(Path(sys.executable).parent / "checkov")
    if not Path(checkov).exists():
        pytest.fail("checkov is missing: scripts/test installs it into .venv-checkov and puts it on PATH")
    # No network here: no guideline download, no mapping lookups.
    out = subprocess.run(
        [checkov, "-d", str(TERRAFORM), "--framework", "terraform", "--quiet", "--compact", "--skip-download"],
        capture_output=True, text=True, check=False, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
