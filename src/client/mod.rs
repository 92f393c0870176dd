//! The client side of strata: talks to a remote strata's REST API (`/api/v1`) with a
//! bearer token, for `strata login`, `plan`/`apply` and the everyday commands.

pub mod credentials;
pub mod device;
pub mod files;
pub mod plan;

use reqwest::{Method, StatusCode, header};
use serde::Serialize;
use serde_json::Value;

/// What can go wrong talking to strata.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach strata at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// strata's error envelope, with its per-field details when it sent them.
    #[error("{}", api_message(*status, code, message, details))]
    Api {
        status: StatusCode,
        code: String,
        message: String,
        details: Option<Value>,
    },
    #[error("strata answered {status} with a body that is not its JSON: {snippet}")]
    Unexpected { status: StatusCode, snippet: String },
}

fn api_message(status: StatusCode, code: &str, message: &str, details: &Option<Value>) -> String {
    let mut text = format!("{message} ({} {code})", status.as_u16());
    if status == StatusCode::UNAUTHORIZED {
        text.push_str("; sign in again with `strata login`, or check STRATA_TOKEN");
    }
    for detail in details.iter().filter_map(Value::as_array).flatten() {
        if let (Some(field), Some(why)) = (detail["field"].as_str(), detail["message"].as_str()) {
            text.push_str(&format!("\n  {field}: {why}"));
        }
    }
    text
}

/// An answer: its `ETag` (projects carry one) and its JSON body.
#[derive(Debug)]
pub struct Answer {
    pub etag: Option<String>,
    pub body: Value,
}

/// A request's optional headers.
#[derive(Debug, Default, Clone, Copy)]
pub struct Headers<'a> {
    pub if_match: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
}

#[derive(Clone)]
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of debug output.
        f.debug_struct("ApiClient")
            .field("base", &self.base)
            .finish()
    }
}

impl ApiClient {
    /// A client for the strata at `url` (its root, e.g. `https://strata.example.com`).
    pub fn new(url: &str, token: &str) -> Self {
        Self {
            base: url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::builder()
                .user_agent(concat!("strata-cli/", env!("CARGO_PKG_VERSION")))
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
        }
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    pub async fn get(&self, path: &str) -> Result<Answer, ClientError> {
        self.send::<()>(Method::GET, path, None, Headers::default())
            .await
    }

    pub async fn post<B: Serialize>(
        &self,
        path: &str,
        body: &B,
        headers: Headers<'_>,
    ) -> Result<Answer, ClientError> {
        self.send(Method::POST, path, Some(body), headers).await
    }

    pub async fn patch<B: Serialize>(
        &self,
        path: &str,
        body: &B,
        headers: Headers<'_>,
    ) -> Result<Answer, ClientError> {
        self.send(Method::PATCH, path, Some(body), headers).await
    }

    pub async fn put<B: Serialize>(&self, path: &str, body: &B) -> Result<Answer, ClientError> {
        self.send(Method::PUT, path, Some(body), Headers::default())
            .await
    }

    pub async fn delete(&self, path: &str) -> Result<Answer, ClientError> {
        self.send::<()>(Method::DELETE, path, None, Headers::default())
            .await
    }

    /// Every item of a paged list (`items` + `next_cursor`), following the cursor.
    pub async fn list_all(&self, path: &str) -> Result<Vec<Value>, ClientError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page_path = match &cursor {
                Some(c) => format!("{path}{sep}limit=200&cursor={}", encode(c)),
                None => format!("{path}{sep}limit=200"),
            };
            let page = self.get(&page_path).await?.body;
            if let Some(list) = page["items"].as_array() {
                items.extend(list.iter().cloned());
            }
            match page["next_cursor"].as_str() {
                Some(next) if !next.is_empty() => cursor = Some(next.to_owned()),
                _ => return Ok(items),
            }
        }
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        headers: Headers<'_>,
    ) -> Result<Answer, ClientError> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut request = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .header(header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(tag) = headers.if_match {
            request = request.header(header::IF_MATCH, tag);
        }
        if let Some(key) = headers.idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: self.base.clone(),
                source,
            })?;
        let status = response.status();
        let etag = response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response
            .bytes()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: self.base.clone(),
                source,
            })?;
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(_) => {
                    return Err(ClientError::Unexpected {
                        status,
                        snippet: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                    });
                }
            }
        };
        if status.is_success() {
            return Ok(Answer { etag, body });
        }
        match body["error"]["code"].as_str() {
            Some(code) => Err(ClientError::Api {
                status,
                code: code.to_owned(),
                message: body["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                details: body["error"].get("details").cloned(),
            }),
            None => Err(ClientError::Unexpected {
                status,
                snippet: body.to_string().chars().take(200).collect(),
            }),
        }
    }
}

/// A value for a URL's query or path.
pub fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

impl ApiClient {
    /// The active project `reference` names: its id, `env/name`, or a name that only
    /// one environment uses.
    pub async fn find_project(&self, reference: &str) -> anyhow::Result<Value> {
        if uuid::Uuid::parse_str(reference).is_ok() {
            return Ok(self.get(&format!("/projects/{reference}")).await?.body);
        }
        let (environment, name) = match reference.split_once('/') {
            Some((env, name)) => (Some(env), name),
            None => (None, reference),
        };
        let path = match environment {
            Some(env) => format!("/projects?status=active&environment={}", encode(env)),
            None => "/projects?status=active".to_owned(),
        };
        let mut found: Vec<Value> = self
            .list_all(&path)
            .await?
            .into_iter()
            .filter(|p| p["name"] == name)
            .collect();
        match found.len() {
            0 => anyhow::bail!(
                "no active project '{reference}' that you may see (`strata projects list` shows them)"
            ),
            1 => Ok(found.remove(0)),
            _ => {
                let envs: Vec<String> = found
                    .iter()
                    .map(|p| format!("{}/{name}", p["environment"].as_str().unwrap_or_default()))
                    .collect();
                anyhow::bail!(
                    "'{name}' is a project in several environments: say which, e.g. --project {}",
                    envs.join(" or --project ")
                )
            }
        }
    }
}
