//! A fake of Mantle, per region, in memory: the Projects API
//! (`/v1/organization/projects`), Chat Completions (`chat.rs`), the Responses API
//! (`responses.rs`) and Anthropic's Messages API (`messages.rs`). It insists on SigV4 for service `bedrock-mantle`, authorizes
//! inference with the signer's IAM policies read from moto (`iam.rs`, when enforced),
//! counts calls, and can fail or stall on demand — what no real part can do here.

mod chat;
mod iam;
mod messages;
mod responses;

pub use chat::{ChatCall, ChatStats};
pub use messages::MessageCall;
pub use responses::ResponsesStats;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct FakeProject {
    pub id: String,
    pub region: String,
    pub name: String,
    pub status: String,
    pub tags: BTreeMap<String, String>,
    /// `data_retention.mode`; `inherit` when the create named none, as on AWS.
    pub data_retention: String,
}

/// Mantle's data-retention modes (`ProjectDataRetention.mode`).
const RETENTION_MODES: &[&str] = &[
    "default",
    "none",
    "aws_review",
    "provider_data_share",
    "inherit",
];

#[derive(Default)]
pub(crate) struct Inner {
    projects: BTreeMap<String, FakeProject>,
    next: u64,
    /// (operation, count) of calls.
    calls: BTreeMap<String, u64>,
    /// Fail the next n calls with this status.
    failures: Vec<u16>,
    /// Answer creates only after this long (the project exists already).
    create_delay: Option<Duration>,
    /// Largest number of requests in flight at once.
    in_flight: u64,
    max_in_flight: u64,
    chat: chat::ChatState,
    responses: responses::ResponsesState,
    messages: messages::MessagesState,
    /// When set, inference calls are authorized against the signer's IAM policies.
    iam: Option<iam::MotoIam>,
}

#[derive(Clone, Default)]
pub struct FakeMantle {
    inner: Arc<Mutex<Inner>>,
    pub addr: Option<SocketAddr>,
    stop: CancellationToken,
}

impl Drop for FakeMantle {
    fn drop(&mut self) {
        if Arc::strong_count(&self.inner) <= 2 {
            self.stop.cancel();
        }
    }
}

pub(crate) fn err(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "type": "invalid_request_error", "code": code}})),
    )
        .into_response()
}

fn view(p: &FakeProject) -> Value {
    json!({"object": "organization.project", "id": p.id, "name": p.name, "status": p.status,
           "created_at": 1_764_000_000, "tags": p.tags, "data_retention": {"mode": p.data_retention}})
}

/// A project name as AWS constrains it (CloudFormation `AWS::BedrockMantle::Project`:
/// 1 to 64 characters, `^([0-9a-zA-Z][ _-]?)+$`, i.e. letters and digits, each
/// followed by at most one space, `_` or `-`).
fn check_name(name: &str) -> Option<Response> {
    let mut after_separator = true;
    let mut valid = (1..=64).contains(&name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            after_separator = false;
        } else if matches!(c, ' ' | '_' | '-') && !after_separator {
            after_separator = true;
        } else {
            valid = false;
        }
    }
    (!valid).then(|| {
        err(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "name must be 1 to 64 letters or digits, each followed by at most one space, '_' or '-'",
        )
    })
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    after: Option<String>,
    #[serde(default)]
    include_archived: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionBody {
    mode: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    data_retention: Option<RetentionBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    name: Option<String>,
    #[serde(default)]
    add_tags: BTreeMap<String, String>,
    #[serde(default)]
    remove_tag_keys: Vec<String>,
    data_retention: Option<RetentionBody>,
}

/// A mode Mantle does not know is a 400, as on AWS (a ValidationException).
fn check_mode(retention: Option<&RetentionBody>) -> Option<Response> {
    match retention {
        Some(r) if !RETENTION_MODES.contains(&r.mode.as_str()) => Some(err(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            &format!(
                "data_retention.mode must be one of: {}",
                RETENTION_MODES.join(", ")
            ),
        )),
        _ => None,
    }
}

