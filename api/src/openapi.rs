//! The OpenAPI 3.1 document: generated from the handlers' `#[utoipa::path]`
//! annotations, with the bearer security scheme added here.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "strata",
        description = "Control plane for LLM workloads on Amazon Bedrock's OpenAI-compatible endpoint: projects (kept in sync with AWS by the reconciler), members, the model catalog, cost-tag reports and the audit log.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "projects", description = "Projects, one per application and environment"),
        (name = "members", description = "Who may work on a project"),
        (name = "keys", description = "Scoped API keys for the proxy"),
        (name = "models", description = "The model catalog: regions, APIs, prices"),
        (name = "audit", description = "Every change, who made it and when"),
        (name = "budgets", description = "Budgets on a project, team, environment, cost tag or key, per day, week or month, with threshold alerts"),
        (name = "notifications", description = "Where alerts go (webhooks, Slack), their delivery logs and test sends"),
        (name = "costs", description = "Cost by environment and tag from Cost Explorer (read from strata's store), cost-allocation tags and tag coverage"),
        (name = "auth", description = "The caller's identity, and how the command-line client signs in"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The complete document, as served at `/api/v1/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = crate::routes::api_router().split_for_parts();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}
