//! Signing in to the pages: the bearer token the API takes (from the OIDC issuer or
//! `strata token mint`) kept in an HttpOnly, SameSite=Strict cookie and verified on
//! every request like a bearer header; forms carry a CSRF token that must match this
//! browser's CSRF cookie (double submit), and cross-site `Origin`s are refused.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use strata_core::auth::{Action, Principal};
use strata_core::domain::Environment;
use strata_web::pages::Nav;
use subtle::ConstantTimeEq;

use super::UiError;
use crate::app::AppState;
use crate::extract::{Caller, request_id};

pub const SESSION_COOKIE: &str = "strata_session";
pub const CSRF_COOKIE: &str = "strata_csrf";
/// Cookies are sent back only to the pages.
const COOKIE_PATH: &str = "/ui";

/// This browser's CSRF token (from its cookie, or made for it on this request).
#[derive(Debug, Clone)]
pub struct CsrfToken(pub String);

pub(super) fn new_csrf_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

fn well_formed(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn cookie<'c>(name: &'c str, value: String, secure: bool) -> Cookie<'c> {
    Cookie::build((name, value))
        .path(COOKIE_PATH)
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .build()
}

/// Gives every browser a CSRF cookie and every page the headers that keep it
/// self-contained: nothing loads from elsewhere, nothing frames it, nothing caches it.
pub async fn page_headers(
    axum::extract::State(state): axum::extract::State<AppState>,
    jar: CookieJar,
    mut req: Request,
    next: Next,
) -> Response {
    let existing = jar
        .get(CSRF_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|t| well_formed(t));
    let (token, fresh) = match existing {
        Some(t) => (t, false),
        None => match new_csrf_token() {
            Some(t) => (t, true),
            None => {
                tracing::error!("no randomness for a CSRF token");
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
        },
    };
    req.extensions_mut().insert(CsrfToken(token.clone()));
    let mut res = next.run(req).await;
    let headers = res.headers_mut();
    if fresh {
        let set = cookie(CSRF_COOKIE, token, state.http.ui_secure_cookies).to_string();
        if let Ok(v) = HeaderValue::from_str(&set) {
            headers.append(header::SET_COOKIE, v);
        }
    }
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// A signed-in caller of a page. Without a valid session the page redirects to the
/// sign-in form, which comes back here afterwards.
pub struct UiCaller {
    pub caller: Caller,
    pub csrf: String,
}

impl UiCaller {
    pub fn principal(&self) -> &Principal {
        &self.caller.principal
    }

    pub fn nav(&self, state: &AppState) -> Nav {
        let p = self.principal();
        Nav {
            subject: p.subject.clone(),
            roles: p.roles.join(", "),
            csrf: self.csrf.clone(),
            cost_environments: if state.rbac.allows(p, Action::CostsRead) {
                [Environment::Dev, Environment::Staging, Environment::Prod]
                    .iter()
                    .map(|e| e.as_str().to_owned())
                    .collect()
            } else {
                Vec::new()
            },
            notifications: state.rbac.allows(p, Action::NotificationsRead),
            budgets: state.rbac.allows(p, Action::BudgetsRead),
        }
    }
}

/// Where to go after signing in: only a path of the pages, never another site.
pub fn safe_next(next: &str) -> String {
    let ok = (next == "/ui" || next.starts_with("/ui/"))
        && !next.contains("//")
        && !next.contains('\\')
        && next.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        next.to_owned()
    } else {
        "/ui".to_owned()
    }
}

/// `/ui/signin?next=<this page>`. A form post cannot be replayed after signing in,
/// so it comes back to the page the form was on (its project's page).
fn to_sign_in(parts: &Parts) -> Response {
    let here = if parts.method == axum::http::Method::GET {
        parts
            .uri
            .path_and_query()
            .map_or_else(|| "/ui".to_owned(), |p| p.as_str().to_owned())
    } else {
        form_page(parts.uri.path())
    };
    let next: String = form_urlencoded_value(&safe_next(&here));
    Redirect::to(&format!("/ui/signin?next={next}")).into_response()
}

/// The page a form posting to `path` lives on.
fn form_page(path: &str) -> String {
    let mut segments = path.trim_start_matches('/').split('/');
    match (segments.next(), segments.next(), segments.next()) {
        (Some("ui"), Some("projects"), Some(id)) if !id.is_empty() => format!("/ui/projects/{id}"),
        _ => "/ui".to_owned(),
    }
}

/// A path as a query value (`/` kept readable).
pub(super) fn form_urlencoded_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl FromRequestParts<AppState> for UiCaller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let csrf = parts
            .extensions
            .get::<CsrfToken>()
            .map(|t| t.0.clone())
            .unwrap_or_default();
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(token) = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned()) else {
            return Err(to_sign_in(parts));
        };
        let principal = match state.verifier.verify(&token).await {
            Ok(p) => p,
            Err(strata_core::CoreError::Unauthenticated(_)) => return Err(to_sign_in(parts)),
            Err(e) => return Err(UiError::from(crate::ApiError::from(e)).into_response()),
        };
        Ok(Self {
            caller: Caller {
                principal,
                request_id: request_id(&parts.headers),
            },
            csrf,
        })
    }
}

/// A form's CSRF field must equal this browser's CSRF cookie, and a cross-site
/// `Origin` is refused even then.
pub fn check_form(headers: &HeaderMap, expected: &str, given: &str) -> Result<(), UiError> {
    let refused = || {
        UiError::new(
            StatusCode::FORBIDDEN,
            "Form refused",
            "The form was not sent from this site's page, or it is too old. Reload the page and try again.",
        )
    };
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        return Err(refused());
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://").map(|(_, rest)| rest));
        if origin_host.is_none() || origin_host != host {
            return Err(refused());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_the_pages() {
        assert_eq!(
            safe_next("/ui/env/prod/costs?from=2026-11-01"),
            "/ui/env/prod/costs?from=2026-11-01"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/ui//evil",
            "/api/v1/projects",
            "/ui\\..",
            "/uix",
        ] {
            assert_eq!(safe_next(bad), "/ui", "{bad}");
        }
    }

    #[test]
    fn a_form_post_returns_to_its_page_after_sign_in() {
        assert_eq!(form_page("/ui/projects/abc/keys"), "/ui/projects/abc");
        assert_eq!(
            form_page("/ui/projects/abc/keys/k/revoke"),
            "/ui/projects/abc"
        );
        assert_eq!(form_page("/ui/signout"), "/ui");
        assert_eq!(form_page("/ui/projects/"), "/ui");
    }

    #[test]
    fn forms_need_the_cookie_token_and_a_same_site_origin() {
        let token = new_csrf_token().unwrap_or_default();
        assert!(well_formed(&token));
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(check_form(&headers, &token, &token).is_ok());
        assert!(check_form(&headers, &token, "x").is_err());
        assert!(check_form(&headers, "", "").is_err());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(check_form(&headers, &token, &token).is_ok());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(check_form(&headers, &token, &token).is_err());
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(check_form(&headers, &token, &token).is_err());
    }
}
