//! The policy snapshot the proxy follows: only with the proxy's credential, the
//! projects and revocations it needs, and a long poll that answers on a change.

use std::time::{Duration, Instant};

use chrono::SubsecRound;
use reqwest::StatusCode;
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use strata_core::domain::ResponseRecord;
use strata_core::store::entities::responses;
use strata_testkit::{TestApp, project_body};

const PATH: &str = "/internal/v1/proxy/snapshot";

fn proxy_token(app: &TestApp) -> String {
    app.state.proxy_token.expose().to_owned()
}

#[tokio::test]
async fn only_the_proxy_credential_reads_the_snapshot() {
    let app = TestApp::spawn().await;
    for token in [
        "",
        app.admin.as_str(),
        "not-the-credential-but-long-enough-000000",
    ] {
        let r = app.get(PATH, token).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{token}: {}", r.body);
        assert_eq!(r.code(), "invalid_proxy_credential");
    }
    let r = app.get(PATH, &proxy_token(&app)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app
        .get(&format!("{PATH}?wait=21"), &proxy_token(&app))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_snapshot_has_projects_models_and_live_revocations() {
    let app = TestApp::spawn().await;
    let token = proxy_token(&app);
    let p = app.create_project(&project_body("snap")).await;
    let pid = p["id"].as_str().unwrap_or_default().to_owned();
    let keys = format!("/api/v1/projects/{pid}/keys");
    let k = app.post(&keys, &app.admin, &json!({"name": "k"})).await;
    let kid = k.body["id"].as_str().unwrap_or_default().to_owned();

    let first = app.get(PATH, &token).await;
    assert_eq!(first.status, StatusCode::OK);
    let version = first.body["version"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        first.header("etag"),
        Some(format!("\"{version}\"").as_str())
    );
    let project = &first.body["projects"][0];
    assert_eq!(project["id"], pid.as_str());
    assert_eq!(project["region"], "us-east-1");
    assert_eq!(project["status"], "active");
    assert_eq!(
        project["allowed_models"],
        json!(["openai.gpt-oss-120b", "openai.gpt-oss-20b"])
    );
    assert_eq!(
        project["mantle_project_id"],
        Value::Null,
        "not reconciled in this test"
    );
    assert_eq!(first.body["revoked_keys"], json!([]));

    // A model change and a revocation each make a new version.
    let r = app
        .patch(
            &format!("/api/v1/projects/{pid}"),
            &app.admin,
            &json!({"allowed_models": ["openai.gpt-oss-20b"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let second = app.get(PATH, &token).await;
    assert_ne!(second.body["version"], first.body["version"]);
    assert_eq!(
        second.body["projects"][0]["allowed_models"],
        json!(["openai.gpt-oss-20b"])
    );
    app.post(&format!("{keys}/{kid}/revoke"), &app.admin, &json!({}))
        .await;
    let third = app.get(PATH, &token).await;
    assert_ne!(third.body["version"], second.body["version"]);
    assert_eq!(third.body["revoked_keys"], json!([kid]));

    // Archiving shows in the project's status.
    app.post(
        &format!("/api/v1/projects/{pid}/archive"),
        &app.admin,
        &json!({}),
    )
    .await;
    let fourth = app.get(PATH, &token).await;
    assert_eq!(fourth.body["projects"][0]["status"], "archived");

    // The catalog travels with it, and a catalog edit is a new version too.
    let model = |body: &Value, id: &str| {
        body["models"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["id"] == id).cloned())
            .unwrap_or_default()
    };
    let gemma = model(&fourth.body, "google.gemma-3-27b-it");
    assert_eq!(gemma["accepts_content_parts"], false, "{gemma}");
    assert_eq!(gemma["input_price_micros_per_mtok"], 230_000);
    assert_eq!(
        model(&fourth.body, "openai.gpt-oss-20b")["accepts_content_parts"],
        true
    );
    let r = app
        .put(
            "/api/v1/models/google.gemma-3-27b-it",
            &app.admin,
            &json!({"provider": "google", "display_name": "Gemma 3 27B IT", "supports_chat": true,
                    "supports_responses": false, "supports_streaming": true, "supports_logprobs": false,
                    "regions": ["us-east-1"], "input_price_per_mtok_usd": 0.3, "output_price_per_mtok_usd": 0.4}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let fifth = app.get(PATH, &token).await;
    assert_ne!(fifth.body["version"], fourth.body["version"]);
    let gemma = model(&fifth.body, "google.gemma-3-27b-it");
    assert_eq!(gemma["supports_logprobs"], false);
    assert_eq!(gemma["supports_multiple_choices"], true, "defaults to true");
    assert_eq!(gemma["input_price_micros_per_mtok"], 300_000);
}

#[tokio::test]
async fn a_long_poll_answers_within_a_second_of_a_revocation_and_304_without_change() {
    let app = TestApp::spawn().await;
    let token = proxy_token(&app);
    let p = app.create_project(&project_body("polled")).await;
    let keys = format!(
        "/api/v1/projects/{}/keys",
        p["id"].as_str().unwrap_or_default()
    );
    let k = app.post(&keys, &app.admin, &json!({"name": "k"})).await;
    let kid = k.body["id"].as_str().unwrap_or_default().to_owned();
    let version = app.get(PATH, &token).await.body["version"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // Nothing changes: the poll waits the time asked for, then says so.
    let started = Instant::now();
    let idle = app
        .get(&format!("{PATH}?after={version}&wait=1"), &token)
        .await;
    assert_eq!(idle.status, StatusCode::NOT_MODIFIED);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // A revocation during the poll ends it.
    let poll = {
        let url = app.url(&format!("{PATH}?after={version}&wait=15"));
        let client = app.client.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let r = client.get(url).bearer_auth(token).send().await;
            let at = Instant::now();
            let body: Value = match r {
                Ok(r) => r.json().await.unwrap_or_default(),
                Err(e) => panic!("{e}"),
            };
            (at, body)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = app
        .post(&format!("{keys}/{kid}/revoke"), &app.admin, &json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // Committed before its answer: from here the proxy must hear of it within 1 s.
    let revoked_at = Instant::now();
    let (answered_at, body) = poll.await.unwrap();
    let latency = answered_at.saturating_duration_since(revoked_at);
    assert!(
        latency < Duration::from_secs(1),
        "the poll answered {latency:?} after the revocation"
    );
    assert_eq!(body["revoked_keys"], json!([kid]));
}

#[tokio::test]
async fn response_ids_keep_their_owner_and_background_ones_are_metered_once() {
    let app = TestApp::spawn().await;
    let token = proxy_token(&app);
    let p = app.create_project(&project_body("responses")).await;
    let project = p["id"].as_str().unwrap_or_default().to_owned();
    let key = uuid::Uuid::now_v7();
    let record = |id: &str, background: bool| {
        json!({"id": id, "project_id": project, "key_id": key, "model": "openai.gpt-oss-20b",
            "background": background, "status": if background { "queued" } else { "completed" },
            "metered": !background, "claimed_by": background.then_some("replica-a")})
    };
    let base = "/internal/v1/proxy/responses";
    // Only the proxy credential; bad records are 4xx.
    let r = app.post(base, &app.admin, &record("resp_a", false)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    for (bad, field) in [
        (json!({"id": "resp/../x"}), "id"),
        (json!({"model": "Not A Model"}), "model"),
        (json!({"status": ""}), "status"),
    ] {
        let mut body = record("resp_a", false);
        for (k, v) in bad.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        let r = app.post(base, &token, &body).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}: {}",
            r.body
        );
        assert!(r.body.to_string().contains(field), "{}", r.body);
    }
    for (id, background) in [("resp_plain", false), ("resp_bg", true)] {
        let r = app.post(base, &token, &record(id, background)).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
        // Recording again (a retry) changes nothing.
        let r = app.post(base, &token, &record(id, background)).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    }
    // A group: every record, or (one invalid) none, named by its index. An id seen
    // before, or twice in the group, is kept once.
    let group = json!({"records": [record("resp_g1", false), record("resp_plain", false),
        record("resp_g2", false), record("resp_g2", false)]});
    let r = app.post(&format!("{base}/batch"), &token, &group).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let mut bad = record("resp_g4", false);
    bad["model"] = json!("Not A Model");
    let spoiled = json!({"records": [record("resp_g3", false), bad]});
    let r = app.post(&format!("{base}/batch"), &token, &spoiled).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(
        r.body["error"]["details"][0]["field"], "records[1].model",
        "{}",
        r.body
    );
    assert_eq!(
        app.get(&format!("{base}/resp_g3"), &token).await.status,
        StatusCode::NOT_FOUND,
        "nothing of a refused group is kept"
    );
    let too_many: Vec<Value> = (0..1_001)
        .map(|i| record(&format!("resp_n{i}"), false))
        .collect();
    let r = app
        .post(
            &format!("{base}/batch"),
            &token,
            &json!({"records": too_many}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = app.post(&format!("{base}/batch"), &app.admin, &group).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    for id in ["resp_g1", "resp_g2"] {
        let r = app.get(&format!("{base}/{id}"), &token).await;
        assert_eq!(r.body["project_id"], project.as_str(), "{id}");
    }
    let r = app.get(&format!("{base}/resp_plain"), &token).await;
    assert_eq!(r.body["project_id"], project.as_str());
    let r = app.get(&format!("{base}/resp_unknown"), &token).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app.get(&format!("{base}/resp%2F..%2Fx"), &token).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);

    // The creating replica holds its background response; another gets nothing until
    // the claim lapses; the holder renews it.
    let claim = |owner: &str| json!({"owner": owner, "limit": 10, "lease_secs": 30});
    let b = app
        .post(&format!("{base}/claim"), &token, &claim("replica-b"))
        .await;
    assert_eq!(b.body, json!([]), "{}", b.body);
    let a = app
        .post(&format!("{base}/claim"), &token, &claim("replica-a"))
        .await;
    let ids: Vec<&str> = a
        .body
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        ["resp_bg"],
        "plain responses are metered already: {}",
        a.body
    );
    let r = app
        .post(
            &format!("{base}/claim"),
            &token,
            &json!({"owner": "x", "limit": 0, "lease_secs": 30}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Completion meters once, whoever reports it; then nobody claims it.
    let done = json!({"status": "completed", "input_tokens": 1000, "output_tokens": 2000, "latency_ms": 5});
    let first = app
        .post(&format!("{base}/resp_bg/complete"), &token, &done)
        .await;
    assert_eq!(first.body["applied"], true, "{}", first.body);
    let again = app
        .post(&format!("{base}/resp_bg/complete"), &token, &done)
        .await;
    assert_eq!(again.body["applied"], false, "{}", again.body);
    let usage = app
        .get(&format!("/api/v1/projects/{project}/usage"), &app.admin)
        .await;
    assert_eq!(usage.body["total"]["requests"], 1, "{}", usage.body);
    assert_eq!(usage.body["total"]["output_tokens"], 2000);
    let a = app
        .post(&format!("{base}/claim"), &token, &claim("replica-a"))
        .await;
    assert_eq!(a.body, json!([]));
    let r = app
        .post(&format!("{base}/resp_unknown/complete"), &token, &done)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// Whichever way the control plane writes a group (Postgres copies a fresh one and
/// inserts one with an id seen before, skipping it), every column lands as recorded.
#[tokio::test]
async fn recorded_responses_keep_every_column() {
    let app = TestApp::spawn().await;
    let services = &app.state.services;
    let (project, key) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let record = |id: &str, background: bool| ResponseRecord {
        id: id.into(),
        project_id: project,
        key_id: key,
        model: "openai.gpt-oss-20b".into(),
        background,
        status: if background { "queued" } else { "completed" }.into(),
        metered: !background,
        claimed_by: background.then(|| "replica-a".into()),
    };
    let fresh = [record("resp_c1", false), record("resp_c2", true)];
    let again = [record("resp_c1", true), record("resp_c3", true)];
    for group in [&fresh[..], &again[..]] {
        // Postgres keeps microseconds.
        let before = chrono::Utc::now().trunc_subsecs(6);
        services.record_responses(group).await.unwrap();
        let after = chrono::Utc::now();
        for sent in group {
            let row = responses::Entity::find_by_id(responses::key_of(&sent.id))
                .one(services.store.db())
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{} not recorded", sent.id));
            assert_eq!(row.id, sent.id);
            if sent.id == "resp_c1" {
                // Recorded first as plain: the repeat changed nothing.
                assert!(!row.background && row.metered_at.is_some(), "{row:?}");
                continue;
            }
            assert_eq!(
                (row.project_id, row.key_id, row.model.as_str()),
                (project, key, "openai.gpt-oss-20b")
            );
            assert_eq!((row.background, row.status.as_str()), (true, "queued"));
            assert!(
                before <= row.created_at && row.created_at <= after,
                "{row:?}"
            );
            assert_eq!(row.metered_at, None);
            assert_eq!(row.claimed_by.as_deref(), Some("replica-a"));
            assert_eq!(
                row.claimed_until,
                Some(row.created_at + chrono::Duration::seconds(60))
            );
        }
    }
    let plain = responses::Entity::find_by_id(responses::key_of("resp_c1"))
        .one(services.store.db())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(plain.metered_at, Some(plain.created_at));
    assert_eq!((plain.claimed_by, plain.claimed_until), (None, None));
}

#[tokio::test]
async fn spend_needs_exactly_one_of_project_and_budget() {
    let app = TestApp::spawn().await;
    let token = proxy_token(&app);
    let p = app.create_project(&project_body("spend")).await;
    let pid = p["id"].as_str().unwrap_or_default().to_owned();
    let budget = uuid::Uuid::now_v7();
    for query in ["", &format!("?project={pid}&budget={budget}")] {
        let r = app
            .get(&format!("/internal/v1/proxy/spend{query}"), &token)
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {}",
            r.body
        );
        assert_eq!(
            r.body["error"]["details"][0]["field"], "project",
            "{}",
            r.body
        );
    }
    let r = app
        .get(
            &format!("/internal/v1/proxy/spend?project={pid}&month=2026-12-06"),
            &token,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["month"], "2026-12-01");
    assert_eq!(r.body["spent_micros"], 0);
    let r = app
        .get(
            &format!("/internal/v1/proxy/spend?project={pid}"),
            &app.admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
}

/// The hourly purge forgets ids older than its cutoff and keeps the rest; on Postgres
/// it has the BRIN index on `created_at` to read only the oldest pages.
#[tokio::test]
async fn purging_responses_forgets_only_the_old_ones() {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, ConnectionTrait, QueryFilter};
    let app = TestApp::spawn().await;
    let services = &app.state.services;
    let project = uuid::Uuid::now_v7();
    let records: Vec<ResponseRecord> = ["resp_old", "resp_edge", "resp_new"]
        .iter()
        .map(|id| ResponseRecord {
            id: (*id).into(),
            project_id: project,
            key_id: project,
            model: "openai.gpt-oss-20b".into(),
            background: false,
            status: "completed".into(),
            metered: true,
            claimed_by: None,
        })
        .collect();
    services.record_responses(&records).await.unwrap();
    let now = chrono::Utc::now();
    for (id, age) in [("resp_old", 46), ("resp_edge", 44)] {
        responses::Entity::update_many()
            .col_expr(
                responses::Column::CreatedAt,
                Expr::value(now - chrono::Duration::days(age)),
            )
            .filter(responses::Column::Key.eq(responses::key_of(id)))
            .exec(services.store.db())
            .await
            .unwrap();
    }
    let purged = services
        .purge_responses(chrono::Duration::days(45))
        .await
        .unwrap();
    assert_eq!(purged, 1);
    assert!(services.find_response("resp_old").await.unwrap().is_none());
    for kept in ["resp_edge", "resp_new"] {
        assert!(
            services.find_response(kept).await.unwrap().is_some(),
            "{kept}"
        );
    }
    let db = services.store.db();
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        let index = db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'responses_created_brin'",
            ))
            .await
            .unwrap()
            .and_then(|r| r.try_get::<String>("", "indexdef").ok())
            .unwrap_or_default();
        assert!(index.contains("USING brin (created_at)"), "{index:?}");
    }
}
