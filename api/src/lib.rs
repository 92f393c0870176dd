//! The HTTP surface of the strata control plane: REST `/api/v1`, the OpenAPI
//! document and its docs page, health, readiness and metrics.

pub mod app;
mod error;
mod extract;
mod metrics;
mod middleware;
mod openai_admin;
pub mod openapi;
mod routes;
mod ui;

pub use app::{App, AppState, HttpConfig, SsoConfig, build_router};
pub use error::{ApiError, ErrorBody};
