use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use strata_testkit::{TestApp, project_body};

#[tokio::test]
async fn create_get_and_list() {
    let app = TestApp::spawn().await;
    let r = app
        .post(
            "/api/v1/projects",
            &app.admin,
            &project_body("checkout-api"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        r.header("location"),
        Some(format!("/api/v1/projects/{id}").as_str())
    );
    assert_eq!(r.header("etag"), Some("\"1\""));
    assert_eq!(r.body["status"], "active");
    assert_eq!(r.body["generation"], 1);
    assert_eq!(r.body["observed_generation"], 0);
    assert_eq!(
        r.body["tags"],
        json!({"CostCenter": "cc-1234", "Owner": "payments-team"})
    );
    assert_eq!(r.body["monthly_budget_usd"], 500.0);
    assert_eq!(r.body["rate_limits"], json!({"rpm": 600, "tpm": 200000}));

    let got = app.get(&format!("/api/v1/projects/{id}"), &app.admin).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, r.body, "GET returns what POST returned");
    assert_eq!(got.header("etag"), Some("\"1\""));

    let list = app.get("/api/v1/projects", &app.admin).await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(list.body["items"][0], r.body);
    assert_eq!(list.body["next_cursor"], serde_json::Value::Null);
}

#[tokio::test]
async fn defaults_apply() {
    let app = TestApp::spawn().await;
    let body = json!({"name": "min", "environment": "dev", "team": "core", "region": "eu-west-1", "allowed_models": ["openai.gpt-oss-20b"]});
    let p = app.create_project(&body).await;
    assert_eq!(p["display_name"], "min");
    assert_eq!(p["data_retention"], "zdr");
    assert_eq!(p["tags"], json!({}));
    assert_eq!(p["monthly_budget_usd"], serde_json::Value::Null);
    assert_eq!(p["rate_limits"], json!({"rpm": null, "tpm": null}));
}

#[tokio::test]
async fn filters_and_cursor_pagination() {
    let app = TestApp::spawn().await;
    for (i, (env, team, cc)) in [
        ("prod", "payments", "cc-1"),
        ("dev", "payments", "cc-2"),
        ("prod", "search", "cc-1"),
        ("staging", "search", "cc-3"),
        ("prod", "payments", "cc-2"),
    ]
    .iter()
    .enumerate()
    {
        let mut b = project_body(&format!("svc-{i}"));
        b["environment"] = json!(env);
        b["team"] = json!(team);
        b["tags"] = json!({"CostCenter": cc, "team:owner": format!("{team}:lead")});
        app.create_project(&b).await;
    }
    let names = |r: &strata_testkit::Reply| -> Vec<String> {
        r.body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect()
    };
    let r = app
        .get("/api/v1/projects?environment=prod", &app.admin)
        .await;
    assert_eq!(names(&r), ["svc-0", "svc-2", "svc-4"]);
    let r = app.get("/api/v1/projects?team=search", &app.admin).await;
    assert_eq!(names(&r), ["svc-2", "svc-3"]);
    let r = app
        .get("/api/v1/projects?tag=CostCenter:cc-2", &app.admin)
        .await;
    assert_eq!(names(&r), ["svc-1", "svc-4"]);
    // Keys and values may contain ':' themselves.
    let r = app
        .get("/api/v1/projects?tag=team:owner:search:lead", &app.admin)
        .await;
    assert_eq!(names(&r), ["svc-2", "svc-3"]);
    let r = app
        .get(
            "/api/v1/projects?environment=prod&team=payments&tag=CostCenter:cc-2",
            &app.admin,
        )
        .await;
    assert_eq!(names(&r), ["svc-4"]);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/projects?limit=2&cursor={c}"),
            None => "/api/v1/projects?limit=2".into(),
        };
        let r = app.get(&path, &app.admin).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let page = names(&r);
        assert!(page.len() <= 2);
        seen.extend(page);
        cursor = r.body["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["svc-0", "svc-1", "svc-2", "svc-3", "svc-4"]);

    for (query, status, code) in [
        ("limit=0", 422, "validation_failed"),
        ("limit=201", 422, "validation_failed"),
        ("limit=abc", 400, "invalid_query"),
        ("cursor=not-a-cursor", 422, "validation_failed"),
        ("environment=qa", 400, "invalid_query"),
        ("tag=novalue", 422, "validation_failed"),
    ] {
        let r = app
            .get(&format!("/api/v1/projects?{query}"), &app.admin)
            .await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (status, code),
            "{query}: {}",
            r.body
        );
    }
}

