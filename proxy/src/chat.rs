//! `POST /v1/chat/completions`: checked against the catalog, limited, forwarded,
//! normalised for strict OpenAI clients, metered.

use std::time::Instant;

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::access::authorize;
use crate::auth::denial;
use crate::billing::{Billing, Seen, answer, relay_stream};
use crate::error::OpenAiError;
use crate::forward::{
    UpstreamCall, UpstreamPath, send_upstream, transport_failure, upstream_failure,
};
use crate::limits::{Demand, Limits, estimate_input_tokens, prices};
use crate::normalize::{SseRewriter, parse_chat, prepare_chat, rewrite_response};
use crate::state::ProxyState;

const CHAT_ROUTE: &str = "chat_completions";

pub(crate) async fn chat_completions(state: ProxyState, request: Request) -> Response {
    let started = Instant::now();
    let mut seen = Seen::default();
    let result = chat(&state, request, started, &mut seen).await;
    answer(&state, CHAT_ROUTE, seen, result)
}

/// `client`: the whole request rather than a `HeaderMap` extractor, which copies the
/// headers — and so that its head and body can be dropped before the wait for Mantle.
async fn chat(
    state: &ProxyState,
    client: Request,
    started: Instant,
    seen: &mut Seen,
) -> Result<Response, OpenAiError> {
    let (claims, policy, bytes) = state.begin(client, seen).await?;
    let mut request = parse_chat(&bytes)?;
    let project = authorize(&claims, &policy, Some(&request.model))
        .map_err(|d| denial(d, Some(&request.model)))?;
    let model = policy
        .models
        .get(&request.model)
        .ok_or_else(|| OpenAiError::model_not_found(&request.model))?;
    seen.model = Some(request.model.clone());
    let upstream_body = prepare_chat(&mut request, model)?;
    let limits = Limits::of(
        project,
        claims.sub,
        claims.rate_limits,
        policy.budgets_for(project.id, claims.sub),
    );
    let demand = Demand::priced(
        prices(model),
        estimate_input_tokens(bytes.len()),
        request.max_output_tokens(state.settings.config.default_max_tokens),
    );
    // Unless forwarded as it came (then hyper drops it once written to Mantle).
    drop(bytes);
    let (mut billing, limit_headers) = Billing::admit(
        state,
        &limits,
        demand,
        (CHAT_ROUTE, &request.model, prices(model)),
        started,
        seen,
    )
    .await?;
    let sent_at = Instant::now();
    let call = UpstreamCall {
        method: reqwest::Method::POST,
        prefix: model.mantle_path,
        path: UpstreamPath::Fixed("/chat/completions"),
        body: upstream_body,
        stream: request.stream,
        headers: &[],
    };
    let response = match send_upstream(state, project, call).await {
        Ok(r) => r,
        Err((kind, e)) => {
            billing.failed(kind);
            return Err(e);
        }
    };
    let pre_upstream = sent_at.duration_since(started);
    if !response.status().is_success() {
        let e = upstream_failure(response).await;
        billing.failed(if e.status.is_server_error() {
            "status_5xx"
        } else {
            "status_4xx"
        });
        state.metrics.overhead.observe(pre_upstream.as_secs_f64());
        return Err(e);
    }
    if request.stream {
        state.metrics.overhead.observe(pre_upstream.as_secs_f64());
        let tap = SseRewriter::new(request.client_wants_usage);
        let mut response = relay_stream(response, tap, billing);
        response.headers_mut().extend(limit_headers);
        return Ok(response);
    }
    let body = match response.bytes().await {
        Ok(b) => b,
        Err(e) => {
            let (kind, e) = transport_failure(state, &e);
            billing.failed(kind);
            return Err(e);
        }
    };
    let after = Instant::now();
    let Some((bytes, usage)) = rewrite_response(body) else {
        billing.failed("invalid_body");
        return Err(OpenAiError::new(
            StatusCode::BAD_GATEWAY,
            "api_error",
            "upstream_invalid_response",
            "Mantle answered with a body that is not JSON.",
        ));
    };
    billing.record(usage, false);
    state
        .metrics
        .overhead
        .observe((pre_upstream + after.elapsed()).as_secs_f64());
    let mut response = ([(header::CONTENT_TYPE, "application/json")], bytes).into_response();
    response.headers_mut().extend(limit_headers);
    Ok(response)
}
