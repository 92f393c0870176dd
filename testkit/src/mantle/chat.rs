//! The fake's Chat Completions: OpenAI-shaped and deterministic (the reply echoes the
//! last message, word by word when streamed), with Mantle's quirks (a fractional
//! `created`, content arrays refused for non-OpenAI models), SigV4 or a Bedrock API
//! key, `OpenAI-Project` checked against the region's projects, and faults on demand.

use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::iam::Authorization;
use super::{FakeMantle, err};

/// One chat call as the fake saw it.
#[derive(Debug, Clone)]
pub struct ChatCall {
    pub region: String,
    pub openai_project: Option<String>,
    /// `AWS4-HMAC-SHA256` for this region and service, with a session token (assumed
    /// role) — or the configured Bedrock API key.
    pub authorization: String,
    pub security_token: bool,
    pub body: Value,
}

/// Totals for tests and the `fake-mantle` binary's `/_fake/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChatStats {
    pub calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub streams_completed: u64,
    /// Streams whose reader went away before the end.
    pub streams_cancelled: u64,
}

#[derive(Default)]
pub(crate) struct ChatState {
    log: Vec<ChatCall>,
    pub(crate) stats: ChatStats,
    /// Answer (or start a stream) only after this long.
    delay: Duration,
    /// Pause between streamed chunks.
    pub(crate) chunk_delay: Duration,
    bedrock_api_key: Option<String>,
}

impl FakeMantle {
    pub fn chat_calls(&self) -> Vec<ChatCall> {
        self.lock().chat.log.clone()
    }

    pub fn chat_stats(&self) -> ChatStats {
        self.lock().chat.stats.clone()
    }

    /// Chat answers wait this long first (timeouts).
    pub fn delay_chat(&self, delay: Duration) {
        self.lock().chat.delay = delay;
    }

    /// Streamed chunks come this far apart (disconnects, long streams).
    pub fn delay_chunks(&self, delay: Duration) {
        self.lock().chat.chunk_delay = delay;
    }

    /// Also accept `Authorization: Bearer <key>` on chat calls.
    pub fn accept_bedrock_api_key(&self, key: &str) {
        self.lock().chat.bedrock_api_key = Some(key.to_owned());
    }
}

pub(crate) fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

pub(crate) fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// Mantle serves OpenAI's frontier models (`openai.gpt-5…`) only under `/openai/v1`,
/// Claude (`anthropic.…`) only under `/anthropic/v1` and every other model only under
/// `/v1`; a call on another prefix is refused as AWS documents ("model … isn't
/// supported on this route").
pub(crate) fn wrong_route(model: &str, uri: &Uri) -> Option<Response> {
    let prefix_of = |path: &str| {
        if path.contains("/openai/v1/") {
            "openai"
        } else if path.contains("/anthropic/v1/") {
            "anthropic"
        } else {
            "v1"
        }
    };
    let served_under = if model.starts_with("openai.gpt-5") {
        "openai"
    } else if model.starts_with("anthropic.") {
        "anthropic"
    } else {
        "v1"
    };
    (prefix_of(uri.path()) != served_under).then(|| {
        err(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            &format!("model `{model}` isn't supported on this route"),
        )
    })
}

/// Fractional on purpose: Mantle has sent `created` as a float.
const CREATED: f64 = 1_764_000_000.25;

