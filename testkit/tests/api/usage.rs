//! Usage the proxy reports: applied once per batch, merged per minute, priced from
//! the catalog, reported per model, key and day, and only to who may see it.

use reqwest::StatusCode;
use serde_json::{Value, json};
use strata_testkit::{TestApp, project_body};

const USAGE: &str = "/internal/v1/proxy/usage";
const RANGE: &str = "from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z";

fn record(project: &str, key: &str, model: &str, minute: &str, tokens: (u64, u64)) -> Value {
    json!({"project_id": project, "key_id": key, "model": model, "minute": minute,
           "requests": 2, "errors": 1, "input_tokens": tokens.0, "output_tokens": tokens.1,
           "cached_tokens": 10, "latency_ms_sum": 300})
}

async fn price(app: &TestApp, model: &str) -> (f64, f64) {
    let m = app
        .get(&format!("/api/v1/models/{model}"), &app.admin)
        .await
        .body;
    (
        m["input_price_per_mtok_usd"].as_f64().unwrap_or_default(),
        m["output_price_per_mtok_usd"].as_f64().unwrap_or_default(),
    )
}

#[tokio::test]
async fn a_batch_counts_once_and_is_reported_by_model_key_and_day() {
    let app = TestApp::spawn().await;
    let proxy = app.state.proxy_token.expose().to_owned();
    let p = app.create_project(&project_body("metered")).await;
    let pid = p["id"].as_str().unwrap_or_default().to_owned();
    let k = app
        .post(
            &format!("/api/v1/projects/{pid}/keys"),
            &app.admin,
            &json!({"name": "k"}),
        )
        .await;
    let kid = k.body["id"].as_str().unwrap_or_default().to_owned();
    let big = "openai.gpt-oss-120b";
    let small = "openai.gpt-oss-20b";
    let batch = json!({"batch_id": uuid::Uuid::now_v7(), "records": [
        record(&pid, &kid, big, "2026-01-15T10:00:05Z", (1000, 500)),
        record(&pid, &kid, big, "2026-01-15T10:00:55Z", (3000, 1500)),
        record(&pid, &kid, small, "2026-01-16T08:30:00Z", (2000, 0)),
    ]});
    let r = app.post(USAGE, &proxy, &batch).await;
    assert_eq!(
        (r.status, &r.body["applied"]),
        (StatusCode::OK, &json!(true)),
        "{}",
        r.body
    );
    // A retry of the same batch changes nothing.
    let r = app.post(USAGE, &proxy, &batch).await;
    assert_eq!(
        (r.status, &r.body["applied"]),
        (StatusCode::OK, &json!(false))
    );

    let by_model = app
        .get(&format!("/api/v1/projects/{pid}/usage?{RANGE}"), &app.admin)
        .await;
    assert_eq!(by_model.status, StatusCode::OK, "{}", by_model.body);
    let items = &by_model.body["items"];
    assert_eq!(items[0]["group"], big);
    assert_eq!(
        (
            &items[0]["requests"],
            &items[0]["input_tokens"],
            &items[0]["output_tokens"]
        ),
        (&json!(4), &json!(4000), &json!(2000))
    );
    assert_eq!(
        (&items[0]["errors"], &items[0]["cached_tokens"]),
        (&json!(2), &json!(20))
    );
    assert_eq!(items[0]["avg_latency_ms"], json!(150.0));
    let (bi, bo) = price(&app, big).await;
    let (si, _) = price(&app, small).await;
    let want_big = (4000.0 * bi + 2000.0 * bo) / 1e6;
    let got_big = items[0]["cost_usd"].as_f64().unwrap_or(-1.0);
    assert!(
        (got_big - want_big).abs() < 2e-6,
        "cost {got_big} vs {want_big}"
    );
    assert_eq!(items[1]["group"], small);
    let want_total = want_big + 2000.0 * si / 1e6;
    let got_total = by_model.body["total"]["cost_usd"].as_f64().unwrap_or(-1.0);
    assert!(
        (got_total - want_total).abs() < 3e-6,
        "total {got_total} vs {want_total}"
    );
    assert_eq!(by_model.body["total"]["requests"], 6);

    let by_day = app
        .get(
            &format!("/api/v1/projects/{pid}/usage?{RANGE}&group_by=day"),
            &app.admin,
        )
        .await;
    let days: Vec<&str> = by_day.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["group"].as_str())
        .collect();
    assert_eq!(days, ["2026-01-15", "2026-01-16"]);
    let by_key = app
        .get(
            &format!("/api/v1/projects/{pid}/usage?{RANGE}&group_by=key"),
            &app.admin,
        )
        .await;
    assert_eq!(by_key.body["items"][0]["group"], kid.as_str());
    assert_eq!(by_key.body["items"][0]["requests"], 6);

    // The key shows when it was last used (the latest minute reported).
    let key = app
        .get(&format!("/api/v1/projects/{pid}/keys/{kid}"), &app.admin)
        .await;
    assert_eq!(key.body["last_used_at"], "2026-01-16T08:30:00Z");
}

