//! Bad input gets a 4xx with the envelope and a message saying what to fix; nothing
//! is written.

use reqwest::StatusCode;
use serde_json::{Value, json};
use strata_testkit::{TestApp, project_body};

fn with(field: &str, value: Value) -> Value {
    let mut b = project_body("valid-name");
    b[field] = value;
    b
}

#[tokio::test]
async fn each_bad_project_is_refused_with_a_clear_message() {
    let app = TestApp::spawn().await;
    let many_tags: serde_json::Map<String, Value> =
        (0..48).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases: Vec<(&str, Value, u16, &str, &str)> = vec![
        (
            "bad slug",
            with("name", json!("Checkout_API")),
            422,
            "validation_failed",
            "name",
        ),
        (
            "slug too long",
            with("name", json!("a".repeat(41))),
            422,
            "validation_failed",
            "name",
        ),
        (
            "blank display name",
            with("display_name", json!("   ")),
            422,
            "validation_failed",
            "display_name",
        ),
        (
            "display name too long",
            with("display_name", json!("x".repeat(129))),
            422,
            "validation_failed",
            "display_name",
        ),
        (
            "bad team",
            with("team", json!("Team A")),
            422,
            "validation_failed",
            "team",
        ),
        (
            "unknown model",
            with("allowed_models", json!(["openai.gpt-5"])),
            422,
            "validation_failed",
            "unknown model",
        ),
        (
            "model not in region",
            {
                let mut b = with("region", json!("eu-west-1"));
                b["allowed_models"] = json!(["nvidia.nemotron-nano-9b-v2"]);
                b
            },
            422,
            "validation_failed",
            "not offered in eu-west-1",
        ),
        (
            "no models",
            with("allowed_models", json!([])),
            422,
            "validation_failed",
            "at least one",
        ),
        (
            "duplicate model",
            with(
                "allowed_models",
                json!(["openai.gpt-oss-20b", "openai.gpt-oss-20b"]),
            ),
            422,
            "validation_failed",
            "listed twice",
        ),
        (
            "malformed model id",
            with("allowed_models", json!(["GPT 4"])),
            422,
            "validation_failed",
            "allowed_models[0]",
        ),
        (
            "aws: tag",
            with("tags", json!({"aws:createdBy": "x"})),
            422,
            "validation_failed",
            "aws:",
        ),
        (
            "strata: tag",
            with("tags", json!({"strata:project": "x"})),
            422,
            "validation_failed",
            "strata:",
        ),
        (
            "tag key bad char",
            with("tags", json!({"cost#center": "x"})),
            422,
            "validation_failed",
            "tags.cost#center",
        ),
        (
            "tag value too long",
            with("tags", json!({"k": "v".repeat(257)})),
            422,
            "validation_failed",
            "256",
        ),
        (
            "empty tag key",
            with("tags", json!({"": "v"})),
            422,
            "validation_failed",
            "1 to 128",
        ),
        (
            "too many tags",
            with("tags", Value::Object(many_tags)),
            422,
            "validation_failed",
            "at most 47",
        ),
        (
            "tag keys differing in case",
            with("tags", json!({"Team": "a", "team": "b"})),
            422,
            "validation_failed",
            "letter case",
        ),
        (
            "unknown environment",
            with("environment", json!("qa")),
            422,
            "invalid_body",
            "dev",
        ),
        (
            "unknown region",
            with("region", json!("us-west-1")),
            422,
            "invalid_body",
            "us-east-1",
        ),
        (
            "unknown retention",
            with("data_retention", json!("forever")),
            422,
            "invalid_body",
            "zdr",
        ),
        (
            "negative budget",
            with("monthly_budget_usd", json!(-5)),
            422,
            "validation_failed",
            "monthly_budget_usd",
        ),
        (
            "fractional cents",
            with("monthly_budget_usd", json!(10.001)),
            422,
            "validation_failed",
            "two decimal",
        ),
        (
            "zero rpm",
            with("rate_limits", json!({"rpm": 0})),
            422,
            "validation_failed",
            "rate_limits.rpm",
        ),
        (
            "negative tpm",
            with("rate_limits", json!({"tpm": -1})),
            422,
            "invalid_body",
            "tpm",
        ),
        (
            // serde's derived structs would take fields by position.
            "limits as an array",
            with("rate_limits", json!([10, 20])),
            422,
            "invalid_body",
            "a JSON object",
        ),
        (
            "wrong type",
            with("team", json!(5)),
            422,
            "invalid_body",
            "team",
        ),
        (
            "unknown field",
            with("colour", json!("blue")),
            422,
            "invalid_body",
            "colour",
        ),
        (
            "missing field",
            {
                let mut b = project_body("x1");
                b.as_object_mut().map(|o| o.remove("region"));
                b
            },
            422,
            "invalid_body",
            "region",
        ),
    ];
    for (name, body, status, code, hint) in cases {
        let r = app.post("/api/v1/projects", &app.admin, &body).await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (status, code),
            "{name}: {}",
            r.body
        );
        let text = r.body.to_string();
        assert!(
            text.contains(hint),
            "{name}: message should mention '{hint}': {text}"
        );
    }
    // Details name every bad field at once.
    let mut b = project_body("Bad Name");
    b["team"] = json!("");
    b["monthly_budget_usd"] = json!(-1);
    let r = app.post("/api/v1/projects", &app.admin, &b).await;
    let fields: Vec<&str> = r.body["error"]["details"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["field"].as_str())
        .collect();
    assert_eq!(fields, ["name", "team", "monthly_budget_usd"], "{}", r.body);

    assert_nothing_written(&app).await;

    // The same for a patch's and a key's limits.
    let p = app.create_project(&project_body("arrays")).await;
    let id = p["id"].as_str().unwrap_or_default();
    let r = app
        .patch(
            &format!("/api/v1/projects/{id}"),
            &app.admin,
            &json!({"rate_limits": [null, 5]}),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.code()),
        (422, "invalid_body"),
        "{}",
        r.body
    );
    let r = app
        .post(
            &format!("/api/v1/projects/{id}/keys"),
            &app.admin,
            &json!({"name": "k", "rate_limits": [null, null]}),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.code()),
        (422, "invalid_body"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn malformed_requests_get_the_envelope() {
    let app = TestApp::spawn().await;
    let url = app.url("/api/v1/projects");
    let send = |body: &'static str, content_type: Option<&'static str>| {
        let mut req = app.client.post(&url).bearer_auth(&app.admin).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    let (s, b) = send("{not json", Some("application/json")).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_json")),
        "{b}"
    );
    let (s, b) = send("{}", None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("unsupported_media_type")
        ),
        "{b}"
    );
    // A field of the wrong type is named by its path.
    let (s, b) = send(
        r#"{"name": "p", "tags": {"team": 5}}"#,
        Some("application/json"),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_body")),
        "{b}"
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("tags.team")),
        "{b}"
    );
    let (s, b) = send("[1,2,3]", Some("application/json")).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_body")),
        "{b}"
    );

    let huge = json!({"name": "big", "display_name": "x".repeat(2 * 1024 * 1024)});
    let r = app.post("/api/v1/projects", &app.admin, &huge).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
        "{}",
        r.body
    );

    let r = app.get("/api/v1/projects/not-a-uuid", &app.admin).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "project_not_found")
    );
    let r = app
        .get(
            &format!("/api/v1/projects/{}", uuid::Uuid::now_v7()),
            &app.admin,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "project_not_found")
    );
    let r = app
        .send(
            reqwest::Method::POST,
            "/api/v1/projects",
            &app.admin,
            Some(&project_body("hdr")),
            &[("idempotency-key", "é")],
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.body);

    assert_nothing_written(&app).await;
}

