//! Scoped API keys: create (sign once, store the metadata), list, read, revoke.

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde_json::Value;
use uuid::Uuid;

use super::audit::{Change, record, snapshot};
use super::{Page, Services, corrupt, decode_cursor, page_size, split_page};
use crate::auth::Actor;
use crate::domain::{
    ApiKey, CreatedApiKey, KeyCreation, KeyStatus, ModelId, NewApiKey, ProjectStatus, RateLimits,
};
use crate::keys::{ApiKeyClaims, ApiKeyIssuer};
use crate::store::entities::{api_keys, idempotency_keys};
use crate::{CoreError, FieldError};

fn to_domain(row: api_keys::Model, now: DateTime<Utc>) -> Result<ApiKey, CoreError> {
    let models = match row.models {
        None => None,
        Some(v) => {
            let list: Vec<String> =
                serde_json::from_value(v).map_err(|e| corrupt("key models", e))?;
            Some(
                list.iter()
                    .map(|m| ModelId::parse(m))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| corrupt("key model id", e))?,
            )
        }
    };
    let status = if row.revoked_at.is_some() {
        KeyStatus::Revoked
    } else if row.expires_at <= now {
        KeyStatus::Expired
    } else {
        KeyStatus::Active
    };
    Ok(ApiKey {
        id: row.id,
        project_id: row.project_id,
        name: row.name,
        owner: row.owner,
        models,
        status,
        rate_limits: RateLimits {
            rpm: row.rpm.and_then(|v| u64::try_from(v).ok()),
            tpm: row.tpm.and_then(|v| u64::try_from(v).ok()),
        },
        created_at: row.created_at,
        expires_at: row.expires_at,
        revoked_at: row.revoked_at,
        revoked_by: row.revoked_by,
        last_used_at: row.last_used_at,
    })
}

fn key_not_found(key_id: &str) -> CoreError {
    CoreError::NotFound {
        kind: "key",
        id: key_id.into(),
    }
}

