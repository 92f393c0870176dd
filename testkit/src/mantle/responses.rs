//! The fake's Responses API: stateful and deterministic (the reply echoes the last
//! input text and says which turn of a `previous_response_id` chain it is), plain,
//! streamed (typed SSE events with sequence numbers, replayable with
//! `?stream=true&starting_after=N`) and in the background (queued, then completed
//! after a configurable delay, or cancelled). Each response belongs to the Mantle
//! project that created it: another project's id is a 404, as on Mantle. Timestamps
//! are fractional, as Mantle has sent them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::chat::{Inference, text_of, words, wrong_route};
use super::{FakeMantle, err};

const CREATED_AT: f64 = 1_764_000_100.5;

/// Totals for tests and `/_fake/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ResponsesStats {
    pub created: u64,
    pub background: u64,
    pub cancelled: u64,
    pub deleted: u64,
    /// Usage of the responses that completed.
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Requests that named a response of another Mantle project (refused).
    pub foreign: u64,
    /// Creates refused by the project's data-retention mode (`none`: `store=true` or
    /// `background`).
    pub retention_refused: u64,
}

#[derive(Debug, Clone)]
struct FakeResponse {
    mantle_project: String,
    model: String,
    input: Vec<Value>,
    reply: String,
    input_tokens: u64,
    background: bool,
    previous: Option<String>,
    /// When a background response completes.
    completes_at: Option<Instant>,
    status: &'static str,
    usage_counted: bool,
}

#[derive(Default)]
pub(crate) struct ResponsesState {
    responses: BTreeMap<String, FakeResponse>,
    next: u64,
    stats: ResponsesStats,
    /// How long a background response stays queued.
    background_delay: Duration,
}

impl FakeMantle {
    pub fn responses_stats(&self) -> ResponsesStats {
        self.lock().responses.stats.clone()
    }

    /// Background responses complete this long after they are created (default 0).
    pub fn delay_background(&self, delay: Duration) {
        self.lock().responses.background_delay = delay;
    }
}

impl FakeResponse {
    /// Moves a background response on by the clock; counts usage once, on completion.
    fn advance(&mut self, stats: &mut ResponsesStats) {
        if self.status == "queued" && self.completes_at.is_none_or(|t| Instant::now() >= t) {
            self.status = "completed";
        }
        if self.status == "completed" && !self.usage_counted {
            self.usage_counted = true;
            stats.input_tokens += self.input_tokens;
            stats.output_tokens += words(&self.reply);
        }
    }

    fn view(&self, id: &str) -> Value {
        let done = self.status == "completed";
        let output = if done {
            json!([message(id, &self.reply, "completed")])
        } else {
            json!([])
        };
        let usage = done.then(|| {
            let output_tokens = words(&self.reply);
            json!({"input_tokens": self.input_tokens,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.input_tokens + output_tokens})
        });
        json!({"id": id, "object": "response", "created_at": CREATED_AT, "status": self.status,
            "completed_at": if done { json!(CREATED_AT + 1.25) } else { Value::Null },
            "background": self.background, "model": self.model, "output": output,
            "parallel_tool_calls": true, "tool_choice": "auto", "tools": [],
            "previous_response_id": self.previous, "error": null, "incomplete_details": null,
            "instructions": null, "metadata": {}, "temperature": 1.0, "top_p": 1.0,
            "usage": usage})
    }

