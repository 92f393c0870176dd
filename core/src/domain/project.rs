//! Projects: the input a platform team sends, the validated draft, and the stored
//! project as the API returns it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    Budget, Condition, DataRetention, Environment, ModelId, ProjectAws, ProjectRole, ProjectSlug,
    ProjectStatus, Region, Subject, Tags, TeamName, validate_resources, validate_tags,
};
use crate::FieldError;
use strata_contract::{RateLimits, from_object};

pub const MAX_DISPLAY_NAME: usize = 128;
pub const MAX_ALLOWED_MODELS: usize = 100;

/// The body of `POST /api/v1/projects`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    /// Slug, unique among the environment's active projects; cannot be changed later.
    #[schema(
        example = "checkout-api",
        pattern = "^[a-z]([a-z0-9]|-[a-z0-9])+$",
        min_length = 2,
        max_length = 40
    )]
    pub name: String,
    /// Human-readable name; defaults to `name`.
    #[serde(default)]
    #[schema(example = "Checkout API", min_length = 1, max_length = 128)]
    pub display_name: Option<String>,
    pub environment: Environment,
    #[schema(
        example = "payments",
        pattern = "^[a-z]([a-z0-9]|-[a-z0-9])+$",
        min_length = 2,
        max_length = 64
    )]
    pub team: String,
    pub region: Region,
    /// Model ids from the catalog (`GET /api/v1/models`) offered in `region`.
    #[schema(example = json!(["openai.gpt-oss-120b"]), min_items = 1, max_items = 100)]
    pub allowed_models: Vec<String>,
    /// Cost-allocation tags (AWS tag rules; at most 47; no `aws:` or `strata:` prefix).
    #[serde(default)]
    #[schema(example = json!({"CostCenter": "cc-1234"}))]
    pub tags: BTreeMap<String, String>,
    /// Defaults to `zdr`: zero data retention (Mantle mode `none`), so the Responses API
    /// only with `store=false` and without `background`.
    #[serde(default)]
    pub data_retention: Option<DataRetention>,
    /// US dollars per calendar month, at most two decimals; `null` for none.
    #[serde(default)]
    #[schema(example = 500.0, minimum = 0, maximum = 1_000_000_000)]
    pub monthly_budget_usd: Option<f64>,
    #[serde(default)]
    pub rate_limits: RateLimits,
    /// Extra resources the project owns (buckets, inference profiles, …): strata
    /// applies the project's cost tags to them.
    #[serde(default)]
    #[schema(example = json!(["arn:aws:s3:::checkout-prompts"]), max_items = 100)]
    pub resources: Vec<String>,
}

/// A validated project specification, ready for the catalog checks and the store.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectDraft {
    pub name: ProjectSlug,
    pub display_name: String,
    pub environment: Environment,
    pub team: TeamName,
    pub region: Region,
    pub allowed_models: Vec<ModelId>,
    pub tags: Tags,
    pub data_retention: DataRetention,
    pub monthly_budget: Option<Budget>,
    pub rate_limits: RateLimits,
    pub resources: Vec<String>,
}

fn validate_display_name(value: &str, errors: &mut Vec<FieldError>) {
    let len = value.chars().count();
    if len == 0 || len > MAX_DISPLAY_NAME || value.trim().is_empty() {
        errors.push(FieldError::new(
            "display_name",
            format!("must be 1 to {MAX_DISPLAY_NAME} characters and not blank"),
        ));
    } else if value.chars().any(char::is_control) {
        errors.push(FieldError::new(
            "display_name",
            "must not contain control characters",
        ));
    }
}

