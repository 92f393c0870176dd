//! Route table. Every `/api/v1` handler is registered through `routes!` so the
//! OpenAPI document is generated from the handlers themselves.

mod audit;
mod budgets;
pub(crate) mod costs;
mod docs;
mod health;
mod keys;
mod me;
mod members;
mod models;
mod notifications;
mod projects;
mod proxy_link;
mod reconcile;
mod usage;

use axum::Router;
use axum::routing::get;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::openapi::ApiDoc;

pub use me::CliLogin;

/// The documented API, mounted under `/api/v1`.
pub fn api_router() -> OpenApiRouter<AppState> {
    use utoipa::OpenApi;
    let v1 = OpenApiRouter::new()
        .routes(routes!(projects::create_project, projects::list_projects))
        .routes(routes!(projects::get_project, projects::update_project))
        .routes(routes!(projects::archive_project))
        .routes(routes!(usage::project_usage))
        .routes(routes!(usage::project_budget))
        .routes(routes!(reconcile::get_plan))
        .routes(routes!(reconcile::cost_allocation_tags))
        .routes(routes!(reconcile::tag_coverage))
        .routes(routes!(members::list_members))
        .routes(routes!(
            members::get_member,
            members::put_member,
            members::delete_member
        ))
        .routes(routes!(keys::create_key, keys::list_keys))
        .routes(routes!(keys::get_key))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(models::list_models))
        .routes(routes!(models::get_model, models::put_model))
        .routes(routes!(audit::list_audit))
        .routes(routes!(costs::cost_report))
        .routes(routes!(costs::cost_report_csv))
        .routes(routes!(costs::environment_costs))
        .routes(routes!(costs::estimate_vs_bill))
        .routes(routes!(costs::focus_csv))
        .routes(routes!(
            notifications::create_destination,
            notifications::list_destinations
        ))
        .routes(routes!(notifications::delete_destination))
        .routes(routes!(notifications::list_deliveries))
        .routes(routes!(notifications::test_destination))
        .routes(routes!(budgets::create_budget, budgets::list_budgets))
        .routes(routes!(budgets::update_budget, budgets::delete_budget))
        .routes(routes!(me::whoami))
        .routes(routes!(me::cli_login));
    OpenApiRouter::with_openapi(ApiDoc::openapi()).nest("/api/v1", v1)
}

pub fn router() -> Router<AppState> {
    let (api, _) = api_router().split_for_parts();
    api.merge(crate::openai_admin::router())
        .route("/api/v1/openapi.json", get(docs::openapi_json))
        .route("/api/v1/docs", get(docs::docs_page))
        .route("/.well-known/jwks.json", get(keys::jwks))
        .route("/internal/v1/proxy/snapshot", get(proxy_link::snapshot))
        .route(
            "/internal/v1/proxy/usage",
            axum::routing::post(proxy_link::usage),
        )
        .route("/internal/v1/proxy/spend", get(proxy_link::spend))
        .route(
            "/internal/v1/proxy/responses",
            axum::routing::post(proxy_link::record_response),
        )
        .route(
            "/internal/v1/proxy/responses/batch",
            axum::routing::post(proxy_link::record_responses),
        )
        .route(
            "/internal/v1/proxy/responses/claim",
            axum::routing::post(proxy_link::claim_responses),
        )
        .route(
            "/internal/v1/proxy/responses/{id}",
            get(proxy_link::find_response),
        )
        .route(
            "/internal/v1/proxy/responses/{id}/complete",
            axum::routing::post(proxy_link::complete_response),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
}

/// Parses a project id from the path; a malformed id is simply a project that does
/// not exist.
pub(crate) fn project_id(raw: &str) -> Result<uuid::Uuid, crate::ApiError> {
    uuid::Uuid::parse_str(raw).map_err(|_| crate::ApiError::not_found("project", raw))
}

/// Checks an action on one project: 404 when the caller may not see the project,
/// 403 when it may see it but not do this.
pub(crate) async fn authorize_project(
    state: &AppState,
    caller: &crate::extract::Caller,
    id: uuid::Uuid,
    action: strata_core::auth::Action,
) -> Result<(), crate::ApiError> {
    use strata_core::auth::{Action, Decision};
    let p = &caller.principal;
    if state.rbac.allows(p, Action::ProjectsRead) && state.rbac.allows(p, action) {
        return Ok(());
    }
    let membership = state.services.membership(id, &p.subject).await?;
    match state.rbac.decide(p, action, membership) {
        Decision::Allow => Ok(()),
        Decision::Forbidden => Err(crate::ApiError::forbidden(action.as_str())),
        Decision::NotFound => Err(crate::ApiError::not_found("project", &id.to_string())),
    }
}

/// Checks an action that is not about one project (catalog, audit, create).
fn authorize(
    state: &AppState,
    caller: &crate::extract::Caller,
    action: strata_core::auth::Action,
) -> Result<(), crate::ApiError> {
    if state.rbac.allows(&caller.principal, action) {
        Ok(())
    } else {
        Err(crate::ApiError::forbidden(action.as_str()))
    }
}
