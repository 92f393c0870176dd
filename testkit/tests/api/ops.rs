use reqwest::StatusCode;
use strata_testkit::TestApp;

#[tokio::test]
async fn health_readiness_metrics_and_request_ids() {
    let app = TestApp::spawn().await;
    let r = app.get("/healthz", "").await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.get("/readyz", "").await;
    assert_eq!(
        (r.status, r.body["database"].as_str()),
        (StatusCode::OK, Some("up"))
    );

    app.get("/api/v1/projects", &app.admin).await;
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/plain")
    );
    let text = metrics.text().await.unwrap_or_default();
    assert!(
        text.contains(
            r#"strata_http_requests_total{method="GET",route="/api/v1/projects",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains("strata_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("strata_database_up 1"), "{text}");

    // Every response has a request id; a caller's own id is kept.
    for path in [
        "/healthz",
        "/api/v1/projects",
        "/nope",
        "/api/v1/projects/x",
    ] {
        let r = app.get(path, "").await;
        assert!(
            r.header("x-request-id").is_some_and(|v| !v.is_empty()),
            "{path}"
        );
    }
    let r = app
        .send(
            reqwest::Method::GET,
            "/api/v1/me",
            &app.admin,
            None,
            &[("x-request-id", "trace-123")],
        )
        .await;
    assert_eq!(r.header("x-request-id"), Some("trace-123"));
}

#[tokio::test]
async fn unknown_routes_and_methods_get_the_envelope() {
    let app = TestApp::spawn().await;
    let r = app.get("/api/v1/nothing-here", &app.admin).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    let r = app.delete("/api/v1/projects", &app.admin).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        "{}",
        r.body
    );
    assert!(r.header("allow").is_some(), "405 keeps its Allow header");
}

#[tokio::test]
async fn slow_requests_time_out_with_the_envelope() {
    // A one-second budget and a database held by another transaction: the request waits
    // on the lock until the timeout answers for it.
    let http = strata_api::HttpConfig {
        request_timeout_secs: 1,
        ..Default::default()
    };
    let app = TestApp::builder().http(http).spawn().await;
    let hold = app.state.services.store.begin_write().await.unwrap();
    let r = if app.db.backend == strata_testkit::Backend::Sqlite {
        // SQLite writers queue on strata's in-process writer lock.
        app.post(
            "/api/v1/projects",
            &app.admin,
            &strata_testkit::project_body("slow"),
        )
        .await
    } else {
        use sea_orm::ConnectionTrait;
        hold.execute_unprepared("LOCK TABLE projects IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        app.get("/api/v1/projects", &app.admin).await
    };
    drop(hold);
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "request_timeout"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn openapi_document_is_stable_and_documented() {
    let app = TestApp::spawn().await;
    let r = app.get("/api/v1/openapi.json", "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        r.body["openapi"]
    );
    insta::assert_snapshot!("openapi", app.state.openapi_json);

    let page = app
        .client
        .get(app.url("/api/v1/docs"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap_or_default();
    for op in [
        "/api/v1/projects/{id}/archive",
        "/api/v1/models/{id}",
        "/api/v1/audit",
        "Create a project.",
    ] {
        assert!(html.contains(op), "docs page lacks {op}");
    }
}