#[tokio::test]
async fn names_are_unique_per_environment_among_active_projects() {
    let app = TestApp::spawn().await;
    let first = app.create_project(&project_body("checkout")).await;
    let r = app
        .post("/api/v1/projects", &app.admin, &project_body("checkout"))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "project_name_taken"),
        "{}",
        r.body
    );
    let mut staging = project_body("checkout");
    staging["environment"] = json!("staging");
    app.create_project(&staging).await;
    // Archiving frees the name.
    let id = first["id"].as_str().unwrap_or_default();
    assert_eq!(
        app.post(
            &format!("/api/v1/projects/{id}/archive"),
            &app.admin,
            &json!({})
        )
        .await
        .status,
        StatusCode::OK
    );
    app.create_project(&project_body("checkout")).await;
    let r = app
        .get("/api/v1/projects?environment=prod", &app.admin)
        .await;
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn patch_is_a_merge_patch_with_optimistic_concurrency() {
    let app = TestApp::spawn().await;
    let p = app.create_project(&project_body("orders")).await;
    let path = format!("/api/v1/projects/{}", p["id"].as_str().unwrap_or_default());

    let patch = json!({"display_name": "Orders", "tags": {"Owner": null, "Tier": "gold"}, "monthly_budget_usd": null, "rate_limits": {"rpm": 60}});
    let r = app
        .send(
            reqwest::Method::PATCH,
            &path,
            &app.admin,
            Some(&patch),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.header("etag"), Some("\"2\""));
    assert_eq!(r.body["display_name"], "Orders");
    assert_eq!(
        r.body["tags"],
        json!({"CostCenter": "cc-1234", "Tier": "gold"})
    );
    assert_eq!(r.body["monthly_budget_usd"], serde_json::Value::Null);
    assert_eq!(r.body["rate_limits"], json!({"rpm": 60, "tpm": 200000}));
    assert_eq!(r.body["generation"], 2);

    // A stale ETag is refused and changes nothing.
    let r = app
        .send(
            reqwest::Method::PATCH,
            &path,
            &app.admin,
            Some(&json!({"team": "other"})),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::PRECONDITION_FAILED, "precondition_failed"),
        "{}",
        r.body
    );
    assert_eq!(app.get(&path, &app.admin).await.body["team"], "payments");

    // A patch that changes nothing does not bump the generation.
    let r = app
        .patch(&path, &app.admin, &json!({"display_name": "Orders"}))
        .await;
    assert_eq!(
        (r.status, r.body["generation"].as_i64()),
        (StatusCode::OK, Some(2))
    );

    // An empty If-Match and a body that is not an object are refused.
    let r = app
        .send(
            reqwest::Method::PATCH,
            &path,
            &app.admin,
            Some(&json!({"team": "x"})),
            &[("if-match", "")],
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_header"),
        "{}",
        r.body
    );
    let r = app.patch(&path, &app.admin, &json!([null, null])).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        "{}",
        r.body
    );

    // Immutable and unknown fields.
    let r = app
        .patch(&path, &app.admin, &json!({"name": "renamed"}))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        "{}",
        r.body
    );
    // Region change re-checks the catalog: nemotron is not offered in eu-west-1.
    let r = app
        .patch(
            &path,
            &app.admin,
            &json!({"region": "eu-west-1", "allowed_models": ["nvidia.nemotron-nano-9b-v2"]}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        "{}",
        r.body
    );

    // Concurrent writers with the same ETag: exactly one wins.
    let etag = app
        .get(&path, &app.admin)
        .await
        .header("etag")
        .map(str::to_owned)
        .unwrap_or_default();
    let tries = (0..8).map(|i| {
        let body = json!({"display_name": format!("writer {i}")});
        let (path, etag, app) = (path.clone(), etag.clone(), &app);
        async move {
            app.send(
                reqwest::Method::PATCH,
                &path,
                &app.admin,
                Some(&body),
                &[("if-match", &etag)],
            )
            .await
            .status
        }
    });
    let statuses = join_all(tries).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::PRECONDITION_FAILED),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn archive_is_idempotent_and_freezes_the_project() {
    let app = TestApp::spawn().await;
    let p = app.create_project(&project_body("legacy")).await;
    let id = p["id"].as_str().unwrap_or_default();
    let r = app
        .post(
            &format!("/api/v1/projects/{id}/archive"),
            &app.admin,
            &json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "archived");
    assert_eq!(r.body["generation"], 2);
    assert!(r.body["archived_at"].is_string());
    let again = app
        .post(
            &format!("/api/v1/projects/{id}/archive"),
            &app.admin,
            &json!({}),
        )
        .await;
    assert_eq!(again.body, r.body);
    let patch = app
        .patch(
            &format!("/api/v1/projects/{id}"),
            &app.admin,
            &json!({"display_name": "x"}),
        )
        .await;
    assert_eq!(
        (patch.status, patch.code()),
        (StatusCode::CONFLICT, "project_archived")
    );
    let audit = app
        .get(
            &format!("/api/v1/audit?target_id={id}&action=project.archive"),
            &app.admin,
        )
        .await;
    assert_eq!(
        audit.body["items"].as_array().map(Vec::len),
        Some(1),
        "archiving twice is audited once"
    );
}

