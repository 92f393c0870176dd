//! A cookie-keeping HTTP client for the `/ui` pages, as a browser uses them: no
//! redirects followed (tests look at them), cookies kept by name, forms posted
//! URL-encoded with the page's CSRF token.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, SET_COOKIE};

use crate::TestApp;

pub struct Browser {
    base: String,
    client: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
    /// `Set-Cookie` headers received, newest last (to check their attributes).
    pub set_cookies: Vec<String>,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Page {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

impl Browser {
    pub fn new(app: &TestApp) -> Self {
        Self {
            base: app.url(""),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
            cookies: BTreeMap::new(),
            set_cookies: Vec::new(),
        }
    }

    /// The value of this browser's CSRF cookie (after any page was opened).
    pub fn csrf(&self) -> String {
        self.cookies.get("strata_csrf").cloned().unwrap_or_default()
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let req = if cookie.is_empty() {
            req
        } else {
            req.header("cookie", cookie.join("; "))
        };
        let res = req.send().await.unwrap_or_else(|e| panic!("{e}"));
        for set in res.headers().get_all(SET_COOKIE) {
            let text = set.to_str().unwrap_or_default().to_owned();
            let pair = text.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                let removed = text.contains("Max-Age=0");
                if removed || value.is_empty() {
                    self.cookies.remove(name.trim());
                } else {
                    self.cookies
                        .insert(name.trim().to_owned(), value.to_owned());
                }
            }
            self.set_cookies.push(text);
        }
        Page {
            status: res.status(),
            headers: res.headers().clone(),
            text: res.text().await.unwrap_or_default(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let req = self.client.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    /// Posts a form as the page would (same-site `Origin`).
    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let origin = self.base.trim_end_matches('/').to_owned();
        self.post_form_from(path, fields, Some(&origin)).await
    }

    pub async fn post_form_from(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        origin: Option<&str>,
    ) -> Page {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        self.send(req).await
    }

    /// Opens the sign-in form and signs in with `token`; panics unless it worked.
    pub async fn sign_in(&mut self, token: &str) {
        let form = self.get("/ui/signin").await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.text);
        let csrf = self.csrf();
        let done = self
            .post_form(
                "/ui/signin",
                &[("csrf", &csrf), ("token", token), ("next", "/ui")],
            )
            .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
        assert!(self.cookies.contains_key("strata_session"));
    }
}
