//! Anthropic's Messages API through the proxy: `POST /v1/messages`, plain and
//! streamed, for the Claude models Mantle serves under `/anthropic/v1` (AWS's
//! "Inference using Anthropic Messages API"). The same keys, limits, budgets and
//! metering as chat; the project goes to Mantle as the `anthropic-workspace` header
//! (AWS's "Workspaces", the same resource as a project), with the API version AWS
//! documents for Mantle and the client's `anthropic-beta`. Errors come in Anthropic's shape,
//! so the `anthropic` SDKs raise the right exception class.

mod events;

use std::borrow::Cow;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use self::events::{AnthropicUsage, MessagesSse};
use crate::access::authorize;
use crate::auth::denial;
use crate::billing::{Billing, Seen, answer, relay_stream};
use crate::error::OpenAiError;
use crate::forward::{
    UpstreamCall, UpstreamPath, send_upstream, transport_failure, upstream_failure,
};
use crate::limits::{Demand, Limits, estimate_input_tokens, prices};
use crate::normalize::{request_fields, required_model, unsupported_api};
use crate::state::ProxyState;

pub(crate) const MESSAGES_ROUTE: &str = "messages";

/// Client headers forwarded to Mantle as they came.
const FORWARDED: [&str; 1] = ["anthropic-beta"];

/// The `anthropic-version` AWS documents for Mantle ("bedrock-mantle: Set
/// anthropic-version: 2023-06-01"); sent whatever the client's SDK sends (newer SDKs
/// send newer dates, which Mantle does not document).
const MANTLE_ANTHROPIC_VERSION: (&str, &str) = ("anthropic-version", "2023-06-01");

/// What the proxy reads of a request; the body goes to Mantle as it came.
#[derive(Deserialize)]
struct MessageFields<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    max_tokens: Option<serde_json::Value>,
    stream: Option<bool>,
}

/// What the proxy reads of a (non-streamed) answer.
#[derive(Deserialize)]
struct MessageAnswer {
    usage: AnthropicUsage,
}

pub async fn create_message(State(state): State<ProxyState>, request: Request) -> Response {
    let started = Instant::now();
    let mut seen = Seen::default();
    let result = create(&state, request, started, &mut seen)
        .await
        .or_else(|e| Ok(anthropic_error(e)));
    answer(&state, MESSAGES_ROUTE, seen, result)
}

async fn create(
    state: &ProxyState,
    mut client: Request,
    started: Instant,
    seen: &mut Seen,
) -> Result<Response, OpenAiError> {
    // Copied out before `begin` drops the request's head.
    let forwarded: Vec<(&'static str, String)> = FORWARDED
        .iter()
        .filter_map(|&name| {
            let value = client.headers_mut().remove(name)?;
            Some((name, value.to_str().ok()?.to_owned()))
        })
        .collect();
    let (claims, policy, bytes) = state.begin(client, seen).await?;
    let fields: MessageFields = request_fields(&bytes)?;
    let model_name = required_model(fields.model.as_deref(), "model: Field required (a string).")?;
    let max_tokens = fields
        .max_tokens
        .as_ref()
        .and_then(serde_json::Value::as_u64)
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            OpenAiError::invalid(
                "max_tokens",
                "missing_required_parameter",
                "max_tokens: Field required (a positive integer; the Messages API has no default).",
            )
        })?;
    let project =
        authorize(&claims, &policy, Some(&model_name)).map_err(|d| denial(d, Some(&model_name)))?;
    let model = policy
        .models
        .get(&model_name)
        .ok_or_else(|| OpenAiError::model_not_found(&model_name))?;
    if !model.supports_messages {
        return Err(unsupported_api(model, "Messages"));
    }
    let stream = fields.stream.unwrap_or(false);
    if stream && !model.supports_streaming {
        return Err(OpenAiError::invalid(
            "stream",
            "unsupported_parameter",
            format!("The model `{model_name}` does not stream."),
        ));
    }
    seen.model = Some(model_name.clone());
    let limits = Limits::of(
        project,
        claims.sub,
        claims.rate_limits,
        policy.budgets_for(project.id, claims.sub),
    );
    let demand = Demand::priced(
        prices(model),
        estimate_input_tokens(bytes.len()),
        max_tokens,
    );
    let (mut billing, limit_headers) = Billing::admit(
        state,
        &limits,
        demand,
        (MESSAGES_ROUTE, &model_name, prices(model)),
        started,
        seen,
    )
    .await?;
    let headers: Vec<(&'static str, &str)> = std::iter::once(MANTLE_ANTHROPIC_VERSION)
        .chain(forwarded.iter().map(|(n, v)| (*n, v.as_str())))
        .collect();
    let call = UpstreamCall {
        method: reqwest::Method::POST,
        prefix: model.mantle_path,
        path: UpstreamPath::Fixed("/messages"),
        body: bytes,
        stream,
        headers: &headers,
    };
    let response = match send_upstream(state, project, call).await {
        Ok(r) => r,
        Err((kind, e)) => {
            billing.failed(kind);
            return Err(e);
        }
    };
    if !response.status().is_success() {
        let e = upstream_failure(response).await;
        billing.failed(if e.status.is_server_error() {
            "status_5xx"
        } else {
            "status_4xx"
        });
        return Err(e);
    }
    if stream {
        let mut response = relay_stream(response, MessagesSse::default(), billing);
        response.headers_mut().extend(limit_headers);
        return Ok(response);
    }
    let body: Bytes = match response.bytes().await {
        Ok(b) => b,
        Err(e) => {
            let (kind, e) = transport_failure(state, &e);
            billing.failed(kind);
            return Err(e);
        }
    };
    let Ok(answer) = serde_json::from_slice::<MessageAnswer>(&body) else {
        billing.failed("invalid_body");
        return Err(OpenAiError::new(
            StatusCode::BAD_GATEWAY,
            "api_error",
            "upstream_invalid_response",
            "Mantle answered with a body that is not a message.",
        ));
    };
    billing.record(answer.usage.counts(), false);
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    response.headers_mut().extend(limit_headers);
    Ok(response)
}

/// Anthropic's error `type` for a status (its API's list: invalid_request_error,
/// authentication_error, permission_error, not_found_error, request_too_large,
/// rate_limit_error, api_error, overloaded_error).
fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// Anthropic's error envelope, `{"type": "error", "error": {"type", "message"}}`,
/// with strata's `code` and `param` kept beside them for scripts.
pub(crate) fn anthropic_error_body(e: &OpenAiError) -> serde_json::Value {
    json!({"type": "error", "error": {
        "type": anthropic_type(e.status),
        "message": e.message,
        "code": e.code,
        "param": e.param,
    }})
}

pub(crate) fn anthropic_error(e: OpenAiError) -> Response {
    let body = anthropic_error_body(&e);
    let mut response = e.into_response();
    *response.body_mut() = axum::body::Body::from(body.to_string());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
