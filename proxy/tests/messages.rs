//! Anthropic's Messages API through the proxy, in-process against the real control
//! plane, moto (the project role's policy evaluated by the fake Mantle) and the fake
//! Mantle: Claude's calls go to `/anthropic/v1/messages` with the project as the
//! `anthropic-workspace` header, plain and streamed; errors in Anthropic's shape; the
//! same limits; usage metered with the prompt cache's reads and writes apart.

// A test crate: its helpers may unwrap as its tests do (clippy.toml covers only
// `#[test]` functions and `#[cfg(test)]` modules).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use strata_proxy::ProxyConfig;

const CLAUDE: &str = "anthropic.claude-opus-4-7";

fn message(text: &str) -> Value {
    json!({"model": CLAUDE, "max_tokens": 64, "messages": [{"role": "user", "content": text}]})
}

impl World {
    async fn message(&self, key: &str, body: &Value) -> Answer {
        self.send(
            self.client
                .post(format!("{}/v1/messages", self.base))
                .header("x-api-key", key)
                .header("anthropic-version", "2023-06-01")
                .json(body),
        )
        .await
    }
}

/// Anthropic's error envelope with strata's code.
fn assert_anthropic_error(a: &Answer, status: u16, kind: &str, code: &str) {
    assert_eq!(a.status.as_u16(), status, "{}", a.body);
    assert_eq!(a.body["type"], "error", "{}", a.body);
    assert_eq!(a.body["error"]["type"], kind, "{}", a.body);
    assert_eq!(a.body["error"]["code"], code, "{}", a.body);
    assert!(
        a.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(a.request_id.is_some());
}

#[tokio::test]
async fn a_message_goes_to_claudes_prefix_with_the_project_as_workspace() {
    let w = world().await;
    let (id, key) = w.project("claude", &[CLAUDE, OSS]).await;
    let a = w
        .send(
            w.client
                .post(format!("{}/v1/messages", w.base))
                .header("x-api-key", &key)
                .header("anthropic-version", "2023-06-01")
                .header("anthropic-beta", "prompt-caching-2024-07-31")
                // A client's own workspace never reaches Mantle.
                .header("anthropic-workspace", "proj_someone_else")
                .json(&message("hello claude")),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["type"], "message");
    assert_eq!(a.body["content"][0]["text"], "echo: hello claude");
    assert!(a.body["usage"]["input_tokens"].as_u64().is_some());

    let project = w
        .app
        .get(&format!("/api/v1/projects/{id}"), &w.app.admin)
        .await
        .body;
    let calls = w.mantle.message_calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.region, "us-east-1");
    assert_eq!(
        call.workspace.as_deref(),
        project["aws"]["mantle_project_id"].as_str()
    );
    assert_eq!(call.openai_project, None, "no OpenAI header on this API");
    assert_eq!(call.anthropic_version.as_deref(), Some("2023-06-01"));
    // Whatever version the client's SDK sends, Mantle gets the one AWS documents.
    for sent in [Some("2026-10-21"), None] {
        let mut request = w
            .client
            .post(format!("{}/v1/messages", w.base))
            .header("x-api-key", &key);
        if let Some(version) = sent {
            request = request.header("anthropic-version", version);
        }
        let a = w.send(request.json(&message("versions"))).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let version = w
            .mantle
            .message_calls()
            .pop()
            .and_then(|c| c.anthropic_version);
        assert_eq!(
            version.as_deref(),
            Some("2023-06-01"),
            "client sent {sent:?}"
        );
    }
    assert_eq!(
        call.anthropic_beta.as_deref(),
        Some("prompt-caching-2024-07-31")
    );
    assert_eq!(call.body, message("hello claude"), "the body as it came");
    // The fake evaluated the role's policy for CreateInference on this model.
    assert_eq!(
        w.mantle
            .calls("AccessDenied:bedrock-mantle:CreateInference"),
        0
    );

    // A bearer token works too (the SDK's `auth_token`).
    let bearer = w
        .send(
            w.client
                .post(format!("{}/v1/messages", w.base))
                .bearer_auth(&key)
                .header("anthropic-version", "2023-06-01")
                .json(&message("again")),
        )
        .await;
    assert_eq!(bearer.status, StatusCode::OK, "{}", bearer.body);
}

