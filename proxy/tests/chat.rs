//! The proxy as a client sees it, in-process against the real control plane, moto's
//! STS (each project's role assumed) and the fake Mantle: routing and signing, every
//! error in OpenAI's envelope, the catalog's limits, streams passed through as they
//! come, cancellation, and usage metered and flushed on shutdown.

// A test crate: its helpers may unwrap as its tests do (clippy.toml covers only
// `#[test]` functions and `#[cfg(test)]` modules).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use strata_proxy::ProxyConfig;
use strata_testkit::FakeMantle;

#[tokio::test]
async fn a_chat_is_routed_to_the_project_signed_with_its_role_and_normalised() {
    let w = world().await;
    let (id, key) = w.project("route", &[OSS]).await;
    let a = w
        .send(
            w.client
                .post(format!("{}/v1/chat/completions", w.base))
                .bearer_auth(&key)
                // A client's own project header never reaches Mantle.
                .header("OpenAI-Project", "proj_someone_else")
                .json(&hello(OSS)),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.request_id.is_some());
    assert_eq!(
        a.body["choices"][0]["message"]["content"],
        "echo: hello there"
    );
    assert!(
        a.body["created"].is_u64(),
        "Mantle's float `created` becomes an integer: {}",
        a.body
    );

    let calls = w.mantle.chat_calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    let project = w
        .app
        .get(&format!("/api/v1/projects/{id}"), &w.app.admin)
        .await
        .body;
    assert_eq!(call.region, "us-east-1");
    assert_eq!(
        call.openai_project.as_deref(),
        project["aws"]["mantle_project_id"].as_str()
    );
    assert!(
        call.authorization
            .starts_with("AWS4-HMAC-SHA256 Credential=ASIA"),
        "signed with assumed-role credentials: {}",
        call.authorization
    );
    assert!(
        call.authorization
            .contains("/us-east-1/bedrock-mantle/aws4_request")
    );
    assert!(call.security_token, "a session token from STS");
    assert!(
        !call.authorization.contains("sk-strata"),
        "the client's key never goes upstream"
    );
    assert_eq!(call.body["model"], OSS);

    // The models list: only what this key may use.
    let scoped = w.key(id, json!({"name": "scoped", "models": [OSS]})).await;
    let models = w
        .send(
            w.client
                .get(format!("{}/v1/models", w.base))
                .bearer_auth(&scoped),
        )
        .await;
    assert_eq!(models.status, StatusCode::OK);
    assert_eq!(models.body["object"], "list");
    assert_eq!(
        models.body["data"],
        json!([{"id": OSS, "object": "model", "created": models.body["data"][0]["created"], "owned_by": "openai"}])
    );
    assert!(models.body["data"][0]["created"].is_i64());
    let one = w
        .send(
            w.client
                .get(format!("{}/v1/models/{OSS}", w.base))
                .bearer_auth(&scoped),
        )
        .await;
    assert_eq!(one.body["id"], OSS);
    let other = w
        .send(
            w.client
                .get(format!("{}/v1/models/openai.gpt-oss-120b", w.base))
                .bearer_auth(&scoped),
        )
        .await;
    assert_error(&other, 404, "model_not_found");
}

