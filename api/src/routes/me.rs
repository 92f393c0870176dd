use axum::Json;
use axum::extract::State;
use serde::Serialize;
use strata_core::auth::Action;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
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

/// How `strata login` signs in: the OAuth 2.0 device authorization grant (RFC 8628) at
/// this identity provider, as this public client.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CliLogin {
    /// The identity provider (its discovery document is under
    /// `/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    /// Space-separated scopes to ask for.
    pub scopes: String,
    /// Which token of the provider's answer strata accepts: `access_token` or `id_token`.
    pub token: String,
}

/// How the command-line client signs in (no token needed).
#[utoipa::path(
    get, path = "/auth/cli", tag = "auth",
    responses(
        (status = 200, body = CliLogin),
        (status = 404, description = "No identity provider is set up for the CLI: sign in with a token", body = ErrorBody),
    ),
)]
pub async fn cli_login(State(state): State<AppState>) -> ApiResult<Json<CliLogin>> {
    state.cli_login.clone().map(Json).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "device_login_not_configured",
            "this strata has no identity provider set up for `strata login` \
             (STRATA_OIDC_CLI_CLIENT_ID): sign in with a token instead",
        )
    })
}
