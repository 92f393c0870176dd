//! The fake's Anthropic Messages API (`/anthropic/v1/messages`), as AWS documents it
//! for Mantle: the `anthropic-version` header required, the Mantle project named by
//! `anthropic-workspace`, Claude models only (and Claude only here), IAM's
//! `CreateInference` for the model, unknown body fields refused. The reply echoes the
//! last user text; prompt caching is modelled so metering can be checked: the blocks up
//! to the last `cache_control` mark are written to the project's cache the first time
//! (`cache_creation_input_tokens`) and read from it after (`cache_read_input_tokens`).
//! Anthropic's minimum cacheable length is not modelled.

use std::collections::BTreeSet;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::FakeMantle;
use super::chat::{Inference, send_events, served_tier, text_of, words, wrong_route};

/// One Messages call as the fake saw it.
#[derive(Debug, Clone)]
pub struct MessageCall {
    pub region: String,
    pub workspace: Option<String>,
    pub openai_project: Option<String>,
    pub anthropic_version: Option<String>,
    pub anthropic_beta: Option<String>,
    pub body: Value,
}

#[derive(Default)]
pub(crate) struct MessagesState {
    log: Vec<MessageCall>,
    /// (workspace, model, cached prefix) already written to the cache.
    cached: BTreeSet<(String, String, String)>,
}

/// The request fields the Messages API knows; anything else is refused, as Anthropic's
/// API does ("Extra inputs are not permitted").
const KNOWN_FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "metadata",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
    "output_config",
];

impl FakeMantle {
    pub fn message_calls(&self) -> Vec<MessageCall> {
        self.lock().messages.log.clone()
    }
}

/// Anthropic's error envelope.
fn anthropic_err(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"type": "error", "error": {"type": kind, "message": message}})),
    )
        .into_response()
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Text blocks in prompt order: the system prompt's, then each message's, with
/// whether each carries a `cache_control` mark.
fn blocks(body: &Value) -> Vec<(String, bool)> {
    let of = |content: &Value| -> Vec<(String, bool)> {
        match content {
            Value::Array(parts) => parts
                .iter()
                .map(|p| {
                    (
                        p["text"].as_str().unwrap_or_default().to_owned(),
                        p.get("cache_control").is_some(),
                    )
                })
                .collect(),
            other => vec![(text_of(other), false)],
        }
    };
    let mut all = match body.get("system") {
        Some(system) => of(system),
        None => Vec::new(),
    };
    for message in body["messages"].as_array().into_iter().flatten() {
        all.extend(of(&message["content"]));
    }
    all
}

pub(crate) async fn create(
    State(f): State<FakeMantle>,
    Path(region): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return anthropic_err(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "body is not JSON",
        );
    };
    f.lock().messages.log.push(MessageCall {
        region: region.clone(),
        workspace: header(&headers, "anthropic-workspace"),
        openai_project: header(&headers, "openai-project"),
        anthropic_version: header(&headers, "anthropic-version"),
        anthropic_beta: header(&headers, "anthropic-beta"),
        body: body.clone(),
    });
    if header(&headers, "anthropic-version").as_deref() != Some("2023-06-01") {
        return anthropic_err(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version: header is required (2023-06-01)",
        );
    }
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    if let Some(refusal) = wrong_route(&model, &uri) {
        return refusal;
    }
    if let Some(extra) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| !KNOWN_FIELDS.contains(&k.as_str())))
    {
        return anthropic_err(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            &format!("{extra}: Extra inputs are not permitted"),
        );
    }
    if body["max_tokens"].as_u64().is_none_or(|n| n == 0) {
        return anthropic_err(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "max_tokens: Field required",
        );
    }
    let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
        return anthropic_err(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "messages: Field required",
        );
    };
    let workspace = match f
        .inference_caller(
            "CreateMessage",
            &region,
            &headers,
            &Inference::message(&body),
        )
        .await
    {
        Ok(workspace) => workspace,
        Err(refusal) => return *refusal,
    };
    let last = messages
        .last()
        .map(|m| text_of(&m["content"]))
        .unwrap_or_default();
    let reply = format!("echo: {last}");
    let output_tokens = words(&reply);
    let blocks = blocks(&body);
    let total: u64 =
        blocks.iter().map(|(text, _)| words(text)).sum::<u64>() + 3 * messages.len() as u64;
    let cached_prefix = blocks
        .iter()
        .rposition(|(_, marked)| *marked)
        .map(|last| &blocks[..=last]);
    let (written, read) = match cached_prefix {
        None => (0, 0),
        Some(prefix) => {
            let tokens: u64 = prefix.iter().map(|(text, _)| words(text)).sum();
            let key: Vec<&str> = prefix.iter().map(|(text, _)| text.as_str()).collect();
            let entry = (workspace, model.clone(), key.join("\u{1f}"));
            if f.lock().messages.cached.insert(entry) {
                (tokens, 0)
            } else {
                (0, tokens)
            }
        }
    };
    // Anthropic names the standard tier `standard`.
    let tier = match served_tier(&body) {
        "default" => "standard",
        other => other,
    };
    let usage = json!({
        "input_tokens": total - written - read,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "output_tokens": output_tokens,
        "service_tier": tier,
    });
    {
        let mut inner = f.lock();
        inner.chat.stats.prompt_tokens += total;
        inner.chat.stats.completion_tokens += output_tokens;
    }
    if body["stream"].as_bool() != Some(true) {
        return Json(json!({
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": reply}],
            "stop_reason": "end_turn", "stop_sequence": null, "usage": usage,
        }))
        .into_response();
    }
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut start_usage = usage.clone();
    start_usage["output_tokens"] = json!(1);
    let mut events = vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message",
                "role": "assistant", "model": model, "content": [], "stop_reason": null,
                "stop_sequence": null, "usage": start_usage}}),
        ),
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        event("ping", json!({"type": "ping"})),
    ];
    for (i, word) in reply.split(' ').enumerate() {
        let text = if i == 0 {
            word.to_owned()
        } else {
            format!(" {word}")
        };
        events.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        ));
    }
    events.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": output_tokens}}),
    ));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    send_events(f, events)
}
