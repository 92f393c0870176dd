//! What the proxy asks of the control plane, with its own credential: the policy
//! snapshot, long-polled so a revocation reaches every proxy within a second.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use strata_core::domain::{ResponseBatch, ResponseClaim, ResponseCompletion, ResponseRecord};

use crate::ApiError;
use crate::app::AppState;
use crate::error::ApiResult;
use crate::extract::ApiQuery;

/// Longest a poll waits for a change (below the request timeout).
pub const MAX_WAIT_SECS: u64 = 20;
/// How often a waiting poll looks for a change (bounds revocation latency).
const CHECK_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Deserialize)]
pub struct SnapshotQuery {
    /// The version the proxy has; the answer waits until there is another one.
    pub after: Option<String>,
    /// Seconds to wait for a change before answering 304 (0 to 20, default 0).
    pub wait: Option<u64>,
}

fn check_proxy_credential(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Constant time: how much of a guess matches must not show in the timing.
    if bool::from(
        presented
            .as_bytes()
            .ct_eq(state.proxy_token.expose().as_bytes()),
    ) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_proxy_credential",
            "this endpoint is for strata's proxy: send its credential (STRATA_PROXY_TOKEN) as a bearer token",
        ))
    }
}

/// The snapshot at `version` as JSON, built once per version for every proxy.
async fn snapshot_json(state: &AppState, version: &str) -> ApiResult<(String, Bytes)> {
    if let Ok(cache) = state.snapshot_cache.lock()
        && let Some((cached, body)) = cache.as_ref()
        && cached == version
    {
        return Ok((cached.clone(), body.clone()));
    }
    let snapshot = state.services.policy_snapshot().await?;
    let body = Bytes::from(
        serde_json::to_vec(&snapshot)
            .map_err(|e| strata_core::CoreError::internal("serializing the snapshot", e))?,
    );
    if let Ok(mut cache) = state.snapshot_cache.lock() {
        *cache = Some((snapshot.version.clone(), body.clone()));
    }
    Ok((snapshot.version, body))
}

/// `GET /internal/v1/proxy/snapshot?after=<version>&wait=<secs>`.
pub async fn snapshot(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<SnapshotQuery>,
) -> ApiResult<Response> {
    check_proxy_credential(&state, &headers)?;
    let wait = query.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("wait must be 0 to {MAX_WAIT_SECS} seconds"),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(wait);
    loop {
        let version = state.services.policy_version().await?;
        if query.after.as_deref() != Some(version.as_str()) {
            let (version, body) = snapshot_json(&state, &version).await?;
            let mut response = (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
                response.headers_mut().insert(header::ETAG, v);
            }
            return Ok(response);
        }
        if Instant::now() >= deadline {
            return Ok(StatusCode::NOT_MODIFIED.into_response());
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

/// The answer to a usage batch.
#[derive(Debug, serde::Serialize)]
pub struct UsageAccepted {
    /// False when this batch id was applied before (a retry): nothing changed.
    pub applied: bool,
}

/// `POST /internal/v1/proxy/usage`: the proxy's per-minute aggregates.
pub async fn usage(
    State(state): State<AppState>,
    headers: HeaderMap,
    crate::extract::ApiJson(batch): crate::extract::ApiJson<strata_core::domain::UsageBatch>,
) -> ApiResult<axum::Json<UsageAccepted>> {
    check_proxy_credential(&state, &headers)?;
    let applied = state.services.record_usage(&batch).await?;
    Ok(axum::Json(UsageAccepted { applied }))
}

/// Either `project` (its own monthly budget) or `budget` (a hard budget's period).
#[derive(Debug, Deserialize)]
pub struct SpendQuery {
    pub project: Option<uuid::Uuid>,
    pub budget: Option<uuid::Uuid>,
    /// Any day of the period asked for; default: today (UTC).
    pub month: Option<chrono::NaiveDate>,
}

/// Metered spend in a budget's period, where the proxy's budget counter starts.
#[derive(Debug, serde::Serialize)]
pub struct PeriodSpend {
    /// The period's first day (`month`: the name older proxies know).
    #[serde(rename = "month")]
    pub start: chrono::NaiveDate,
    pub spent_micros: i64,
}

/// `GET /internal/v1/proxy/spend?project=<id>&month=<YYYY-MM-DD>` or
/// `?budget=<id>&month=<YYYY-MM-DD>`.
pub async fn spend(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<SpendQuery>,
) -> ApiResult<axum::Json<PeriodSpend>> {
    check_proxy_credential(&state, &headers)?;
    let day = query
        .month
        .unwrap_or_else(|| state.services.clock.now().date_naive());
    let (start, spent_micros) = match (query.project, query.budget) {
        (Some(project), None) => state.services.month_spend(project, day).await?,
        (None, Some(budget)) => state.services.budget_period_spend(budget, day).await?,
        _ => {
            return Err(ApiError::validation(vec![strata_core::FieldError::new(
                "project",
                "give exactly one of `project` and `budget`",
            )]));
        }
    };
    Ok(axum::Json(PeriodSpend {
        start,
        spent_micros,
    }))
}

/// `POST /internal/v1/proxy/responses`: a response the proxy created, and its project.
pub async fn record_response(
    State(state): State<AppState>,
    headers: HeaderMap,
    crate::extract::ApiJson(record): crate::extract::ApiJson<ResponseRecord>,
) -> ApiResult<StatusCode> {
    check_proxy_credential(&state, &headers)?;
    state.services.record_response(&record).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /internal/v1/proxy/responses/batch`: responses the proxy created while its
/// previous batch was on its way, in one transaction.
pub async fn record_responses(
    State(state): State<AppState>,
    headers: HeaderMap,
    crate::extract::ApiJson(batch): crate::extract::ApiJson<ResponseBatch>,
) -> ApiResult<StatusCode> {
    check_proxy_credential(&state, &headers)?;
    state.services.record_responses(&batch.records).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /internal/v1/proxy/responses/{id}`: who owns a response id.
pub async fn find_response(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> ApiResult<axum::Json<ResponseRecord>> {
    check_proxy_credential(&state, &headers)?;
    match state.services.find_response(&id).await? {
        Some(record) => Ok(axum::Json(record)),
        None => Err(ApiError::not_found("response", &id)),
    }
}

/// `POST /internal/v1/proxy/responses/claim`: background responses for this replica
/// to follow until they finish.
pub async fn claim_responses(
    State(state): State<AppState>,
    headers: HeaderMap,
    crate::extract::ApiJson(claim): crate::extract::ApiJson<ResponseClaim>,
) -> ApiResult<axum::Json<Vec<ResponseRecord>>> {
    check_proxy_credential(&state, &headers)?;
    Ok(axum::Json(state.services.claim_responses(&claim).await?))
}

/// `POST /internal/v1/proxy/responses/{id}/complete`: meters a finished background
/// response once.
pub async fn complete_response(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    crate::extract::ApiJson(completion): crate::extract::ApiJson<ResponseCompletion>,
) -> ApiResult<axum::Json<UsageAccepted>> {
    check_proxy_credential(&state, &headers)?;
    let applied = state.services.complete_response(&id, &completion).await?;
    Ok(axum::Json(UsageAccepted { applied }))
}
