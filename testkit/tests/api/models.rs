use reqwest::StatusCode;
use serde_json::json;
use strata_testkit::{TestApp, project_body};

#[tokio::test]
async fn the_catalog_is_seeded_with_mantle_models() {
    let app = TestApp::spawn().await;
    let r = app.get("/api/v1/models", &app.admin).await;
    assert_eq!(r.status, StatusCode::OK);
    let items = r.body["items"].as_array().cloned().unwrap_or_default();
    let ids: Vec<&str> = items.iter().filter_map(|m| m["id"].as_str()).collect();
    for required in [
        "openai.gpt-oss-120b",
        "openai.gpt-oss-20b",
        "mistral.mistral-large-3-675b-instruct",
    ] {
        assert!(ids.contains(&required), "{required} missing from {ids:?}");
    }
    for provider in ["deepseek", "google", "moonshotai", "minimax", "nvidia"] {
        assert!(
            items.iter().any(|m| m["provider"] == provider),
            "no {provider} model"
        );
    }
    let gpt = items
        .iter()
        .find(|m| m["id"] == "openai.gpt-oss-120b")
        .cloned()
        .unwrap_or_default();
    assert_eq!(gpt["supports_responses"], true);
    assert_eq!(gpt["supports_chat"], true);
    assert_eq!(gpt["input_price_per_mtok_usd"], 0.15);
    assert_eq!(gpt["regions"].as_array().map(Vec::len), Some(12));
    let mistral = items
        .iter()
        .find(|m| m["provider"] == "mistral")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        mistral["supports_responses"], false,
        "only GPT-OSS serves the Responses API"
    );
}

