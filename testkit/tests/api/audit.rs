use reqwest::StatusCode;
use serde_json::json;
use strata_testkit::{TestApp, project_body};

#[tokio::test]
async fn every_mutation_is_audited_with_before_and_after() {
    let app = TestApp::spawn().await;
    let created = app
        .post("/api/v1/projects", &app.admin, &project_body("audited"))
        .await;
    let id = created.body["id"].as_str().unwrap_or_default().to_owned();
    let request_id = created
        .header("x-request-id")
        .unwrap_or_default()
        .to_owned();
    app.patch(
        &format!("/api/v1/projects/{id}"),
        &app.admin,
        &json!({"team": "platform"}),
    )
    .await;
    app.add_member(&id, "erin", "viewer").await;
    app.delete(&format!("/api/v1/projects/{id}/members/erin"), &app.admin)
        .await;
    app.post(
        &format!("/api/v1/projects/{id}/archive"),
        &app.admin,
        &json!({}),
    )
    .await;

    let r = app.get("/api/v1/audit", &app.admin).await;
    assert_eq!(r.status, StatusCode::OK);
    let items = r.body["items"].as_array().cloned().unwrap_or_default();
    let actions: Vec<&str> = items.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions,
        [
            "project.create",
            "project.update",
            "member.put",
            "member.delete",
            "project.archive"
        ]
    );
    let create = &items[0];
    assert_eq!(create["actor"], "admin");
    assert_eq!(create["target_type"], "project");
    assert_eq!(create["target_id"], id.as_str());
    assert_eq!(create["before"], serde_json::Value::Null);
    assert_eq!(create["after"], created.body);
    assert_eq!(
        create["request_id"],
        request_id.as_str(),
        "the audit event carries the request id"
    );
    let update = &items[1];
    assert_eq!(update["before"]["team"], "payments");
    assert_eq!(update["after"]["team"], "platform");
    assert_eq!(items[3]["after"], serde_json::Value::Null);

    let r = app
        .get("/api/v1/audit?action=project.update", &app.admin)
        .await;
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(1));
    let r = app
        .get(
            &format!("/api/v1/audit?target_type=member&target_id={id}/erin"),
            &app.admin,
        )
        .await;
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(2));
    let r = app.get("/api/v1/audit?actor=nobody", &app.admin).await;
    assert_eq!(r.body["items"], json!([]));
    let r = app
        .get(
            "/api/v1/audit?since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z",
            &app.admin,
        )
        .await;
    assert_eq!(r.body["items"], json!([]));
    let r = app.get("/api/v1/audit?since=yesterday", &app.admin).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_query")
    );

    let page1 = app.get("/api/v1/audit?limit=3", &app.admin).await;
    let cursor = page1.body["next_cursor"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let page2 = app
        .get(
            &format!("/api/v1/audit?limit=3&cursor={cursor}"),
            &app.admin,
        )
        .await;
    assert_eq!(page1.body["items"].as_array().map(Vec::len), Some(3));
    assert_eq!(page2.body["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(page2.body["next_cursor"], serde_json::Value::Null);
}
