//! What the proxy changes on the way through, as pure functions: the request checked
//! against the catalog and adjusted for the model (content parts flattened, usage
//! always requested), and the responses made valid for strict OpenAI clients (float
//! timestamps as integers, the usage chunk dropped when the client did not ask).

use std::borrow::Cow;

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::{Map, Value};
use strata_contract::{ServiceTier, SnapshotModel};

use crate::error::OpenAiError;
use crate::peek;

/// Token counts as Mantle reports them, counted OpenAI's way: `input_tokens` include
/// the ones read from (`cached_tokens`) and written to (`cache_write_tokens`) a
/// prompt cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    /// The tier Mantle served the request in (the answer's `service_tier`).
    pub service_tier: ServiceTier,
}

impl Usage {
    /// From an OpenAI `usage` object (Chat Completions or Responses naming).
    pub fn from_json(usage: &Value) -> Option<Self> {
        let n = |k: &str| usage.get(k).and_then(Value::as_u64);
        let input = n("prompt_tokens").or_else(|| n("input_tokens"))?;
        let output = n("completion_tokens")
            .or_else(|| n("output_tokens"))
            .unwrap_or(0);
        let cached = usage
            .get("prompt_tokens_details")
            .or_else(|| usage.get("input_tokens_details"))
            .and_then(|d| d.get("cached_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        Some(Self {
            input_tokens: input,
            output_tokens: output,
            cached_tokens: cached,
            cache_write_tokens: 0,
            service_tier: ServiceTier::Default,
        })
    }

    /// The usage of an OpenAI object (a completion, a chunk, a response): its `usage`
    /// with the object's `service_tier`.
    pub fn of_object(object: &Value) -> Option<Self> {
        let usage = Self::from_json(object.get("usage")?)?;
        Some(Self {
            service_tier: object
                .get("service_tier")
                .and_then(Value::as_str)
                .map(ServiceTier::reported)
                .unwrap_or_default(),
            ..usage
        })
    }
}

/// A chat request ready to forward, and what the proxy must remember about it.
#[derive(Debug)]
pub struct ChatRequest {
    pub model: String,
    pub stream: bool,
    /// The client asked for the usage chunk itself.
    pub client_wants_usage: bool,
    facts: Facts,
    body: ChatBody,
}

impl ChatRequest {
    /// The most output tokens the answer can have: `max_completion_tokens` (or
    /// `max_tokens`) for each of the `n` choices, else `default` for each.
    pub fn max_output_tokens(&self, default: u64) -> u64 {
        self.facts
            .max_output_tokens
            .unwrap_or(default)
            .saturating_mul(self.facts.n.max(1))
    }
}

/// What the catalog checks look at.
#[derive(Debug, Clone, Copy)]
struct Facts {
    n: u64,
    logprobs: bool,
    top_logprobs: bool,
    content_parts: bool,
    has_stream_options: bool,
    max_output_tokens: Option<u64>,
}

#[derive(Debug)]
enum ChatBody {
    /// The client's bytes, forwarded as they are unless something must change.
    Original(Bytes),
    Parsed(Map<String, Value>),
}

/// Parses the client's body far enough to route and police it.
pub fn parse_chat(bytes: &Bytes) -> Result<ChatRequest, OpenAiError> {
    match peek::chat(bytes) {
        Some(p) => Ok(ChatRequest {
            facts: Facts {
                n: p.n,
                logprobs: p.logprobs,
                top_logprobs: p.top_logprobs,
                content_parts: p.content_parts,
                has_stream_options: p.has_stream_options,
                max_output_tokens: p.max_output_tokens,
            },
            model: p.model,
            stream: p.stream,
            client_wants_usage: p.client_wants_usage,
            body: ChatBody::Original(bytes.clone()),
        }),
        None => parse_chat_value(bytes),
    }
}

