//! The environment-wide pass, run once per resync interval by one replica:
//! cost-allocation tags activated in Cost Explorer, and the tag-coverage report per
//! environment (resources tagged for a project that does not own them, owned
//! resources missing a cost tag).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{EntityTrait, Set};
use serde::{Deserialize, Serialize};
use strata_aws::{CostTagStatus, MAX_KEYS_PER_COST_TAG_CALL, TagMap};
use strata_core::domain::{Environment, Project, ProjectStatus};
use strata_core::services::ProjectFilter;
use strata_core::services::Services;
use strata_core::store::entities::reconcile_reports;
use utoipa::ToSchema;

use crate::Reconciler;
use crate::desired::{ENVIRONMENT_TAG, PROJECT_TAG};
use crate::error::ReconcileError;

pub const COST_TAGS_REPORT: &str = "cost-allocation-tags";

pub fn coverage_report_name(environment: Environment) -> String {
    format!("coverage:{environment}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CostTagKeyState {
    pub key: String,
    /// `active`, `inactive`, `not_seen` (AWS has not seen the key on a resource
    /// yet; retried at the next pass) or `error`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CostTagsReport {
    pub generated_at: DateTime<Utc>,
    pub keys: Vec<CostTagKeyState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrphanedResource {
    pub arn: String,
    /// The `strata:project` value it carries.
    pub project_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MissingCostTags {
    pub arn: String,
    pub project_id: String,
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CoverageReport {
    pub environment: Environment,
    pub generated_at: DateTime<Utc>,
    pub regions: Vec<String>,
    pub orphaned: Vec<OrphanedResource>,
    pub missing_cost_tags: Vec<MissingCostTags>,
    /// Regions the tagging API could not be read in.
    pub errors: Vec<String>,
}

/// What the environment-wide pass found.
#[derive(Debug, Clone)]
pub struct EnvironmentPass {
    pub cost_tags: CostTagsReport,
    pub coverage: Vec<CoverageReport>,
}

async fn active_projects(r: &Reconciler) -> Result<Vec<Project>, ReconcileError> {
    let services = Services::new(r.store.clone(), r.clock.clone());
    let filter = ProjectFilter {
        status: Some(ProjectStatus::Active),
        ..ProjectFilter::default()
    };
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = services
            .list_projects(&filter, cursor.as_deref(), Some(200))
            .await?;
        out.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(out)
}

impl Reconciler {
    async fn cost_tags_pass(&self) -> CostTagsReport {
        let now = self.clock.now();
        let keys = &self.config.cost_allocation_tags;
        let mut report = CostTagsReport {
            generated_at: now,
            keys: Vec::new(),
            error: None,
        };
        if keys.is_empty() {
            return report;
        }
        if let Some(why) = &self.aws.unavailable {
            report.error = Some(format!("AWS is not configured: {why}"));
            return report;
        }
        let statuses = match self.aws.cost_tags.statuses(keys).await {
            Ok(s) => s,
            Err(e) => {
                report.error = Some(e.to_string());
                return report;
            }
        };
        let inactive: Vec<String> = statuses
            .iter()
            .filter(|(_, s)| **s == CostTagStatus::Inactive)
            .map(|(k, _)| k.clone())
            .collect();
        let mut refused: BTreeMap<String, String> = BTreeMap::new();
        let mut activated: BTreeSet<String> = BTreeSet::new();
        for chunk in inactive.chunks(MAX_KEYS_PER_COST_TAG_CALL) {
            match self.aws.cost_tags.activate(chunk).await {
                Ok(errors) => {
                    activated.extend(chunk.iter().filter(|k| !errors.contains_key(*k)).cloned());
                    refused.extend(errors);
                }
                Err(e) => {
                    refused.extend(chunk.iter().map(|k| (k.clone(), e.to_string())));
                }
            }
        }
        report.keys = statuses
            .into_iter()
            .map(|(key, status)| {
                let (status, message) = if activated.contains(&key) {
                    ("active", Some("activated by this pass".to_owned()))
                } else if let Some(why) = refused.get(&key) {
                    ("error", Some(why.clone()))
                } else {
                    match status {
                        CostTagStatus::Active => ("active", None),
                        CostTagStatus::Inactive => ("inactive", None),
                        CostTagStatus::NotSeen => ("not_seen", Some("AWS has not seen this key on a resource yet (up to 24 h after first use); retried at the next pass".to_owned())),
                    }
                };
                CostTagKeyState { key, status: status.to_owned(), message }
            })
            .collect();
        report
    }

    async fn coverage_pass(&self) -> Result<Vec<CoverageReport>, ReconcileError> {
        let now = self.clock.now();
        let projects = active_projects(self).await?;
        let by_id: BTreeMap<String, &Project> =
            projects.iter().map(|p| (p.id.to_string(), p)).collect();
        let mut reports: BTreeMap<Environment, CoverageReport> = Environment::ALL
            .iter()
            .map(|env| {
                (
                    *env,
                    CoverageReport {
                        environment: *env,
                        generated_at: now,
                        regions: Vec::new(),
                        orphaned: Vec::new(),
                        missing_cost_tags: Vec::new(),
                        errors: Vec::new(),
                    },
                )
            })
            .collect();
        if self.aws.unavailable.is_some() {
            for report in reports.values_mut() {
                report.errors.push("AWS is not configured".into());
            }
            return Ok(reports.into_values().collect());
        }
        let regions: BTreeSet<String> = projects.iter().map(|p| p.region.to_string()).collect();
        let mut seen: BTreeMap<String, TagMap> = BTreeMap::new();
        for region in &regions {
            match self
                .aws
                .tagging
                .resources_tagged(region, PROJECT_TAG, None)
                .await
            {
                Ok(resources) => {
                    for res in resources {
                        let project_id = res.tags.get(PROJECT_TAG).cloned().unwrap_or_default();
                        let env = res
                            .tags
                            .get(ENVIRONMENT_TAG)
                            .and_then(|e| Environment::parse(e).ok())
                            .or_else(|| by_id.get(&project_id).map(|p| p.environment));
                        let reason = match by_id.get(&project_id) {
                            None => Some("no active project has this id"),
                            Some(p) if !p.resources.contains(&res.arn) => {
                                Some("the project does not list this resource")
                            }
                            Some(_) => None,
                        };
                        if let (Some(reason), Some(env)) = (reason, env)
                            && let Some(report) = reports.get_mut(&env)
                        {
                            report.orphaned.push(OrphanedResource {
                                arn: res.arn.clone(),
                                project_id,
                                reason: reason.into(),
                            });
                        }
                        seen.insert(res.arn, res.tags);
                    }
                }
                Err(e) => {
                    for report in reports.values_mut() {
                        report.errors.push(format!("{region}: {e}"));
                    }
                }
            }
        }
        let empty = TagMap::new();
        for p in &projects {
            let Some(report) = reports.get_mut(&p.environment) else {
                continue;
            };
            if !report.regions.contains(&p.region.to_string()) {
                report.regions.push(p.region.to_string());
            }
            for arn in &p.resources {
                let tags = seen.get(arn).unwrap_or(&empty);
                let mut missing: Vec<String> = p
                    .tags
                    .iter()
                    .filter(|(k, v)| tags.get(*k) != Some(*v))
                    .map(|(k, _)| k.clone())
                    .collect();
                if tags.get(PROJECT_TAG) != Some(&p.id.to_string()) {
                    missing.insert(0, PROJECT_TAG.to_owned());
                }
                if !missing.is_empty() {
                    report.missing_cost_tags.push(MissingCostTags {
                        arn: arn.clone(),
                        project_id: p.id.to_string(),
                        missing,
                    });
                }
            }
        }
        Ok(reports.into_values().collect())
    }

    /// Runs the environment-wide pass and stores its reports.
    pub async fn environment_pass(&self) -> Result<EnvironmentPass, ReconcileError> {
        let cost_tags = self.cost_tags_pass().await;
        let coverage = self.coverage_pass().await?;
        let now = self.clock.now();
        let mut rows = vec![(
            COST_TAGS_REPORT.to_owned(),
            serde_json::to_value(&cost_tags),
        )];
        for report in &coverage {
            rows.push((
                coverage_report_name(report.environment),
                serde_json::to_value(report),
            ));
        }
        for (name, body) in rows {
            let body = body?;
            let row = reconcile_reports::ActiveModel {
                name: Set(name),
                body: Set(body),
                generated_at: Set(now),
            };
            let tx = self.store.begin_write().await?;
            reconcile_reports::Entity::insert(row)
                .on_conflict(
                    OnConflict::column(reconcile_reports::Column::Name)
                        .update_columns([
                            reconcile_reports::Column::Body,
                            reconcile_reports::Column::GeneratedAt,
                        ])
                        .to_owned(),
                )
                .exec_without_returning(&*tx)
                .await?;
            tx.commit().await?;
        }
        Ok(EnvironmentPass {
            cost_tags,
            coverage,
        })
    }
}

/// A stored report, for the API.
pub async fn stored_report<T: serde::de::DeserializeOwned>(
    store: &strata_core::store::Store,
    name: &str,
) -> Result<Option<T>, ReconcileError> {
    let row = reconcile_reports::Entity::find_by_id(name.to_owned())
        .one(store.db())
        .await?;
    row.map(|r| serde_json::from_value(r.body).map_err(ReconcileError::from))
        .transpose()
}
