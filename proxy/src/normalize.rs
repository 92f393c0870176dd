//! What the proxy changes on the way through, as pure functions: the request checked
//! against the catalog and adjusted for the model (content parts flattened, usage
//! always requested), and the responses made valid for strict OpenAI clients (float
//! timestamps as integers, the usage chunk dropped when the client did not ask).

use serde_json::{Map, Value};
use strata_core::domain::SnapshotModel;

use crate::error::OpenAiError;

/// Token counts as Mantle reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
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
        })
    }
}

/// A chat request ready to forward, and what the proxy must remember about it.
#[derive(Debug)]
pub struct ChatRequest {
    pub body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
    /// The client asked for the usage chunk itself.
    pub client_wants_usage: bool,
}

/// Parses the client's body far enough to route and police it.
pub fn parse_chat(bytes: &[u8]) -> Result<ChatRequest, OpenAiError> {
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
    match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => {}
        _ => {
            return Err(OpenAiError::invalid(
                "messages",
                "missing_required_parameter",
                "`messages` must be a non-empty array.",
            ));
        }
    }
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
        body,
        model,
        stream,
        client_wants_usage,
    })
}

/// Refuses what the catalog says the model cannot serve, with the parameter named,
/// and adapts the rest: content parts flattened for models that reject arrays, usage
/// always requested from a stream (for metering).
pub fn prepare_chat(request: &mut ChatRequest, model: &SnapshotModel) -> Result<(), OpenAiError> {
    let name = &request.model;
    if !model.supports_chat {
        return Err(OpenAiError::invalid(
            "model",
            "unsupported_api",
            format!(
                "The model `{name}` is not served through Chat Completions; use the Responses API."
            ),
        ));
    }
    if request.stream && !model.supports_streaming {
        return Err(OpenAiError::invalid(
            "stream",
            "unsupported_parameter",
            format!("The model `{name}` does not support streaming; send `stream: false`."),
        ));
    }
    let n = request.body.get("n").and_then(Value::as_u64).unwrap_or(1);
    if n > 1 && !model.supports_multiple_choices {
        return Err(OpenAiError::invalid(
            "n",
            "unsupported_parameter",
            format!("The model `{name}` returns one choice per request; `n` must be 1."),
        ));
    }
    let logprobs = request.body.get("logprobs").and_then(Value::as_bool) == Some(true)
        || request
            .body
            .get("top_logprobs")
            .is_some_and(|v| !v.is_null());
    if logprobs && !model.supports_logprobs {
        let param = if request.body.get("logprobs").and_then(Value::as_bool) == Some(true) {
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
    if !model.accepts_content_parts
        && let Some(Value::Array(messages)) = request.body.get_mut("messages")
    {
        for (i, message) in messages.iter_mut().enumerate() {
            flatten_content(message, i, name)?;
        }
    }
    if request.stream {
        let options = request
            .body
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
    Ok(())
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
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(self.pending.len());
        while let Some((end, sep)) = find_event_end(&self.pending) {
            let event: Vec<u8> = self.pending.drain(..end + sep).collect();
            self.rewrite_event(&event[..end], &mut out);
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
        let text = String::from_utf8_lossy(event);
        let data: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if data.len() != 1 {
            // Comments, keep-alives and multi-line data pass untouched.
            out.extend_from_slice(event);
            out.extend_from_slice(b"\n\n");
            return;
        }
        let payload = data[0].trim_end();
        if payload == "[DONE]" {
            self.saw_done = true;
            out.extend_from_slice(b"data: [DONE]\n\n");
            return;
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
        if let Some(usage) = value.get("usage").filter(|u| !u.is_null()) {
            self.usage = Usage::from_json(usage);
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
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf
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
            id: strata_core::domain::ModelId::parse("m.x").unwrap_or_else(|e| panic!("{e}")),
            provider: "p".into(),
            updated_at: 0,
            supports_chat: true,
            supports_responses: false,
            supports_streaming: false,
            supports_multiple_choices: false,
            supports_logprobs: false,
            accepts_content_parts: accepts_parts,
            input_price_micros_per_mtok: 1,
            output_price_micros_per_mtok: 1,
        }
    }

    fn request(body: Value) -> Result<ChatRequest, OpenAiError> {
        parse_chat(body.to_string().as_bytes())
    }

    #[test]
    fn malformed_or_incomplete_bodies_name_the_problem() {
        let e = parse_chat(b"{not json").err().map(|e| e.body());
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
        prepare_chat(&mut r, &model(false)).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(r.body["messages"][0]["content"], "a\nb");
        let mut kept = request(body).unwrap_or_else(|e| panic!("{e:?}"));
        prepare_chat(&mut kept, &model(true)).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(kept.body["messages"][0]["content"], parts);

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
        prepare_chat(&mut r, &m).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(!r.client_wants_usage);
        assert_eq!(r.body["stream_options"]["include_usage"], true);
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
                    cached_tokens: 4
                })
            );
            assert!(rw.saw_done);
            assert!(!text.contains("1.5"), "{text}");
            assert_eq!(text.contains("\"choices\":[]"), wants, "{text}");
            assert_eq!(text.matches("data: ").count(), if wants { 4 } else { 3 });
        }
        let mut rw = SseRewriter::new(false);
        let first = rw.push(chunk("a").as_bytes());
        assert!(!first.is_empty(), "a complete event goes out at once");
        assert!(rw.push(b"data: {\"partial").is_empty());
    }
}