/// The general path: the whole body as a `Value`, every problem worded for the client.
fn parse_chat_value(bytes: &[u8]) -> Result<ChatRequest, OpenAiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        OpenAiError::invalid(
            "body",
            "invalid_json",
            format!("We could not parse the JSON body of your request ({e}). Send valid JSON."),
        )
    })?;
    let Value::Object(body) = value else {
        return Err(OpenAiError::invalid(
            "body",
            "invalid_type",
            "The request body must be a JSON object.",
        ));
    };
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => {
            return Err(OpenAiError::invalid(
                "model",
                "missing_required_parameter",
                "You must provide a model parameter (a string).",
            ));
        }
    };
    let content_parts = match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m
            .iter()
            .any(|m| matches!(m.get("content"), Some(Value::Array(_)))),
        _ => {
            return Err(OpenAiError::invalid(
                "messages",
                "missing_required_parameter",
                "`messages` must be a non-empty array.",
            ));
        }
    };
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(OpenAiError::invalid(
                "stream",
                "invalid_type",
                "`stream` must be a boolean.",
            ));
        }
    };
    let client_wants_usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(ChatRequest {
        facts: Facts {
            n: body.get("n").and_then(Value::as_u64).unwrap_or(1),
            logprobs: body.get("logprobs").and_then(Value::as_bool) == Some(true),
            top_logprobs: body.get("top_logprobs").is_some_and(|v| !v.is_null()),
            content_parts,
            has_stream_options: body.contains_key("stream_options"),
            max_output_tokens: ["max_completion_tokens", "max_tokens"]
                .iter()
                .find_map(|k| body.get(*k).and_then(Value::as_u64)),
        },
        model,
        stream,
        client_wants_usage,
        body: ChatBody::Parsed(body),
    })
}

/// A create request's fields, read from a JSON object (what the Responses and Messages
/// handlers read before forwarding the body as it came).
pub(crate) fn request_fields<'a, T: serde::Deserialize<'a>>(
    bytes: &'a [u8],
) -> Result<T, OpenAiError> {
    serde_json::from_slice::<peek::Obj<T>>(bytes)
        .map(|peek::Obj(fields)| fields)
        .map_err(|e| {
            OpenAiError::invalid(
                "body",
                "invalid_json",
                format!(
                    "We could not parse the JSON body of your request ({e}). Send a JSON object."
                ),
            )
        })
}

/// The request's `model`, which must be a non-empty string; `missing` words the refusal
/// in the API's own terms.
pub(crate) fn required_model(model: Option<&str>, missing: &str) -> Result<String, OpenAiError> {
    model
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| OpenAiError::invalid("model", "missing_required_parameter", missing))
}

/// The model is not served through the API asked for: the answer names the APIs it is
/// served through (Mantle serves Claude through the Messages API only, and most
/// models not through the Responses API).
pub(crate) fn unsupported_api(model: &SnapshotModel, asked: &str) -> OpenAiError {
    let served: Vec<&str> = [
        (
            model.supports_chat,
            "Chat Completions (POST /v1/chat/completions)",
        ),
        (model.supports_responses, "Responses (POST /v1/responses)"),
        (model.supports_messages, "Messages (POST /v1/messages)"),
    ]
    .into_iter()
    .filter_map(|(served, api)| served.then_some(api))
    .collect();
    OpenAiError::invalid(
        "model",
        "unsupported_api",
        format!(
            "The model `{}` is not served through the {asked} API; it is served through: {}.",
            model.id.as_str(),
            served.join(", ")
        ),
    )
}

