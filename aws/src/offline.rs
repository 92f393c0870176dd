//! Stand-ins for AWS when strata has no credentials, so a plan can still show
//! what a first pass would create: an account where nothing exists yet.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::{
    AwsCalls, AwsClients, AwsError, CostAllocationTags, CostForecast, CostPage, CostQuery,
    CostTagStatus, CostUsage, ErrorKind, ForecastQuery, Iam, Identity, Mantle, MantleProject,
    MantleUpdate, NewRole, Role, TagMap, TaggedResource, Tagging,
};
use async_trait::async_trait;

struct Empty;

fn refuse(operation: &'static str) -> AwsError {
    AwsError::new(
        "offline",
        operation,
        ErrorKind::Denied,
        None,
        "AWS is not configured",
    )
}

#[async_trait]
impl Iam for Empty {
    async fn get_role(&self, _: &str) -> Result<Option<Role>, AwsError> {
        Ok(None)
    }
    async fn create_role(&self, _: &NewRole<'_>) -> Result<Role, AwsError> {
        Err(refuse("CreateRole"))
    }
    async fn update_trust_policy(&self, _: &str, _: &str) -> Result<(), AwsError> {
        Err(refuse("UpdateAssumeRolePolicy"))
    }
    async fn list_role_policies(&self, _: &str) -> Result<Vec<String>, AwsError> {
        Ok(Vec::new())
    }
    async fn get_role_policy(&self, _: &str, _: &str) -> Result<Option<String>, AwsError> {
        Ok(None)
    }
    async fn put_role_policy(&self, _: &str, _: &str, _: &str) -> Result<(), AwsError> {
        Err(refuse("PutRolePolicy"))
    }
    async fn delete_role_policy(&self, _: &str, _: &str) -> Result<(), AwsError> {
        Err(refuse("DeleteRolePolicy"))
    }
    async fn tag_role(&self, _: &str, _: &TagMap) -> Result<(), AwsError> {
        Err(refuse("TagRole"))
    }
    async fn untag_role(&self, _: &str, _: &[String]) -> Result<(), AwsError> {
        Err(refuse("UntagRole"))
    }
    async fn delete_role(&self, _: &str) -> Result<(), AwsError> {
        Err(refuse("DeleteRole"))
    }
}

#[async_trait]
impl Mantle for Empty {
    async fn list_projects(&self, _: &str) -> Result<Vec<MantleProject>, AwsError> {
        Ok(Vec::new())
    }
    async fn get_project(&self, _: &str, _: &str) -> Result<Option<MantleProject>, AwsError> {
        Ok(None)
    }
    async fn create_project(
        &self,
        _: &str,
        _: &str,
        _: &TagMap,
        _: &str,
    ) -> Result<MantleProject, AwsError> {
        Err(refuse("CreateProject"))
    }
    async fn set_data_retention(
        &self,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<MantleProject, AwsError> {
        Err(refuse("UpdateProject"))
    }
    async fn update_project(
        &self,
        _: &str,
        _: &str,
        _: &MantleUpdate,
    ) -> Result<MantleProject, AwsError> {
        Err(refuse("UpdateProject"))
    }
    async fn archive_project(&self, _: &str, _: &str) -> Result<(), AwsError> {
        Err(refuse("ArchiveProject"))
    }
}

#[async_trait]
impl CostAllocationTags for Empty {
    async fn statuses(&self, keys: &[String]) -> Result<BTreeMap<String, CostTagStatus>, AwsError> {
        Ok(keys
            .iter()
            .map(|k| (k.clone(), CostTagStatus::NotSeen))
            .collect())
    }
    async fn activate(&self, _: &[String]) -> Result<BTreeMap<String, String>, AwsError> {
        Err(refuse("UpdateCostAllocationTagsStatus"))
    }
}

#[async_trait]
impl CostUsage for Empty {
    async fn page(&self, _: &CostQuery, _: Option<&str>) -> Result<CostPage, AwsError> {
        Err(refuse("GetCostAndUsage"))
    }
    async fn forecast(&self, _: &ForecastQuery) -> Result<CostForecast, AwsError> {
        Err(refuse("GetCostForecast"))
    }
}

#[async_trait]
impl Tagging for Empty {
    async fn tag_resources(
        &self,
        _: &str,
        _: &[String],
        _: &TagMap,
    ) -> Result<BTreeMap<String, String>, AwsError> {
        Err(refuse("TagResources"))
    }
    async fn untag_resources(
        &self,
        _: &str,
        _: &[String],
        _: &[String],
    ) -> Result<BTreeMap<String, String>, AwsError> {
        Err(refuse("UntagResources"))
    }
    async fn resources_tagged(
        &self,
        _: &str,
        _: &str,
        _: Option<&str>,
    ) -> Result<Vec<TaggedResource>, AwsError> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl Identity for Empty {
    /// A placeholder that reads as one in the plan's ARNs.
    async fn account_id(&self) -> Result<String, AwsError> {
        Ok("ACCOUNT_ID".into())
    }
}

impl AwsClients {
    /// Adapters for an account where nothing exists and nothing may be written:
    /// what strata uses without credentials, so plans still show a first pass.
    pub fn unconfigured(reason: impl Into<String>, calls: AwsCalls) -> Self {
        let empty = Arc::new(Empty);
        Self {
            iam: empty.clone(),
            mantle: empty.clone(),
            cost_tags: empty.clone(),
            cost_usage: empty.clone(),
            tagging: empty.clone(),
            identity: empty,
            calls,
            unavailable: Some(reason.into()),
        }
    }
}