#[tokio::test]
async fn a_streamed_message_flows_through_event_by_event() {
    let w = world().await;
    let (_, key) = w.project("claude-stream", &[CLAUDE]).await;
    let mut body = message("one two three");
    body["stream"] = json!(true);
    let r = w
        .client
        .post(format!("{}/v1/messages", w.base))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let text = r.text().await.unwrap_or_default();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(names.first(), Some(&"message_start"), "{text}");
    assert_eq!(names.last(), Some(&"message_stop"), "{text}");
    let said: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|e| e["type"] == "content_block_delta")
        .filter_map(|e| e["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(said, "echo: one two three");
}

#[tokio::test]
async fn refusals_come_in_anthropics_shape_before_mantle() {
    let w = world().await;
    let (_, key) = w.project("claude-refusals", &[CLAUDE, OSS]).await;
    let no_key = w
        .send(
            w.client
                .post(format!("{}/v1/messages", w.base))
                .header("anthropic-version", "2023-06-01")
                .json(&message("hi")),
        )
        .await;
    assert_anthropic_error(&no_key, 401, "authentication_error", "invalid_api_key");
    let mut no_max = message("hi");
    no_max.as_object_mut().map(|o| o.remove("max_tokens"));
    let a = w.message(&key, &no_max).await;
    assert_anthropic_error(
        &a,
        400,
        "invalid_request_error",
        "missing_required_parameter",
    );
    assert_eq!(a.body["error"]["param"], "max_tokens");
    // A model Mantle serves through the OpenAI APIs only, and the other way round.
    let mut oss = message("hi");
    oss["model"] = json!(OSS);
    let a = w.message(&key, &oss).await;
    assert_anthropic_error(&a, 400, "invalid_request_error", "unsupported_api");
    assert!(
        a.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("POST /v1/chat/completions")),
        "{}",
        a.body
    );
    let chat = w.chat(&key, &hello(CLAUDE)).await;
    assert_error(&chat, 400, "unsupported_api");
    assert!(
        chat.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Messages (POST /v1/messages)")),
        "{}",
        chat.body
    );
    let (_, other_key) = w.project("no-claude", &[OSS]).await;
    let a = w.message(&other_key, &message("hi")).await;
    assert_anthropic_error(&a, 404, "not_found_error", "model_not_found");
    assert!(
        w.mantle.message_calls().is_empty(),
        "nothing refused reached Mantle"
    );

    // Mantle's own refusal keeps its status and message.
    let mut unknown = message("hi");
    unknown["not_a_field"] = json!(1);
    let a = w.message(&key, &unknown).await;
    assert_anthropic_error(&a, 400, "invalid_request_error", "upstream_rejected");
    assert!(
        a.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not_a_field")),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn models_are_listed_in_anthropics_shape_to_anthropics_clients() {
    let w = world().await;
    let (_, key) = w.project("claude-models", &[CLAUDE, OSS]).await;
    let get = |path: String, anthropic: bool| {
        let mut request = w.client.get(format!("{}{path}", w.base)).bearer_auth(&key);
        if anthropic {
            request = request.header("anthropic-version", "2023-06-01");
        }
        w.send(request)
    };
    let listed = get("/v1/models".into(), true).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert_eq!(listed.body["data"][0]["type"], "model");
    assert_eq!(listed.body["data"][0]["lifecycle"], "active");
    let ids: Vec<&str> = listed.body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [CLAUDE],
        "the Messages API's models only: {}",
        listed.body
    );
    assert_eq!(listed.body["has_more"], false);
    assert_eq!(listed.body["first_id"], CLAUDE);
    // OpenAI's clients see both models, in OpenAI's shape.
    let openai = get("/v1/models".into(), false).await;
    assert_eq!(openai.body["object"], "list");
    assert_eq!(openai.body["data"].as_array().map(Vec::len), Some(2));
    let one = get(format!("/v1/models/{CLAUDE}"), true).await;
    assert_eq!(
        (one.status, &one.body["id"]),
        (StatusCode::OK, &json!(CLAUDE))
    );
    let not_messages = get(format!("/v1/models/{OSS}"), true).await;
    assert_anthropic_error(&not_messages, 404, "not_found_error", "model_not_found");
}