/// Refuses what the catalog says the model cannot serve, with the parameter named,
/// and returns the body to send upstream: content parts flattened for models that
/// reject arrays, usage always requested from a stream (for metering).
pub fn prepare_chat(
    request: &mut ChatRequest,
    model: &SnapshotModel,
) -> Result<Bytes, OpenAiError> {
    let name = &request.model;
    let facts = request.facts;
    if !model.supports_chat {
        return Err(unsupported_api(model, "Chat Completions"));
    }
    if request.stream && !model.supports_streaming {
        return Err(OpenAiError::invalid(
            "stream",
            "unsupported_parameter",
            format!("The model `{name}` does not support streaming; send `stream: false`."),
        ));
    }
    if facts.n > 1 && !model.supports_multiple_choices {
        return Err(OpenAiError::invalid(
            "n",
            "unsupported_parameter",
            format!("The model `{name}` returns one choice per request; `n` must be 1."),
        ));
    }
    if (facts.logprobs || facts.top_logprobs) && !model.supports_logprobs {
        let param = if facts.logprobs {
            "logprobs"
        } else {
            "top_logprobs"
        };
        return Err(OpenAiError::invalid(
            param,
            "unsupported_parameter",
            format!("The model `{name}` does not return log probabilities."),
        ));
    }
    let flatten = facts.content_parts && !model.accepts_content_parts;
    let add_usage = request.stream && !request.client_wants_usage;
    let body = std::mem::replace(&mut request.body, ChatBody::Original(Bytes::new()));
    let mut body = match body {
        ChatBody::Original(bytes) if !flatten && !add_usage => return Ok(bytes),
        ChatBody::Original(bytes) if !flatten && !facts.has_stream_options => {
            return Ok(ask_for_usage(&bytes));
        }
        ChatBody::Original(bytes) => match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => map,
            _ => {
                return Err(OpenAiError::invalid(
                    "body",
                    "invalid_json",
                    "We could not parse the JSON body of your request.",
                ));
            }
        },
        ChatBody::Parsed(map) => map,
    };
    if flatten && let Some(Value::Array(messages)) = body.get_mut("messages") {
        for (i, message) in messages.iter_mut().enumerate() {
            flatten_content(message, i, name)?;
        }
    }
    if request.stream {
        let options = body
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        match options {
            Value::Object(o) => {
                o.insert("include_usage".into(), Value::Bool(true));
            }
            _ => {
                return Err(OpenAiError::invalid(
                    "stream_options",
                    "invalid_type",
                    "`stream_options` must be an object.",
                ));
            }
        }
    }
    serde_json::to_vec(&body).map(Bytes::from).map_err(|e| {
        OpenAiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "internal_error",
            e.to_string(),
        )
    })
}

/// `{"stream_options":{"include_usage":true},` spliced in after the opening brace of
/// a request object that has no `stream_options` (and, being a valid request, has
/// other members after it).
fn ask_for_usage(object: &[u8]) -> Bytes {
    const OPTIONS: &[u8] = br#""stream_options":{"include_usage":true},"#;
    let brace = object.iter().position(|b| *b == b'{').unwrap_or(0);
    let mut out = Vec::with_capacity(object.len() + OPTIONS.len());
    out.extend_from_slice(&object[..=brace]);
    out.extend_from_slice(OPTIONS);
    out.extend_from_slice(&object[brace + 1..]);
    Bytes::from(out)
}

/// `[{"type":"text","text":"a"},{"type":"text","text":"b"}]` becomes `"a\nb"`; any
/// other kind of part is refused for a model that takes strings only.
fn flatten_content(message: &mut Value, index: usize, model: &str) -> Result<(), OpenAiError> {
    let Some(Value::Array(parts)) = message.get("content") else {
        return Ok(());
    };
    let mut texts = Vec::with_capacity(parts.len());
    for part in parts {
        match (part.get("type").and_then(Value::as_str), part.get("text")) {
            (Some("text"), Some(Value::String(t))) => texts.push(t.as_str()),
            (kind, _) => {
                return Err(OpenAiError::invalid(
                    &format!("messages[{index}].content"),
                    "unsupported_content",
                    format!(
                        "The model `{model}` accepts text content only; part of type `{}` cannot be sent to it.",
                        kind.unwrap_or("unknown")
                    ),
                ));
            }
        }
    }
    let flat = Value::String(texts.join("\n"));
    if let Some(content) = message.get_mut("content") {
        *content = flat;
    }
    Ok(())
}

/// A complete (non-streamed) upstream answer as the client gets it, and the usage it
/// reports; `None` when it is not JSON.
pub fn rewrite_response(body: Bytes) -> Option<(Bytes, Usage)> {
    let peeked = peek::response(&body)
        .filter(|p| !p.float_timestamp)
        .map(|p| p.usage.flatten().unwrap_or_default());
    if let Some(usage) = peeked {
        return Some((body, usage));
    }
    let value: Value = serde_json::from_slice(&body).ok()?;
    Some(rewritten(value, body))
}

/// `body`, read into `value` where the peek would not do, with integer timestamps;
/// and the usage it reports.
fn rewritten(mut value: Value, body: Bytes) -> (Bytes, Usage) {
    let usage = Usage::of_object(&value).unwrap_or_default();
    let body = if integer_timestamps(&mut value) {
        Bytes::from(value.to_string())
    } else {
        body
    };
    (body, usage)
}