fn validate_models(models: &[String], errors: &mut Vec<FieldError>) -> Vec<ModelId> {
    if models.is_empty() {
        errors.push(FieldError::new(
            "allowed_models",
            "must list at least one model from GET /api/v1/models",
        ));
    }
    if models.len() > MAX_ALLOWED_MODELS {
        errors.push(FieldError::new(
            "allowed_models",
            format!("at most {MAX_ALLOWED_MODELS} models"),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut parsed = Vec::with_capacity(models.len());
    for (i, m) in models.iter().enumerate() {
        match ModelId::parse(m) {
            Ok(id) if !seen.insert(id.clone()) => {
                errors.push(FieldError::new(
                    format!("allowed_models[{i}]"),
                    format!("'{m}' is listed twice"),
                ));
            }
            Ok(id) => parsed.push(id),
            Err(e) => errors.push(FieldError::new(format!("allowed_models[{i}]"), e)),
        }
    }
    parsed
}

fn validate_budget(value: Option<f64>, errors: &mut Vec<FieldError>) -> Option<Budget> {
    value.and_then(|usd| match Budget::from_usd(usd) {
        Ok(b) => Some(b),
        Err(e) => {
            errors.push(FieldError::new("monthly_budget_usd", e));
            None
        }
    })
}

impl NewProject {
    /// Checks every field and reports all problems at once.
    pub fn validate(&self) -> Result<ProjectDraft, Vec<FieldError>> {
        let mut errors = Vec::new();
        let name = ProjectSlug::parse(&self.name)
            .map_err(|e| errors.push(FieldError::new("name", e)))
            .ok();
        let team = TeamName::parse(&self.team)
            .map_err(|e| errors.push(FieldError::new("team", e)))
            .ok();
        let display_name = self
            .display_name
            .clone()
            .unwrap_or_else(|| self.name.clone());
        validate_display_name(&display_name, &mut errors);
        let allowed_models = validate_models(&self.allowed_models, &mut errors);
        validate_tags(&self.tags, &mut errors);
        let monthly_budget = validate_budget(self.monthly_budget_usd, &mut errors);
        self.rate_limits.validate(&mut errors);
        validate_resources(&self.resources, &mut errors);
        match (name, team) {
            (Some(name), Some(team)) if errors.is_empty() => Ok(ProjectDraft {
                name,
                display_name,
                environment: self.environment,
                team,
                region: self.region,
                allowed_models,
                tags: self.tags.clone(),
                data_retention: self.data_retention.unwrap_or(DataRetention::Zdr),
                monthly_budget,
                rate_limits: self.rate_limits,
                resources: self.resources.clone(),
            }),
            _ => Err(errors),
        }
    }
}

/// Distinguishes "absent" (`None`) from "null" (`Some(None)`) in a merge patch.
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// [`RateLimitsPatch`] as a body states it (an object only).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitsPatchObject {
    #[serde(default, deserialize_with = "nullable")]
    rpm: Option<Option<u64>>,
    #[serde(default, deserialize_with = "nullable")]
    tpm: Option<Option<u64>>,
}

impl<'de> Deserialize<'de> for RateLimitsPatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let RateLimitsPatchObject { rpm, tpm } = from_object(d)?;
        Ok(Self { rpm, tpm })
    }
}

/// Changes to the rate limits: absent keeps, `null` removes the limit.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsPatch {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u64>)]
    pub rpm: Option<Option<u64>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u64>)]
    pub tpm: Option<Option<u64>>,
}

/// The body of `PATCH /api/v1/projects/{id}`, a JSON merge patch (RFC 7396): absent
/// fields are kept, `null` clears a nullable field, `tags` merges key by key (a `null`
/// value removes that tag). `name` and `environment` cannot change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectPatch {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub region: Option<Region>,
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    #[serde(default)]
    pub tags: Option<BTreeMap<String, Option<String>>>,
    #[serde(default)]
    pub data_retention: Option<DataRetention>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<f64>)]
    pub monthly_budget_usd: Option<Option<f64>>,
    #[serde(default)]
    pub rate_limits: Option<RateLimitsPatch>,
    /// Replaces the whole list.
    #[serde(default)]
    pub resources: Option<Vec<String>>,
}

impl ProjectPatch {
    /// Applies the patch to the current draft, validating what changed.
    pub fn apply(&self, current: &ProjectDraft) -> Result<ProjectDraft, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut next = current.clone();
        if let Some(d) = &self.display_name {
            validate_display_name(d, &mut errors);
            next.display_name = d.clone();
        }
        if let Some(t) = &self.team {
            match TeamName::parse(t) {
                Ok(team) => next.team = team,
                Err(e) => errors.push(FieldError::new("team", e)),
            }
        }
        if let Some(r) = self.region {
            next.region = r;
        }
        if let Some(models) = &self.allowed_models {
            next.allowed_models = validate_models(models, &mut errors);
        }
        if let Some(tags) = &self.tags {
            for (key, value) in tags {
                match value {
                    Some(v) => {
                        next.tags.insert(key.clone(), v.clone());
                    }
                    None => {
                        next.tags.remove(key);
                    }
                }
            }
            validate_tags(&next.tags, &mut errors);
        }
        if let Some(d) = self.data_retention {
            next.data_retention = d;
        }
        if let Some(b) = self.monthly_budget_usd {
            next.monthly_budget = validate_budget(b, &mut errors);
        }
        if let Some(rl) = &self.rate_limits {
            if let Some(rpm) = rl.rpm {
                next.rate_limits.rpm = rpm;
            }
            if let Some(tpm) = rl.tpm {
                next.rate_limits.tpm = tpm;
            }
            next.rate_limits.validate(&mut errors);
        }
        if let Some(resources) = &self.resources {
            validate_resources(resources, &mut errors);
            next.resources = resources.clone();
        }
        if errors.is_empty() {
            Ok(next)
        } else {
            Err(errors)
        }
    }
}