#[tokio::test]
async fn a_keys_rate_limit_applies_to_messages_too() {
    let w = world().await;
    let (id, _) = w.project("claude-rpm", &[CLAUDE]).await;
    let key = w
        .key(id, json!({"name": "slow", "rate_limits": {"rpm": 1}}))
        .await;
    clear_of_the_minute_end().await;
    assert_eq!(
        w.message(&key, &message("first")).await.status,
        StatusCode::OK
    );
    let second = w.message(&key, &message("second")).await;
    assert_anthropic_error(&second, 429, "rate_limit_error", "rate_limit_exceeded");
    assert_eq!(w.mantle.message_calls().len(), 1);
}

/// Micro-dollars as the control plane rounds them (down, per row).
fn micros(tokens: u64, per_mtok: u64) -> u64 {
    tokens * per_mtok / 1_000_000
}

#[tokio::test]
async fn prompt_cache_reads_and_writes_are_metered_and_priced_apart() {
    let mut w = world_with(ProxyConfig {
        usage_flush_secs: 3600,
        ..ProxyConfig::default()
    })
    .await;
    let (id, key) = w.project("claude-cache", &[CLAUDE]).await;
    // 250 words: 250 tokens to the fake.
    let long_system = "you are a careful assistant ".repeat(50);
    let cached = |question: &str, stream: bool| {
        json!({"model": CLAUDE, "max_tokens": 64, "stream": stream,
            "system": [{"type": "text", "text": long_system, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": question}]})
    };
    // Written to the cache, then read from it twice (once streamed).
    let first = w.message(&key, &cached("first question", false)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["usage"]["cache_creation_input_tokens"], 250);
    let second = w.message(&key, &cached("second question", false)).await;
    assert_eq!(second.body["usage"]["cache_read_input_tokens"], 250);
    let streamed = w.message(&key, &cached("third question", true)).await;
    assert_eq!(streamed.status, StatusCode::OK);
    w.stop_proxy().await;

    let fake = w.mantle.chat_stats();
    let usage = w
        .app
        .get(&format!("/api/v1/projects/{id}/usage"), &w.app.admin)
        .await;
    let total = &usage.body["total"];
    assert_eq!(total["requests"], 3, "{}", usage.body);
    assert_eq!(total["errors"], 0, "{}", usage.body);
    // Anthropic's three input counts, added up as strata counts input.
    assert_eq!(total["input_tokens"], fake.prompt_tokens, "{}", usage.body);
    assert_eq!(total["output_tokens"], fake.completion_tokens);
    assert_eq!(total["cache_write_tokens"], 250, "{}", usage.body);
    assert_eq!(total["cached_tokens"], 500, "{}", usage.body);
    // Claude Opus 4.7 in the seeded catalog: $5 input, $0.50 cache read, $6.25 cache
    // write, $25 output per million tokens.
    let input = fake.prompt_tokens - 750;
    let expected = micros(input, 5_000_000)
        + micros(500, 500_000)
        + micros(250, 6_250_000)
        + micros(fake.completion_tokens, 25_000_000);
    let cost = total["cost_usd"].as_f64().unwrap_or_default();
    // One row per minute, each rounded down: at most a micro-dollar apart per part.
    assert!(
        (cost * 1e6 - expected as f64).abs() <= 8.0,
        "cost {cost} vs {expected} micro-dollars: {}",
        usage.body
    );
}