#[tokio::test]
async fn idempotency_key_replays_and_refuses_a_different_body() {
    let app = TestApp::spawn().await;
    let body = project_body("payments-api");
    let key = [("idempotency-key", "create-payments-api-1")];
    let first = app
        .send(
            reqwest::Method::POST,
            "/api/v1/projects",
            &app.admin,
            Some(&body),
            &key,
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let second = app
        .send(
            reqwest::Method::POST,
            "/api/v1/projects",
            &app.admin,
            Some(&body),
            &key,
        )
        .await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(second.body, first.body);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(second.header("etag"), first.header("etag"));
    assert_eq!(second.header("location"), first.header("location"));

    let mut other = body.clone();
    other["team"] = json!("other-team");
    let r = app
        .send(
            reqwest::Method::POST,
            "/api/v1/projects",
            &app.admin,
            Some(&other),
            &key,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
    );

    // Concurrent retries with one key create one project.
    let body = project_body("race");
    let key = [("idempotency-key", "race-1")];
    let replies = join_all((0..8).map(|_| {
        app.send(
            reqwest::Method::POST,
            "/api/v1/projects",
            &app.admin,
            Some(&body),
            &key,
        )
    }))
    .await;
    let ids: std::collections::BTreeSet<_> =
        replies.iter().map(|r| r.body["id"].to_string()).collect();
    assert!(
        replies.iter().all(|r| r.status == StatusCode::CREATED),
        "{:?}",
        replies.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    assert_eq!(ids.len(), 1, "{ids:?}");
    let list = app.get("/api/v1/projects", &app.admin).await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(2));

    let r = app
        .send(
            reqwest::Method::POST,
            "/api/v1/projects",
            &app.admin,
            Some(&project_body("x-key")),
            &[("idempotency-key", "")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn many_concurrent_creates_all_land() {
    let app = TestApp::spawn().await;
    let replies = join_all((0..24).map(|i| {
        let body = project_body(&format!("bulk-{i}"));
        let app = &app;
        async move { app.post("/api/v1/projects", &app.admin, &body).await.status }
    }))
    .await;
    assert!(
        replies.iter().all(|s| *s == StatusCode::CREATED),
        "{replies:?}"
    );
    let r = app.get("/api/v1/projects?limit=200", &app.admin).await;
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(24));
}