/// A project as stored and returned by the API.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Project {
    pub id: Uuid,
    pub name: ProjectSlug,
    pub display_name: String,
    pub environment: Environment,
    pub team: TeamName,
    pub region: Region,
    pub allowed_models: Vec<ModelId>,
    pub tags: Tags,
    pub data_retention: DataRetention,
    #[schema(value_type = Option<f64>)]
    pub monthly_budget_usd: Option<Budget>,
    pub rate_limits: RateLimits,
    pub resources: Vec<String>,
    pub status: ProjectStatus,
    /// Increases by one with every change to the specification.
    pub generation: i64,
    /// The generation the reconciler last applied to AWS.
    pub observed_generation: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub archived_at: Option<DateTime<Utc>>,
    /// What exists for the project on AWS.
    pub aws: ProjectAws,
    /// The reconciler's report: `MantleProjectReady`, `IamRoleReady`, `TagsReady`,
    /// `Ready`. Status, not specification: it does not change the `ETag`.
    pub conditions: Vec<Condition>,
    /// Changes with every write; sent as the `ETag` header.
    #[serde(skip)]
    pub resource_version: i64,
}

impl Project {
    pub fn draft(&self) -> ProjectDraft {
        ProjectDraft {
            name: self.name.clone(),
            display_name: self.display_name.clone(),
            environment: self.environment,
            team: self.team.clone(),
            region: self.region,
            allowed_models: self.allowed_models.clone(),
            tags: self.tags.clone(),
            data_retention: self.data_retention,
            monthly_budget: self.monthly_budget_usd,
            rate_limits: self.rate_limits,
            resources: self.resources.clone(),
        }
    }

    /// The strong entity tag for optimistic concurrency.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.resource_version)
    }
}

/// A person's or workload's membership in one project.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Member {
    pub project_id: Uuid,
    pub subject: Subject,
    pub role: ProjectRole,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> NewProject {
        serde_json::from_value(serde_json::json!({
            "name": "checkout-api", "environment": "prod", "team": "payments",
            "region": "us-east-1", "allowed_models": ["openai.gpt-oss-120b"],
            "tags": {"CostCenter": "cc-1"}, "monthly_budget_usd": 10.5
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn defaults() {
        let d = input().validate().unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(d.display_name, "checkout-api");
        assert_eq!(d.data_retention, DataRetention::Zdr);
        assert_eq!(d.monthly_budget.map(Budget::cents), Some(1050));
    }

    #[test]
    fn reports_every_error() {
        let mut p = input();
        p.name = "Bad_Name".into();
        p.team = "".into();
        p.allowed_models = vec!["openai.gpt-oss-120b".into(), "openai.gpt-oss-120b".into()];
        p.monthly_budget_usd = Some(-1.0);
        let errors = p.validate().err().unwrap_or_default();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["name", "team", "allowed_models[1]", "monthly_budget_usd"]
        );
    }

    #[test]
    fn merge_patch() {
        let current = input().validate().unwrap_or_else(|e| panic!("{e:?}"));
        let patch: ProjectPatch = serde_json::from_value(serde_json::json!({
            "tags": {"CostCenter": null, "Owner": "bob"},
            "monthly_budget_usd": null,
            "rate_limits": {"rpm": 60}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let next = patch.apply(&current).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            next.tags,
            Tags::from([("Owner".to_string(), "bob".to_string())])
        );
        assert_eq!(next.monthly_budget, None);
        assert_eq!(
            next.rate_limits,
            RateLimits {
                rpm: Some(60),
                tpm: None
            }
        );
        assert!(serde_json::from_value::<ProjectPatch>(serde_json::json!({"name": "x"})).is_err());
    }
}
