//! Projects: create (idempotently), read, list, patch (optimistically), archive.

use std::collections::BTreeMap;

use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, UpdateMany,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::audit::{Change, record, snapshot};
use super::{Page, Services, corrupt, decode_cursor, page_size, split_page};
use crate::auth::Actor;
use crate::domain::{
    Budget, DataRetention, Environment, ModelId, NewProject, Project, ProjectAws, ProjectDraft,
    ProjectPatch, ProjectSlug, ProjectStatus, RateLimits, Region, Tags, TeamName,
};
use crate::policy;
use crate::store::entities::{
    idempotency_keys, project_members, project_sync, project_tags, projects,
};
use crate::store::is_unique_violation;
use crate::{CoreError, FieldError};

const IDEMPOTENCY_SCOPE_CREATE: &str = "projects.create";

/// A client-chosen key that makes a retried POST safe (`Idempotency-Key`).
#[derive(Debug, Clone)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(value: &str) -> Result<Self, CoreError> {
        let ok = (1..=255).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(CoreError::invalid(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            ))
        }
    }
}

/// What a create returned: a new project, or the stored response of an earlier
/// request with the same idempotency key and body.
#[derive(Debug)]
pub enum CreateOutcome {
    Created(Box<Project>),
    Replayed {
        status: u16,
        body: Value,
        etag: Option<String>,
    },
}

#[derive(Debug, Clone, Default)]
pub struct ProjectFilter {
    pub environment: Option<Environment>,
    pub team: Option<String>,
    /// `key:value`; since keys and values may contain ':', every split is tried.
    pub tag: Option<String>,
    pub status: Option<ProjectStatus>,
    /// Only projects this subject is a member of.
    pub member: Option<String>,
}

pub(super) fn to_domain(
    row: projects::Model,
    tags: Tags,
    sync: Option<project_sync::Model>,
) -> Result<Project, CoreError> {
    let resources: Vec<String> =
        serde_json::from_value(row.resources).map_err(|e| corrupt("resources", e))?;
    let (aws, conditions) = match sync {
        Some(s) => (
            ProjectAws {
                mantle_project_id: s.mantle_project_id,
                mantle_project_arn: s.mantle_project_arn,
                role_arn: s.role_arn,
            },
            serde_json::from_value(s.conditions).map_err(|e| corrupt("conditions", e))?,
        ),
        None => (ProjectAws::default(), Vec::new()),
    };
    let models: Vec<String> =
        serde_json::from_value(row.allowed_models).map_err(|e| corrupt("allowed_models", e))?;
    let allowed_models = models
        .iter()
        .map(|m| ModelId::parse(m))
        .collect::<Result<_, _>>()
        .map_err(|e| corrupt("model id", e))?;
    let rate = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok());
    Ok(Project {
        id: row.id,
        name: ProjectSlug::parse(&row.name).map_err(|e| corrupt("project name", e))?,
        display_name: row.display_name,
        environment: Environment::parse(&row.environment).map_err(|e| corrupt("environment", e))?,
        team: TeamName::parse(&row.team).map_err(|e| corrupt("team", e))?,
        region: Region::parse(&row.region).map_err(|e| corrupt("region", e))?,
        allowed_models,
        tags,
        data_retention: DataRetention::parse(&row.data_retention)
            .map_err(|e| corrupt("data_retention", e))?,
        monthly_budget_usd: row.monthly_budget_cents.map(Budget::from_cents),
        rate_limits: RateLimits {
            rpm: rate(row.rate_limit_rpm),
            tpm: rate(row.rate_limit_tpm),
        },
        resources,
        status: ProjectStatus::parse(&row.status).map_err(|e| corrupt("status", e))?,
        generation: row.generation,
        observed_generation: row.observed_generation,
        created_at: row.created_at,
        updated_at: row.updated_at,
        archived_at: row.archived_at,
        aws,
        conditions,
        resource_version: row.resource_version,
    })
}