impl FakeMantle {
    /// Starts the fake on a loopback port; its URL template is [`FakeMantle::url`].
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    /// Starts the fake on the given address (the `fake-mantle` binary).
    pub async fn start_on(addr: &str) -> Self {
        let mut fake = FakeMantle::default();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        fake.addr = listener.local_addr().ok();
        let app = Router::new()
            .route("/{region}/v1/chat/completions", post(chat::completions))
            .route("/{region}/v1/responses", post(responses::create))
            .route(
                "/{region}/v1/responses/{id}",
                get(responses::retrieve).delete(responses::delete),
            )
            .route(
                "/{region}/v1/responses/{id}/cancel",
                post(responses::cancel),
            )
            .route(
                "/{region}/v1/responses/{id}/input_items",
                get(responses::list_input_items),
            )
            // OpenAI's frontier models, served under their own prefix.
            .route(
                "/{region}/openai/v1/chat/completions",
                post(chat::completions),
            )
            .route("/{region}/openai/v1/responses", post(responses::create))
            .route(
                "/{region}/openai/v1/responses/{id}",
                get(responses::retrieve).delete(responses::delete),
            )
            .route(
                "/{region}/openai/v1/responses/{id}/cancel",
                post(responses::cancel),
            )
            .route(
                "/{region}/openai/v1/responses/{id}/input_items",
                get(responses::list_input_items),
            )
            // Claude, through Anthropic's Messages API only.
            .route("/{region}/anthropic/v1/messages", post(messages::create))
            .route("/_fake/faults", post(chat::set_faults))
            .route("/_fake/stats", get(chat::stats))
            .route("/{region}/v1/organization/projects", get(list).post(create))
            .route(
                "/{region}/v1/organization/projects/{id}",
                get(fetch).post(update),
            )
            .route(
                "/{region}/v1/organization/projects/{id}/archive",
                post(archive),
            )
            .with_state(fake.clone());
        let stop = fake.stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        fake
    }

