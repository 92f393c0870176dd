//! The pages at `/ui` (askama templates in `strata-web`): sign-in, an environment's
//! costs for finance, a project's settings, keys and usage. Handlers authorize with
//! the API's rules (same RBAC table, same 404-or-403 for projects) and render views;
//! errors become pages, never JSON.

mod budgets;
mod costs;
mod notifications;
mod projects;
mod session;
mod sso;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use strata_web::pages::{ErrorPage, Nav};

use crate::ApiError;
use crate::app::AppState;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/ui", get(projects::home))
        .route("/ui/", get(|| async { Redirect::permanent("/ui") }))
        .route(
            "/ui/signin",
            get(projects::sign_in_form).post(projects::sign_in),
        )
        .route("/ui/signin/oidc", get(sso::start))
        .route("/ui/signin/callback", get(sso::callback))
        .route("/ui/signout", post(projects::sign_out))
        .route("/ui/env/{environment}/costs", get(costs::env_costs))
        .route("/ui/env/{environment}/costs.csv", get(costs::env_costs_csv))
        .route("/ui/env/{environment}/focus.csv", get(costs::env_focus_csv))
        .route("/ui/projects/{id}", get(projects::project_page))
        .route("/ui/projects/{id}/usage.csv", get(projects::usage_csv))
        .route("/ui/projects/{id}/keys", post(projects::create_key))
        .route(
            "/ui/projects/{id}/keys/{key_id}/revoke",
            post(projects::revoke_key),
        )
        .route("/ui/budgets", get(budgets::budgets).post(budgets::create))
        .route("/ui/budgets/{id}", post(budgets::change))
        .route("/ui/budgets/{id}/delete", post(budgets::delete))
        .route("/ui/notifications", get(notifications::notifications))
        .route("/ui/notifications/{id}", get(notifications::deliveries))
        .route(
            "/ui/notifications/{id}/test",
            post(notifications::send_test),
        )
        .route("/ui/static/strata.css", get(stylesheet))
        .layer(axum::middleware::from_fn_with_state(
            state,
            session::page_headers,
        ))
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        strata_web::STYLESHEET,
    )
        .into_response()
}

/// An error shown as a page.
#[derive(Debug)]
pub struct UiError {
    status: StatusCode,
    title: String,
    message: String,
    /// Boxed: keeps `Result<_, UiError>` small.
    nav: Option<Box<Nav>>,
}

impl UiError {
    pub fn new(status: StatusCode, title: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            title: title.to_owned(),
            message: message.into(),
            nav: None,
        }
    }

    pub fn with_nav(mut self, nav: Nav) -> Self {
        self.nav = Some(Box::new(nav));
        self
    }
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        if let Some(cause) = &e.cause
            && e.status.is_server_error()
        {
            tracing::error!(error.cause = %cause, error.code = %e.code, "page failed");
        }
        let title = match e.status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::UNAUTHORIZED => "Not signed in",
            s if s.is_client_error() => "Cannot show this",
            _ => "Something went wrong",
        };
        Self::new(e.status, title, e.message)
    }
}

impl From<strata_core::CoreError> for UiError {
    fn from(e: strata_core::CoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let page = ErrorPage {
            nav: self.nav.map(|n| *n),
            status: self.status.as_u16(),
            title: self.title,
            message: self.message,
        };
        (self.status, page).into_response()
    }
}

pub type UiResult<T> = Result<T, UiError>;

/// A handler's page, or its error as a page with the caller's navigation.
fn respond<P: IntoResponse>(
    state: &AppState,
    ui: &session::UiCaller,
    result: UiResult<P>,
) -> Response {
    match result {
        Ok(page) => page.into_response(),
        Err(e) => e.with_nav(ui.nav(state)).into_response(),
    }
}
