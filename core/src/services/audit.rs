//! The audit log: one event per mutation, written in the mutation's transaction.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Page, Services, decode_cursor, page_size, split_page};
use crate::CoreError;
use crate::auth::Actor;
use crate::store::entities::audit_events;

/// Who changed what, when, from what to what.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEvent {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    /// Subject of the caller.
    pub actor: String,
    /// e.g. `project.create`, `project.update`, `member.put`, `model.put`.
    pub action: String,
    /// `project`, `member` or `model`.
    pub target_type: String,
    pub target_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    /// The `x-request-id` of the request that made the change.
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// A change to record; written by [`record`] inside the caller's transaction.
pub(crate) struct Change<'a> {
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

pub(crate) async fn record(
    db: &impl ConnectionTrait,
    actor: &Actor,
    at: DateTime<Utc>,
    change: Change<'_>,
) -> Result<(), CoreError> {
    audit_events::ActiveModel {
        id: Set(Uuid::now_v7()),
        occurred_at: Set(at),
        actor: Set(actor.principal.subject.clone()),
        action: Set(change.action.into()),
        target_type: Set(change.target_type.into()),
        target_id: Set(change.target_id),
        before: Set(change.before),
        after: Set(change.after),
        request_id: Set(actor.request_id.clone()),
    }
    .insert(db)
    .await?;
    Ok(())
}

pub(crate) fn snapshot(value: &impl Serialize) -> Option<Value> {
    serde_json::to_value(value).ok()
}

impl Services {
    pub async fn list_audit(
        &self,
        filter: &AuditFilter,
        cursor: Option<&str>,
        limit: Option<u64>,
    ) -> Result<Page<AuditEvent>, CoreError> {
        let limit = page_size(limit)?;
        let mut q = audit_events::Entity::find().order_by_asc(audit_events::Column::Id);
        if let Some(c) = cursor {
            q = q.filter(audit_events::Column::Id.gt(decode_cursor(c)?));
        }
        if let Some(v) = &filter.actor {
            q = q.filter(audit_events::Column::Actor.eq(v.as_str()));
        }
        if let Some(v) = &filter.action {
            q = q.filter(audit_events::Column::Action.eq(v.as_str()));
        }
        if let Some(v) = &filter.target_type {
            q = q.filter(audit_events::Column::TargetType.eq(v.as_str()));
        }
        if let Some(v) = &filter.target_id {
            q = q.filter(audit_events::Column::TargetId.eq(v.as_str()));
        }
        if let Some(v) = filter.since {
            q = q.filter(audit_events::Column::OccurredAt.gte(v));
        }
        if let Some(v) = filter.until {
            q = q.filter(audit_events::Column::OccurredAt.lt(v));
        }
        let rows = q.limit(limit + 1).all(self.store.db()).await?;
        let (rows, next_cursor) = split_page(rows, limit, |r| r.id);
        let items = rows
            .into_iter()
            .map(|r| AuditEvent {
                id: r.id,
                occurred_at: r.occurred_at,
                actor: r.actor,
                action: r.action,
                target_type: r.target_type,
                target_id: r.target_id,
                before: r.before,
                after: r.after,
                request_id: r.request_id,
            })
            .collect();
        Ok(Page { items, next_cursor })
    }
}
