use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use strata_core::CoreError;
use strata_core::auth::Action;
use strata_core::domain::{Member, ProjectRole, Subject};
use utoipa::ToSchema;

use super::{authorize_project, project_id};
use crate::app::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Caller};

/// A project's members.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberList {
    pub items: Vec<Member>,
}

/// The body of `PUT /projects/{id}/members/{subject}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberPut {
    pub role: ProjectRole,
}

/// List a project's members.
#[utoipa::path(
    get, path = "/projects/{id}/members", tag = "members",
    params(("id" = String, Path, description = "Project id (UUID)")),
    responses(
        (status = 200, body = MemberList),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_members(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<MemberList>> {
    let id = project_id(&id)?;
    authorize_project(&state, &caller, id, Action::MembersRead).await?;
    state.services.get_project(id).await?;
    Ok(Json(MemberList {
        items: state.services.list_members(id).await?,
    }))
}

/// Get one member of a project.
#[utoipa::path(
    get, path = "/projects/{id}/members/{subject}", tag = "members",
    params(("id" = String, Path, description = "Project id (UUID)"), ("subject" = String, Path, description = "The member's subject")),
    responses(
        (status = 200, body = Member),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, subject)): Path<(String, String)>,
) -> ApiResult<Json<Member>> {
    let id = project_id(&id)?;
    authorize_project(&state, &caller, id, Action::MembersRead).await?;
    state.services.get_project(id).await?;
    Ok(Json(state.services.get_member(id, &subject).await?))
}

/// Add a member to a project or change its role.
#[utoipa::path(
    put, path = "/projects/{id}/members/{subject}", tag = "members",
    request_body = MemberPut,
    params(("id" = String, Path, description = "Project id (UUID)"), ("subject" = String, Path, description = "The member's subject (`sub` claim)")),
    responses(
        (status = 200, description = "Role changed (or unchanged)", body = Member),
        (status = 201, description = "Member added", body = Member),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Project archived", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn put_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, subject)): Path<(String, String)>,
    ApiJson(body): ApiJson<MemberPut>,
) -> ApiResult<Response> {
    let id = project_id(&id)?;
    authorize_project(&state, &caller, id, Action::MembersWrite).await?;
    let subject = Subject::parse(&subject).map_err(|e| CoreError::invalid("subject", e))?;
    let (member, created) = state
        .services
        .put_member(&caller.actor(), id, &subject, body.role)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(member)).into_response())
}

/// Remove a member from a project.
#[utoipa::path(
    delete, path = "/projects/{id}/members/{subject}", tag = "members",
    params(("id" = String, Path, description = "Project id (UUID)"), ("subject" = String, Path, description = "The member's subject")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, subject)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let id = project_id(&id)?;
    authorize_project(&state, &caller, id, Action::MembersWrite).await?;
    state.services.get_project(id).await?;
    state
        .services
        .delete_member(&caller.actor(), id, &subject)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
