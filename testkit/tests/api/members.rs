use reqwest::StatusCode;
use serde_json::json;
use strata_testkit::{TestApp, project_body};

#[tokio::test]
async fn add_change_list_and_remove_members() {
    let app = TestApp::spawn().await;
    let p = app.create_project(&project_body("members")).await;
    let base = format!(
        "/api/v1/projects/{}/members",
        p["id"].as_str().unwrap_or_default()
    );

    let r = app
        .put(
            &format!("{base}/alice@example.com"),
            &app.admin,
            &json!({"role": "developer"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["role"], "developer");
    let r = app
        .put(
            &format!("{base}/alice@example.com"),
            &app.admin,
            &json!({"role": "developer"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .put(
            &format!("{base}/alice@example.com"),
            &app.admin,
            &json!({"role": "owner"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["role"].as_str()),
        (StatusCode::OK, Some("owner"))
    );
    app.add_member(p["id"].as_str().unwrap_or_default(), "auth0|bob", "viewer")
        .await;

    let list = app.get(&base, &app.admin).await;
    let subjects: Vec<&str> = list.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["subject"].as_str())
        .collect();
    assert_eq!(subjects, ["alice@example.com", "auth0|bob"]);
    let one = app.get(&format!("{base}/auth0|bob"), &app.admin).await;
    assert_eq!(one.body["role"], "viewer");

    assert_eq!(
        app.delete(&format!("{base}/auth0|bob"), &app.admin)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let again = app.delete(&format!("{base}/auth0|bob"), &app.admin).await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::NOT_FOUND, "member_not_found")
    );

    let bad = app
        .put(
            &format!("{base}/has%20space"),
            &app.admin,
            &json!({"role": "owner"}),
        )
        .await;
    assert_eq!(
        (bad.status, bad.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        "{}",
        bad.body
    );
    let bad = app
        .put(
            &format!("{base}/carol"),
            &app.admin,
            &json!({"role": "emperor"}),
        )
        .await;
    assert_eq!(
        (bad.status, bad.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
    );
    let missing = app
        .put(
            &format!("/api/v1/projects/{}/members/carol", uuid::Uuid::now_v7()),
            &app.admin,
            &json!({"role": "owner"}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    app.post(
        &format!(
            "/api/v1/projects/{}/archive",
            p["id"].as_str().unwrap_or_default()
        ),
        &app.admin,
        &json!({}),
    )
    .await;
    let frozen = app
        .put(
            &format!("{base}/dave"),
            &app.admin,
            &json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(
        (frozen.status, frozen.code()),
        (StatusCode::CONFLICT, "project_archived")
    );
}

#[tokio::test]
async fn a_developer_lists_only_its_projects() {
    let app = TestApp::spawn().await;
    let mine = app.create_project(&project_body("mine")).await;
    app.create_project(&project_body("theirs")).await;
    app.add_member(mine["id"].as_str().unwrap_or_default(), "dana", "developer")
        .await;
    let dana = app.token("dana", &["developer"]);
    let r = app.get("/api/v1/projects", &dana).await;
    let names: Vec<&str> = r.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["mine"]);
}
