//! The IAM documents strata renders for a project, from the templates in
//! `policies/iam/`, and the project's role name. Pure functions: the reconciler
//! decides when to write them.

mod canonical;
mod routes;
mod template;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::{Environment, ModelId, ProjectSlug, Region};
pub use canonical::{CanonicalError, canonical, parse_policy, sort_keys};
pub use routes::{MantleRoute, MantleRoutes, RoutesError, mantle_routes};
pub use template::{TemplateError, render};

const INFERENCE_TEMPLATE: &str = include_str!("../../../policies/iam/inference-policy.json");
const TRUST_TEMPLATE: &str = include_str!("../../../policies/iam/trust-policy.json");
const TRUST_OIDC_STATEMENT: &str = include_str!("../../../policies/iam/trust-policy-oidc.json");

/// IAM's limit on a role's inline policies, in characters without white space.
pub const MAX_INLINE_POLICY_CHARS: usize = 10_240;

/// What the inference policy is rendered from.
#[derive(Debug, Clone)]
pub struct InferenceScope<'a> {
    pub account_id: &'a str,
    pub region: Region,
    pub mantle_project_id: &'a str,
    pub models: &'a [ModelId],
}

/// The inline policy of a project's role: on the project's Mantle ARN, the actions
/// of `policies/mantle-routes.toml` — those that name a model limited to the
/// project's models — and nothing else.
pub fn inference_policy(scope: &InferenceScope<'_>) -> Result<Value, TemplateError> {
    let routes = mantle_routes()?;
    let (model_scoped, project_wide) = routes.grants();
    let models: Vec<&str> = scope.models.iter().map(ModelId::as_str).collect();
    let mut doc = render(
        INFERENCE_TEMPLATE,
        &[
            ("partition", json!(scope.region.partition())),
            ("region", json!(scope.region.as_str())),
            ("account_id", json!(scope.account_id)),
            ("mantle_project_id", json!(scope.mantle_project_id)),
            ("models", json!(models)),
            ("model_scoped_actions", json!(model_scoped)),
            ("project_actions", json!(project_wide)),
        ],
    )?;
    // IAM refuses a statement without actions.
    if let Some(Value::Array(statements)) = doc.get_mut("Statement") {
        statements.retain(|s| s["Action"].as_array().is_none_or(|a| !a.is_empty()));
    }
    Ok(doc)
}

/// A Mantle project's ARN, in the region's partition.
pub fn mantle_project_arn(region: Region, account_id: &str, mantle_project_id: &str) -> String {
    format!(
        "arn:{}:bedrock-mantle:{region}:{account_id}:project/{mantle_project_id}",
        region.partition()
    )
}

/// Workloads that assume a project role with web identity (EKS service accounts,
/// CI): the IAM OIDC provider and the `sub` this project's workloads present.
#[derive(Debug, Clone)]
pub struct OidcTrust<'a> {
    pub provider_arn: &'a str,
    pub subject: &'a str,
}

/// The role's trust policy: the AWS principals (role ARNs) allowed to assume it,
/// and, when given, workloads of an OIDC provider with the given subject.
pub fn trust_policy(
    aws_principals: &[String],
    oidc: Option<&OidcTrust<'_>>,
) -> Result<Value, TemplateError> {
    let mut doc = render(
        TRUST_TEMPLATE,
        &[("trusted_principals", json!(aws_principals))],
    )?;
    let mut statements = match doc.get_mut("Statement").map(Value::take) {
        Some(Value::Array(items)) if !aws_principals.is_empty() => items,
        _ => Vec::new(),
    };
    if let Some(oidc) = oidc {
        let host = oidc
            .provider_arn
            .split_once("oidc-provider/")
            .map_or(oidc.provider_arn, |(_, host)| host);
        statements.push(render(
            TRUST_OIDC_STATEMENT,
            &[
                ("oidc_provider_arn", json!(oidc.provider_arn)),
                ("oidc_provider_host", json!(host)),
                ("oidc_subject", json!(oidc.subject)),
            ],
        )?);
    }
    doc["Statement"] = Value::Array(statements);
    Ok(doc)
}

/// The size IAM counts: the document's characters without white space.
pub fn policy_size(document: &Value) -> usize {
    document
        .to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .count()
}

