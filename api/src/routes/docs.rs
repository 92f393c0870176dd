use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use strata_web::{ApiDocsPage, DocGroup, DocOperation};

use crate::app::AppState;

pub async fn openapi_json(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi_json.clone(),
    )
        .into_response()
}

/// The API reference page, built from the OpenAPI document.
pub async fn docs_page(State(state): State<AppState>) -> ApiDocsPage {
    let doc = &state.openapi;
    let mut groups: Vec<DocGroup> = doc
        .tags
        .iter()
        .flatten()
        .map(|t| DocGroup {
            tag: t.name.clone(),
            operations: Vec::new(),
        })
        .collect();
    for (path, item) in &doc.paths.paths {
        let ops = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
            ("DELETE", &item.delete),
        ];
        for (method, op) in ops {
            let Some(op) = op else { continue };
            let tag = op
                .tags
                .as_ref()
                .and_then(|t| t.first())
                .cloned()
                .unwrap_or_else(|| "other".into());
            let entry = DocOperation {
                anchor: op.operation_id.clone().unwrap_or_default(),
                summary: op.summary.clone().unwrap_or_default(),
                description: op.description.clone().unwrap_or_default(),
                method: method.to_owned(),
                path: path.clone(),
            };
            match groups.iter_mut().find(|g| g.tag == tag) {
                Some(g) => g.operations.push(entry),
                None => groups.push(DocGroup {
                    tag,
                    operations: vec![entry],
                }),
            }
        }
    }
    ApiDocsPage {
        title: doc.info.title.clone(),
        version: doc.info.version.clone(),
        groups,
    }
}
