//! What AWS should hold for a project, derived from its declaration alone.

use serde_json::Value;
use strata_aws::TagMap;
use strata_core::domain::Project;
use strata_core::policy::{self, InferenceScope, OidcTrust, TemplateError};

use crate::ReconcilerConfig;

pub const MANAGED_BY: &str = "strata:managed-by";
pub use strata_core::domain::{ENVIRONMENT_TAG, PROJECT_TAG};
pub const MANAGED_BY_VALUE: &str = "strata";
/// The one inline policy on a project role.
pub const INFERENCE_POLICY_NAME: &str = "strata-inference";
/// Stands in for the Mantle project id in a plan before the project exists.
pub const PENDING_MANTLE_ID: &str = "proj_pending";

pub struct Desired {
    pub region: String,
    /// `aws`, `aws-us-gov`: the first field of the project's ARNs.
    pub partition: &'static str,
    pub mantle_name: String,
    pub mantle_tags: TagMap,
    /// The Mantle project's `data_retention.mode` (`none` for a zdr project).
    pub retention_mode: &'static str,
    pub role_name: String,
    pub role_path: String,
    pub role_tags: TagMap,
    /// Tags strata puts on the project's extra resources.
    pub resource_tags: TagMap,
}

/// The three tags that mark what strata owns and for which project.
pub fn ownership_tags(project: &Project) -> TagMap {
    TagMap::from([
        (MANAGED_BY.to_owned(), MANAGED_BY_VALUE.to_owned()),
        (PROJECT_TAG.to_owned(), project.id.to_string()),
        (ENVIRONMENT_TAG.to_owned(), project.environment.to_string()),
    ])
}

/// True when the tags say strata made this for this project.
pub fn owned_by(tags: &TagMap, project: &Project) -> bool {
    tags.get(MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_VALUE)
        && tags.get(PROJECT_TAG) == Some(&project.id.to_string())
}

impl Desired {
    pub fn of(project: &Project) -> Self {
        let mut tags = ownership_tags(project);
        tags.extend(project.tags.clone());
        let mut resource_tags = project.tags.clone();
        resource_tags.insert(PROJECT_TAG.to_owned(), project.id.to_string());
        resource_tags.insert(ENVIRONMENT_TAG.to_owned(), project.environment.to_string());
        Self {
            region: project.region.to_string(),
            partition: project.region.partition(),
            mantle_name: format!("strata-{}-{}", project.environment, project.name),
            mantle_tags: tags.clone(),
            retention_mode: project.data_retention.mantle_mode().as_str(),
            role_name: policy::role_name(project.environment, &project.name, project.id),
            role_path: policy::role_path(project.environment),
            role_tags: tags,
            resource_tags,
        }
    }
}

/// The project role's inline policy for a given Mantle project and account.
pub fn inference_policy(
    project: &Project,
    account: &str,
    mantle_id: &str,
) -> Result<Value, TemplateError> {
    policy::inference_policy(&InferenceScope {
        account_id: account,
        region: project.region,
        mantle_project_id: mantle_id,
        models: &project.allowed_models,
    })
}

/// The trust policy: the configured principals and OIDC workloads, or, when
/// neither is configured, the account's root.
pub fn trust_policy(
    config: &ReconcilerConfig,
    project: &Project,
    account: &str,
) -> Result<Value, TemplateError> {
    let mut principals = config.trusted_principals.clone();
    let subject = config
        .trusted_oidc_subject
        .replace("{environment}", project.environment.as_str())
        .replace("{project}", project.name.as_str());
    let oidc = config
        .trusted_oidc_provider
        .as_deref()
        .map(|provider_arn| OidcTrust {
            provider_arn,
            subject: &subject,
        });
    if principals.is_empty() && oidc.is_none() {
        principals.push(format!(
            "arn:{}:iam::{account}:root",
            project.region.partition()
        ));
    }
    policy::trust_policy(&principals, oidc.as_ref())
}

pub fn mantle_arn(project: &Project, account: &str, id: &str) -> String {
    policy::mantle_project_arn(project.region, account, id)
}