pub(crate) async fn completions(
    State(f): State<FakeMantle>,
    Path(region): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let project = headers
        .get("openai-project")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return err(StatusCode::BAD_REQUEST, "invalid_json", "body is not JSON");
    };
    if let Some(refusal) = wrong_route(body["model"].as_str().unwrap_or_default(), &uri) {
        return refusal;
    }
    let delay = {
        let mut inner = f.lock();
        inner.chat.log.push(ChatCall {
            region: region.clone(),
            openai_project: project.clone(),
            authorization: auth.clone(),
            security_token: headers.contains_key("x-amz-security-token"),
            body: body.clone(),
        });
        inner.chat.stats.calls += 1;
        inner.chat.delay
    };
    if let Err(refusal) = f
        .check_inference(&region, &headers, &Inference::create(&body))
        .await
    {
        return *refusal;
    }
    let failure = {
        let mut inner = f.lock();
        (!inner.failures.is_empty()).then(|| inner.failures.remove(0))
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(status) = failure {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return err(status, "injected", "injected failure");
    }
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    if !model.starts_with("openai.") && messages.iter().any(|m| m["content"].is_array()) {
        return err(
            StatusCode::BAD_REQUEST,
            "invalid_type",
            "messages[].content must be a string for this model",
        );
    }
    let prompt_tokens: u64 = messages
        .iter()
        .map(|m| words(&text_of(&m["content"])) + 3)
        .sum();
    let last = messages
        .last()
        .map(|m| text_of(&m["content"]))
        .unwrap_or_default();
    let reply = format!("echo: {last}");
    let completion_tokens = words(&reply);
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens, "prompt_tokens_details": {"cached_tokens": 0}});
    {
        let mut inner = f.lock();
        inner.chat.stats.prompt_tokens += prompt_tokens;
        inner.chat.stats.completion_tokens += completion_tokens;
    }
    let n = body["n"].as_u64().unwrap_or(1).max(1);
    let tier = served_tier(&body);
    if body["stream"].as_bool() != Some(true) {
        let choices: Vec<Value> = (0..n)
            .map(|i| json!({"index": i, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop", "logprobs": null}))
            .collect();
        return Json(
            json!({"id": "chatcmpl-fake", "object": "chat.completion", "created": CREATED,
            "model": model, "choices": choices, "usage": usage, "service_tier": tier}),
        )
        .into_response();
    }
    let include_usage = body["stream_options"]["include_usage"].as_bool() == Some(true);
    stream(f, model, reply, tier, include_usage.then_some(usage))
}

/// The tier Mantle serves a request in, as OpenAI's API names it: the one asked for
/// (`priority`, `flex`, `reserved`), else the standard tier.
pub(crate) fn served_tier(body: &Value) -> &'static str {
    match body["service_tier"].as_str() {
        Some("priority") => "priority",
        Some("flex") => "flex",
        Some("reserved") => "reserved",
        _ => "default",
    }
}

/// Counts a stream as completed or cancelled when it is dropped.
struct StreamGuard {
    fake: FakeMantle,
    finished: bool,
}

impl StreamGuard {
    fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut inner = self.fake.lock();
        if self.finished {
            inner.chat.stats.streams_completed += 1;
        } else {
            inner.chat.stats.streams_cancelled += 1;
        }
    }
}

