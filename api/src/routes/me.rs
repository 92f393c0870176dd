use axum::Json;
use axum::extract::State;
use serde::Serialize;
use strata_core::auth::Action;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::Caller;

/// The caller as strata sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    pub subject: String,
    /// Global roles from the token (unknown roles are ignored).
    pub roles: Vec<String>,
    /// Actions allowed on every resource; project members may have more on their projects.
    pub actions: Vec<String>,
}

/// Who am I, and what may I do?
#[utoipa::path(
    get, path = "/me", tag = "auth",
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn whoami(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<WhoAmI>> {
    let actions = Action::ALL
        .iter()
        .filter(|a| state.rbac.allows(&caller.principal, **a))
        .map(|a| a.as_str().to_owned())
        .collect();
    Ok(Json(WhoAmI {
        subject: caller.principal.subject.clone(),
        roles: caller.principal.roles.clone(),
        actions,
    }))
}
