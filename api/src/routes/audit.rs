use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strata_core::auth::Action;
use strata_core::services::{AuditEvent, AuditFilter};
use utoipa::{IntoParams, ToSchema};

use super::authorize;
use crate::app::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiQuery, Caller};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Subject that made the change.
    pub actor: Option<String>,
    /// e.g. `project.update`.
    pub action: Option<String>,
    /// `project`, `member` or `model`.
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// RFC 3339; events at or after.
    pub since: Option<DateTime<Utc>>,
    /// RFC 3339; events before.
    pub until: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
}

/// One page of audit events, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub items: Vec<AuditEvent>,
    pub next_cursor: Option<String>,
}

/// Read the audit log.
#[utoipa::path(
    get, path = "/audit", tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, body = AuditList),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditList>> {
    authorize(&state, &caller, Action::AuditRead)?;
    let filter = AuditFilter {
        actor: q.actor,
        action: q.action,
        target_type: q.target_type,
        target_id: q.target_id,
        since: q.since,
        until: q.until,
    };
    let page = state
        .services
        .list_audit(&filter, q.cursor.as_deref(), q.limit)
        .await?;
    Ok(Json(AuditList {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}
