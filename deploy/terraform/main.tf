# strata's own IAM: two roles, assumed by the control plane's and the proxy's
# Kubernetes service accounts through IRSA.
#
# - The control plane manages project roles only: roles under the path /strata/ that
#   carry the tag strata:managed-by = strata (it sets the tag when it creates them and
#   never touches a role without it); Mantle projects; Cost Explorer reads and
#   cost-allocation tag activation; the tagging API.
# - The proxy may only assume those project roles (each project's role then limits
#   inference to the project's models).
#
# strata's own roles live under /strata-system/, outside the path it manages, so the
# control plane can never rewrite its own permissions.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account       = data.aws_caller_identity.current.account_id
  partition     = data.aws_partition.current.partition
  project_roles = "arn:${local.partition}:iam::${local.account}:role/strata/*"
  managed_tag   = "strata:managed-by"
}

data "aws_iam_policy_document" "trust" {
  for_each = toset(["control-plane", "proxy"])
  statement {
    sid     = "IrsaServiceAccount"
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_provider_url}:sub"
      values   = ["system:serviceaccount:${var.namespace}:strata-${each.key}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_provider_url}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "strata" {
  for_each             = toset(["control-plane", "proxy"])
  name                 = "strata-${var.environment}-${each.key}"
  path                 = "/strata-system/"
  assume_role_policy   = data.aws_iam_policy_document.trust[each.key].json
  max_session_duration = 3600
  tags                 = var.tags
}

data "aws_iam_policy_document" "control_plane" {
  # Creating a project role only with strata's tag on it.
  statement {
    sid       = "CreateProjectRoles"
    actions   = ["iam:CreateRole", "iam:TagRole"]
    resources = [local.project_roles]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/${local.managed_tag}"
      values   = ["strata"]
    }
  }
  # Everything else only on roles that already carry it.
  statement {
    sid = "ManageProjectRoles"
    actions = [
      "iam:GetRole",
      "iam:UpdateAssumeRolePolicy",
      "iam:ListRolePolicies",
      "iam:GetRolePolicy",
      "iam:PutRolePolicy",
      "iam:DeleteRolePolicy",
      "iam:UntagRole",
      "iam:DeleteRole",
    ]
    resources = [local.project_roles]
    condition {
      test     = "StringEquals"
      variable = "iam:ResourceTag/${local.managed_tag}"
      values   = ["strata"]
    }
  }
  # The Projects API has no resource-level scoping for these.
  statement {
    sid = "MantleProjects"
    actions = [
      "bedrock-mantle:ListProjects",
      "bedrock-mantle:GetProject",
      "bedrock-mantle:CreateProject",
      "bedrock-mantle:UpdateProject",
      "bedrock-mantle:ArchiveProject",
    ]
    resources = ["*"]
  }
  # Cost Explorer has no resource-level permissions.
  statement {
    sid = "CostExplorer"
    actions = [
      "ce:GetCostAndUsage",
      "ce:GetCostForecast",
      "ce:ListCostAllocationTags",
      "ce:UpdateCostAllocationTagsStatus",
    ]
    resources = ["*"]
  }
  # The Resource Groups Tagging API has no resource-level permissions either.
  statement {
    sid = "Tagging"
    actions = [
      "tag:GetResources",
      "tag:TagResources",
      "tag:UntagResources",
    ]
    resources = ["*"]
  }
}

data "aws_iam_policy_document" "proxy" {
  statement {
    sid       = "AssumeProjectRoles"
    actions   = ["sts:AssumeRole"]
    resources = [local.project_roles]
  }
}

resource "aws_iam_role_policy" "control_plane" {
  name   = "strata-control-plane"
  role   = aws_iam_role.strata["control-plane"].id
  policy = data.aws_iam_policy_document.control_plane.json
}

resource "aws_iam_role_policy" "proxy" {
  name   = "strata-proxy"
  role   = aws_iam_role.strata["proxy"].id
  policy = data.aws_iam_policy_document.proxy.json
}
