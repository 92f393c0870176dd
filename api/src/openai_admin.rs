//! OpenAI's Admin API shapes for usage and costs, so dashboards and scripts written
//! for `GET /v1/organization/usage/completions` and `GET /v1/organization/costs` read
//! strata's metered usage unchanged (point their base URL at the control plane, give
//! them a platform-admin or finance token). Errors are in OpenAI's envelope, so its
//! SDKs raise their usual exceptions.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use strata_core::auth::Action;
use strata_core::domain::{BucketQuery, BucketWidth, UsageBucket, UsageDimension};
use uuid::Uuid;

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::Caller;

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/v1/organization/usage/completions", get(completions))
        .route("/v1/organization/costs", get(costs))
}

/// An error as OpenAI's API answers it.
struct OpenAiError {
    status: StatusCode,
    message: String,
    param: Option<String>,
    code: Option<String>,
}

impl OpenAiError {
    fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param: Some(param.to_owned()),
            code: None,
        }
    }
}

impl From<ApiError> for OpenAiError {
    fn from(e: ApiError) -> Self {
        if let Some(cause) = &e.cause {
            tracing::error!(error.cause = %cause, error.code = %e.code, "request failed");
        }
        let param = e
            .details
            .as_deref()
            .and_then(|d| d[0]["field"].as_str())
            .map(str::to_owned);
        Self {
            status: e.status,
            message: e.message,
            param,
            code: Some(e.code),
        }
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let kind = match self.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        };
        (
            self.status,
            Json(json!({"error": {"message": self.message, "type": kind,
                "param": self.param, "code": self.code}})),
        )
            .into_response()
    }
}

/// The query string, list parameters given as `name[]=a&name[]=b` (OpenAI's SDKs) or
/// `name=a&name=b`.
fn params(query: Option<&str>) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let key = key.strip_suffix("[]").unwrap_or(&key).to_owned();
        out.entry(key).or_default().push(value.into_owned());
    }
    out
}

fn one<'a>(params: &'a HashMap<String, Vec<String>>, name: &str) -> Option<&'a str> {
    params.get(name).and_then(|v| v.last()).map(String::as_str)
}

fn time(
    params: &HashMap<String, Vec<String>>,
    name: &str,
) -> Result<Option<DateTime<Utc>>, OpenAiError> {
    one(params, name)
        .map(|v| {
            v.parse::<i64>()
                .ok()
                .and_then(|s| DateTime::from_timestamp(s, 0))
                .ok_or_else(|| {
                    OpenAiError::invalid(name, format!("{name} must be Unix seconds, got '{v}'"))
                })
        })
        .transpose()
}

fn ids(params: &HashMap<String, Vec<String>>, name: &str) -> Result<Vec<Uuid>, OpenAiError> {
    params
        .get(name)
        .into_iter()
        .flatten()
        .map(|v| {
            Uuid::parse_str(v).map_err(|_| {
                OpenAiError::invalid(name, format!("'{v}' in {name} is not a strata id (UUID)"))
            })
        })
        .collect()
}

/// One page of buckets, and where the whole range ends.
struct Page {
    query: BucketQuery,
    end: DateTime<Utc>,
}

/// Reads what both endpoints share; `dimension` maps a `group_by` value.
fn page_of(
    params: &HashMap<String, Vec<String>>,
    widths: &[&str],
    dimension: impl Fn(&str) -> Option<UsageDimension>,
    model_filter: &str,
) -> Result<Page, OpenAiError> {
    let start = time(params, "start_time")?.ok_or_else(|| {
        OpenAiError::invalid("start_time", "start_time is required (Unix seconds)")
    })?;
    let end = time(params, "end_time")?.unwrap_or_else(Utc::now);
    let width_text = one(params, "bucket_width").unwrap_or("1d");
    let width = BucketWidth::parse(width_text)
        .filter(|_| widths.contains(&width_text))
        .ok_or_else(|| {
            OpenAiError::invalid(
                "bucket_width",
                format!("bucket_width must be one of {}", widths.join(", ")),
            )
        })?;
    let (default_limit, max_limit) = width.page_limits();
    let limit = match one(params, "limit") {
        None => i64::from(default_limit),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=i64::from(max_limit)).contains(l))
            .ok_or_else(|| {
                OpenAiError::invalid(
                    "limit",
                    format!("limit must be 1 to {max_limit} for bucket_width={width_text}"),
                )
            })?,
    };
    let mut group_by = Vec::new();
    for name in params.get("group_by").into_iter().flatten() {
        match dimension(name) {
            Some(d) if !group_by.contains(&d) => group_by.push(d),
            Some(_) => {}
            None => {
                return Err(OpenAiError::invalid(
                    "group_by",
                    format!("strata cannot group by '{name}'"),
                ));
            }
        }
    }
    // A page starts where the previous one stopped.
    let page_start = match one(params, "page") {
        None => start,
        Some(p) => p
            .strip_prefix("page_")
            .and_then(|s| s.parse::<i64>().ok())
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .filter(|s| *s >= width.floor(start) && *s < end)
            .ok_or_else(|| {
                OpenAiError::invalid("page", "page must be a next_page this endpoint gave")
            })?,
    };
    let page_end =
        (width.floor(page_start) + chrono::Duration::seconds(width.seconds() * limit)).min(end);
    Ok(Page {
        query: BucketQuery {
            start: page_start.max(start),
            end: page_end,
            width,
            group_by,
            projects: ids(params, "project_ids")?,
            api_keys: ids(params, "api_key_ids")?,
            models: params.get(model_filter).cloned().unwrap_or_default(),
        },
        end,
    })
}

