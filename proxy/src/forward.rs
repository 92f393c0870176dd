//! Forwarding to Mantle: the URL of a call under its model's prefix, the request
//! signed as the project's role (or with its API key) with the project's header, and
//! Mantle's failures turned into the client's error.

use std::borrow::Cow;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use futures_util::StreamExt;
use serde_json::Value;
use strata_aws::UpstreamRequest;
use strata_contract::{MantlePath, SnapshotProject};

use crate::error::OpenAiError;
use crate::state::{Proxy, ProxyState};
use crate::upstream::{Destination, UpstreamError, UpstreamResponse};

/// The most of an upstream error body the proxy reads.
const MAX_ERROR_BODY: usize = 64 * 1024;

impl Proxy {
    /// Mantle's URL for a path with ids or a query in it (parsed each time), under the
    /// model's prefix: `STRATA_MANTLE_URL` is the `/v1` base, whose `/v1` another
    /// prefix replaces.
    fn upstream_url_for(
        &self,
        region: &str,
        prefix: MantlePath,
        path: &str,
    ) -> Option<Arc<Target>> {
        let base = self.settings.mantle_url.replace("{region}", region);
        let base = base.trim_end_matches('/');
        let base = match prefix {
            MantlePath::V1 => base.to_owned(),
            other => format!(
                "{}{}",
                base.strip_suffix("/v1").unwrap_or(base),
                other.as_str()
            ),
        };
        Target::parse(&format!("{base}{path}")).map(Arc::new)
    }

    /// Mantle's URL for `path` in `region`, parsed once per region, prefix and path.
    fn upstream_url(
        &self,
        region: &str,
        prefix: MantlePath,
        path: &'static str,
    ) -> Option<Arc<Target>> {
        if let Some(url) = self
            .upstream_urls
            .read()
            .ok()
            .and_then(|m| m.get(&(prefix, path)).and_then(|m| m.get(region)).cloned())
        {
            return Some(url);
        }
        let url = self.upstream_url_for(region, prefix, path)?;
        if let Ok(mut m) = self.upstream_urls.write() {
            m.entry((prefix, path))
                .or_default()
                .insert(region.to_owned(), url.clone());
        }
        Some(url)
    }
}

fn upstream_timeout(secs: u64) -> OpenAiError {
    OpenAiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "api_error",
        "upstream_timeout",
        format!("Mantle did not answer within {secs} s."),
    )
}

fn upstream_unreachable() -> OpenAiError {
    OpenAiError::new(
        StatusCode::BAD_GATEWAY,
        "api_error",
        "upstream_unreachable",
        "The proxy could not reach Mantle.",
    )
}

/// Parsed Mantle URLs per (prefix, fixed path), then per region.
pub(crate) type UpstreamUrls =
    foldhash::HashMap<(MantlePath, &'static str), foldhash::HashMap<String, Arc<Target>>>;

/// What to send to Mantle for a project: `method` `path` (under the model's `prefix`,
/// with its query) and the body (empty for GET and DELETE).
pub(crate) struct UpstreamCall<'a> {
    pub method: reqwest::Method,
    /// Where Mantle serves the call's model (`/v1`, `/openai/v1`, `/anthropic/v1`).
    pub prefix: MantlePath,
    pub path: UpstreamPath<'a>,
    pub body: Bytes,
    /// A stream: no overall timeout (the idle timeout still applies).
    pub stream: bool,
    /// Headers Mantle needs beyond the project and signature (`anthropic-version`).
    pub headers: &'a [(&'static str, &'a str)],
}

