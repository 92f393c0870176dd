//! One project: observe what exists on AWS, compare with what the project declares,
//! and change only the difference. The same code makes a plan (dry run).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use serde_json::Value;
use strata_aws::{
    AwsError, ErrorKind, MAX_ARNS_PER_TAG_CALL, MantleProject, MantleUpdate, NewRole, TagMap,
};
use strata_core::domain::{ConditionStatus, ConditionType, Project, ProjectAws, ProjectStatus};
use strata_core::policy::{canonical, parse_policy};

use crate::Reconciler;
use crate::desired::{
    self, Desired, ENVIRONMENT_TAG, INFERENCE_POLICY_NAME, PENDING_MANTLE_ID, PROJECT_TAG, owned_by,
};
use crate::plan::{Change, ChangeAction};
use crate::state;

/// Why a step stopped.
#[derive(Debug, Clone)]
pub struct StepError {
    /// Worth trying again soon (throttling, 5xx, IAM eventual consistency);
    /// otherwise it needs a person (a conflict, a refusal) and is retried at the
    /// slower pace.
    pub retryable: bool,
    pub reason: &'static str,
    pub message: String,
}

impl From<AwsError> for StepError {
    fn from(e: AwsError) -> Self {
        let (retryable, reason) = match e.kind {
            ErrorKind::Retryable => (true, "AwsRetrying"),
            // Right after a create, IAM may not know the role yet.
            ErrorKind::NotFound | ErrorKind::AlreadyExists => (true, "AwsEventualConsistency"),
            ErrorKind::Denied => (false, "AwsAccessDenied"),
            ErrorKind::Invalid => (false, "AwsRequestRejected"),
        };
        Self {
            retryable,
            reason,
            message: e.to_string(),
        }
    }
}

fn internal(err: impl std::fmt::Display) -> StepError {
    StepError {
        retryable: false,
        reason: "InternalError",
        message: err.to_string(),
    }
}

/// The result of one pass over one project.
#[derive(Debug, Clone)]
pub struct ProjectOutcome {
    /// Made (or, in a dry run, to be made).
    pub changes: Vec<Change>,
    pub aws: ProjectAws,
    pub conditions: Vec<(ConditionType, ConditionStatus, String, String)>,
    /// The first failure; `None` when every step succeeded.
    pub failure: Option<StepError>,
    /// An archived project whose resources are all gone.
    pub cleaned_up: bool,
}

impl ProjectOutcome {
    pub fn is_ready(&self) -> bool {
        self.failure.is_none()
    }
}

struct Pass<'a> {
    r: &'a Reconciler,
    project: &'a Project,
    dry_run: bool,
    changes: Vec<Change>,
}

