//! Every endpoint × every role: allowed, 403 or 404 (and 401 without a token). A
//! developer must not learn that another team's project exists.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use strata_testkit::{TestApp, project_body};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    Ok,
    Forbidden,
    NotFound,
    Unauthenticated,
}
use Want::*;

const ROLES: [&str; 7] = [
    "owner",
    "viewer",
    "outsider",
    "finance",
    "norole",
    "anonymous",
    "admin",
];

#[tokio::test]
async fn role_by_endpoint() {
    let app = TestApp::spawn().await;
    let p = app.create_project(&project_body("guarded")).await;
    let id = p["id"].as_str().unwrap_or_default().to_owned();
    let other = app.create_project(&project_body("elsewhere")).await;
    let other_id = other["id"].as_str().unwrap_or_default().to_owned();
    app.add_member(&id, "olivia", "owner").await;
    app.add_member(&id, "victor", "viewer").await;
    for role in ROLES {
        app.add_member(&id, &format!("temp-{role}"), "viewer").await;
    }
    let tokens = [
        ("owner", app.token("olivia", &["developer"])),
        ("viewer", app.token("victor", &["developer"])),
        ("outsider", app.token("oscar", &["developer"])),
        ("finance", app.token("fiona", &["finance"])),
        ("norole", app.token("nora", &["no-such-role"])),
        ("anonymous", String::new()),
        ("admin", app.admin.clone()),
    ];
    let key = app
        .post(
            &format!("/api/v1/projects/{id}/keys"),
            &app.admin,
            &json!({"name": "k"}),
        )
        .await;
    let key_id = key.body["id"].as_str().unwrap_or_default().to_owned();
    let model = json!({"provider": "acme", "display_name": "x", "supports_chat": true, "supports_responses": false,
        "supports_streaming": true, "regions": ["us-east-1"], "input_price_per_mtok_usd": 1, "output_price_per_mtok_usd": 1});
    let project = |name: &str| project_body(name);
    let p_ = |s: &str| format!("/api/v1/projects/{id}{s}");
    let a = Unauthenticated;
    // (method, path, body, [owner, viewer, outsider, finance, norole, anonymous, admin])
    let table: Vec<(Method, String, Option<Value>, [Want; 7])> = vec![
        (
            Method::GET,
            "/api/v1/projects".into(),
            None,
            [Ok, Ok, Ok, Ok, Forbidden, a, Ok],
        ),
        (
            Method::POST,
            "/api/v1/projects".into(),
            Some(project("new-{role}")),
            [Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, a, Ok],
        ),
        (
            Method::GET,
            p_(""),
            None,
            [Ok, Ok, NotFound, Ok, NotFound, a, Ok],
        ),
        (
            Method::GET,
            format!("/api/v1/projects/{other_id}"),
            None,
            [NotFound, NotFound, NotFound, Ok, NotFound, a, Ok],
        ),
        (
            Method::GET,
            format!("/api/v1/projects/{}", uuid::Uuid::now_v7()),
            None,
            [
                NotFound, NotFound, NotFound, NotFound, NotFound, a, NotFound,
            ],
        ),
        (
            Method::PATCH,
            p_(""),
            Some(json!({"display_name": "by {role}"})),
            [Forbidden, Forbidden, NotFound, Forbidden, NotFound, a, Ok],
        ),
        (
            Method::GET,
            p_("/members"),
            None,
            [Ok, Ok, NotFound, Forbidden, NotFound, a, Ok],
        ),
        (
            Method::GET,
            p_("/members/olivia"),
            None,
            [Ok, Ok, NotFound, Forbidden, NotFound, a, Ok],
        ),
        (
            Method::PUT,
            p_("/members/added-by-{role}"),
            Some(json!({"role": "viewer"})),
            [Ok, Forbidden, NotFound, Forbidden, NotFound, a, Ok],
        ),
        (
            Method::DELETE,
            p_("/members/temp-{role}"),
            None,
            [Ok, Forbidden, NotFound, Forbidden, NotFound, a, Ok],
        ),
        (
            Method::GET,
            "/api/v1/models".into(),
            None,
            [Ok, Ok, Ok, Ok, Forbidden, a, Ok],
        ),
        (
            Method::GET,
            "/api/v1/models/openai.gpt-oss-120b".into(),
            None,
            [Ok, Ok, Ok, Ok, Forbidden, a, Ok],
        ),
        (
            Method::PUT,
            "/api/v1/models/acme.by-{role}".into(),
            Some(model),
            [Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, a, Ok],
        ),
        (
            Method::GET,
            "/api/v1/audit".into(),
            None,
            [Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, a, Ok],
        ),
        (
            Method::GET,
            "/api/v1/costs?group_by=tag:CostCenter".into(),
            None,
            [Forbidden, Forbidden, Forbidden, Ok, Forbidden, a, Ok],
        ),
        (
            Method::GET,
            "/api/v1/costs.csv".into(),
            None,
            [Forbidden, Forbidden, Forbidden, Ok, Forbidden, a, Ok],
        ),
        (
            Method::GET,
            "/api/v1/environments/prod/costs?group_by=tag:CostCenter".into(),
            None,
            [Forbidden, Forbidden, Forbidden, Ok, Forbidden, a, Ok],
        ),
        (
            Method::GET,
            "/api/v1/me".into(),
            None,
            [Ok, Ok, Ok, Ok, Ok, a, Ok],
        ),
        (
            Method::GET,
            p_("/usage"),
            None,
            [Ok, Ok, NotFound, Ok, NotFound, a, Ok],
        ),
        (
            Method::GET,
            p_("/budget"),
            None,
            [Ok, Ok, NotFound, Ok, NotFound, a, Ok],
        ),
        (
            Method::POST,
            p_("/keys"),
            Some(json!({"name": "by {role}"})),
            [Ok, Forbidden, NotFound, Forbidden, NotFound, a, Ok],
        ),
        (
            Method::GET,
            p_("/keys"),
            None,
            [Ok, Ok, NotFound, Forbidden, NotFound, a, Ok],
        ),
        (
            Method::GET,
            p_(&format!("/keys/{key_id}")),
            None,
            [Ok, Ok, NotFound, Forbidden, NotFound, a, Ok],
        ),
        (
            Method::POST,
            p_(&format!("/keys/{key_id}/revoke")),
            Some(json!({})),
            [Ok, Forbidden, NotFound, Forbidden, NotFound, a, Ok],
        ),
        (
            Method::POST,
            p_("/archive"),
            Some(json!({})),
            [Forbidden, Forbidden, NotFound, Forbidden, NotFound, a, Ok],
        ),
    ];
    let mut failures = Vec::new();
    for (method, path, body, wants) in &table {
        for ((role, token), want) in tokens.iter().zip(wants) {
            let path = path.replace("{role}", role);
            let body = body.as_ref().map(|b| {
                serde_json::from_str::<Value>(&b.to_string().replace("{role}", role))
                    .unwrap_or_default()
            });
            let r = app
                .send(method.clone(), &path, token, body.as_ref(), &[])
                .await;
            let got = match r.status {
                s if s.is_success() => Ok,
                StatusCode::FORBIDDEN => Forbidden,
                StatusCode::NOT_FOUND => NotFound,
                StatusCode::UNAUTHORIZED => Unauthenticated,
                s => panic!("{method} {path} as {role}: unexpected {s}: {}", r.body),
            };
            if got != *want {
                failures.push(format!(
                    "{method} {path} as {role}: want {want:?}, got {got:?} {}",
                    r.body
                ));
            }
            if got == NotFound && path.contains(&id) {
                // Indistinguishable from a project that does not exist.
                assert_eq!(r.code(), "project_not_found", "{method} {path} as {role}");
            }
        }
    }
    assert!(
        failures.is_empty(),
        "authorization table mismatches:\n{}",
        failures.join("\n")
    );

    // The outsider's listing does not include the project.
    let outsider = &tokens[2].1;
    assert_eq!(
        app.get("/api/v1/projects", outsider).await.body["items"],
        json!([])
    );
}
