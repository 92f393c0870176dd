//! The API reference page.

use askama::Template;
use askama_web::WebTemplate;

/// One operation of the API, as the reference page lists it.
#[derive(Debug, Clone)]
pub struct DocOperation {
    pub method: String,
    pub path: String,
    pub summary: String,
    pub description: String,
    pub anchor: String,
}

/// Operations sharing a tag.
#[derive(Debug, Clone)]
pub struct DocGroup {
    pub tag: String,
    pub operations: Vec<DocOperation>,
}

/// The API reference, rendered from the OpenAPI document so it cannot drift from it.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "api_docs.html")]
pub struct ApiDocsPage {
    pub title: String,
    pub version: String,
    pub groups: Vec<DocGroup>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_operations_escaped() {
        let page = ApiDocsPage {
            title: "strata".into(),
            version: "0.1.0".into(),
            groups: vec![DocGroup {
                tag: "projects".into(),
                operations: vec![DocOperation {
                    method: "GET".into(),
                    path: "/api/v1/projects/{id}".into(),
                    summary: "Get <one> project".into(),
                    description: "".into(),
                    anchor: "get-project".into(),
                }],
            }],
        };
        let html = page.render().unwrap_or_else(|e| panic!("{e}"));
        insta::assert_snapshot!(html);
    }
}
