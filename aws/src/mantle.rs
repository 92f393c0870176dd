//! Mantle's Projects API over HTTP, signed with SigV4 (service `bedrock-mantle`).

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{AwsError, classify};
use crate::sigv4::sign_headers;
use crate::{AwsCalls, ErrorKind, Mantle, MantleProject, MantleUpdate, TagMap};

const SERVICE: &str = crate::sigv4::MANTLE_SERVICE;

pub(crate) struct HttpMantle {
    pub(crate) http: reqwest::Client,
    /// e.g. `https://bedrock-mantle.{region}.api.aws/v1`.
    pub(crate) url_template: String,
    pub(crate) credentials: Option<SharedCredentialsProvider>,
    pub(crate) calls: AwsCalls,
}

#[derive(Deserialize)]
struct ProjectList {
    data: Vec<MantleProject>,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    last_id: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

impl HttpMantle {
    fn base(&self, region: &str) -> String {
        self.url_template
            .replace("{region}", region)
            .trim_end_matches('/')
            .to_owned()
    }

    /// Sends one signed request; `Ok(None)` for 404.
    async fn send<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        region: &str,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Option<T>, AwsError> {
        let err = |kind, code: Option<String>, message: String| {
            AwsError::new(SERVICE, operation, kind, code, message)
        };
        let url = format!("{}{path}", self.base(region));
        let bytes = match &body {
            Some(b) => {
                serde_json::to_vec(b).map_err(|e| err(ErrorKind::Invalid, None, e.to_string()))?
            }
            None => Vec::new(),
        };
        let credentials = match &self.credentials {
            Some(p) => p
                .provide_credentials()
                .await
                .map_err(|e| err(ErrorKind::Denied, None, format!("no AWS credentials: {e}")))?,
            None => {
                return Err(err(
                    ErrorKind::Denied,
                    None,
                    "no AWS credentials configured".into(),
                ));
            }
        };
        let headers = [("content-type", "application/json")];
        let signature = sign_headers(
            &credentials,
            region,
            method.as_str(),
            &url,
            &headers,
            &bytes,
        )
        .map_err(|e| err(ErrorKind::Invalid, None, e))?;
        let mut request = self
            .http
            .request(method, &url)
            .header("content-type", "application/json");
        for (name, value) in signature {
            request = request.header(name, value);
        }
        if body.is_some() {
            request = request.body(bytes);
        }
        let response = request
            .send()
            .await
            .map_err(|e| err(ErrorKind::Retryable, None, format!("request failed: {e}")))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| {
            err(
                ErrorKind::Retryable,
                None,
                format!("reading the response: {e}"),
            )
        })?;
        if status == 404 {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
                Ok(b) => (b.error.code.or(b.error.kind), b.error.message),
                Err(_) => (None, format!("HTTP {status}")),
            };
            return Err(err(classify(code.as_deref(), status), code, message));
        }
        serde_json::from_str(&text).map(Some).map_err(|e| {
            err(
                ErrorKind::Invalid,
                None,
                format!("unexpected response: {e}"),
            )
        })
    }

    async fn must<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        region: &str,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, AwsError> {
        self.send(operation, region, method, path, body)
            .await?
            .ok_or_else(|| {
                AwsError::new(
                    SERVICE,
                    operation,
                    ErrorKind::NotFound,
                    None,
                    format!("{path} not found"),
                )
            })
    }
}

#[async_trait]
impl Mantle for HttpMantle {
    async fn list_projects(&self, region: &str) -> Result<Vec<MantleProject>, AwsError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(id) => {
                    format!("/organization/projects?limit=100&include_archived=true&after={id}")
                }
                None => "/organization/projects?limit=100&include_archived=true".to_owned(),
            };
            let call = self.must::<ProjectList>("ListProjects", region, Method::GET, &path, None);
            let page = self.calls.track(SERVICE, "ListProjects", call).await?;
            let next = page
                .last_id
                .clone()
                .or_else(|| page.data.last().map(|p| p.id.clone()));
            out.extend(page.data);
            match (page.has_more, next) {
                (true, Some(id)) => after = Some(id),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn get_project(&self, region: &str, id: &str) -> Result<Option<MantleProject>, AwsError> {
        let path = format!("/organization/projects/{id}");
        let call = self.send("GetProject", region, Method::GET, &path, None);
        self.calls.track(SERVICE, "GetProject", call).await
    }

    async fn create_project(
        &self,
        region: &str,
        name: &str,
        tags: &TagMap,
        retention_mode: &str,
    ) -> Result<MantleProject, AwsError> {
        let body = serde_json::json!({
            "name": name,
            "tags": tags,
            "data_retention": {"mode": retention_mode},
        });
        let call = self.must(
            "CreateProject",
            region,
            Method::POST,
            "/organization/projects",
            Some(body),
        );
        self.calls.track(SERVICE, "CreateProject", call).await
    }

    async fn update_project(
        &self,
        region: &str,
        id: &str,
        update: &MantleUpdate,
    ) -> Result<MantleProject, AwsError> {
        let path = format!("/organization/projects/{id}");
        let body = serde_json::to_value(update).map_err(|e| {
            AwsError::new(
                SERVICE,
                "UpdateProject",
                ErrorKind::Invalid,
                None,
                e.to_string(),
            )
        })?;
        let call = self.must("UpdateProject", region, Method::POST, &path, Some(body));
        self.calls.track(SERVICE, "UpdateProject", call).await
    }

    async fn set_data_retention(
        &self,
        region: &str,
        id: &str,
        mode: &str,
    ) -> Result<MantleProject, AwsError> {
        let path = format!("/organization/projects/{id}");
        let body = serde_json::json!({"data_retention": {"mode": mode}});
        let call = self.must("UpdateProject", region, Method::POST, &path, Some(body));
        self.calls.track(SERVICE, "UpdateProject", call).await
    }

    async fn archive_project(&self, region: &str, id: &str) -> Result<(), AwsError> {
        let path = format!("/organization/projects/{id}/archive");
        let call =
            self.send::<serde_json::Value>("ArchiveProject", region, Method::POST, &path, None);
        // Archiving a project that is gone already is done.
        self.calls
            .track(SERVICE, "ArchiveProject", call)
            .await
            .map(|_| ())
    }
}