impl Pass<'_> {
    /// Records the change and, unless this is a dry run, makes it.
    async fn act<T>(
        &mut self,
        change: Change,
        call: impl Future<Output = Result<T, AwsError>>,
    ) -> Result<Option<T>, StepError> {
        tracing::info!(
            project.id = %self.project.id,
            aws.resource = %change.resource,
            aws.action = ?change.action,
            dry_run = self.dry_run,
            "{}",
            change.summary
        );
        self.changes.push(change);
        if self.dry_run {
            return Ok(None);
        }
        Ok(Some(call.await?))
    }

    // ---- Mantle project ------------------------------------------------------

    async fn mantle(
        &mut self,
        desired: &Desired,
        stored_id: Option<&str>,
        pending: bool,
    ) -> Result<Option<String>, StepError> {
        let mantle = self.r.aws.mantle.clone();
        let region = desired.region.as_str();
        let mut current: Option<MantleProject> = None;
        if let Some(id) = stored_id {
            current = mantle
                .get_project(region, id)
                .await?
                .filter(MantleProject::is_active);
        }
        if current.is_none() && (pending || stored_id.is_some()) {
            // A create may have succeeded without its answer being recorded:
            // adopt the project strata tagged for this project instead of making
            // a second one.
            current = mantle
                .list_projects(region)
                .await?
                .into_iter()
                .find(|p| p.is_active() && owned_by(&p.tags, self.project));
        }
        let Some(current) = current else {
            if !self.dry_run {
                state::mark_mantle_pending(self.r, self.project.id)
                    .await
                    .map_err(|e| internal(e.to_string()))?;
            }
            let change = Change::new(
                "mantle_project",
                ChangeAction::Create,
                format!(
                    "create Mantle project '{}' in {region}",
                    desired.mantle_name
                ),
            )
            .with_diff(
                None,
                Some(
                    serde_json::json!({"name": desired.mantle_name, "tags": desired.mantle_tags,
                    "data_retention": {"mode": desired.retention_mode}}),
                ),
            );
            let created = self
                .act(
                    change,
                    mantle.create_project(
                        region,
                        &desired.mantle_name,
                        &desired.mantle_tags,
                        desired.retention_mode,
                    ),
                )
                .await?;
            return Ok(created.map(|p| p.id));
        };
        if current.retention_mode() != desired.retention_mode {
            let change = Change::new(
                "mantle_project_data_retention",
                ChangeAction::Update,
                format!(
                    "set Mantle project {} data retention {} -> {}",
                    current.id,
                    current.retention_mode(),
                    desired.retention_mode
                ),
            )
            .with_diff(
                Some(serde_json::json!({"mode": current.retention_mode()})),
                Some(serde_json::json!({"mode": desired.retention_mode})),
            );
            self.act(
                change,
                mantle.set_data_retention(region, &current.id, desired.retention_mode),
            )
            .await?;
        }
        let mut update = MantleUpdate::default();
        if current.name != desired.mantle_name {
            update.name = Some(desired.mantle_name.clone());
        }
        for (k, v) in &desired.mantle_tags {
            if current.tags.get(k) != Some(v) {
                update.add_tags.insert(k.clone(), v.clone());
            }
        }
        update.remove_tag_keys = current
            .tags
            .keys()
            .filter(|k| !desired.mantle_tags.contains_key(*k))
            .cloned()
            .collect();
        if !update.is_empty() {
            let change = Change::new(
                "mantle_project",
                ChangeAction::Update,
                format!("update Mantle project {} (name or tags)", current.id),
            )
            .with_diff(
                Some(serde_json::json!({"name": current.name, "tags": current.tags})),
                Some(serde_json::json!({"name": desired.mantle_name, "tags": desired.mantle_tags})),
            );
            self.act(change, mantle.update_project(region, &current.id, &update))
                .await?;
        }
        Ok(Some(current.id))
    }

    // ---- IAM role ------------------------------------------------------------

    async fn role(
        &mut self,
        desired: &Desired,
        account: &str,
        mantle_id: &str,
    ) -> Result<String, StepError> {
        let iam = self.r.aws.iam.clone();
        let name = desired.role_name.as_str();
        let trust =
            desired::trust_policy(&self.r.config, self.project, account).map_err(internal)?;
        let policy =
            desired::inference_policy(self.project, account, mantle_id).map_err(internal)?;
        let arn = format!(
            "arn:{}:iam::{account}:role{}{name}",
            desired.partition, desired.role_path
        );
        let Some(role) = iam.get_role(name).await? else {
            let trust_text = trust.to_string();
            let change = Change::new("iam_role", ChangeAction::Create, format!("create IAM role {name}"))
                .with_diff(None, Some(serde_json::json!({"path": desired.role_path, "trust_policy": trust, "tags": desired.role_tags})));
            let new_role = NewRole {
                name,
                path: &desired.role_path,
                trust_policy: &trust_text,
                description: "Managed by strata: inference for one project",
                tags: &desired.role_tags,
            };
            let created = self.act(change, iam.create_role(&new_role)).await?;
            self.put_policy(name, None, &policy).await?;
            return Ok(created.map(|r| r.arn).unwrap_or(arn));
        };
        if !owned_by(&role.tags, self.project) {
            return Err(StepError {
                retryable: false,
                reason: "RoleConflict",
                message: format!(
                    "an IAM role named {name} exists but is not tagged {}={} for this project; strata will not adopt, change or delete it — rename or remove that role",
                    desired::MANAGED_BY,
                    desired::MANAGED_BY_VALUE
                ),
            });
        }
        let current_trust = parse_policy(&role.trust_policy).ok();
        if current_trust.as_ref() != Some(&canonical(trust.clone())) {
            let change = Change::new(
                "iam_role/trust_policy",
                ChangeAction::Update,
                format!("update the trust policy of {name}"),
            )
            .with_diff(current_trust, Some(canonical(trust.clone())));
            self.act(change, iam.update_trust_policy(name, &trust.to_string()))
                .await?;
        }
        for extra in iam
            .list_role_policies(name)
            .await?
            .into_iter()
            .filter(|p| p != INFERENCE_POLICY_NAME)
        {
            let change = Change::new(
                format!("iam_role_policy/{extra}"),
                ChangeAction::Delete,
                format!(
                    "delete inline policy {extra} from {name}: a project role holds only {INFERENCE_POLICY_NAME}"
                ),
            );
            self.act(change, iam.delete_role_policy(name, &extra))
                .await?;
        }
        let current_policy = iam
            .get_role_policy(name, INFERENCE_POLICY_NAME)
            .await?
            .and_then(|doc| parse_policy(&doc).ok());
        if current_policy.as_ref() != Some(&canonical(policy.clone())) {
            self.put_policy(name, current_policy, &policy).await?;
        }
        let (set, unset) = tag_diff(&role.tags, &desired.role_tags, |_| true);
        if !set.is_empty() {
            let change = Change::new(
                "iam_role_tags",
                ChangeAction::Update,
                format!("tag {name}: {}", keys(&set)),
            )
            .with_diff(
                Some(serde_json::json!(role.tags)),
                Some(serde_json::json!(desired.role_tags)),
            );
            self.act(change, iam.tag_role(name, &set)).await?;
        }
        if !unset.is_empty() {
            let change = Change::new(
                "iam_role_tags",
                ChangeAction::Delete,
                format!("untag {name}: {}", unset.join(", ")),
            );
            self.act(change, iam.untag_role(name, &unset)).await?;
        }
        Ok(role.arn)
    }

    async fn put_policy(
        &mut self,
        role: &str,
        before: Option<Value>,
        policy: &Value,
    ) -> Result<(), StepError> {
        let action = if before.is_some() {
            ChangeAction::Update
        } else {
            ChangeAction::Create
        };
        let change = Change::new(
            format!("iam_role_policy/{INFERENCE_POLICY_NAME}"),
            action,
            format!(
                "put inline policy {INFERENCE_POLICY_NAME} on {role} ({} models)",
                self.project.allowed_models.len()
            ),
        )
        .with_diff(before, Some(canonical(policy.clone())));
        let iam = self.r.aws.iam.clone();
        self.act(
            change,
            iam.put_role_policy(role, INFERENCE_POLICY_NAME, &policy.to_string()),
        )
        .await
        .map(|_| ())
    }

    // ---- Extra resources -----------------------------------------------------

    /// Keys strata may remove from an attached resource: its own, the project's
    /// cost tag keys and the configured cost-allocation keys — never others.
    fn managed_resource_keys(&self) -> BTreeSet<String> {
        let mut keys: BTreeSet<String> = self.project.tags.keys().cloned().collect();
        keys.extend(self.r.config.cost_allocation_tags.iter().cloned());
        keys.insert(PROJECT_TAG.to_owned());
        keys.insert(ENVIRONMENT_TAG.to_owned());
        keys
    }

    async fn resources(&mut self, desired: &Desired, keep: bool) -> Result<(), StepError> {
        let tagging = self.r.aws.tagging.clone();
        let region = desired.region.as_str();
        let project_id = self.project.id.to_string();
        let listed: BTreeMap<String, TagMap> = tagging
            .resources_tagged(region, PROJECT_TAG, Some(&project_id))
            .await?
            .into_iter()
            .map(|r| (r.arn, r.tags))
            .collect();
        let owned: Vec<String> = if keep {
            self.project.resources.clone()
        } else {
            Vec::new()
        };
        let managed = self.managed_resource_keys();
        let mut failures = BTreeMap::new();
        // Resources whose tags fall short; TagResources overwrites, so the whole
        // desired set goes in one call per 20 resources.
        let empty = TagMap::new();
        let to_tag: Vec<String> = owned
            .iter()
            .filter(|arn| {
                let current = listed.get(*arn).unwrap_or(&empty);
                desired
                    .resource_tags
                    .iter()
                    .any(|(k, v)| current.get(k) != Some(v))
            })
            .cloned()
            .collect();
        for chunk in to_tag.chunks(MAX_ARNS_PER_TAG_CALL) {
            let change = Change::new(
                "resource_tags",
                ChangeAction::Update,
                format!(
                    "tag {} resource(s) with the project's cost tags: {}",
                    chunk.len(),
                    chunk.join(", ")
                ),
            )
            .with_diff(None, Some(serde_json::json!(desired.resource_tags)));
            if let Some(failed) = self
                .act(
                    change,
                    tagging.tag_resources(region, chunk, &desired.resource_tags),
                )
                .await?
            {
                failures.extend(failed);
            }
        }
        // Keys to take off: from resources the project no longer owns, everything
        // strata put there; from owned ones, managed keys the project dropped.
        let mut untag: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
        for (arn, tags) in &listed {
            let keys: Vec<String> = if owned.contains(arn) {
                tags.keys()
                    .filter(|k| managed.contains(*k) && !desired.resource_tags.contains_key(*k))
                    .cloned()
                    .collect()
            } else {
                tags.keys()
                    .filter(|k| managed.contains(*k))
                    .cloned()
                    .collect()
            };
            if !keys.is_empty() {
                untag.entry(keys).or_default().push(arn.clone());
            }
        }
        for (keys, arns) in untag {
            for chunk in arns.chunks(MAX_ARNS_PER_TAG_CALL) {
                let change = Change::new(
                    "resource_tags",
                    ChangeAction::Delete,
                    format!("remove tags {} from {}", keys.join(", "), chunk.join(", ")),
                );
                if let Some(failed) = self
                    .act(change, tagging.untag_resources(region, chunk, &keys))
                    .await?
                {
                    failures.extend(failed);
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            let list: Vec<String> = failures.iter().map(|(a, r)| format!("{a} ({r})")).collect();
            Err(StepError {
                retryable: true,
                reason: "TaggingFailed",
                message: format!("the tagging API refused: {}", list.join("; ")),
            })
        }
    }

    // ---- Cleanup of an archived project ---------------------------------------

    async fn remove_role(&mut self, desired: &Desired) -> Result<(), StepError> {
        let iam = self.r.aws.iam.clone();
        let name = desired.role_name.as_str();
        let Some(role) = iam.get_role(name).await? else {
            return Ok(());
        };
        if !owned_by(&role.tags, self.project) {
            return Err(StepError {
                retryable: false,
                reason: "RoleConflict",
                message: format!("the IAM role {name} is not strata's; left untouched"),
            });
        }
        for policy in iam.list_role_policies(name).await? {
            let change = Change::new(
                format!("iam_role_policy/{policy}"),
                ChangeAction::Delete,
                format!("delete inline policy {policy} from {name}"),
            );
            self.act(change, iam.delete_role_policy(name, &policy))
                .await?;
        }
        let change = Change::new(
            "iam_role",
            ChangeAction::Delete,
            format!("delete IAM role {name}"),
        );
        match self.act(change, iam.delete_role(name)).await {
            Err(e) if e.reason == "AwsEventualConsistency" => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn archive_mantle(
        &mut self,
        desired: &Desired,
        stored_id: Option<&str>,
        pending: bool,
    ) -> Result<(), StepError> {
        let mantle = self.r.aws.mantle.clone();
        let region = desired.region.as_str();
        let mut targets = Vec::new();
        if let Some(id) = stored_id
            && let Some(p) = mantle.get_project(region, id).await?
            && p.is_active()
        {
            targets.push(p.id);
        }
        if pending {
            let found: Vec<String> = mantle
                .list_projects(region)
                .await?
                .into_iter()
                .filter(|p| {
                    p.is_active() && owned_by(&p.tags, self.project) && !targets.contains(&p.id)
                })
                .map(|p| p.id)
                .collect();
            targets.extend(found);
        }
        for id in targets {
            let change = Change::new(
                "mantle_project",
                ChangeAction::Delete,
                format!("archive Mantle project {id}"),
            );
            self.act(change, mantle.archive_project(region, &id))
                .await?;
        }
        Ok(())
    }
}

/// Tags to set (new or changed) and keys to remove (present, not desired, and
/// allowed by `removable`).
fn tag_diff(
    current: &TagMap,
    desired: &TagMap,
    removable: impl Fn(&str) -> bool,
) -> (TagMap, Vec<String>) {
    let set = desired
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let unset = current
        .keys()
        .filter(|k| !desired.contains_key(*k) && removable(k))
        .cloned()
        .collect();
    (set, unset)
}

fn keys(tags: &TagMap) -> String {
    tags.keys().cloned().collect::<Vec<_>>().join(", ")
}

fn condition(
    kind: ConditionType,
    result: &Result<(), StepError>,
    ok_reason: &str,
    ok_message: String,
) -> (ConditionType, ConditionStatus, String, String) {
    match result {
        Ok(()) => (
            kind,
            ConditionStatus::True,
            ok_reason.to_owned(),
            ok_message,
        ),
        Err(e) => (
            kind,
            ConditionStatus::False,
            e.reason.to_owned(),
            e.message.clone(),
        ),
    }
}

impl Reconciler {
    /// One pass over one project. `dry_run` reads but never writes, to AWS or to
    /// the database.
    pub async fn reconcile(
        &self,
        project: &Project,
        pending: bool,
        dry_run: bool,
    ) -> ProjectOutcome {
        let desired = Desired::of(project);
        let mut pass = Pass {
            r: self,
            project,
            dry_run,
            changes: Vec::new(),
        };
        let mut aws = project.aws.clone();
        if project.status == ProjectStatus::Archived {
            let stored = aws.mantle_project_id.clone();
            let results = [
                pass.resources(&desired, false).await,
                pass.remove_role(&desired).await,
                pass.archive_mantle(&desired, stored.as_deref(), pending)
                    .await,
            ];
            let failure = results.into_iter().find_map(Result::err);
            let cleaned_up = failure.is_none() && !dry_run;
            let conditions = vec![match &failure {
                None => (ConditionType::Ready, ConditionStatus::False, "Archived".to_owned(), "the project is archived; its role, Mantle project and resource tags are removed".to_owned()),
                Some(e) => (ConditionType::Ready, ConditionStatus::False, e.reason.to_owned(), format!("removing the archived project's resources: {}", e.message)),
            }];
            if cleaned_up {
                aws.role_arn = None;
            }
            return ProjectOutcome {
                changes: pass.changes,
                aws,
                conditions,
                failure,
                cleaned_up,
            };
        }
        let account = match self.aws.identity.account_id().await {
            Ok(a) => a,
            Err(e) => {
                let e = StepError::from(e);
                let c = |k| {
                    (
                        k,
                        ConditionStatus::Unknown,
                        e.reason.to_owned(),
                        format!(
                            "cannot tell which AWS account strata runs in: {}",
                            e.message
                        ),
                    )
                };
                return ProjectOutcome {
                    changes: pass.changes,
                    aws,
                    conditions: vec![
                        c(ConditionType::MantleProjectReady),
                        c(ConditionType::IamRoleReady),
                        c(ConditionType::TagsReady),
                        c(ConditionType::Ready),
                    ],
                    failure: Some(e),
                    cleaned_up: false,
                };
            }
        };
        let mantle = pass
            .mantle(&desired, aws.mantle_project_id.as_deref(), pending)
            .await;
        let mantle_result = match &mantle {
            Ok(Some(id)) => {
                aws.mantle_project_id = Some(id.clone());
                aws.mantle_project_arn = Some(desired::mantle_arn(pass.project, &account, id));
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e.clone()),
        };
        let role_result = match &mantle {
            Ok(id) => {
                let id = id.clone().unwrap_or_else(|| PENDING_MANTLE_ID.to_owned());
                match pass.role(&desired, &account, &id).await {
                    Ok(arn) => {
                        aws.role_arn = Some(arn);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            Err(_) => Err(StepError {
                retryable: true,
                reason: "WaitingForMantleProject",
                message: "the role's policy names the Mantle project, which is not ready".into(),
            }),
        };
        let tags_result = pass.resources(&desired, true).await;
        let failure = [&mantle_result, &role_result, &tags_result]
            .into_iter()
            .find_map(|r| r.as_ref().err().cloned());
        let ready = match &failure {
            None => (
                ConditionType::Ready,
                ConditionStatus::True,
                "InSync".to_owned(),
                format!("AWS matches generation {}", project.generation),
            ),
            Some(e) => (
                ConditionType::Ready,
                ConditionStatus::False,
                e.reason.to_owned(),
                e.message.clone(),
            ),
        };
        let conditions = vec![
            condition(
                ConditionType::MantleProjectReady,
                &mantle_result,
                "Synced",
                format!(
                    "Mantle project {}",
                    aws.mantle_project_id
                        .as_deref()
                        .unwrap_or("(to be created)")
                ),
            ),
            condition(
                ConditionType::IamRoleReady,
                &role_result,
                "Synced",
                format!(
                    "IAM role {} allows {} model(s)",
                    desired.role_name,
                    project.allowed_models.len()
                ),
            ),
            condition(
                ConditionType::TagsReady,
                &tags_result,
                "Synced",
                format!(
                    "role and {} resource(s) carry the project's tags",
                    project.resources.len()
                ),
            ),
            ready,
        ];
        ProjectOutcome {
            changes: pass.changes,
            aws,
            conditions,
            failure,
            cleaned_up: false,
        }
    }
}