async fn assert_nothing_written(app: &TestApp) {
    let list = app.get("/api/v1/projects", &app.admin).await;
    assert_eq!(
        list.body["items"],
        json!([]),
        "a refused request wrote a project"
    );
    let audit = app.get("/api/v1/audit", &app.admin).await;
    assert_eq!(
        audit.body["items"],
        json!([]),
        "a refused request wrote an audit event"
    );
}

/// NUL cannot be stored or compared in Postgres text: a query or a body that holds one
/// is a 4xx on both databases, never a 500 (schemathesis found `?tag=%3C%3A%C2%B5%00`).
#[tokio::test]
async fn nul_characters_are_refused_in_queries_and_bodies() {
    let app = TestApp::spawn().await;
    let r = app
        .get(
            "/api/v1/projects?environment=prod&status=active&tag=%3C%3A%C2%B5%00",
            &app.admin,
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["error"]["code"].as_str()),
        (400, Some("invalid_query")),
        "{}",
        r.body
    );
    // The pages and the OpenAI shapes too.
    for path in [
        "/ui/env/prod/costs?group_by=tag%3Aa%00",
        "/v1/organization/costs?start_time=0&models=a%00",
    ] {
        let r = app.get(path, &app.admin).await;
        assert_eq!(r.status.as_u16(), 400, "{path}: {}", r.body);
    }
    let mut body = project_body("nul");
    body["tags"]["Team\u{0}"] = serde_json::json!("x");
    let r = app.post("/api/v1/projects", &app.admin, &body).await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.body);
    let mut body = project_body("nul");
    body["display_name"] = serde_json::json!("a\u{0}b");
    let r = app.post("/api/v1/projects", &app.admin, &body).await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.body);
    // A backslash followed by "u0000" is text, not NUL: accepted.
    let mut body = project_body("notnul");
    body["display_name"] = serde_json::json!("a\\u0000b");
    let r = app.post("/api/v1/projects", &app.admin, &body).await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.body);
    assert_nothing_else_failed(&app).await;
}

async fn assert_nothing_else_failed(app: &TestApp) {
    let r = app.get("/api/v1/projects?limit=10", &app.admin).await;
    assert_eq!(r.status.as_u16(), 200);
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(1));
}