    /// The typed events of this response, numbered from 0.
    fn events(&self, id: &str) -> Vec<Value> {
        let mut start = self.clone();
        start.status = "in_progress";
        let item = format!("msg_{id}");
        let mut events = vec![
            json!({"type": "response.created", "response": start.view(id)}),
            json!({"type": "response.in_progress", "response": start.view(id)}),
            json!({"type": "response.output_item.added", "output_index": 0,
                "item": {"id": item, "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
            json!({"type": "response.content_part.added", "item_id": item, "output_index": 0, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []}}),
        ];
        for (i, word) in self.reply.split(' ').enumerate() {
            let delta = if i == 0 {
                word.to_owned()
            } else {
                format!(" {word}")
            };
            events.push(
                json!({"type": "response.output_text.delta", "item_id": item, "output_index": 0,
                "content_index": 0, "delta": delta, "logprobs": []}),
            );
        }
        let mut done = self.clone();
        done.status = "completed";
        events.extend([
            json!({"type": "response.output_text.done", "item_id": item, "output_index": 0,
                "content_index": 0, "text": self.reply, "logprobs": []}),
            json!({"type": "response.content_part.done", "item_id": item, "output_index": 0, "content_index": 0,
                "part": {"type": "output_text", "text": self.reply, "annotations": []}}),
            json!({"type": "response.output_item.done", "output_index": 0, "item": message(id, &self.reply, "completed")}),
            json!({"type": "response.completed", "response": done.view(id)}),
        ]);
        for (n, e) in events.iter_mut().enumerate() {
            e["sequence_number"] = json!(n);
        }
        events
    }
}

fn message(id: &str, text: &str, status: &str) -> Value {
    json!({"id": format!("msg_{id}"), "type": "message", "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

/// The input as a list of message items (a string is one user message).
fn input_items(input: &Value) -> Vec<Value> {
    match input {
        Value::String(s) => vec![json!({"role": "user", "content": s})],
        Value::Array(items) => items.clone(),
        _ => Vec::new(),
    }
}

fn not_found(id: &str) -> Response {
    err(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("No response with id '{id}' found."),
    )
}

/// An SSE answer of `events` (already numbered), `event:` lines included.
fn sse(f: &FakeMantle, events: Vec<Value>) -> Response {
    let chunk_delay = f.lock().chat.chunk_delay;
    let body = futures_util::stream::unfold(
        (events.into_iter(), true),
        move |(mut events, first)| async move {
            let event = events.next()?;
            if !first && !chunk_delay.is_zero() {
                tokio::time::sleep(chunk_delay).await;
            }
            let text = format!(
                "event: {}\ndata: {event}\n\n",
                event["type"].as_str().unwrap_or_default()
            );
            Some((Ok::<_, std::io::Error>(Bytes::from(text)), (events, false)))
        },
    );
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(body),
    )
        .into_response()
}

pub(crate) async fn create(
    State(f): State<FakeMantle>,
    Path(region): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return err(StatusCode::BAD_REQUEST, "invalid_json", "body is not JSON");
    };
    if let Some(refusal) = wrong_route(body["model"].as_str().unwrap_or_default(), &uri) {
        return refusal;
    }
    let mantle_project = match f
        .inference_caller(
            "CreateResponse",
            &region,
            &headers,
            &Inference::create(&body),
        )
        .await
    {
        Ok(p) => p,
        Err(refusal) => return *refusal,
    };
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    if !model.starts_with("openai.gpt-oss") && !model.starts_with("openai.gpt-5") {
        return err(
            StatusCode::BAD_REQUEST,
            "unsupported_model",
            "the Responses API serves the GPT-OSS and GPT-5 models only",
        );
    }
    let input = input_items(&body["input"]);
    if input.is_empty() {
        return err(
            StatusCode::BAD_REQUEST,
            "missing_required_parameter",
            "input is required",
        );
    }
    let background = body["background"].as_bool() == Some(true);
    let stream = body["stream"].as_bool() == Some(true);
    // The project's retention mode decides `store`'s default and what is allowed (AWS's
    // data-retention rules); `inherit` falls to the account, `default` here.
    let mode = f
        .lock()
        .projects
        .get(&mantle_project)
        .map(|p| p.data_retention.clone())
        .unwrap_or_default();
    let zero_retention = mode == "none";
    let store = body["store"].as_bool().unwrap_or(!zero_retention);
    if zero_retention && store {
        f.lock().responses.stats.retention_refused += 1;
        return err(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "store=true is not allowed: this project's data retention mode is none",
        );
    }
    if zero_retention && background {
        f.lock().responses.stats.retention_refused += 1;
        return err(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "background mode is not available: this project's data retention mode is none",
        );
    }
    let mut inner = f.lock();
    let state = &mut inner.responses;
    let previous = body["previous_response_id"].as_str().map(str::to_owned);
    let mut turn = 1;
    if let Some(prev) = &previous {
        match state.responses.get(prev) {
            Some(p) if p.mantle_project == mantle_project => {
                let mut at = Some(prev.clone());
                while let Some(id) = at {
                    turn += 1;
                    at = state.responses.get(&id).and_then(|r| r.previous.clone());
                }
            }
            Some(_) => {
                state.stats.foreign += 1;
                return not_found(prev);
            }
            None => return not_found(prev),
        }
    }
    state.next += 1;
    let id = format!("resp_fake{:08}", state.next);
    let last = input
        .last()
        .map(|m| text_of(m.get("content").unwrap_or(&Value::Null)))
        .unwrap_or_default();
    let input_tokens = input
        .iter()
        .map(|m| words(&text_of(m.get("content").unwrap_or(&Value::Null))) + 3)
        .sum();
    let mut response = FakeResponse {
        mantle_project,
        model,
        input,
        reply: format!("echo: {last} (turn {turn})"),
        input_tokens,
        background,
        previous,
        completes_at: background.then(|| Instant::now() + state.background_delay),
        status: if background { "queued" } else { "completed" },
        usage_counted: false,
    };
    state.stats.created += 1;
    if background {
        state.stats.background += 1;
    }
    let queued = response.view(&id);
    if !background {
        response.advance(&mut state.stats);
    }
    let events = response.events(&id);
    let view = response.view(&id);
    // Not stored: nobody can retrieve it, continue from it or replay it.
    if store || background {
        state.responses.insert(id, response);
    }
    drop(inner);
    match (stream, background) {
        (true, _) => sse(&f, events),
        (false, true) => Json(queued).into_response(),
        (false, false) => Json(view).into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct RetrieveQuery {
    #[serde(default)]
    stream: bool,
    starting_after: Option<u64>,
}

/// Checks an operation on response `id` like any inference call, then that the
/// response exists and belongs to the caller's Mantle project (moving it on by the
/// clock). Another project's id is a 404, as on Mantle.
async fn on_owned(
    f: &FakeMantle,
    operation: &str,
    region: &str,
    headers: &HeaderMap,
    uri: &Uri,
    id: &str,
) -> Result<(), Box<Response>> {
    let action = match operation {
        "DeleteResponse" => "bedrock-mantle:DeleteInference",
        "CancelResponse" => "bedrock-mantle:CancelInference",
        _ => "bedrock-mantle:GetInference",
    };
    let mantle_project = f
        .inference_caller(operation, region, headers, &Inference::on_existing(action))
        .await?;
    let mut inner = f.lock();
    let state = &mut inner.responses;
    match state.responses.get_mut(id) {
        Some(r) if r.mantle_project == mantle_project => {
            if let Some(refusal) = wrong_route(&r.model, uri) {
                return Err(Box::new(refusal));
            }
            r.advance(&mut state.stats);
            Ok(())
        }
        Some(_) => {
            state.stats.foreign += 1;
            Err(Box::new(not_found(id)))
        }
        None => Err(Box::new(not_found(id))),
    }
}

pub(crate) async fn retrieve(
    State(f): State<FakeMantle>,
    Path((region, id)): Path<(String, String)>,
    Query(query): Query<RetrieveQuery>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Err(refusal) = on_owned(&f, "GetResponse", &region, &headers, &uri, &id).await {
        return *refusal;
    }
    let inner = f.lock();
    let Some(r) = inner.responses.responses.get(&id) else {
        return not_found(&id);
    };
    if query.stream {
        let after = query.starting_after;
        let events: Vec<Value> = r
            .events(&id)
            .into_iter()
            .filter(|e| after.is_none_or(|n| e["sequence_number"].as_u64() > Some(n)))
            .collect();
        drop(inner);
        return sse(&f, events);
    }
    Json(r.view(&id)).into_response()
}

pub(crate) async fn delete(
    State(f): State<FakeMantle>,
    Path((region, id)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Err(refusal) = on_owned(&f, "DeleteResponse", &region, &headers, &uri, &id).await {
        return *refusal;
    }
    let mut inner = f.lock();
    inner.responses.responses.remove(&id);
    inner.responses.stats.deleted += 1;
    Json(json!({"id": id, "object": "response.deleted", "deleted": true})).into_response()
}

pub(crate) async fn cancel(
    State(f): State<FakeMantle>,
    Path((region, id)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Err(refusal) = on_owned(&f, "CancelResponse", &region, &headers, &uri, &id).await {
        return *refusal;
    }
    let mut inner = f.lock();
    let state = &mut inner.responses;
    let Some(r) = state.responses.get_mut(&id) else {
        return not_found(&id);
    };
    if !r.background {
        return err(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Only background responses can be cancelled.",
        );
    }
    if r.status == "queued" {
        r.status = "cancelled";
        state.stats.cancelled += 1;
    }
    Json(r.view(&id)).into_response()
}

pub(crate) async fn list_input_items(
    State(f): State<FakeMantle>,
    Path((region, id)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Err(refusal) = on_owned(&f, "ListInputItems", &region, &headers, &uri, &id).await {
        return *refusal;
    }
    let inner = f.lock();
    let Some(r) = inner.responses.responses.get(&id) else {
        return not_found(&id);
    };
    let data: Vec<Value> = r
        .input
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let text = text_of(m.get("content").unwrap_or(&Value::Null));
            json!({"id": format!("msg_in{i}_{id}"), "type": "message", "status": "completed",
                "role": m.get("role").and_then(Value::as_str).unwrap_or("user"),
                "content": [{"type": "input_text", "text": text}]})
        })
        .collect();
    let first = data.first().map(|d| d["id"].clone()).unwrap_or_default();
    let last = data.last().map(|d| d["id"].clone()).unwrap_or_default();
    Json(json!({"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": false}))
        .into_response()
}