/// The inference policy's size before the project exists on AWS, with an account id
/// and a Mantle project id of the longest expected form, so a project accepted by the
/// API never meets IAM's limit later.
pub fn worst_case_inference_policy_size(
    region: Region,
    models: &[ModelId],
) -> Result<usize, TemplateError> {
    let scope = InferenceScope {
        account_id: "000000000000",
        region,
        mantle_project_id: "proj_00000000000000000000000000000000000000000000",
        models,
    };
    inference_policy(&scope).map(|p| policy_size(&p))
}

/// The project's IAM role name: `strata-{environment}-{name}-{8 hex of the project id}`,
/// at most 64 characters. The suffix keeps a new project that reuses an archived
/// project's name from colliding with the old role while it is being removed.
pub fn role_name(environment: Environment, name: &ProjectSlug, project_id: Uuid) -> String {
    let digest = Sha256::digest(project_id.as_bytes());
    let suffix: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("strata-{environment}-{name}-{suffix}")
}

/// The path every strata role lives under.
pub fn role_path(environment: Environment) -> String {
    format!("/strata/{environment}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models(ids: &[&str]) -> Vec<ModelId> {
        ids.iter()
            .map(|m| ModelId::parse(m).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }

    #[test]
    fn inference_policy_allows_exactly_the_projects_models() {
        let models = models(&[
            "openai.gpt-oss-120b",
            "mistral.mistral-large-3-675b-instruct",
        ]);
        let scope = InferenceScope {
            account_id: "123456789012",
            region: Region::EuWest1,
            mantle_project_id: "proj_abc123",
            models: &models,
        };
        let policy = inference_policy(&scope).unwrap_or_else(|e| panic!("{e}"));
        insta::assert_json_snapshot!("inference_policy", sort_keys(policy));
    }

    #[test]
    fn a_govcloud_policy_names_the_govcloud_partition() {
        let models = models(&["openai.gpt-oss-120b"]);
        let scope = InferenceScope {
            account_id: "123456789012",
            region: Region::UsGovWest1,
            mantle_project_id: "proj_gov1",
            models: &models,
        };
        let policy = inference_policy(&scope).unwrap_or_else(|e| panic!("{e}"));
        let arn = "arn:aws-us-gov:bedrock-mantle:us-gov-west-1:123456789012:project/proj_gov1";
        for statement in policy["Statement"].as_array().into_iter().flatten() {
            // CallWithBearerToken takes no resource but `*`.
            if statement["Sid"] != "MantleShortTermApiKeys" {
                assert_eq!(statement["Resource"], arn, "{policy}");
            }
        }
        assert_eq!(
            mantle_project_arn(Region::UsGovWest1, "123456789012", "proj_gov1"),
            arn
        );
    }

    #[test]
    fn trust_policy_lists_the_principals() {
        let policy = trust_policy(
            &["arn:aws:iam::123456789012:role/strata-proxy".to_owned()],
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        insta::assert_json_snapshot!("trust_policy", sort_keys(policy));
        let oidc = OidcTrust {
            provider_arn: "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC",
            subject: "system:serviceaccount:prod:checkout",
        };
        let policy = trust_policy(&[], Some(&oidc)).unwrap_or_else(|e| panic!("{e}"));
        insta::assert_json_snapshot!("trust_policy_oidc", sort_keys(policy));
    }

    #[test]
    fn role_names_fit_iam_and_differ_per_project() {
        let longest =
            ProjectSlug::parse(&"a".repeat(ProjectSlug::MAX_LEN)).unwrap_or_else(|e| panic!("{e}"));
        let name = role_name(Environment::Staging, &longest, Uuid::nil());
        assert_eq!(name.len(), 64, "{name}");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
        );
        let slug = ProjectSlug::parse("checkout").unwrap_or_else(|e| panic!("{e}"));
        let a = role_name(Environment::Prod, &slug, Uuid::now_v7());
        let b = role_name(Environment::Prod, &slug, Uuid::now_v7());
        assert_ne!(a, b);
        assert!(a.starts_with("strata-prod-checkout-"));
        assert_eq!(role_path(Environment::Dev), "/strata/dev/");
    }

    #[test]
    fn size_counts_characters_without_white_space() {
        assert_eq!(policy_size(&json!({"a": "b c"})), 10);
        let one =
            worst_case_inference_policy_size(Region::UsEast1, &models(&["openai.gpt-oss-20b"]))
                .unwrap_or_default();
        assert!(one > 300 && one < 1_000, "{one}");
    }
}