/// The page envelope around the buckets, each result rendered by `result`.
fn envelope(
    page: &Page,
    buckets: &[UsageBucket],
    result: impl Fn(&strata_core::domain::UsageGroup, &strata_core::domain::UsageTotals) -> Value,
) -> Value {
    let has_more = page.query.end < page.end;
    let data: Vec<Value> = buckets
        .iter()
        .map(|b| {
            json!({"object": "bucket", "start_time": b.start.timestamp(),
                "end_time": b.end.timestamp(),
                "results": b.results.iter().map(|(g, t)| result(g, t)).collect::<Vec<_>>()})
        })
        .collect();
    json!({"object": "page", "data": data, "has_more": has_more,
        "next_page": has_more.then(|| format!("page_{}", page.query.end.timestamp()))})
}

async fn authorized(state: &AppState, caller: Result<Caller, ApiError>) -> Result<(), OpenAiError> {
    let caller = caller?;
    if state.rbac.allows(&caller.principal, Action::CostsRead) {
        Ok(())
    } else {
        Err(ApiError::forbidden(Action::CostsRead.as_str()).into())
    }
}

fn id(value: Option<Uuid>) -> Value {
    value.map_or(Value::Null, |v| Value::String(v.to_string()))
}

/// `GET /v1/organization/usage/completions`: tokens and requests through the proxy.
async fn completions(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, OpenAiError> {
    authorized(&state, caller).await?;
    let mut params = params(query.as_deref());
    // strata serves no batch jobs: grouped by `batch`, every result is `batch: false`.
    let mut grouped_by_batch = false;
    if let Some(group_by) = params.get_mut("group_by") {
        grouped_by_batch = group_by.iter().any(|v| v == "batch");
        group_by.retain(|v| v != "batch");
    }
    let page = page_of(
        &params,
        &["1m", "1h", "1d"],
        |name| match name {
            "project_id" => Some(UsageDimension::Project),
            "api_key_id" => Some(UsageDimension::ApiKey),
            "model" => Some(UsageDimension::Model),
            "service_tier" => Some(UsageDimension::ServiceTier),
            _ => None,
        },
        "models",
    )?;
    let mut buckets = state
        .services
        .usage_buckets(&page.query)
        .await
        .map_err(ApiError::from)?;
    if one(&params, "batch") == Some("true") {
        buckets.iter_mut().for_each(|b| b.results.clear());
    }
    Ok(Json(envelope(&page, &buckets, |g, t| {
        json!({
            "object": "organization.usage.completions.result",
            "input_tokens": t.input_tokens,
            "output_tokens": t.output_tokens,
            "num_model_requests": t.requests,
            "input_cached_tokens": t.cached_tokens,
            "input_cache_write_tokens": t.cache_write_tokens,
            "input_uncached_tokens": (t.input_tokens - t.cached_tokens - t.cache_write_tokens).max(0),
            "input_audio_tokens": 0,
            "output_audio_tokens": 0,
            "project_id": id(g.project_id),
            "api_key_id": id(g.api_key_id),
            "model": g.model,
            "service_tier": g.service_tier,
            "batch": grouped_by_batch.then_some(false),
            "user_id": null,
        })
    })))
}

/// `GET /v1/organization/costs`: the proxy's metered cost at catalog prices, per day;
/// `line_item` is the model.
async fn costs(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, OpenAiError> {
    authorized(&state, caller).await?;
    let params = params(query.as_deref());
    let page = page_of(
        &params,
        &["1d"],
        |name| match name {
            "project_id" => Some(UsageDimension::Project),
            "api_key_id" => Some(UsageDimension::ApiKey),
            "line_item" => Some(UsageDimension::Model),
            _ => None,
        },
        "line_items",
    )?;
    let buckets = state
        .services
        .usage_buckets(&page.query)
        .await
        .map_err(ApiError::from)?;
    Ok(Json(envelope(&page, &buckets, |g, t| {
        json!({
            "object": "organization.costs.result",
            "amount": {"value": t.cost_micros as f64 / 1e6, "currency": "usd"},
            "line_item": g.model,
            "project_id": id(g.project_id),
            "api_key_id": id(g.api_key_id),
        })
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parameters_in_either_form() {
        let p = params(Some(
            "group_by[]=model&group_by[]=project_id&models=a&models=b&start_time=5",
        ));
        assert_eq!(p["group_by"], ["model", "project_id"]);
        assert_eq!(p["models"], ["a", "b"]);
        assert_eq!(one(&p, "start_time"), Some("5"));
    }

    #[test]
    fn pages_cover_the_range_in_whole_buckets() {
        let p = params(Some("start_time=90000&end_time=400000&limit=2"));
        let page = page_of(&p, &["1d"], |_| None, "models").ok().unwrap();
        // Buckets start at UTC midnight: 86400 is the first; two buckets a page.
        assert_eq!(page.query.start.timestamp(), 90_000);
        assert_eq!(page.query.end.timestamp(), 86_400 * 3);
        assert_eq!(page.end.timestamp(), 400_000);
        let next = params(Some(
            "start_time=90000&end_time=400000&limit=2&page=page_259200",
        ));
        let page = page_of(&next, &["1d"], |_| None, "models").ok().unwrap();
        assert_eq!(
            page.query.end.timestamp(),
            400_000,
            "the last page stops at end_time"
        );
        let bad = params(Some("start_time=90000&page=page_1"));
        assert!(page_of(&bad, &["1d"], |_| None, "models").is_err());
        let too_many = params(Some("start_time=0&bucket_width=1h&limit=169"));
        assert!(page_of(&too_many, &["1h"], |_| None, "models").is_err());
    }
}