/// A Responses API object from Mantle as the client gets it, with what strata records
/// of it.
pub struct CreatedResponse {
    pub body: Bytes,
    pub usage: Usage,
    pub id: String,
    pub status: Option<String>,
}

/// Like `rewrite_response`, for a response object: `None` unless it is a JSON object
/// with a string `id` (and a string or null `status`), read in the same pass.
pub fn rewrite_created(body: Bytes) -> Option<CreatedResponse> {
    let peeked = peek::response(&body)
        .filter(|p| !p.float_timestamp)
        .map(|p| {
            (
                p.id.map(Cow::into_owned),
                p.status.map(Cow::into_owned),
                p.usage,
            )
        });
    if let Some((id, status, usage)) = peeked {
        return Some(CreatedResponse {
            body,
            usage: usage.flatten().unwrap_or_default(),
            id: id?,
            status,
        });
    }
    let value: Value = serde_json::from_slice(&body).ok()?;
    let id = value.get("id")?.as_str()?.to_owned();
    let status = match value.get("status") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return None,
    };
    let (body, usage) = rewritten(value, body);
    Some(CreatedResponse {
        body,
        usage,
        id,
        status,
    })
}

/// Rewrites float `created` / `created_at` / `completed_at` at the top level to
/// integers (strict clients reject fractions). Returns whether anything changed.
pub fn integer_timestamps(object: &mut Value) -> bool {
    let mut changed = false;
    if let Value::Object(map) = object {
        for key in ["created", "created_at", "completed_at"] {
            if let Some(v) = map.get_mut(key)
                && v.is_f64()
                && let Some(f) = v.as_f64()
            {
                *v = Value::from(f.trunc() as i64);
                changed = true;
            }
        }
    }
    changed
}

/// Rewrites one upstream SSE stream as it flows: each complete event is forwarded as
/// soon as its blank line arrives (nothing else is held back).
#[derive(Debug, Default)]
pub struct SseRewriter {
    pending: Vec<u8>,
    pub client_wants_usage: bool,
    pub usage: Option<Usage>,
    pub saw_done: bool,
    /// The stream carried an `error` event.
    pub saw_error: bool,
}

impl SseRewriter {
    pub fn new(client_wants_usage: bool) -> Self {
        Self {
            client_wants_usage,
            ..Self::default()
        }
    }

    /// Bytes to send the client for this chunk of upstream bytes.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        // Events are read in place: from the chunk itself when nothing was held back
        // (the usual case), else from what was held back with the chunk appended.
        let mut held = std::mem::take(&mut self.pending);
        let buf = if held.is_empty() {
            chunk
        } else {
            held.extend_from_slice(chunk);
            &held[..]
        };
        let mut out = Vec::with_capacity(buf.len());
        let mut start = 0;
        while let Some((end, sep)) = find_event_end(&buf[start..]) {
            self.rewrite_event(&buf[start..start + end], &mut out);
            start += end + sep;
        }
        let rest = &buf[start..];
        if !rest.is_empty() {
            self.pending = rest.to_vec();
        }
        out
    }

    /// Whatever is left when the upstream closes (an unterminated last event).
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.pending);
        let mut out = Vec::new();
        if !rest.iter().all(u8::is_ascii_whitespace) {
            self.rewrite_event(&rest, &mut out);
        }
        out
    }

    fn rewrite_event(&mut self, event: &[u8], out: &mut Vec<u8>) {
        // `from_utf8` checks ASCII a word at a time; `from_utf8_lossy` goes byte by byte
        // even when the event is valid (~1,200 instructions an event, callgrind).
        let text = match std::str::from_utf8(event) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(event),
        };
        let mut data = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d));
        let (Some(payload), None) = (data.next(), data.next()) else {
            // Comments, keep-alives and multi-line data pass untouched.
            out.extend_from_slice(event);
            out.extend_from_slice(b"\n\n");
            return;
        };
        let payload = payload.trim_end();
        if payload == "[DONE]" {
            self.saw_done = true;
            out.extend_from_slice(b"data: [DONE]\n\n");
            return;
        }
        // Most events need no change: read what matters without building a Value.
        if let Some(p) = peek::response(payload.as_bytes()) {
            self.saw_error |= p.error;
            if let Some(usage) = p.usage {
                self.usage = usage;
            }
            let hide_usage = p.usage.is_some() && !self.client_wants_usage;
            if hide_usage && p.no_choices {
                return;
            }
            if !p.float_timestamp && !hide_usage {
                out.extend_from_slice(event);
                out.extend_from_slice(b"\n\n");
                return;
            }
        }
        let Ok(mut value) = serde_json::from_str::<Value>(payload) else {
            out.extend_from_slice(event);
            out.extend_from_slice(b"\n\n");
            return;
        };
        if value.get("error").is_some() {
            self.saw_error = true;
        }
        let mut changed = integer_timestamps(&mut value);
        if value.get("usage").is_some_and(|u| !u.is_null()) {
            self.usage = Usage::of_object(&value);
            let only_usage = value
                .get("choices")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty);
            if !self.client_wants_usage {
                if only_usage {
                    return;
                }
                if let Value::Object(map) = &mut value {
                    map.insert("usage".into(), Value::Null);
                    changed = true;
                }
            }
        }
        if changed {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(value.to_string().as_bytes());
            out.extend_from_slice(b"\n\n");
        } else {
            out.extend_from_slice(event);
            out.extend_from_slice(b"\n\n");
        }
    }
}