#[tokio::test]
async fn every_refusal_is_an_openai_error_with_a_request_id() {
    let w = world_with(ProxyConfig {
        proxy_max_body_bytes: 4096,
        ..ProxyConfig::default()
    })
    .await;
    let (id, key) = w.project("refuse", &[OSS]).await;
    let url = format!("{}/v1/chat/completions", w.base);

    let none = w.send(w.client.post(&url).json(&hello(OSS))).await;
    assert_error(&none, 401, "invalid_api_key");
    let forged = w
        .chat("sk-strata-eyJhbGciOiJFZERTQSJ9.e30.c2ln", &hello(OSS))
        .await;
    assert_error(&forged, 401, "invalid_api_key");
    let foreign = w.chat("sk-proj-abc", &hello(OSS)).await;
    assert_error(&foreign, 401, "invalid_api_key");

    let malformed = w
        .send(
            w.client
                .post(&url)
                .bearer_auth(&key)
                .header("content-type", "application/json")
                .body("{\"model\": "),
        )
        .await;
    assert_error(&malformed, 400, "invalid_json");
    assert_eq!(malformed.body["error"]["type"], "invalid_request_error");
    let no_model = w
        .chat(
            &key,
            &json!({"messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_error(&no_model, 400, "missing_required_parameter");
    assert_eq!(no_model.body["error"]["param"], "model");
    let big = w
        .chat(
            &key,
            &json!({"model": OSS, "messages": [{"role": "user", "content": "x".repeat(5000)}]}),
        )
        .await;
    assert_error(&big, 413, "body_too_large");

    let outside = w.chat(&key, &hello("openai.gpt-oss-120b")).await;
    assert_error(&outside, 404, "model_not_found");
    assert_eq!(outside.body["error"]["param"], "model");
    let unknown = w.chat(&key, &hello("no.such-model")).await;
    assert_error(&unknown, 404, "model_not_found");

    let route = w
        .send(
            w.client
                .post(format!("{}/v1/embeddings", w.base))
                .bearer_auth(&key),
        )
        .await;
    assert_error(&route, 404, "unknown_url");
    let method = w.send(w.client.get(&url).bearer_auth(&key)).await;
    assert_error(&method, 405, "method_not_allowed");
    assert_eq!(
        w.mantle.chat_stats().calls,
        0,
        "nothing refused reached Mantle"
    );

    // Revoked, then archived.
    let other = w.key(id, json!({"name": "other"})).await;
    let listed = w
        .app
        .get(&format!("/api/v1/projects/{id}/keys"), &w.app.admin)
        .await;
    let other_id = listed.body["items"]
        .as_array()
        .and_then(|ks| ks.iter().find(|k| k["name"] == "other"))
        .and_then(|k| k["id"].as_str())
        .unwrap_or_default()
        .to_owned();
    w.app
        .post(
            &format!("/api/v1/projects/{id}/keys/{other_id}/revoke"),
            &w.app.admin,
            &json!({}),
        )
        .await;
    let body = hello(OSS);
    let a = answers_within(
        Duration::from_secs(1),
        StatusCode::UNAUTHORIZED,
        "a revoked key still works",
        || w.chat(&other, &body),
    )
    .await;
    assert_error(&a, 401, "invalid_api_key");
    w.app
        .post(
            &format!("/api/v1/projects/{id}/archive"),
            &w.app.admin,
            &json!({}),
        )
        .await;
    let a = answers_within(
        Duration::from_secs(1),
        StatusCode::FORBIDDEN,
        "an archived project still works",
        || {
            w.send(
                w.client
                    .get(format!("{}/v1/models", w.base))
                    .bearer_auth(&key),
            )
        },
    )
    .await;
    assert_error(&a, 403, "project_archived");
}

/// Chat is served by the front door's fast path and everything else by the router:
/// both keep a client's `x-request-id` and otherwise make a new one each time.
#[tokio::test]
async fn a_request_id_is_kept_when_given_and_made_when_not_on_every_route() {
    let w = world().await;
    let (_, key) = w.project("ids", &[OSS]).await;
    let chat = format!("{}/v1/chat/completions", w.base);
    let models = format!("{}/v1/models", w.base);
    for (what, request) in [
        ("chat", w.client.post(&chat).json(&hello(OSS))),
        ("models", w.client.get(&models)),
        ("405", w.client.get(&chat)),
        (
            "unknown route",
            w.client.post(format!("{}/v1/embeddings", w.base)),
        ),
    ] {
        let given = w
            .send(
                request
                    .try_clone()
                    .unwrap_or_else(|| panic!("{what}: clone"))
                    .bearer_auth(&key)
                    .header("x-request-id", "client-trace-42"),
            )
            .await;
        assert_eq!(
            given.request_id.as_deref(),
            Some("client-trace-42"),
            "{what}"
        );
        let made: Vec<String> = futures_util::future::join_all((0..2).map(|_| {
            w.send(
                request
                    .try_clone()
                    .unwrap_or_else(|| panic!("{what}: clone"))
                    .bearer_auth(&key),
            )
        }))
        .await
        .into_iter()
        .map(|a| {
            a.request_id
                .unwrap_or_else(|| panic!("{what}: no request id"))
        })
        .collect();
        assert!(
            made[0].starts_with("req_") && made[0].len() == 32,
            "{what}: {made:?}"
        );
        assert_ne!(made[0], made[1], "{what}");
    }
}

#[tokio::test]
async fn what_the_catalog_says_a_model_cannot_serve_is_a_400_naming_the_parameter() {
    let w = world().await;
    let (_, key) = w.project("caps", &[OSS, GEMMA]).await;
    let r = w
        .app
        .put(
            &format!("/api/v1/models/{GEMMA}"),
            &w.app.admin,
            &json!({"provider": "google", "display_name": "Gemma 3 27B IT", "supports_chat": true,
                    "supports_responses": false, "supports_streaming": false, "supports_multiple_choices": false,
                    "supports_logprobs": false, "regions": ["us-east-1"], "input_price_per_mtok_usd": 0.23,
                    "output_price_per_mtok_usd": 0.38}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let stream =
        json!({"model": GEMMA, "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let a = answers_within(
        Duration::from_secs(2),
        StatusCode::BAD_REQUEST,
        "the catalog change never reached the proxy",
        || w.chat(&key, &stream),
    )
    .await;
    assert_error(&a, 400, "unsupported_parameter");
    assert_eq!(a.body["error"]["param"], "stream");
    // Streams the proxy forwarded before the catalog change reached it.
    let forwarded = w.mantle.chat_calls().len();
    for (extra, param) in [
        (json!({"n": 3}), "n"),
        (json!({"logprobs": true}), "logprobs"),
    ] {
        let mut body = hello(GEMMA);
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            b.extend(e);
        }
        let a = w.chat(&key, &body).await;
        assert_error(&a, 400, "unsupported_parameter");
        assert_eq!(a.body["error"]["param"], param);
    }
    let image = json!({"model": GEMMA, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]});
    let a = w.chat(&key, &image).await;
    assert_error(&a, 400, "unsupported_content");
    assert_eq!(a.body["error"]["param"], "messages[0].content");
    assert_eq!(
        w.mantle.chat_calls().len(),
        forwarded,
        "none of these reached Mantle"
    );

    // Text parts: flattened for Gemma (the fake, like Mantle, refuses arrays for it),
    // passed as they are to GPT-OSS.
    let parts = json!([{"type": "text", "text": "hello"}, {"type": "text", "text": "world"}]);
    for model in [GEMMA, OSS] {
        let a = w
            .chat(
                &key,
                &json!({"model": model, "messages": [{"role": "user", "content": parts}]}),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{model}: {}", a.body);
    }
    let calls = w.mantle.chat_calls();
    assert_eq!(
        calls[forwarded].body["messages"][0]["content"],
        "hello\nworld"
    );
    assert_eq!(calls[forwarded + 1].body["messages"][0]["content"], parts);
}

/// Reads an SSE response to the end: (the data payloads, when each arrived).
async fn read_events(response: reqwest::Response) -> Vec<(String, Instant)> {
    use futures_util::StreamExt;
    let mut events = Vec::new();
    let mut buffer = String::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            if let Some(data) = event.trim().strip_prefix("data: ") {
                events.push((data.to_owned(), Instant::now()));
            }
        }
    }
    events
}

#[tokio::test]
async fn streams_flow_through_as_they_come_with_the_usage_chunk_only_when_asked() {
    let w = world().await;
    let (_, key) = w.project("stream", &[OSS]).await;
    w.mantle.delay_chunks(Duration::from_millis(150));
    for client_wants_usage in [false, true] {
        let mut body = json!({"model": OSS, "stream": true, "messages": [{"role": "user", "content": "one two three"}]});
        if client_wants_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        let started = Instant::now();
        let response = w
            .client
            .post(format!("{}/v1/chat/completions", w.base))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().contains_key("x-request-id"));
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/event-stream")
        );
        let events = read_events(response).await;
        let (first, last) = (events[0].1, events[events.len() - 1].1);
        // 6+ events 150 ms apart: the first must arrive long before the last.
        assert!(
            last.duration_since(first) >= Duration::from_millis(600),
            "events were buffered"
        );
        assert!(
            first.duration_since(started) < Duration::from_millis(500),
            "the first event waited for the rest"
        );
        assert_eq!(events.last().map(|e| e.0.as_str()), Some("[DONE]"));
        let chunks: Vec<Value> = events
            .iter()
            .filter_map(|(d, _)| serde_json::from_str(d).ok())
            .collect();
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "echo: one two three");
        assert!(
            chunks.iter().all(|c| c["created"].is_u64()),
            "integer `created` in every chunk"
        );
        let usage_chunks: Vec<&Value> = chunks
            .iter()
            .filter(|c| c["choices"].as_array().is_some_and(Vec::is_empty))
            .collect();
        assert_eq!(
            usage_chunks.len(),
            usize::from(client_wants_usage),
            "{chunks:?}"
        );
        if client_wants_usage {
            assert_eq!(usage_chunks[0]["usage"]["completion_tokens"], 4);
        }
    }
    // Upstream was always asked for usage (for metering).
    assert!(
        w.mantle
            .chat_calls()
            .iter()
            .all(|c| c.body["stream_options"]["include_usage"] == true)
    );
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_the_upstream_stream() {
    let w = world().await;
    let (_, key) = w.project("cancel", &[OSS]).await;
    w.mantle.delay_chunks(Duration::from_millis(200));
    let response = w
        .client
        .post(format!("{}/v1/chat/completions", w.base))
        .bearer_auth(&key)
        .json(&json!({"model": OSS, "stream": true, "messages": [{"role": "user", "content": "a b c d e f g h"}]}))
        .send()
        .await
        .unwrap();
    let mut stream = response.bytes_stream();
    use futures_util::StreamExt;
    assert!(stream.next().await.is_some_and(|c| c.is_ok()));
    drop(stream);
    let started = Instant::now();
    while w.mantle.chat_stats().streams_cancelled == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the upstream stream kept going: {:?}",
            w.mantle.chat_stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(w.mantle.chat_stats().streams_completed, 0);
}

#[tokio::test]
async fn upstream_failures_become_openai_errors_the_sdks_retry() {
    let w = world_with(ProxyConfig {
        upstream_timeout_secs: 1,
        ..ProxyConfig::default()
    })
    .await;
    let (_, key) = w.project("faults", &[OSS]).await;
    w.mantle.fail_next(&[500]);
    let a = w.chat(&key, &hello(OSS)).await;
    assert_error(&a, 500, "injected");
    assert_eq!(a.body["error"]["type"], "api_error");
    w.mantle.fail_next(&[429]);
    let a = w.chat(&key, &hello(OSS)).await;
    assert_error(&a, 429, "injected");
    w.mantle.fail_next(&[403]);
    let a = w.chat(&key, &hello(OSS)).await;
    assert_error(&a, 502, "upstream_denied");
    assert!(
        !a.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("injected"),
        "AWS's own refusal text (account, role) stays in strata's logs: {}",
        a.body
    );
    w.mantle.delay_chat(Duration::from_millis(1500));
    let a = w.chat(&key, &hello(OSS)).await;
    assert_error(&a, 504, "upstream_timeout");
    w.mantle.delay_chat(Duration::ZERO);
    assert_eq!(w.chat(&key, &hello(OSS)).await.status, StatusCode::OK);
    let metrics = w.send(w.client.get(format!("{}/metrics", w.base))).await;
    let text = metrics.body.as_str().unwrap_or_default();
    assert!(
        text.contains("strata_proxy_upstream_errors_total{") && text.contains("kind=\"timeout\""),
        "{text}"
    );
}

#[tokio::test]
async fn usage_is_metered_per_minute_and_flushed_on_shutdown() {
    // Only the shutdown flush sends anything.
    let mut w = world_with(ProxyConfig {
        usage_flush_secs: 3600,
        ..ProxyConfig::default()
    })
    .await;
    let (id, key) = w.project("meter", &[OSS, GEMMA]).await;
    for i in 0..5 {
        let model = if i % 2 == 0 { OSS } else { GEMMA };
        let mut body = json!({"model": model, "messages": [{"role": "user", "content": format!("request number {i}")}]});
        if i == 4 {
            body["stream"] = json!(true);
        }
        let r = w
            .client
            .post(format!("{}/v1/chat/completions", w.base))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let _ = r.bytes().await;
    }
    w.mantle.fail_next(&[500]);
    assert_eq!(w.chat(&key, &hello(OSS)).await.status.as_u16(), 500);
    assert!(
        w.proxy.meter.pending_records() >= 2,
        "aggregated, not yet sent"
    );
    let before = w
        .app
        .get(&format!("/api/v1/projects/{id}/usage"), &w.app.admin)
        .await;
    assert_eq!(before.body["total"]["requests"], 0);

    w.stop_proxy().await;
    assert_eq!(w.proxy.meter.pending_records(), 0);
    let fake = w.mantle.chat_stats();
    let usage = w
        .app
        .get(
            &format!("/api/v1/projects/{id}/usage?group_by=model"),
            &w.app.admin,
        )
        .await;
    let total = &usage.body["total"];
    assert_eq!(total["requests"], 6, "{}", usage.body);
    assert_eq!(total["errors"], 1);
    assert_eq!(total["input_tokens"], fake.prompt_tokens, "{}", usage.body);
    assert_eq!(total["output_tokens"], fake.completion_tokens);
    let items = usage.body["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 2);
    assert!(total["cost_usd"].as_f64().is_some_and(|c| c > 0.0));
}

#[tokio::test]
async fn without_a_control_plane_the_proxy_is_not_ready_and_refuses() {
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let mantle = FakeMantle::start().await;
    let (_proxy, base, shutdown, _served) = start_proxy(
        &format!("http://{dead}"),
        strata_core::config::Secret::new("x".repeat(32)),
        &mantle,
        ProxyConfig::default(),
    )
    .await;
    let client = reqwest::Client::new();
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = ready.json().await.unwrap_or_default();
    assert_eq!(body["status"], "not_ready", "{body}");
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK, "alive, though not ready");
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap();
    let text = metrics.text().await.unwrap_or_default();
    assert!(text.contains("strata_proxy_snapshot_fresh 0"), "{text}");
    let a = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth("sk-strata-eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.e30.c2ln")
        .json(&hello(OSS))
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(a.headers().contains_key("retry-after"));
    shutdown.cancel();
}

#[tokio::test]
async fn a_request_the_client_abandons_is_still_metered() {
    let mut w = world_with(ProxyConfig {
        usage_flush_secs: 3600,
        ..ProxyConfig::default()
    })
    .await;
    let (id, key) = w.project("abandon", &[OSS]).await;
    w.mantle.delay_chat(Duration::from_secs(2));
    let gave_up = w
        .client
        .post(format!("{}/v1/chat/completions", w.base))
        .bearer_auth(&key)
        .timeout(Duration::from_millis(300))
        .json(&hello(OSS))
        .send()
        .await;
    assert!(gave_up.is_err_and(|e| e.is_timeout()));
    let started = Instant::now();
    while w.proxy.meter.pending_records() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the abandoned request was never metered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w.stop_proxy().await;
    let usage = w
        .app
        .get(&format!("/api/v1/projects/{id}/usage"), &w.app.admin)
        .await;
    assert_eq!(usage.body["total"]["requests"], 1, "{}", usage.body);
    assert_eq!(usage.body["total"]["errors"], 1);
}

#[tokio::test]
async fn with_a_bedrock_api_key_the_proxy_sends_it_instead_of_signing() {
    let w = world_with(ProxyConfig {
        bedrock_api_key: Some(strata_core::config::Secret::new(
            "bedrock-api-key-for-tests",
        )),
        ..ProxyConfig::default()
    })
    .await;
    w.mantle.accept_bedrock_api_key("bedrock-api-key-for-tests");
    let (_, key) = w.project("apikey", &[OSS]).await;
    let a = w.chat(&key, &hello(OSS)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let calls = w.mantle.chat_calls();
    assert_eq!(calls[0].authorization, "Bearer bedrock-api-key-for-tests");
    assert!(!calls[0].security_token);
    assert!(calls[0].openai_project.is_some());
}

#[tokio::test]
async fn a_govcloud_project_runs_end_to_end_with_aws_us_gov_arns() {
    let w = world().await;
    let model = "openai.gpt-oss-gov-test";
    let entry = json!({
        "provider": "openai", "display_name": "gpt-oss (GovCloud test entry)", "supports_chat": true,
        "supports_responses": false, "supports_streaming": true, "regions": ["us-gov-west-1"],
        "input_price_per_mtok_usd": 0.1, "output_price_per_mtok_usd": 0.5
    });
    let put = w
        .app
        .put(&format!("/api/v1/models/{model}"), &w.app.admin, &entry)
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.body);
    let (id, key) = w.project_in("gov", &[model], "us-gov-west-1").await;

    let p = w
        .app
        .get(&format!("/api/v1/projects/{id}"), &w.app.admin)
        .await
        .body;
    let mantle_id = p["aws"]["mantle_project_id"].as_str().unwrap_or_default();
    let project_arn = format!(
        "arn:aws-us-gov:bedrock-mantle:us-gov-west-1:{}:project/{mantle_id}",
        strata_testkit::moto::MOTO_ACCOUNT
    );
    assert_eq!(p["aws"]["mantle_project_arn"], project_arn, "{p}");
    let (_, policy) = w.role_policy(id).await;
    // Every statement on the project's ARN (CallWithBearerToken takes only `*`).
    for statement in policy["Statement"].as_array().into_iter().flatten() {
        if statement["Sid"] != "MantleShortTermApiKeys" {
            assert_eq!(statement["Resource"], json!([project_arn]), "{policy}");
        }
    }

    // The fake authorizes on the GovCloud ARN: a policy naming `arn:aws:` would be denied.
    let a = w.chat(&key, &hello(model)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let call = w.last_chat_call();
    assert_eq!(call.region, "us-gov-west-1");
    assert!(
        call.authorization
            .contains("/us-gov-west-1/bedrock-mantle/aws4_request"),
        "{}",
        call.authorization
    );
}

#[tokio::test]
async fn service_tier_is_passed_through_recorded_and_priced_by_the_catalog() {
    let mut w = world_with(ProxyConfig {
        usage_flush_secs: 3600,
        ..ProxyConfig::default()
    })
    .await;
    // $100 / $200 per million tokens, priority at twice that, flex at half.
    let model = json!({
        "provider": "acme", "display_name": "Tiered", "supports_chat": true,
        "supports_responses": false, "supports_streaming": true, "regions": ["us-east-1"],
        "input_price_per_mtok_usd": 100.0, "output_price_per_mtok_usd": 200.0,
        "service_tier_price_factors": {"priority": 2.0, "flex": 0.5}
    });
    let put = w
        .app
        .put("/api/v1/models/acme.tiered", &w.app.admin, &model)
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.body);
    let (id, key) = w.project("tier", &["acme.tiered"]).await;
    for tier in [None, Some("priority"), Some("flex")] {
        let mut body = hello("acme.tiered");
        if let Some(tier) = tier {
            body["service_tier"] = json!(tier);
        }
        let a = w.chat(&key, &body).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(a.body["service_tier"], tier.unwrap_or("default"));
        assert_eq!(
            w.last_chat_call()
                .body
                .get("service_tier")
                .and_then(Value::as_str),
            tier,
            "passed through as given"
        );
    }
    // A stream's tier comes from its chunks.
    let mut body = hello("acme.tiered");
    body["service_tier"] = json!("priority");
    body["stream"] = json!(true);
    assert_eq!(w.chat(&key, &body).await.status, StatusCode::OK);
    w.stop_proxy().await;

    let usage = w
        .app
        .get(
            &format!("/api/v1/projects/{id}/usage?group_by=service_tier"),
            &w.app.admin,
        )
        .await;
    let items = usage.body["items"].as_array().cloned().unwrap_or_default();
    let row = |tier: &str| {
        items
            .iter()
            .find(|i| i["group"] == tier)
            .cloned()
            .unwrap_or_else(|| panic!("no {tier} row: {}", usage.body))
    };
    let (standard, priority, flex) = (row("default"), row("priority"), row("flex"));
    assert_eq!(
        (
            &standard["requests"],
            &priority["requests"],
            &flex["requests"]
        ),
        (&json!(1), &json!(2), &json!(1)),
        "{}",
        usage.body
    );
    // The same request each time: the tiers' costs are the catalog's factors apart.
    let cost = |row: &Value| row["cost_usd"].as_f64().unwrap_or_default() * 1e6;
    let one = cost(&standard);
    assert!(one > 0.0, "{}", usage.body);
    assert!((cost(&priority) - 4.0 * one).abs() <= 2.0, "{}", usage.body);
    assert!((cost(&flex) - 0.5 * one).abs() <= 1.0, "{}", usage.body);
}

#[tokio::test]
async fn short_term_api_keys_are_minted_per_role_and_region_and_checked_by_iam() {
    let w = world_with(ProxyConfig {
        short_term_api_keys: true,
        ..ProxyConfig::default()
    })
    .await;
    let (id, key) = w.project("short-term", &[OSS]).await;
    let a = w.chat(&key, &hello(OSS)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let first = w.last_chat_call();
    assert!(
        first.authorization.starts_with("Bearer bedrock-api-key-"),
        "a bearer token, not SigV4: {}",
        &first.authorization[..40.min(first.authorization.len())]
    );
    assert!(!first.security_token, "no SigV4 session token header");
    assert_eq!(w.mantle.calls("ShortTermApiKey"), 1);
    // The key is kept while it is valid, not minted per request.
    let a = w.chat(&key, &hello(OSS)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(w.last_chat_call().authorization, first.authorization);

    // AWS checks CallWithBearerToken on the role that minted it: without that grant
    // the key is refused, however the rest of the policy reads.
    w.narrow_role_policy(
        id,
        &[
            "bedrock-mantle:CreateInference",
            "bedrock-mantle:GetInference",
        ],
    )
    .await;
    let denied = w.chat(&key, &hello(OSS)).await;
    assert_error(&denied, 502, "upstream_denied");
    assert_eq!(
        w.mantle
            .calls("AccessDenied:bedrock-mantle:CreateInference"),
        1
    );
    w.reconcile(id).await;
    let a = w.chat(&key, &hello(OSS)).await;
    assert_eq!(a.status, StatusCode::OK, "repaired: {}", a.body);
}