pub(crate) enum UpstreamPath<'a> {
    /// A fixed path whose parsed URL is kept per region (the chat hot path).
    Fixed(&'static str),
    /// A path with an id or a query in it.
    Dynamic(&'a str),
}

/// A Mantle URL, parsed for signing (`url`) and for sending (`to`).
#[derive(Clone)]
pub(crate) struct Target {
    url: reqwest::Url,
    to: Destination,
}

impl Target {
    fn parse(s: &str) -> Option<Self> {
        let url = reqwest::Url::parse(s).ok()?;
        let to = Destination::parse(url.as_str())?;
        Some(Self { url, to })
    }
}

/// The upstream error kind of a project that is not provisioned yet.
pub(crate) const NOT_READY: &str = "not_ready";

pub(crate) fn project_not_ready() -> (&'static str, OpenAiError) {
    (
        NOT_READY,
        OpenAiError::unavailable(
            "project_not_ready",
            "This project is not provisioned on AWS yet (strata is still reconciling it); retry shortly.",
        ),
    )
}

/// Signs and sends a request to the project's Mantle region.
pub(crate) async fn send_upstream(
    state: &ProxyState,
    project: &SnapshotProject,
    call: UpstreamCall<'_>,
) -> Result<UpstreamResponse, (&'static str, OpenAiError)> {
    let mantle_project = project
        .mantle_project_id
        .as_deref()
        .ok_or_else(project_not_ready)?;
    let region = project.region.as_str();
    let target = match call.path {
        UpstreamPath::Fixed(path) => state.upstream_url(region, call.prefix, path),
        UpstreamPath::Dynamic(path) => state.upstream_url_for(region, call.prefix, path),
    }
    .ok_or_else(|| {
        tracing::warn!(
            region,
            "the Mantle URL template gives no valid URL for this region"
        );
        ("connect", upstream_unreachable())
    })?;
    // Mantle's project is a "workspace" to its Anthropic-compatible API.
    let project_header = match call.prefix {
        MantlePath::AnthropicV1 => "anthropic-workspace",
        MantlePath::V1 | MantlePath::OpenAiV1 => "openai-project",
    };
    let with_body = [
        ("content-type", "application/json"),
        (project_header, mantle_project),
    ];
    let ours: &[(&str, &str)] = if call.body.is_empty() {
        &with_body[1..]
    } else {
        &with_body
    };
    let all: Vec<(&str, &str)>;
    let headers = if call.headers.is_empty() {
        ours
    } else {
        all = ours.iter().chain(call.headers).copied().collect();
        &all
    };
    let auth = state
        .upstream_auth
        .headers(&UpstreamRequest {
            method: call.method.as_str(),
            role_arn: project.role_arn.as_deref(),
            region,
            url: &target.url,
            headers,
            body: &call.body,
        })
        .await
        .map_err(|e| {
            if e.kind == strata_aws::ErrorKind::NotFound {
                return project_not_ready();
            }
            tracing::warn!(project.id = %project.id, error.cause = %e, "cannot authenticate to Mantle for the project");
            (
                "auth",
                OpenAiError::new(
                    StatusCode::BAD_GATEWAY,
                    "api_error",
                    "upstream_auth_failed",
                    "The proxy could not obtain credentials for this project's Mantle calls.",
                ),
            )
        })?;
    let mut request = axum::http::Request::new(http_body_util::Full::new(call.body));
    *request.method_mut() = call.method;
    let given = headers
        .iter()
        .map(|&(n, v)| (Cow::Borrowed(n), HeaderValue::from_str(v)));
    // The signer's values are moved, not copied (the session token is ~1 KB).
    let signed = auth.into_iter().map(|(n, v)| (n, HeaderValue::try_from(v)));
    for (name, value) in given.chain(signed) {
        let (Ok(header), Ok(value)) = (upstream_header_name(&name), value) else {
            // A header Mantle's id or the signer made that HTTP cannot carry.
            tracing::warn!(project.id = %project.id, header = %name, "cannot build the request to Mantle");
            return Err(("connect", upstream_unreachable()));
        };
        request.headers_mut().append(header, value);
    }
    state
        .upstream
        .send(&target.to, request, call.stream)
        .await
        .map_err(|e| transport_failure(state, &e))
}

/// The name of a header sent to Mantle: the usual ones ready-made (parsing a name
/// allocates for any but the standard ones), any other parsed.
fn upstream_header_name(name: &str) -> Result<header::HeaderName, header::InvalidHeaderName> {
    const OPENAI_PROJECT: header::HeaderName = header::HeaderName::from_static("openai-project");
    const X_AMZ_DATE: header::HeaderName = header::HeaderName::from_static("x-amz-date");
    const X_AMZ_SECURITY_TOKEN: header::HeaderName =
        header::HeaderName::from_static("x-amz-security-token");
    Ok(match name {
        "content-type" => header::CONTENT_TYPE,
        "authorization" => header::AUTHORIZATION,
        "openai-project" => OPENAI_PROJECT,
        "x-amz-date" => X_AMZ_DATE,
        "x-amz-security-token" => X_AMZ_SECURITY_TOKEN,
        other => header::HeaderName::try_from(other)?,
    })
}

/// A call to Mantle or the read of its answer failed in transport: the upstream
/// error kind for the metrics, and the client's error (504 on a timeout, else 502).
pub(crate) fn transport_failure(
    state: &ProxyState,
    e: &UpstreamError,
) -> (&'static str, OpenAiError) {
    if e.is_timeout() {
        (
            "timeout",
            upstream_timeout(state.settings.config.upstream_timeout_secs),
        )
    } else {
        ("connect", upstream_unreachable())
    }
}

/// Mantle's error, in the envelope, with a status that tells the client the truth:
/// the client's own mistakes keep their status; Mantle refusing strata's credentials
/// is the proxy's failure (502), not the client's.
pub(crate) async fn upstream_failure(response: UpstreamResponse) -> OpenAiError {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ERROR_BODY {
            break;
        }
    }
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let detail = parsed.as_ref().and_then(|v| v.get("error"));
    let message = detail
        .and_then(|d| d.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Mantle answered HTTP {}.", status.as_u16()));
    let upstream_code = detail
        .and_then(|d| d.get("code"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let param = detail
        .and_then(|d| d.get("param"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let (status, kind, code) = match status.as_u16() {
        401 | 403 => (
            StatusCode::BAD_GATEWAY,
            "api_error",
            "upstream_denied".to_owned(),
        ),
        429 => (
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            upstream_code.unwrap_or_else(|| "rate_limit_exceeded".into()),
        ),
        s @ 400..=499 => (
            StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_REQUEST),
            "invalid_request_error",
            upstream_code.unwrap_or_else(|| "upstream_rejected".into()),
        ),
        s => (
            StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_GATEWAY),
            "api_error",
            upstream_code.unwrap_or_else(|| "upstream_error".into()),
        ),
    };
    if code == "upstream_denied" {
        // AWS's refusal names strata's account and role: logged, not shown to the client.
        tracing::warn!(upstream.message = %message, "Mantle refused strata's credentials");
        return OpenAiError::new(
            status,
            kind,
            &code,
            "Mantle refused the proxy's credentials for this project; the platform team has the details in strata's logs.",
        );
    }
    let mut e = OpenAiError::new(status, kind, &code, message);
    e.param = param;
    e.retry_after = retry_after;
    e
}