/// The end of the first complete event and the length of its separator.
pub(crate) fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    // A CRLF end can only come first if it starts before the LF one.
    let before = lf.map_or(buf.len(), |(i, _)| (i + 3).min(buf.len()));
    let crlf = buf[..before]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn model(accepts_parts: bool) -> SnapshotModel {
        SnapshotModel {
            id: strata_contract::ModelId::parse("m.x").unwrap_or_else(|e| panic!("{e}")),
            provider: "p".into(),
            updated_at: 0,
            supports_chat: true,
            supports_responses: false,
            supports_messages: false,
            supports_streaming: false,
            supports_multiple_choices: false,
            supports_logprobs: false,
            accepts_content_parts: accepts_parts,
            input_price_micros_per_mtok: 1,
            output_price_micros_per_mtok: 1,
            cached_input_price_micros_per_mtok: None,
            service_tier_price_factors: Default::default(),
            cache_write_price_micros_per_mtok: None,
            mantle_path: Default::default(),
        }
    }

    fn request(body: Value) -> Result<ChatRequest, OpenAiError> {
        parse_chat(&Bytes::from(body.to_string()))
    }

    fn json(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn malformed_or_incomplete_bodies_name_the_problem() {
        let e = parse_chat(&Bytes::from_static(b"{not json"))
            .err()
            .map(|e| e.body());
        assert_eq!(
            e.as_ref().map(|b| &b["error"]["param"]),
            Some(&json!("body"))
        );
        let e = request(json!({"messages": [{"role": "user", "content": "hi"}]})).err();
        assert_eq!(e.map(|e| e.param), Some(Some("model".into())));
        let e = request(json!({"model": "m.x", "messages": []})).err();
        assert_eq!(e.map(|e| e.param), Some(Some("messages".into())));
        let e = request(json!({"model": "m.x", "messages": [{}], "stream": "yes"})).err();
        assert_eq!(e.map(|e| e.param), Some(Some("stream".into())));
    }

    #[test]
    fn the_catalog_refuses_what_the_model_cannot_serve_by_parameter() {
        let msgs = json!([{"role": "user", "content": "hi"}]);
        for (extra, param) in [
            (json!({"stream": true}), "stream"),
            (json!({"n": 2}), "n"),
            (json!({"logprobs": true}), "logprobs"),
            (json!({"top_logprobs": 2}), "top_logprobs"),
        ] {
            let mut body = json!({"model": "m.x", "messages": msgs});
            if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
                b.extend(e);
            }
            let mut r = request(body).unwrap_or_else(|e| panic!("{e:?}"));
            let err = prepare_chat(&mut r, &model(true)).err();
            assert_eq!(
                err.map(|e| (e.status.as_u16(), e.param)),
                Some((400, Some(param.into())))
            );
        }
        let mut ok = request(json!({"model": "m.x", "messages": msgs, "n": 1, "logprobs": false}))
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(prepare_chat(&mut ok, &model(true)).is_ok());
    }

    #[test]
    fn text_parts_are_flattened_for_string_only_models_and_other_parts_refused() {
        let parts = json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]);
        let body = json!({"model": "m.x", "messages": [{"role": "user", "content": parts}]});
        let mut r = request(body.clone()).unwrap_or_else(|e| panic!("{e:?}"));
        let sent = prepare_chat(&mut r, &model(false)).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(json(&sent)["messages"][0]["content"], "a\nb");
        let mut kept = request(body).unwrap_or_else(|e| panic!("{e:?}"));
        let sent = prepare_chat(&mut kept, &model(true)).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(json(&sent)["messages"][0]["content"], parts);

        let image = json!({"model": "m.x", "messages": [{"role": "user", "content": "x"}, {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:,"}}]}]});
        let mut r = request(image).unwrap_or_else(|e| panic!("{e:?}"));
        let err = prepare_chat(&mut r, &model(false)).err();
        assert_eq!(
            err.and_then(|e| e.param),
            Some("messages[1].content".into())
        );
    }

    #[test]
    fn streams_always_ask_for_usage_and_remember_whether_the_client_did() {
        let mut m = model(true);
        m.supports_streaming = true;
        let mut r = request(json!({"model": "m.x", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
            .unwrap_or_else(|e| panic!("{e:?}"));
        let sent = prepare_chat(&mut r, &m).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(!r.client_wants_usage);
        assert_eq!(json(&sent)["stream_options"]["include_usage"], true);
    }

    /// The outcome of a body through `parse`: the error's (status, param, code), or
    /// the JSON sent upstream.
    fn outcome(
        parse: fn(&Bytes) -> Result<ChatRequest, OpenAiError>,
        body: &str,
        model: &SnapshotModel,
    ) -> Result<Value, (u16, Option<String>, Option<String>)> {
        let bytes = Bytes::from(body.to_owned());
        parse(&bytes)
            .and_then(|mut r| prepare_chat(&mut r, model))
            .map(|sent| json(&sent))
            .map_err(|e| (e.status.as_u16(), e.param, e.code))
    }

    #[test]
    fn the_fast_path_decides_exactly_as_the_value_path() {
        let general: fn(&Bytes) -> Result<ChatRequest, OpenAiError> = |b| parse_chat_value(b);
        let mut streaming = model(false);
        streaming.supports_streaming = true;
        let mut everything = model(true);
        everything.supports_streaming = true;
        everything.supports_multiple_choices = true;
        everything.supports_logprobs = true;
        let hi = r#""messages":[{"role":"user","content":"hi"}]"#;
        let parts = r#""messages":[{"role":"user","content":[{"type":"text","text":"a"}]}]"#;
        let bodies = [
            format!(r#"{{"model":"m.x",{hi}}}"#),
            format!(r#"  {{ "model" : "m.x", {hi}, "temperature": 0.2 }}"#),
            format!(r#"{{"model":"m.x",{hi}}}"#),
            format!(r#"{{"model":"m.x",{hi},"stream":true}}"#),
            format!(
                r#"{{"model":"m.x",{hi},"stream":true,"stream_options":{{"include_usage":true}}}}"#
            ),
            format!(
                r#"{{"model":"m.x",{hi},"stream":true,"stream_options":{{"include_usage":false}}}}"#
            ),
            format!(r#"{{"model":"m.x",{hi},"stream":true,"stream_options":null}}"#),
            format!(r#"{{"model":"m.x",{hi},"stream":true,"stream_options":{{}}}}"#),
            format!(r#"{{"model":"m.x",{hi},"stream":true,"stream_options":3}}"#),
            format!(r#"{{"model":"m.x",{hi},"stream":null}}"#),
            format!(r#"{{"model":"m.x",{hi},"stream":"yes"}}"#),
            format!(r#"{{"model":"m.x",{parts}}}"#),
            format!(r#"{{"model":"m.x",{parts},"stream":true}}"#),
            format!(r#"{{"model":"m.x",{hi},"n":2}}"#),
            format!(r#"{{"model":"m.x",{hi},"n":null,"logprobs":null,"top_logprobs":null}}"#),
            format!(r#"{{"model":"m.x",{hi},"n":"2"}}"#),
            format!(r#"{{"model":"m.x",{hi},"n":2.5}}"#),
            format!(r#"{{"model":"m.x",{hi},"logprobs":true}}"#),
            format!(r#"{{"model":"m.x",{hi},"logprobs":"yes"}}"#),
            format!(r#"{{"model":"m.x",{hi},"top_logprobs":3}}"#),
            format!(r#"{{"model":"m.x",{hi},"model":"m.y"}}"#),
            r#"{"model":"m.x","messages":[]}"#.to_owned(),
            r#"{"model":"m.x","messages":["hi"]}"#.to_owned(),
            r#"{"model":"m.x","messages":[["user",[1]]]}"#.to_owned(),
            r#"{"model":"","messages":[{"content":"hi"}]}"#.to_owned(),
            r#"{"model":7,"messages":[{"content":"hi"}]}"#.to_owned(),
            r#"["m.x",[{"content":"hi"}]]"#.to_owned(),
            r#"{"messages":[{"content":"hi"}]}"#.to_owned(),
            r#"{"model":"m.x","messages":[{"content":null}]}"#.to_owned(),
            "{not json".to_owned(),
        ];
        for body in &bodies {
            for m in [&model(true), &model(false), &streaming, &everything] {
                assert_eq!(
                    outcome(parse_chat, body, m),
                    outcome(general, body, m),
                    "{body} with {m:?}"
                );
            }
        }
        // The fast path is the one taken for ordinary requests, and it forwards the
        // client's bytes untouched when nothing has to change.
        assert!(peek::chat(bodies[0].as_bytes()).is_some());
        assert!(peek::chat(bodies[4].as_bytes()).is_some());
        let original = Bytes::from(bodies[1].clone());
        let mut r = parse_chat(&original).unwrap_or_else(|e| panic!("{e:?}"));
        let sent = prepare_chat(&mut r, &everything).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            sent.as_ptr(),
            original.as_ptr(),
            "the same buffer, not a copy"
        );
    }

    #[test]
    fn answers_are_passed_as_they_are_unless_a_timestamp_is_a_float() {
        let plain = Bytes::from_static(
            br#"{"id":"x","created":3,"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":1}}}"#,
        );
        let (out, usage) = rewrite_response(plain.clone()).unwrap_or_else(|| panic!("json"));
        assert_eq!(out.as_ptr(), plain.as_ptr());
        assert_eq!(
            usage,
            Usage {
                input_tokens: 5,
                output_tokens: 2,
                cached_tokens: 1,
                cache_write_tokens: 0,
                service_tier: Default::default(),
            }
        );
        let float =
            Bytes::from_static(br#"{"created":3.5,"usage":{"input_tokens":4,"output_tokens":1}}"#);
        let (out, usage) = rewrite_response(float).unwrap_or_else(|| panic!("json"));
        assert_eq!(json(&out)["created"], 3);
        assert_eq!((usage.input_tokens, usage.output_tokens), (4, 1));
        let odd = Bytes::from_static(br#"{"created":1,"usage":{"prompt_tokens":"5"}}"#);
        assert_eq!(
            rewrite_response(odd).map(|(_, u)| u),
            Some(Usage::default())
        );
        assert!(rewrite_response(Bytes::from_static(b"<html>")).is_none());
        assert!(rewrite_response(Bytes::from_static(b"[1]")).is_some());
    }

    #[test]
    fn a_created_response_is_read_in_one_pass_or_refused() {
        let plain = Bytes::from_static(
            br#"{"id":"resp_1","status":"queued","created_at":3,"usage":{"input_tokens":4,"output_tokens":1}}"#,
        );
        let c = rewrite_created(plain.clone()).unwrap_or_else(|| panic!("a response"));
        assert_eq!(c.body.as_ptr(), plain.as_ptr(), "passed as it is");
        assert_eq!(
            (c.id.as_str(), c.status.as_deref()),
            ("resp_1", Some("queued"))
        );
        assert_eq!((c.usage.input_tokens, c.usage.output_tokens), (4, 1));
        // Through the general path (a float timestamp, an escaped id) alike.
        let float = Bytes::from_static(br#"{"id":"resp_\u0032","created_at":3.5,"status":null}"#);
        let c = rewrite_created(float).unwrap_or_else(|| panic!("a response"));
        assert_eq!((c.id.as_str(), c.status), ("resp_2", None));
        assert_eq!(json(&c.body)["created_at"], 3);
        // Not a response object: no id, an id or status that is not a string.
        for body in [
            r#"{"status":"completed"}"#,
            r#"{"id":7}"#,
            r#"{"id":"resp_1","status":3}"#,
            r#"{"id":"resp_1","created_at":3.5,"status":3}"#,
            r#"["resp_1"]"#,
            "<html>",
        ] {
            assert!(rewrite_created(Bytes::from(body)).is_none(), "{body}");
        }
    }

    #[test]
    fn float_timestamps_become_integers() {
        let mut v = json!({"created": 1764000000.75, "created_at": 3, "id": "x"});
        assert!(integer_timestamps(&mut v));
        assert_eq!(
            v,
            json!({"created": 1764000000, "created_at": 3, "id": "x"})
        );
        assert!(!integer_timestamps(&mut v));
    }

    fn chunk(content: &str) -> String {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1.5, "model": "m",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}], "usage": null})
        )
    }

    #[test]
    fn the_stream_is_rewritten_event_by_event_and_the_usage_chunk_dropped_unless_asked() {
        let usage = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":2,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10,\"prompt_tokens_details\":{\"cached_tokens\":4}}}\n\n";
        let stream = format!("{}{}{usage}data: [DONE]\n\n", chunk("he"), chunk("llo"));
        for wants in [false, true] {
            let mut rw = SseRewriter::new(wants);
            // Fed in awkward pieces: nothing is emitted before its event is complete.
            let mut out = Vec::new();
            for piece in stream.as_bytes().chunks(7) {
                out.extend(rw.push(piece));
            }
            out.extend(rw.finish());
            let text = String::from_utf8(out).unwrap_or_default();
            assert_eq!(
                rw.usage,
                Some(Usage {
                    input_tokens: 7,
                    output_tokens: 3,
                    cached_tokens: 4,
                    cache_write_tokens: 0,
                    service_tier: Default::default(),
                })
            );
            assert!(rw.saw_done);
            assert!(!text.contains("1.5"), "{text}");
            assert_eq!(text.contains("\"choices\":[]"), wants, "{text}");
            assert_eq!(text.matches("data: ").count(), if wants { 4 } else { 3 });
        }
        // Integer timestamps: every event but the usage chunk passes byte for byte.
        let fine = stream.replace("\"created\":1.5", "\"created\":1");
        let mut rw = SseRewriter::new(false);
        let mut out = rw.push(fine.as_bytes());
        out.extend(rw.finish());
        assert_eq!(
            String::from_utf8(out).unwrap_or_default(),
            fine.replace(usage, "")
        );
        assert_eq!(rw.usage.map(|u| u.input_tokens), Some(7));

        // Events ended by CRLF pairs, alone or mixed with LF ones, in either order.
        let crlf = chunk("a").replace("\n\n", "\r\n\r\n");
        for (mixed, a_first) in [
            (format!("{crlf}{}", chunk("b")), true),
            (format!("{}{crlf}", chunk("b")), false),
        ] {
            let mut rw = SseRewriter::new(false);
            let text = String::from_utf8(rw.push(mixed.as_bytes())).unwrap_or_default();
            assert_eq!(text.matches("data: ").count(), 2, "{text:?}");
            let (a, b) = (
                text.find("\"content\":\"a\""),
                text.find("\"content\":\"b\""),
            );
            assert!(a.is_some() && b.is_some() && (a < b) == a_first, "{text:?}");
        }
        assert_eq!(find_event_end(b"x\r\n\r\ny\n\n"), Some((1, 4)));
        assert_eq!(find_event_end(b"x\n\ny\r\n\r\n"), Some((1, 2)));
        assert_eq!(find_event_end(b"x\r\n\r"), None);

        let mut rw = SseRewriter::new(false);
        let first = rw.push(chunk("a").as_bytes());
        assert!(!first.is_empty(), "a complete event goes out at once");
        assert!(rw.push(b"data: {\"partial").is_empty());
    }
}