#[tokio::test]
async fn cached_input_and_cache_writes_are_priced_at_the_catalogs_cache_prices() {
    let app = TestApp::spawn().await;
    let proxy = app.state.proxy_token.expose().to_owned();
    let model = "acme.cached";
    let entry = json!({
        "provider": "acme", "display_name": "cached", "supports_chat": true, "supports_responses": false,
        "supports_streaming": true, "regions": ["us-east-1"], "input_price_per_mtok_usd": 2.0,
        "output_price_per_mtok_usd": 8.0, "cached_input_price_per_mtok_usd": 0.5,
        "cache_write_price_per_mtok_usd": 2.5
    });
    let put = app
        .put(&format!("/api/v1/models/{model}"), &app.admin, &entry)
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.body);
    assert_eq!(
        (
            &put.body["cached_input_price_per_mtok_usd"],
            &put.body["cache_write_price_per_mtok_usd"]
        ),
        (&json!(0.5), &json!(2.5))
    );
    // Without them, both are the input price.
    let seeded = app
        .get("/api/v1/models/openai.gpt-oss-20b", &app.admin)
        .await
        .body;
    assert_eq!(
        seeded["cached_input_price_per_mtok_usd"],
        seeded["input_price_per_mtok_usd"]
    );
    let mut body = project_body("cache-priced");
    body["allowed_models"] = json!([model]);
    let p = app.create_project(&body).await;
    let pid = p["id"].as_str().unwrap_or_default().to_owned();
    let kid = uuid::Uuid::now_v7().to_string();
    // 1,000,000 input tokens of which 400,000 read from the cache and 200,000 written
    // to it, 100,000 output: 0.4 M × $2 + 0.4 M × $0.5 + 0.2 M × $2.5 + 0.1 M × $8
    // = $2.30.
    let mut r = record(
        &pid,
        &kid,
        model,
        "2026-01-15T10:00:00Z",
        (1_000_000, 100_000),
    );
    r["cached_tokens"] = json!(400_000);
    r["cache_write_tokens"] = json!(200_000);
    let batch = json!({"batch_id": uuid::Uuid::now_v7(), "records": [r]});
    let applied = app.post(USAGE, &proxy, &batch).await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.body);
    let usage = app
        .get(&format!("/api/v1/projects/{pid}/usage?{RANGE}"), &app.admin)
        .await;
    let cost = usage.body["total"]["cost_usd"].as_f64().unwrap_or(-1.0);
    assert!((cost - 2.3).abs() < 1e-6, "cost {cost}: {}", usage.body);
    assert_eq!(usage.body["total"]["cache_write_tokens"], 200_000);
    // Reads and writes together cannot exceed the input they are part of.
    let mut over = record(&pid, &kid, model, "2026-01-15T10:01:00Z", (10, 1));
    over["cached_tokens"] = json!(6);
    over["cache_write_tokens"] = json!(5);
    let r = app
        .post(
            USAGE,
            &proxy,
            &json!({"batch_id": uuid::Uuid::now_v7(), "records": [over]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
}

#[tokio::test]
async fn usage_is_written_only_by_the_proxy_and_read_only_by_who_may_see_the_project() {
    let app = TestApp::spawn().await;
    let proxy = app.state.proxy_token.expose().to_owned();
    let p = app.create_project(&project_body("private-usage")).await;
    let pid = p["id"].as_str().unwrap_or_default().to_owned();
    let key = uuid::Uuid::now_v7().to_string();
    let batch = json!({"batch_id": uuid::Uuid::now_v7(), "records": [record(&pid, &key, "openai.gpt-oss-20b", "2026-01-15T10:00:00Z", (1, 1))]});
    for token in ["", app.admin.as_str()] {
        let r = app.post(USAGE, token, &batch).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNAUTHORIZED, "invalid_proxy_credential")
        );
    }
    let mut bad = record(&pid, &key, "Not A Model", "2026-01-15T10:00:00Z", (1, 1));
    bad["errors"] = json!(3);
    let r = app
        .post(
            USAGE,
            &proxy,
            &json!({"batch_id": uuid::Uuid::now_v7(), "records": [bad]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let fields: Vec<&str> = r.body["error"]["details"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["field"].as_str())
        .collect();
    // (the helper's 10 cached tokens exceed this record's 1 input token, too)
    assert_eq!(
        fields,
        [
            "records[0].model",
            "records[0].errors",
            "records[0].cached_tokens"
        ]
    );

    let path = format!("/api/v1/projects/{pid}/usage?{RANGE}");
    let outsider = app.token("olga", &["developer"]);
    assert_eq!(
        app.get(&path, &outsider).await.status,
        StatusCode::NOT_FOUND
    );
    let finance = app.token("fin", &["finance"]);
    assert_eq!(app.get(&path, &finance).await.status, StatusCode::OK);
    app.add_member(&pid, "dora", "viewer").await;
    let member = app.token("dora", &["developer"]);
    assert_eq!(app.get(&path, &member).await.status, StatusCode::OK);
    let r = app
        .get(
            &format!(
                "/api/v1/projects/{pid}/usage?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z"
            ),
            &app.admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .get(
            &format!("/api/v1/projects/{pid}/usage?group_by=week"),
            &app.admin,
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.status);
}

#[tokio::test]
async fn a_large_batch_fits_the_databases_statement_limits() {
    let app = TestApp::spawn().await;
    let proxy = app.state.proxy_token.expose().to_owned();
    let p = app.create_project(&project_body("busy")).await;
    let pid = p["id"].as_str().unwrap_or_default().to_owned();
    // 3,500 distinct (minute, key) aggregates: more bind parameters than one SQLite
    // statement takes, still under the 1 MiB body limit.
    let records: Vec<Value> = (0..3_500)
        .map(|i| {
            let minute = format!(
                "2026-01-{:02}T{:02}:{:02}:00Z",
                1 + i / 1440 % 28,
                i / 60 % 24,
                i % 60
            );
            record(
                &pid,
                &uuid::Uuid::now_v7().to_string(),
                "openai.gpt-oss-20b",
                &minute,
                (100, 10),
            )
        })
        .collect();
    let r = app
        .post(
            USAGE,
            &proxy,
            &json!({"batch_id": uuid::Uuid::now_v7(), "records": records}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let report = app
        .get(&format!("/api/v1/projects/{pid}/usage?{RANGE}"), &app.admin)
        .await;
    assert_eq!(report.body["total"]["requests"], 7_000);
}

/// Old minutes and batch ids are purged; the per-day totals the cost pages read stay.
#[tokio::test]
async fn old_usage_minutes_and_batch_ids_are_purged_and_daily_totals_kept() {
    use strata_core::store::entities::{usage_batches, usage_daily, usage_minutes};
    let app = TestApp::spawn().await;
    let proxy = app.state.proxy_token.expose().to_owned();
    let p = app.create_project(&project_body("purged")).await;
    let pid = p["id"].as_str().unwrap_or_default().to_owned();
    let kid = uuid::Uuid::now_v7().to_string();
    let model = "openai.gpt-oss-120b";
    let recent = chrono::Utc::now().format("%Y-%m-%dT%H:%M:00Z").to_string();
    let batch = json!({"batch_id": uuid::Uuid::now_v7(), "records": [
        record(&pid, &kid, model, "2025-01-15T10:00:00Z", (1000, 500)),
        record(&pid, &kid, model, &recent, (1000, 500)),
    ]});
    let r = app.post(USAGE, &proxy, &batch).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let services = &app.state.services;
    let db = services.store.db();
    let count_minutes = || async {
        use sea_orm::{EntityTrait, PaginatorTrait};
        usage_minutes::Entity::find()
            .count(db)
            .await
            .unwrap_or(u64::MAX)
    };
    assert_eq!(count_minutes().await, 2);
    let purged = services
        .purge_usage_minutes(chrono::Duration::days(400))
        .await
        .unwrap();
    assert_eq!(
        (purged, count_minutes().await),
        (1, 1),
        "only the old minute goes"
    );
    {
        use sea_orm::{EntityTrait, PaginatorTrait};
        assert_eq!(
            usage_daily::Entity::find()
                .count(db)
                .await
                .unwrap_or_default(),
            2,
            "both days' totals stay"
        );
        // Batch ids: a week is kept; older ones go.
        assert_eq!(
            services
                .purge_usage_batches(chrono::Duration::days(7))
                .await
                .unwrap_or(u64::MAX),
            0
        );
        assert_eq!(
            services
                .purge_usage_batches(chrono::Duration::seconds(-1))
                .await
                .unwrap_or(u64::MAX),
            1
        );
        assert_eq!(
            usage_batches::Entity::find()
                .count(db)
                .await
                .unwrap_or(u64::MAX),
            0
        );
    }
}