#[tokio::test]
async fn admins_edit_prices_and_add_models() {
    let app = TestApp::spawn().await;
    let entry = json!({
        "provider": "acme", "display_name": "Acme 1", "supports_chat": true, "supports_responses": false,
        "supports_streaming": false, "regions": ["eu-west-1"], "input_price_per_mtok_usd": 1.25, "output_price_per_mtok_usd": 5.0
    });
    let r = app
        .put("/api/v1/models/acme.model-1", &app.admin, &entry)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let mut cheaper = entry.clone();
    cheaper["input_price_per_mtok_usd"] = json!(0.5);
    let r = app
        .put("/api/v1/models/acme.model-1", &app.admin, &cheaper)
        .await;
    assert_eq!(
        (r.status, r.body["input_price_per_mtok_usd"].as_f64()),
        (StatusCode::OK, Some(0.5))
    );
    assert_eq!(
        app.get("/api/v1/models/acme.model-1", &app.admin)
            .await
            .body["input_price_per_mtok_usd"],
        0.5
    );

    // The new model can be used by projects in its region, not elsewhere.
    let mut body = project_body("acme-user");
    body["region"] = json!("eu-west-1");
    body["allowed_models"] = json!(["acme.model-1"]);
    app.create_project(&body).await;
    body["name"] = json!("acme-elsewhere");
    body["region"] = json!("us-east-1");
    assert_eq!(
        app.post("/api/v1/projects", &app.admin, &body).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // Service tiers priced as factors of the standard prices; `default` is those.
    let mut tiered = entry.clone();
    tiered["service_tier_price_factors"] = json!({"priority": 1.75, "flex": 0.5});
    let r = app
        .put("/api/v1/models/acme.model-1", &app.admin, &tiered)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["service_tier_price_factors"]["priority"], 1.75);
    for factors in [
        json!({"default": 2.0}),
        json!({"flex": 11.0}),
        json!({"scale": 1.0}),
    ] {
        let mut bad = entry.clone();
        bad["service_tier_price_factors"] = factors;
        let r = app
            .put("/api/v1/models/acme.model-2", &app.admin, &bad)
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    }

    let mut bad = entry.clone();
    bad["input_price_per_mtok_usd"] = json!(-1);
    bad["supports_chat"] = json!(false);
    let r = app
        .put("/api/v1/models/acme.model-2", &app.admin, &bad)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        "{}",
        r.body
    );
    let r = app.put("/api/v1/models/Bad%20Id", &app.admin, &entry).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        "{}",
        r.body
    );
    let r = app.get("/api/v1/models/none.such", &app.admin).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "model_not_found")
    );
    let audit = app.get("/api/v1/audit?action=model.put", &app.admin).await;
    assert_eq!(audit.body["items"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn claude_is_seeded_for_the_messages_api_only_and_the_catalog_keeps_that_rule() {
    let app = TestApp::spawn().await;
    let claude = app
        .get("/api/v1/models/anthropic.claude-opus-4-7", &app.admin)
        .await;
    assert_eq!(claude.status, StatusCode::OK, "{}", claude.body);
    assert_eq!(claude.body["mantle_path"], "/anthropic/v1");
    assert_eq!(
        (
            &claude.body["supports_messages"],
            &claude.body["supports_chat"],
            &claude.body["supports_responses"]
        ),
        (&json!(true), &json!(false), &json!(false))
    );
    assert_eq!(claude.body["cache_write_price_per_mtok_usd"], 6.25);
    assert_eq!(claude.body["cached_input_price_per_mtok_usd"], 0.5);
    let gpt = app
        .get("/api/v1/models/openai.gpt-oss-20b", &app.admin)
        .await;
    assert_eq!(gpt.body["supports_messages"], false);

    let entry = json!({
        "provider": "anthropic", "display_name": "Claude Next", "supports_chat": false,
        "supports_responses": false, "supports_messages": true, "supports_streaming": true,
        "regions": ["us-east-1"], "mantle_path": "/anthropic/v1",
        "input_price_per_mtok_usd": 3.0, "output_price_per_mtok_usd": 15.0
    });
    let ok = app
        .put("/api/v1/models/anthropic.claude-next", &app.admin, &entry)
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    // Mantle serves Claude through the Messages API only, and that API only there.
    for (field, value, named) in [
        ("supports_chat", json!(true), "mantle_path"),
        ("mantle_path", json!("/v1"), "supports_messages"),
    ] {
        let mut bad = entry.clone();
        bad[field] = value;
        let r = app
            .put("/api/v1/models/anthropic.claude-bad", &app.admin, &bad)
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        assert!(r.body.to_string().contains(named), "{}", r.body);
    }
}

#[tokio::test]
async fn a_model_is_refused_to_a_project_whose_retention_mode_it_does_not_allow() {
    let app = TestApp::spawn().await;
    // Some models require retention: Mantle refuses them under mode none.
    let entry = json!({
        "provider": "acme", "display_name": "needs retention", "supports_chat": true, "supports_responses": false,
        "supports_streaming": true, "regions": ["us-east-1"], "input_price_per_mtok_usd": 1, "output_price_per_mtok_usd": 2,
        "retention_modes": ["default", "provider_data_share"]
    });
    let put = app
        .put("/api/v1/models/acme.needs-retention", &app.admin, &entry)
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.body);
    assert_eq!(
        put.body["retention_modes"],
        json!(["default", "provider_data_share"])
    );
    let mut body = project_body("zdr");
    body["allowed_models"] = json!(["openai.gpt-oss-20b", "acme.needs-retention"]);
    let r = app.post("/api/v1/projects", &app.admin, &body).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        "{}",
        r.body
    );
    let text = r.body.to_string();
    assert!(
        text.contains("allowed_models[1]")
            && text.contains("acme.needs-retention")
            && text.contains("'none'")
            && text.contains("default, provider_data_share"),
        "{text}"
    );
    body["data_retention"] = json!("provider_data_share");
    let p = app.create_project(&body).await;
    assert_eq!(p["data_retention"], "provider_data_share");
    let path = format!("/api/v1/projects/{}", p["id"].as_str().unwrap_or_default());
    // Changing the project's mode to one the model does not allow is refused too …
    let r = app
        .patch(&path, &app.admin, &json!({"data_retention": "zdr"}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    // … while `inherit` leaves it to the account's setting, which Mantle applies.
    let r = app
        .patch(&path, &app.admin, &json!({"data_retention": "inherit"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // `inherit` is no mode a model is called under, and a model needs one.
    for modes in [json!(["inherit"]), json!([]), json!(["none", "none"])] {
        let mut bad = entry.clone();
        bad["retention_modes"] = modes;
        let r = app.put("/api/v1/models/acme.bad", &app.admin, &bad).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            "{}",
            r.body
        );
    }
}

#[tokio::test]
async fn a_project_whose_iam_policy_would_be_too_large_is_refused() {
    let app = TestApp::spawn().await;
    let entry = json!({
        "provider": "acme", "display_name": "x", "supports_chat": true, "supports_responses": false,
        "supports_streaming": true, "regions": ["us-east-1"], "input_price_per_mtok_usd": 1, "output_price_per_mtok_usd": 1
    });
    // The policy names each model once: 100 ids of ~115 characters pass IAM's limit.
    let ids: Vec<String> = (0..100)
        .map(|i| {
            format!(
                "acme.model-with-a-rather-long-name-for-testing-the-size-limit-of-inline-policies-{i:04}-{}",
                "x".repeat(30)
            )
        })
        .collect();
    for id in &ids {
        assert_eq!(
            app.put(&format!("/api/v1/models/{id}"), &app.admin, &entry)
                .await
                .status,
            StatusCode::CREATED
        );
    }
    let mut body = project_body("too-many");
    body["allowed_models"] = json!(ids);
    let r = app.post("/api/v1/projects", &app.admin, &body).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        "{}",
        r.body
    );
    assert!(r.body.to_string().contains("10240"), "{}", r.body);
    body["allowed_models"] = json!(ids[..40]);
    let p = app.create_project(&body).await;
    // Growing the list past the limit through PATCH is refused too.
    let r = app
        .patch(
            &format!("/api/v1/projects/{}", p["id"].as_str().unwrap_or_default()),
            &app.admin,
            &json!({"allowed_models": ids}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
}