    /// `STRATA_MANTLE_URL` for this fake: the region is a path segment.
    pub fn url(&self) -> String {
        match self.addr {
            Some(a) => format!("http://{a}/{{region}}/v1"),
            None => String::new(),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn projects(&self) -> Vec<FakeProject> {
        self.lock().projects.values().cloned().collect()
    }

    pub fn calls(&self, operation: &str) -> u64 {
        self.lock().calls.get(operation).copied().unwrap_or(0)
    }

    pub fn fail_next(&self, statuses: &[u16]) {
        self.lock().failures.extend_from_slice(statuses);
    }

    pub fn delay_creates(&self, delay: Duration) {
        self.lock().create_delay = Some(delay);
    }

    /// Authorizes every SigV4-signed inference call as AWS does: the signing role's
    /// inline policies, read from the moto server at `moto_url` at each call, must
    /// allow the route's IAM action on the Mantle project (else 403 `access_denied`).
    pub fn enforce_iam(&self, moto_url: &str) {
        self.lock().iam = Some(iam::MotoIam {
            moto_url: moto_url.to_owned(),
        });
    }

    pub fn max_in_flight(&self) -> u64 {
        self.lock().max_in_flight
    }

    /// The data-retention mode of a Mantle project.
    pub fn retention_mode(&self, id: &str) -> Option<String> {
        self.lock()
            .projects
            .get(id)
            .map(|p| p.data_retention.clone())
    }

    /// Changes a project behind strata's back (drift).
    pub fn edit(&self, id: &str, change: impl FnOnce(&mut FakeProject)) {
        if let Some(p) = self.lock().projects.get_mut(id) {
            change(p);
        }
    }

    /// Counts the call and checks its signature; `Some` is the refusal to send.
    fn enter(&self, operation: &str, headers: &HeaderMap, region: &str) -> Option<Response> {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let signed = auth.starts_with("AWS4-HMAC-SHA256 ")
            && auth.contains(&format!("/{region}/bedrock-mantle/aws4_request"))
            && headers.contains_key("x-amz-date");
        let mut inner = self.lock();
        *inner.calls.entry(operation.to_owned()).or_default() += 1;
        if !signed {
            return Some(err(
                StatusCode::FORBIDDEN,
                "unsigned",
                "requests must be signed with SigV4 for bedrock-mantle in the request's region",
            ));
        }
        if !inner.failures.is_empty() {
            let status = inner.failures.remove(0);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Some(err(status, "injected", "injected failure"));
        }
        inner.in_flight += 1;
        inner.max_in_flight = inner.max_in_flight.max(inner.in_flight);
        None
    }

    fn leave(&self) {
        let mut inner = self.lock();
        inner.in_flight = inner.in_flight.saturating_sub(1);
    }
}

async fn list(
    State(f): State<FakeMantle>,
    Path(region): Path<String>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Some(r) = f.enter("ListProjects", &headers, &region) {
        return r;
    }
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    let page: Vec<FakeProject> = {
        let inner = f.lock();
        inner
            .projects
            .values()
            .filter(|p| p.region == region && (q.include_archived || p.status == "active"))
            .filter(|p| q.after.as_ref().is_none_or(|a| p.id > *a))
            .take(limit + 1)
            .cloned()
            .collect()
    };
    f.leave();
    let has_more = page.len() > limit;
    let data: Vec<Value> = page.iter().take(limit).map(view).collect();
    let last = data
        .last()
        .and_then(|p| p["id"].as_str().map(str::to_owned));
    Json(json!({"object": "list", "data": data, "has_more": has_more, "last_id": last}))
        .into_response()
}

async fn fetch(
    State(f): State<FakeMantle>,
    Path((region, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = f.enter("GetProject", &headers, &region) {
        return r;
    }
    let found = f
        .lock()
        .projects
        .get(&id)
        .filter(|p| p.region == region)
        .cloned();
    f.leave();
    match found {
        Some(p) => Json(view(&p)).into_response(),
        None => err(StatusCode::NOT_FOUND, "not_found", "no such project"),
    }
}

async fn create(
    State(f): State<FakeMantle>,
    Path(region): Path<String>,
    headers: HeaderMap,
    Json(body): Json<CreateBody>,
) -> Response {
    if let Some(r) = f.enter("CreateProject", &headers, &region) {
        return r;
    }
    if let Some(refusal) =
        check_mode(body.data_retention.as_ref()).or_else(|| check_name(&body.name))
    {
        f.leave();
        return refusal;
    }
    let (project, delay) = {
        let mut inner = f.lock();
        inner.next += 1;
        let id = format!("proj_{:012}", inner.next);
        let p = FakeProject {
            id: id.clone(),
            region,
            name: body.name,
            status: "active".into(),
            tags: body.tags,
            data_retention: body
                .data_retention
                .map_or_else(|| "inherit".to_owned(), |r| r.mode),
        };
        inner.projects.insert(id, p.clone());
        (p, inner.create_delay)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    f.leave();
    Json(view(&project)).into_response()
}

async fn update(
    State(f): State<FakeMantle>,
    Path((region, id)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<UpdateBody>,
) -> Response {
    if let Some(r) = f.enter("UpdateProject", &headers, &region) {
        return r;
    }
    let bad_name = body.name.as_deref().and_then(check_name);
    if let Some(refusal) = check_mode(body.data_retention.as_ref()).or(bad_name) {
        f.leave();
        return refusal;
    }
    let other_fields =
        body.name.is_some() || !body.add_tags.is_empty() || !body.remove_tag_keys.is_empty();
    if body.data_retention.is_some() && other_fields {
        f.leave();
        return err(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "data_retention must be set on its own: an update changes either it or the other fields",
        );
    }
    let result = {
        let mut inner = f.lock();
        inner
            .projects
            .get_mut(&id)
            .filter(|p| p.region == region)
            .map(|p| {
                if let Some(n) = body.name {
                    p.name = n;
                }
                if let Some(r) = body.data_retention {
                    p.data_retention = r.mode;
                }
                p.tags.extend(body.add_tags);
                for k in &body.remove_tag_keys {
                    p.tags.remove(k);
                }
                p.clone()
            })
    };
    f.leave();
    match result {
        Some(p) => Json(view(&p)).into_response(),
        None => err(StatusCode::NOT_FOUND, "not_found", "no such project"),
    }
}

async fn archive(
    State(f): State<FakeMantle>,
    Path((region, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = f.enter("ArchiveProject", &headers, &region) {
        return r;
    }
    let result = {
        let mut inner = f.lock();
        inner
            .projects
            .get_mut(&id)
            .filter(|p| p.region == region)
            .map(|p| {
                p.status = "archived".into();
                p.clone()
            })
    };
    f.leave();
    match result {
        Some(p) => Json(view(&p)).into_response(),
        None => err(StatusCode::NOT_FOUND, "not_found", "no such project"),
    }
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn project_names_follow_aws_pattern() {
        for good in ["strata-prod-checkout-api", "a", "Team 1_x-"] {
            assert!(check_name(good).is_none(), "{good}");
        }
        let long = "a".repeat(65);
        for bad in ["", "-a", "a--b", "a_ b", "ä", long.as_str()] {
            assert!(check_name(bad).is_some(), "{bad}");
        }
    }
}