/// Revokes every live key of a project (it is being archived), in the caller's
/// transaction; returns how many.
pub(crate) async fn revoke_project_keys(
    db: &impl ConnectionTrait,
    project_id: Uuid,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<u64, CoreError> {
    let result = api_keys::Entity::update_many()
        .col_expr(api_keys::Column::RevokedAt, Expr::value(Some(now)))
        .col_expr(
            api_keys::Column::RevokedBy,
            Expr::value(Some(actor.principal.subject.clone())),
        )
        .filter(api_keys::Column::ProjectId.eq(project_id))
        .filter(api_keys::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Where a key form's id is remembered (per project; purged with the API's
/// idempotency keys).
const KEY_FORM_SCOPE: &str = "ui.key-form";

impl Services {
    /// Signs a new key for the project and records its metadata. The secret is in
    /// the answer and nowhere else.
    pub async fn create_api_key(
        &self,
        actor: &Actor,
        issuer: &ApiKeyIssuer,
        project_id: Uuid,
        input: &NewApiKey,
    ) -> Result<CreatedApiKey, CoreError> {
        match self
            .create_api_key_once(actor, issuer, project_id, input, None)
            .await?
        {
            KeyCreation::Created(created) => Ok(created),
            // Only a form id can repeat.
            KeyCreation::Repeated(key) => Err(CoreError::Internal(format!(
                "key {} reported as repeated without a form id",
                key.id
            ))),
        }
    }

    /// As `create_api_key`, but a second request with the same `form_id` (a page's
    /// form sent twice: a double click, a reload) makes no second key and returns the
    /// first one's metadata instead (its secret was on the first answer only).
    pub async fn create_api_key_once(
        &self,
        actor: &Actor,
        issuer: &ApiKeyIssuer,
        project_id: Uuid,
        input: &NewApiKey,
        form_id: Option<&str>,
    ) -> Result<KeyCreation, CoreError> {
        let draft = input.validate().map_err(CoreError::Validation)?;
        let project = self.get_project(project_id).await?;
        if project.status == ProjectStatus::Archived {
            return Err(CoreError::Conflict {
                code: "project_archived",
                message: format!("project '{project_id}' is archived; it can have no new keys"),
            });
        }
        if let Some(models) = &draft.models {
            let outside: Vec<FieldError> = models
                .iter()
                .enumerate()
                .filter(|(_, m)| !project.allowed_models.contains(m))
                .map(|(i, m)| {
                    FieldError::new(
                        format!("models[{i}]"),
                        format!("'{m}' is not among the project's allowed models"),
                    )
                })
                .collect();
            if !outside.is_empty() {
                return Err(CoreError::Validation(outside));
            }
        }
        let max = issuer.max_lifetime_secs(project.environment);
        let lifetime = match draft.expires_in {
            None => max,
            Some(secs) => match i64::try_from(secs) {
                Ok(s) if s <= max => s,
                _ => {
                    return Err(CoreError::invalid(
                        "expires_in",
                        format!(
                            "must be at most {max} seconds ({} days) in {}",
                            max / 86_400,
                            project.environment
                        ),
                    ));
                }
            },
        };
        let now = self.clock.now();
        // Whole seconds: the JWT carries seconds, and the stored expiry must match it.
        let issued_at = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
        let expires_at = issued_at + Duration::seconds(lifetime);
        let id = Uuid::now_v7();
        let (kid, signing_key) = issuer.active(self.store.db()).await?;
        let claims = ApiKeyClaims {
            iss: issuer.issuer().into(),
            aud: issuer.audience().into(),
            sub: id,
            project: project_id,
            environment: project.environment.to_string(),
            models: draft
                .models
                .as_ref()
                .map(|m| m.iter().map(ToString::to_string).collect()),
            rate_limits: (draft.rate_limits != RateLimits::default()).then_some(draft.rate_limits),
            iat: issued_at.timestamp(),
            exp: expires_at.timestamp(),
        };
        let secret = ApiKeyIssuer::sign(&kid, &signing_key, &claims)?;
        let tx = self.store.begin_write().await?;
        if let Some(form_id) = form_id {
            let first = idempotency_keys::Entity::insert(idempotency_keys::ActiveModel {
                actor: Set(actor.principal.subject.clone()),
                scope: Set(format!("{KEY_FORM_SCOPE}:{project_id}")),
                key: Set(form_id.to_owned()),
                request_hash: Set(String::new()),
                response_status: Set(201),
                response_body: Set(serde_json::json!({ "key_id": id })),
                response_etag: Set(None),
                created_at: Set(now),
            })
            .on_conflict(
                OnConflict::columns([
                    idempotency_keys::Column::Actor,
                    idempotency_keys::Column::Scope,
                    idempotency_keys::Column::Key,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&*tx)
            .await?
                == 1;
            if !first {
                drop(tx);
                return self
                    .repeated_key(actor, project_id, form_id)
                    .await
                    .map(KeyCreation::Repeated);
            }
        }
        let row = api_keys::ActiveModel {
            id: Set(id),
            project_id: Set(project_id),
            name: Set(draft.name.clone()),
            owner: Set(actor.principal.subject.clone()),
            models: Set(claims
                .models
                .as_ref()
                .map(|m| Value::Array(m.iter().cloned().map(Value::String).collect()))),
            signing_kid: Set(kid),
            created_at: Set(issued_at),
            expires_at: Set(expires_at),
            revoked_at: Set(None),
            revoked_by: Set(None),
            last_used_at: Set(None),
            // Validated to at most 1e9 above.
            rpm: Set(draft.rate_limits.rpm.and_then(|v| i64::try_from(v).ok())),
            tpm: Set(draft.rate_limits.tpm.and_then(|v| i64::try_from(v).ok())),
        }
        .insert(&*tx)
        .await?;
        let key = to_domain(row, now)?;
        let change = Change {
            action: "key.create",
            target_type: "key",
            target_id: id.to_string(),
            before: None,
            after: snapshot(&key),
        };
        record(&*tx, actor, now, change).await?;
        tx.commit().await?;
        Ok(KeyCreation::Created(CreatedApiKey { key, secret }))
    }

    /// The key an earlier send of the form made.
    async fn repeated_key(
        &self,
        actor: &Actor,
        project_id: Uuid,
        form_id: &str,
    ) -> Result<ApiKey, CoreError> {
        let first = idempotency_keys::Entity::find_by_id((
            actor.principal.subject.clone(),
            format!("{KEY_FORM_SCOPE}:{project_id}"),
            form_id.to_owned(),
        ))
        .one(self.store.db())
        .await?
        .ok_or_else(|| CoreError::Internal("a key form's record vanished".into()))?;
        let key_id = first
            .response_body
            .get("key_id")
            .and_then(Value::as_str)
            .ok_or_else(|| CoreError::Internal("a key form's record has no key id".into()))?;
        self.get_api_key(project_id, key_id).await
    }

    pub async fn list_api_keys(
        &self,
        project_id: Uuid,
        cursor: Option<&str>,
        limit: Option<u64>,
    ) -> Result<Page<ApiKey>, CoreError> {
        let limit = page_size(limit)?;
        let mut q = api_keys::Entity::find()
            .filter(api_keys::Column::ProjectId.eq(project_id))
            .order_by_asc(api_keys::Column::Id);
        if let Some(c) = cursor {
            q = q.filter(api_keys::Column::Id.gt(decode_cursor(c)?));
        }
        let rows = q.limit(limit + 1).all(self.store.db()).await?;
        let (rows, next_cursor) = split_page(rows, limit, |r| r.id);
        let now = self.clock.now();
        let items = rows
            .into_iter()
            .map(|r| to_domain(r, now))
            .collect::<Result<_, _>>()?;
        Ok(Page { items, next_cursor })
    }

    async fn find_api_key(
        &self,
        db: &impl ConnectionTrait,
        project_id: Uuid,
        key_id: &str,
    ) -> Result<api_keys::Model, CoreError> {
        let id = Uuid::parse_str(key_id).map_err(|_| key_not_found(key_id))?;
        api_keys::Entity::find_by_id(id)
            .filter(api_keys::Column::ProjectId.eq(project_id))
            .one(db)
            .await?
            .ok_or_else(|| key_not_found(key_id))
    }

    pub async fn get_api_key(&self, project_id: Uuid, key_id: &str) -> Result<ApiKey, CoreError> {
        let row = self
            .find_api_key(self.store.db(), project_id, key_id)
            .await?;
        to_domain(row, self.clock.now())
    }

    /// Revokes a key; revoking a revoked key changes nothing and says so by
    /// returning it as it was.
    pub async fn revoke_api_key(
        &self,
        actor: &Actor,
        project_id: Uuid,
        key_id: &str,
    ) -> Result<ApiKey, CoreError> {
        let now = self.clock.now();
        let tx = self.store.begin_write().await?;
        let row = self.find_api_key(&*tx, project_id, key_id).await?;
        if row.revoked_at.is_some() {
            return to_domain(row, now);
        }
        let before = to_domain(row.clone(), now)?;
        let mut active: api_keys::ActiveModel = row.into();
        active.revoked_at = Set(Some(now));
        active.revoked_by = Set(Some(actor.principal.subject.clone()));
        let after = to_domain(active.update(&*tx).await?, now)?;
        let change = Change {
            action: "key.revoke",
            target_type: "key",
            target_id: after.id.to_string(),
            before: snapshot(&before),
            after: snapshot(&after),
        };
        record(&*tx, actor, now, change).await?;
        tx.commit().await?;
        Ok(after)
    }
}