fn models_json(models: &[ModelId]) -> Value {
    Value::Array(
        models
            .iter()
            .map(|m| Value::String(m.to_string()))
            .collect(),
    )
}

fn strings_json(values: &[String]) -> Value {
    Value::Array(values.iter().cloned().map(Value::String).collect())
}

fn to_i64(v: Option<u64>) -> Option<i64> {
    v.and_then(|n| i64::try_from(n).ok())
}

fn request_hash(input: &NewProject) -> String {
    let bytes = serde_json::to_vec(input).unwrap_or_default();
    format!("{:x}", Sha256::digest(bytes))
}

async fn tags_for(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<BTreeMap<Uuid, Tags>, CoreError> {
    let mut out: BTreeMap<Uuid, Tags> = BTreeMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let rows = project_tags::Entity::find()
        .filter(project_tags::Column::ProjectId.is_in(ids.to_vec()))
        .all(db)
        .await?;
    for t in rows {
        out.entry(t.project_id).or_default().insert(t.key, t.value);
    }
    Ok(out)
}

/// Asks the reconciler to look at the project now (a change to its specification).
async fn schedule_reconcile(
    db: &impl ConnectionTrait,
    id: Uuid,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), CoreError> {
    project_sync::Entity::update_many()
        .col_expr(project_sync::Column::NextAttemptAt, Expr::value(now))
        .col_expr(project_sync::Column::Attempts, Expr::value(0))
        .filter(project_sync::Column::ProjectId.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Replaces the project's tags.
async fn write_tags(db: &impl ConnectionTrait, id: Uuid, tags: &Tags) -> Result<(), CoreError> {
    project_tags::Entity::delete_many()
        .filter(project_tags::Column::ProjectId.eq(id))
        .exec(db)
        .await?;
    insert_tags(db, id, tags).await
}

async fn insert_tags(db: &impl ConnectionTrait, id: Uuid, tags: &Tags) -> Result<(), CoreError> {
    if !tags.is_empty() {
        let rows = tags.iter().map(|(k, v)| project_tags::ActiveModel {
            project_id: Set(id),
            key: Set(k.clone()),
            value: Set(v.clone()),
        });
        project_tags::Entity::insert_many(rows)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// `a:b:c` matches key `a` with value `b:c`, or key `a:b` with value `c`.
fn tag_condition(tag: &str) -> Result<Condition, CoreError> {
    let mut any = Condition::any();
    let mut splits = 0;
    for (i, _) in tag.match_indices(':').filter(|(i, _)| *i > 0) {
        any = any.add(
            Condition::all()
                .add(Expr::col(project_tags::Column::Key).eq(&tag[..i]))
                .add(Expr::col(project_tags::Column::Value).eq(&tag[i + 1..])),
        );
        splits += 1;
    }
    if splits == 0 {
        return Err(CoreError::invalid(
            "tag",
            "must be 'key:value', e.g. CostCenter:cc-1234",
        ));
    }
    Ok(any)
}

/// A change to the specification: new generation, new resource version.
fn bump_generation(
    update: UpdateMany<projects::Entity>,
    now: chrono::DateTime<chrono::Utc>,
) -> UpdateMany<projects::Entity> {
    update
        .col_expr(
            projects::Column::Generation,
            Expr::col(projects::Column::Generation).add(1),
        )
        .col_expr(
            projects::Column::ResourceVersion,
            Expr::col(projects::Column::ResourceVersion).add(1),
        )
        .col_expr(projects::Column::UpdatedAt, Expr::value(now))
}

fn name_taken(draft: &ProjectDraft) -> CoreError {
    CoreError::Conflict {
        code: "project_name_taken",
        message: format!(
            "an active project named '{}' already exists in {}; pick another name or archive that project first",
            draft.name, draft.environment
        ),
    }
}

/// Compares `If-Match` with the current entity tag (`*` matches anything).
fn check_if_match(if_match: Option<&str>, project: &Project) -> Result<(), CoreError> {
    let Some(header) = if_match else {
        return Ok(());
    };
    let current = project.etag();
    let matches = header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == current);
    if matches {
        Ok(())
    } else {
        Err(CoreError::PreconditionFailed {
            expected: header.to_owned(),
            current,
        })
    }
}

impl Services {
    /// Checks the draft against the catalog: every model must exist, be offered in the
    /// project's region and allow the project's data-retention mode.
    async fn check_catalog(
        &self,
        db: &impl ConnectionTrait,
        draft: &ProjectDraft,
    ) -> Result<(), CoreError> {
        let catalog = self.models_by_id(db, &draft.allowed_models).await?;
        let mut errors = Vec::new();
        for (i, id) in draft.allowed_models.iter().enumerate() {
            let field = format!("allowed_models[{i}]");
            match catalog.get(id) {
                None => errors.push(FieldError::new(
                    field,
                    format!("unknown model '{id}'; GET /api/v1/models lists the catalog"),
                )),
                Some(m) if !m.offered_in(draft.region) => {
                    let offered: Vec<&str> = m.regions.iter().map(|r| r.as_str()).collect();
                    errors.push(FieldError::new(
                        field,
                        format!(
                            "'{id}' is not offered in {} (it is in: {})",
                            draft.region,
                            offered.join(", ")
                        ),
                    ));
                }
                Some(m) if !m.allows_retention(draft.data_retention.mantle_mode()) => {
                    let modes: Vec<&str> = m.retention_modes.iter().map(|r| r.as_str()).collect();
                    errors.push(FieldError::new(
                        field,
                        format!(
                            "'{id}' may not be called under data retention '{}' (Mantle mode '{}'); it allows: {}",
                            draft.data_retention,
                            draft.data_retention.mantle_mode(),
                            modes.join(", ")
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        if !errors.is_empty() {
            return Err(CoreError::Validation(errors));
        }
        // The role's inline policy names every model; IAM caps its size.
        let size = policy::worst_case_inference_policy_size(draft.region, &draft.allowed_models)
            .map_err(|e| CoreError::internal("rendering the inference policy", e))?;
        if size > policy::MAX_INLINE_POLICY_CHARS {
            return Err(CoreError::invalid(
                "allowed_models",
                format!(
                    "the IAM policy for these {} models would be {size} characters; IAM allows {} per role — allow fewer models",
                    draft.allowed_models.len(),
                    policy::MAX_INLINE_POLICY_CHARS
                ),
            ));
        }
        Ok(())
    }

    pub async fn create_project(
        &self,
        actor: &Actor,
        input: &NewProject,
        idempotency: Option<&IdempotencyKey>,
    ) -> Result<CreateOutcome, CoreError> {
        let hash = request_hash(input);
        if let Some(key) = idempotency
            && let Some(stored) = self.stored_response(actor, key, &hash).await?
        {
            return Ok(stored);
        }
        let draft = input.validate().map_err(CoreError::Validation)?;
        self.check_catalog(self.store.db(), &draft).await?;
        match (
            self.insert_project(actor, &draft, idempotency, &hash).await,
            idempotency,
        ) {
            // A concurrent request with the same key (and so the same name) may have
            // committed first: answer with its response.
            (Err(conflict @ CoreError::Conflict { .. }), Some(key)) => self
                .stored_response(actor, key, &hash)
                .await?
                .ok_or(conflict),
            (result, _) => result.map(|p| CreateOutcome::Created(Box::new(p))),
        }
    }

    async fn stored_response(
        &self,
        actor: &Actor,
        key: &IdempotencyKey,
        hash: &str,
    ) -> Result<Option<CreateOutcome>, CoreError> {
        let found = idempotency_keys::Entity::find_by_id((
            actor.principal.subject.clone(),
            IDEMPOTENCY_SCOPE_CREATE.to_owned(),
            key.0.clone(),
        ))
        .one(self.store.db())
        .await?;
        match found {
            None => Ok(None),
            Some(row) if row.request_hash == hash => Ok(Some(CreateOutcome::Replayed {
                status: u16::try_from(row.response_status).unwrap_or(201),
                body: row.response_body,
                etag: row.response_etag,
            })),
            Some(_) => Err(CoreError::IdempotencyKeyReused),
        }
    }

    async fn insert_project(
        &self,
        actor: &Actor,
        draft: &ProjectDraft,
        idempotency: Option<&IdempotencyKey>,
        hash: &str,
    ) -> Result<Project, CoreError> {
        let now = self.clock.now();
        let id = Uuid::now_v7();
        let tx = self.store.begin_write().await?;
        // No "is the name taken?" read: the partial unique index on (environment,
        // name) of active projects answers it, and a race cannot get past it.
        let row = projects::ActiveModel {
            id: Set(id),
            name: Set(draft.name.to_string()),
            display_name: Set(draft.display_name.clone()),
            environment: Set(draft.environment.as_str().into()),
            team: Set(draft.team.to_string()),
            region: Set(draft.region.as_str().into()),
            allowed_models: Set(models_json(&draft.allowed_models)),
            resources: Set(strings_json(&draft.resources)),
            data_retention: Set(draft.data_retention.as_str().into()),
            monthly_budget_cents: Set(draft.monthly_budget.map(Budget::cents)),
            rate_limit_rpm: Set(to_i64(draft.rate_limits.rpm)),
            rate_limit_tpm: Set(to_i64(draft.rate_limits.tpm)),
            status: Set(ProjectStatus::Active.as_str().into()),
            generation: Set(1),
            observed_generation: Set(0),
            resource_version: Set(1),
            created_at: Set(now),
            updated_at: Set(now),
            archived_at: Set(None),
        };
        let inserted = match row.insert(&*tx).await {
            Ok(r) => r,
            Err(e) if is_unique_violation(&e) => return Err(name_taken(draft)),
            Err(e) => return Err(e.into()),
        };
        insert_tags(&*tx, id, &draft.tags).await?;
        let sync = project_sync::ActiveModel {
            project_id: Set(id),
            mantle_project_id: Set(None),
            mantle_project_arn: Set(None),
            mantle_pending: Set(false),
            role_arn: Set(None),
            conditions: Set(Value::Array(Vec::new())),
            next_attempt_at: Set(now),
            attempts: Set(0),
            cleaned_up: Set(false),
            updated_at: Set(now),
        }
        .insert(&*tx)
        .await?;
        let project = to_domain(inserted, draft.tags.clone(), Some(sync))?;
        let change = Change {
            action: "project.create",
            target_type: "project",
            target_id: id.to_string(),
            before: None,
            after: snapshot(&project),
        };
        record(&*tx, actor, now, change).await?;
        if let Some(key) = idempotency {
            idempotency_keys::ActiveModel {
                actor: Set(actor.principal.subject.clone()),
                scope: Set(IDEMPOTENCY_SCOPE_CREATE.into()),
                key: Set(key.0.clone()),
                request_hash: Set(hash.into()),
                response_status: Set(201),
                response_body: Set(serde_json::to_value(&project)
                    .map_err(|e| CoreError::internal("serializing a project", e))?),
                response_etag: Set(Some(project.etag())),
                created_at: Set(now),
            }
            .insert(&*tx)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    CoreError::Conflict {
                        code: "idempotency_key_in_use",
                        message: "another request with this Idempotency-Key is in progress; retry"
                            .into(),
                    }
                } else {
                    e.into()
                }
            })?;
        }
        tx.commit().await?;
        Ok(project)
    }

    pub async fn get_project(&self, id: Uuid) -> Result<Project, CoreError> {
        self.load_project(self.store.db(), id).await
    }

    /// One round trip: the project joined with its reconcile record (1:1) and its
    /// tags (1:n), so a GET costs one query.
    async fn load_project(
        &self,
        db: &impl ConnectionTrait,
        id: Uuid,
    ) -> Result<Project, CoreError> {
        let mut rows = projects::Entity::find_by_id(id)
            .find_also_related(project_sync::Entity)
            .find_also_related(project_tags::Entity)
            .all(db)
            .await?
            .into_iter();
        let (row, sync, first_tag) = rows.next().ok_or_else(|| CoreError::NotFound {
            kind: "project",
            id: id.to_string(),
        })?;
        let tags = first_tag
            .into_iter()
            .chain(rows.filter_map(|(_, _, tag)| tag))
            .map(|t| (t.key, t.value))
            .collect();
        to_domain(row, tags, sync)
    }

    pub async fn list_projects(
        &self,
        filter: &ProjectFilter,
        cursor: Option<&str>,
        limit: Option<u64>,
    ) -> Result<Page<Project>, CoreError> {
        let limit = page_size(limit)?;
        let mut q = projects::Entity::find().order_by_asc(projects::Column::Id);
        if let Some(c) = cursor {
            q = q.filter(projects::Column::Id.gt(decode_cursor(c)?));
        }
        if let Some(env) = filter.environment {
            q = q.filter(projects::Column::Environment.eq(env.as_str()));
        }
        if let Some(team) = &filter.team {
            q = q.filter(projects::Column::Team.eq(team.as_str()));
        }
        if let Some(status) = filter.status {
            q = q.filter(projects::Column::Status.eq(status.as_str()));
        }
        if let Some(tag) = &filter.tag {
            let sub = Query::select()
                .column(project_tags::Column::ProjectId)
                .from(project_tags::Entity)
                .cond_where(tag_condition(tag)?)
                .to_owned();
            q = q.filter(projects::Column::Id.in_subquery(sub));
        }
        if let Some(subject) = &filter.member {
            let sub = Query::select()
                .column(project_members::Column::ProjectId)
                .from(project_members::Entity)
                .and_where(Expr::col(project_members::Column::Subject).eq(subject.as_str()))
                .to_owned();
            q = q.filter(projects::Column::Id.in_subquery(sub));
        }
        // The reconcile record is 1:1, so joining it keeps the limit right; tags
        // (1:n) come in a second query for the page's ids.
        let rows = q
            .find_also_related(project_sync::Entity)
            .limit(limit + 1)
            .all(self.store.db())
            .await?;
        let (rows, next_cursor) = split_page(rows, limit, |(r, _)| r.id);
        let ids: Vec<Uuid> = rows.iter().map(|(r, _)| r.id).collect();
        let mut tags = tags_for(self.store.db(), &ids).await?;
        let items = rows
            .into_iter()
            .map(|(r, s)| {
                let t = tags.remove(&r.id).unwrap_or_default();
                to_domain(r, t, s)
            })
            .collect::<Result<_, _>>()?;
        Ok(Page { items, next_cursor })
    }

    /// Applies a merge patch. A patch that changes nothing writes nothing.
    pub async fn update_project(
        &self,
        actor: &Actor,
        id: Uuid,
        patch: &ProjectPatch,
        if_match: Option<&str>,
    ) -> Result<Project, CoreError> {
        let current = self.get_project(id).await?;
        check_if_match(if_match, &current)?;
        if current.status == ProjectStatus::Archived {
            return Err(CoreError::Conflict {
                code: "project_archived",
                message: format!("project '{id}' is archived and can no longer change"),
            });
        }
        let draft = patch
            .apply(&current.draft())
            .map_err(CoreError::Validation)?;
        if draft == current.draft() {
            return Ok(current);
        }
        self.check_catalog(self.store.db(), &draft).await?;
        let now = self.clock.now();
        let tx = self.store.begin_write().await?;
        // Compare-and-swap on resource_version: a concurrent writer makes this a 412.
        let result = bump_generation(projects::Entity::update_many(), now)
            .col_expr(
                projects::Column::DisplayName,
                Expr::value(draft.display_name.clone()),
            )
            .col_expr(projects::Column::Team, Expr::value(draft.team.to_string()))
            .col_expr(projects::Column::Region, Expr::value(draft.region.as_str()))
            .col_expr(
                projects::Column::AllowedModels,
                Expr::value(models_json(&draft.allowed_models)),
            )
            .col_expr(
                projects::Column::DataRetention,
                Expr::value(draft.data_retention.as_str()),
            )
            .col_expr(
                projects::Column::MonthlyBudgetCents,
                Expr::value(draft.monthly_budget.map(Budget::cents)),
            )
            .col_expr(
                projects::Column::RateLimitRpm,
                Expr::value(to_i64(draft.rate_limits.rpm)),
            )
            .col_expr(
                projects::Column::RateLimitTpm,
                Expr::value(to_i64(draft.rate_limits.tpm)),
            )
            .col_expr(
                projects::Column::Resources,
                Expr::value(strings_json(&draft.resources)),
            )
            .filter(projects::Column::Id.eq(id))
            .filter(projects::Column::ResourceVersion.eq(current.resource_version))
            .filter(projects::Column::ArchivedAt.is_null())
            .exec(&*tx)
            .await?;
        if result.rows_affected != 1 {
            let latest = self.load_project(&*tx, id).await?;
            return Err(CoreError::PreconditionFailed {
                expected: current.etag(),
                current: latest.etag(),
            });
        }
        write_tags(&*tx, id, &draft.tags).await?;
        schedule_reconcile(&*tx, id, now).await?;
        let updated = self.load_project(&*tx, id).await?;
        let change = Change {
            action: "project.update",
            target_type: "project",
            target_id: id.to_string(),
            before: snapshot(&current),
            after: snapshot(&updated),
        };
        record(&*tx, actor, now, change).await?;
        tx.commit().await?;
        Ok(updated)
    }

    /// Archives a project; archiving an archived project changes nothing.
    pub async fn archive_project(&self, actor: &Actor, id: Uuid) -> Result<Project, CoreError> {
        let current = self.get_project(id).await?;
        if current.status == ProjectStatus::Archived {
            return Ok(current);
        }
        let now = self.clock.now();
        let tx = self.store.begin_write().await?;
        let result = bump_generation(projects::Entity::update_many(), now)
            .col_expr(
                projects::Column::Status,
                Expr::value(ProjectStatus::Archived.as_str()),
            )
            .col_expr(projects::Column::ArchivedAt, Expr::value(Some(now)))
            .filter(projects::Column::Id.eq(id))
            .filter(projects::Column::ArchivedAt.is_null())
            .exec(&*tx)
            .await?;
        if result.rows_affected == 1 {
            schedule_reconcile(&*tx, id, now).await?;
            super::keys::revoke_project_keys(&*tx, id, actor, now).await?;
        }
        let archived = self.load_project(&*tx, id).await?;
        if result.rows_affected == 1 {
            let change = Change {
                action: "project.archive",
                target_type: "project",
                target_id: id.to_string(),
                before: snapshot(&current),
                after: snapshot(&archived),
            };
            record(&*tx, actor, now, change).await?;
            tx.commit().await?;
        }
        Ok(archived)
    }
}

impl Services {
    /// Projects the reconciler still has work on: active ones, and archived ones
    /// whose AWS resources are not removed yet.
    pub async fn live_project_ids(&self) -> Result<Vec<Uuid>, CoreError> {
        Ok(project_sync::Entity::find()
            .select_only()
            .column(project_sync::Column::ProjectId)
            .filter(project_sync::Column::CleanedUp.eq(false))
            .order_by_asc(project_sync::Column::ProjectId)
            .into_tuple()
            .all(self.store.db())
            .await?)
    }

    /// Forgets idempotency keys older than `max_age`; returns how many.
    pub async fn purge_idempotency_keys(
        &self,
        max_age: chrono::Duration,
    ) -> Result<u64, CoreError> {
        let cutoff = self.clock.now() - max_age;
        let result = idempotency_keys::Entity::delete_many()
            .filter(idempotency_keys::Column::CreatedAt.lt(cutoff))
            .exec(self.store.db())
            .await?;
        Ok(result.rows_affected)
    }
}