fn stream(
    f: FakeMantle,
    model: String,
    reply: String,
    tier: &str,
    usage: Option<Value>,
) -> Response {
    let with_usage = usage.is_some();
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": CREATED,
            "model": model, "service_tier": tier, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        if with_usage {
            c["usage"] = Value::Null;
        }
        format!("data: {c}\n\n")
    };
    let mut events: Vec<String> = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for (i, word) in reply.split(' ').enumerate() {
        let text = if i == 0 {
            word.to_owned()
        } else {
            format!(" {word}")
        };
        events.push(chunk(json!({"content": text}), Value::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    if let Some(usage) = usage {
        let last = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": CREATED,
            "model": model, "service_tier": tier, "choices": [], "usage": usage});
        events.push(format!("data: {last}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_owned());
    send_events(f, events)
}

/// Sends `events` as a stream, `chunk_delay` apart, counted as completed or cancelled.
pub(crate) fn send_events(f: FakeMantle, events: Vec<String>) -> Response {
    let chunk_delay = f.lock().chat.chunk_delay;
    let guard = StreamGuard {
        fake: f,
        finished: false,
    };
    let body = futures_util::stream::unfold(
        (events.into_iter(), guard, true),
        move |(mut events, guard, first)| async move {
            let Some(event) = events.next() else {
                guard.finish();
                return None;
            };
            if !first && !chunk_delay.is_zero() {
                tokio::time::sleep(chunk_delay).await;
            }
            Some((
                Ok::<_, std::io::Error>(Bytes::from(event)),
                (events, guard, false),
            ))
        },
    );
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(body),
    )
        .into_response()
}

/// What an inference call asks IAM for beyond its signature: the action of its route
/// (as AWS's Service Authorization Reference lists it) and its condition keys.
pub(crate) struct Inference<'a> {
    pub action: &'static str,
    pub model: Option<&'a str>,
    pub service_tier: Option<&'a str>,
    /// The header naming the Mantle project: `OpenAI-Project`, or `anthropic-workspace`
    /// on the Messages API (AWS's "Workspaces" are projects).
    pub project_header: &'static str,
}

impl<'a> Inference<'a> {
    pub(crate) fn create(body: &'a Value) -> Self {
        Self {
            action: "bedrock-mantle:CreateInference",
            model: body["model"].as_str(),
            service_tier: body["service_tier"].as_str(),
            project_header: "openai-project",
        }
    }

    pub(crate) fn message(body: &'a Value) -> Self {
        Self {
            project_header: "anthropic-workspace",
            ..Self::create(body)
        }
    }

    pub(crate) fn on_existing(action: &'static str) -> Self {
        Self {
            action,
            model: None,
            service_tier: None,
            project_header: "openai-project",
        }
    }
}

/// What a short-term Bedrock API key says about itself.
struct ShortTermKey {
    access_key: String,
    session_token: Option<String>,
}

/// A short-term Bedrock API key (`Bearer bedrock-api-key-…`): base64 of a presigned
/// `bedrock.amazonaws.com/?Action=CallWithBearerToken…&Version=1`, for one region, at
/// most 12 h. `Ok(None)` when the header holds no such key; `Err` for a malformed,
/// expired or other-region one. The signature itself is not checked (moto keeps the
/// secret keys to itself).
fn short_term_key(authorization: &str, region: &str) -> Result<Option<ShortTermKey>, String> {
    let Some(encoded) = authorization.strip_prefix("Bearer bedrock-api-key-") else {
        return Ok(None);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or("the API key is not valid base64")?;
    let url = reqwest::Url::parse(&format!("https://{decoded}"))
        .map_err(|e| format!("the API key holds no URL: {e}"))?;
    let q: std::collections::BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    if url.host_str() != Some("bedrock.amazonaws.com")
        || get("Action") != "CallWithBearerToken"
        || get("Version") != "1"
        || get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256"
        || get("X-Amz-Signature").is_empty()
    {
        return Err("the API key is not a presigned CallWithBearerToken".into());
    }
    let scope: Vec<&str> = get("X-Amz-Credential").split('/').collect();
    let [access_key, _, key_region, "bedrock", "aws4_request"] = scope[..] else {
        return Err("the API key's credential scope is malformed".into());
    };
    if key_region != region {
        return Err(format!("the API key is for {key_region}, not {region}"));
    }
    let expires: u64 = get("X-Amz-Expires").parse().unwrap_or(u64::MAX);
    if expires > 43_200 {
        return Err("a short-term API key lives at most 12 hours".into());
    }
    let signed_at = chrono::NaiveDateTime::parse_from_str(get("X-Amz-Date"), "%Y%m%dT%H%M%SZ")
        .map_err(|_| "the API key has no valid X-Amz-Date")?
        .and_utc();
    let expires = i64::try_from(expires).unwrap_or(i64::MAX);
    if signed_at + chrono::Duration::seconds(expires) < chrono::Utc::now() {
        return Err("the API key has expired".into());
    }
    Ok(Some(ShortTermKey {
        access_key: access_key.to_owned(),
        session_token: q.get("X-Amz-Security-Token").cloned(),
    }))
}

/// `Credential=AKID/date/region/service/aws4_request` of a SigV4 header.
fn access_key(authorization: &str) -> Option<&str> {
    authorization
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split('/').next())
}

impl FakeMantle {
    /// An inference call's signature (SigV4 for this region, or the configured Bedrock
    /// API key), `OpenAI-Project` (an active project of the region) and, when IAM is
    /// enforced, the signer's policies for the route's action; `Ok` is the Mantle
    /// project id.
    pub(crate) async fn check_inference(
        &self,
        region: &str,
        headers: &HeaderMap,
        call: &Inference<'_>,
    ) -> Result<String, Box<Response>> {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let project = headers
            .get(call.project_header)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let long_term = self.lock().chat.bedrock_api_key.clone();
        let long_term_ok = long_term.is_some_and(|k| auth == format!("Bearer {k}"));
        let short_term = match short_term_key(auth, region) {
            _ if long_term_ok => None,
            Ok(key) => key,
            Err(why) => {
                return Err(Box::new(err(
                    StatusCode::FORBIDDEN,
                    "invalid_api_key",
                    &why,
                )));
            }
        };
        let iam = {
            let inner = self.lock();
            let signed = auth.starts_with("AWS4-HMAC-SHA256 ")
                && auth.contains(&format!("/{region}/bedrock-mantle/aws4_request"))
                && headers.contains_key("x-amz-date");
            if !signed && !long_term_ok && short_term.is_none() {
                return Err(Box::new(err(
                    StatusCode::FORBIDDEN,
                    "unsigned",
                    "requests must be signed with SigV4 for bedrock-mantle in the request's region",
                )));
            }
            let known = inner
                .projects
                .get(project)
                .is_some_and(|p| p.region == region && p.status == "active");
            if !known {
                return Err(Box::new(err(
                    StatusCode::NOT_FOUND,
                    "project_not_found",
                    &format!(
                        "{} names no active project in this region",
                        call.project_header
                    ),
                )));
            }
            // A long-term key is its IAM user's; the fake models assumed roles only.
            inner.iam.clone().filter(|_| signed || short_term.is_some())
        };
        if let Some(iam) = iam {
            let mut context = std::collections::BTreeMap::new();
            if let Some(m) = call.model {
                context.insert("bedrock-mantle:Model", m.to_owned());
            }
            if let Some(t) = call.service_tier {
                context.insert("bedrock-mantle:ServiceTier", t.to_owned());
            }
            let (access_key, session_token) = match &short_term {
                Some(key) => (key.access_key.as_str(), key.session_token.as_deref()),
                None => (
                    access_key(auth).unwrap_or_default(),
                    headers
                        .get("x-amz-security-token")
                        .and_then(|v| v.to_str().ok()),
                ),
            };
            let authorization = Authorization {
                access_key,
                session_token,
                action: call.action,
                region,
                mantle_project: project,
                context,
                short_term_key: short_term.is_some(),
            };
            if let Err(message) = iam.authorize(&authorization).await {
                *self
                    .lock()
                    .calls
                    .entry(format!("AccessDenied:{}", call.action))
                    .or_default() += 1;
                return Err(Box::new(access_denied(&message)));
            }
        }
        if short_term.is_some() {
            *self
                .lock()
                .calls
                .entry("ShortTermApiKey".to_owned())
                .or_default() += 1;
        }
        Ok(project.to_owned())
    }

    /// Counts a Responses API call, checks it like a chat call, and applies an injected
    /// failure if one is queued.
    pub(crate) async fn inference_caller(
        &self,
        operation: &str,
        region: &str,
        headers: &HeaderMap,
        call: &Inference<'_>,
    ) -> Result<String, Box<Response>> {
        *self.lock().calls.entry(operation.to_owned()).or_default() += 1;
        let project = self.check_inference(region, headers, call).await?;
        let mut inner = self.lock();
        if !inner.failures.is_empty() {
            let status = inner.failures.remove(0);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Err(Box::new(err(status, "injected", "injected failure")));
        }
        Ok(project)
    }
}

/// Mantle's answer when IAM denies the call.
fn access_denied(message: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(json!({"error": {"message": message, "type": "permission_error", "code": "access_denied"}})),
    )
        .into_response()
}

#[derive(Deserialize)]
pub(crate) struct Faults {
    #[serde(default)]
    fail_next: Vec<u16>,
    #[serde(default)]
    delay_ms: u64,
    #[serde(default)]
    chunk_delay_ms: u64,
    /// How long background responses stay queued.
    #[serde(default)]
    background_ms: u64,
}

/// `POST /_fake/faults` (the binary's control endpoint for out-of-process tests).
pub(crate) async fn set_faults(
    State(f): State<FakeMantle>,
    Json(faults): Json<Faults>,
) -> Response {
    f.fail_next(&faults.fail_next);
    f.delay_chat(Duration::from_millis(faults.delay_ms));
    f.delay_chunks(Duration::from_millis(faults.chunk_delay_ms));
    f.delay_background(Duration::from_millis(faults.background_ms));
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /_fake/stats`.
pub(crate) async fn stats(State(f): State<FakeMantle>) -> Response {
    let mut stats = serde_json::to_value(f.chat_stats()).unwrap_or_default();
    stats["responses"] = serde_json::to_value(f.responses_stats()).unwrap_or_default();
    Json(stats).into_response()
}
