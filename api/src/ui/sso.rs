//! Signing in through the identity provider: OIDC authorization code with PKCE.
//! `/ui/signin/oidc` sends the browser to the provider with a fresh `state` and code
//! challenge (both kept in a short-lived HttpOnly cookie); `/ui/signin/callback`
//! checks `state`, trades the code for tokens at the token endpoint, and keeps the
//! first token strata's verifier accepts (the ID token, else the access token) as the
//! session — the same cookie the token form sets.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use strata_web::pages::SignedInPage;
use subtle::ConstantTimeEq;

use super::UiError;
use super::projects::start_session;
use super::session::{new_csrf_token, safe_next};
use crate::app::{AppState, SsoConfig};

/// Holds `state`, the PKCE verifier and where to go, between leaving for the
/// provider and coming back.
const SSO_COOKIE: &str = "strata_sso";
const SSO_COOKIE_PATH: &str = "/ui/signin";
/// How long a sign-in at the provider may take.
const SSO_COOKIE_SECS: i64 = 600;

/// The provider settings, when sign-in through it is configured.
pub fn configured(sso: &SsoConfig) -> Option<(&str, &str, &str)> {
    Some((
        sso.authorization_url.as_deref()?,
        sso.token_url.as_deref()?,
        sso.client_id.as_deref()?,
    ))
}

fn redirect_uri(sso: &SsoConfig, headers: &HeaderMap) -> String {
    let base = match &sso.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => format!(
            "http://{}",
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1:8080")
        ),
    };
    format!("{base}/ui/signin/callback")
}

fn unavailable() -> UiError {
    UiError::new(
        StatusCode::NOT_FOUND,
        "Not found",
        "Sign-in through an identity provider is not configured here; paste a token instead.",
    )
}

#[derive(Debug, Deserialize)]
pub struct StartQuery {
    next: Option<String>,
}

pub async fn start(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<StartQuery>,
) -> Response {
    let sso = &state.http.sso;
    let Some((authorize, _, client_id)) = configured(sso) else {
        return unavailable().into_response();
    };
    let (Some(flow_state), Some(verifier)) = (new_csrf_token(), new_csrf_token()) else {
        return UiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "No randomness for the sign-in; try again.",
        )
        .into_response();
    };
    let next = safe_next(q.next.as_deref().unwrap_or("/ui"));
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let separator = if authorize.contains('?') { '&' } else { '?' };
    let params = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", &redirect_uri(sso, &headers))
        .append_pair("scope", &sso.scopes)
        .append_pair("state", &flow_state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .finish();
    let location = format!("{authorize}{separator}{params}");
    // Lax, not Strict: the provider's redirect back is a cross-site navigation.
    let cookie = Cookie::build((
        SSO_COOKIE,
        format!(
            "{flow_state}.{verifier}.{}",
            URL_SAFE_NO_PAD.encode(next.as_bytes())
        ),
    ))
    .path(SSO_COOKIE_PATH)
    .http_only(true)
    .same_site(SameSite::Lax)
    .secure(state.http.ui_secure_cookies)
    .max_age(time::Duration::seconds(SSO_COOKIE_SECS))
    .build();
    let mut res = Redirect::to(&location).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie.to_string()) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
    access_token: Option<String>,
}

fn refused(message: impl Into<String>) -> UiError {
    UiError::new(StatusCode::BAD_REQUEST, "Sign-in did not finish", message)
}

pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    match finish(&state, &headers, q).await {
        Ok(res) => res,
        Err(e) => {
            // The flow's cookie is spent either way.
            let mut res = e.into_response();
            let mut gone = Cookie::build((SSO_COOKIE, ""))
                .path(SSO_COOKIE_PATH)
                .build();
            gone.make_removal();
            if let Ok(v) = HeaderValue::from_str(&gone.to_string()) {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
            res
        }
    }
}

async fn finish(
    state: &AppState,
    headers: &HeaderMap,
    q: CallbackQuery,
) -> Result<Response, UiError> {
    let sso = &state.http.sso;
    let (_, token_url, client_id) = configured(sso).ok_or_else(unavailable)?;
    if let Some(error) = q.error {
        return Err(refused(format!(
            "The identity provider said: {error}{}",
            q.error_description
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        )));
    }
    let jar = CookieJar::from_headers(headers);
    let kept = jar
        .get(SSO_COOKIE)
        .map(|c| c.value().to_owned())
        .ok_or_else(|| {
            refused("This sign-in was not started here, or took too long. Start again.")
        })?;
    let mut parts = kept.splitn(3, '.');
    let (Some(expected), Some(verifier), Some(next)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(refused("The sign-in cookie is damaged. Start again."));
    };
    let given = q.state.unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        return Err(refused(
            "The answer does not belong to the sign-in started here. Start again.",
        ));
    }
    let code = q
        .code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| refused("The identity provider sent no code."))?;
    let next = URL_SAFE_NO_PAD
        .decode(next)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .map_or_else(|| "/ui".to_owned(), |n| safe_next(&n));

    // Built before any await: the serializer is not `Send`.
    let body = {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "authorization_code")
            .append_pair("code", &code)
            .append_pair("redirect_uri", &redirect_uri(sso, headers))
            .append_pair("client_id", client_id)
            .append_pair("code_verifier", verifier);
        if let Some(secret) = &sso.client_secret {
            form.append_pair("client_secret", secret.expose());
        }
        form.finish()
    };
    let provider_failed = |why: String| {
        tracing::warn!(sso.token_url = %token_url, error.cause = %why, "the identity provider's token endpoint failed");
        UiError::new(
            StatusCode::BAD_GATEWAY,
            "Sign-in did not finish",
            "The identity provider did not complete the sign-in. Try again, or paste a token.",
        )
    };
    let answer = reqwest::Client::new()
        .post(token_url)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .timeout(Duration::from_secs(10))
        .body(body)
        .send()
        .await
        .map_err(|e| provider_failed(e.to_string()))?;
    let status = answer.status();
    if !status.is_success() {
        return Err(provider_failed(format!("HTTP {status}")));
    }
    let tokens: TokenAnswer = answer
        .json()
        .await
        .map_err(|e| provider_failed(format!("unreadable answer: {e}")))?;
    let mut why_not = String::from("the provider sent no token");
    for token in [tokens.id_token, tokens.access_token].into_iter().flatten() {
        match state.verifier.verify(&token).await {
            Ok(_) => {
                let page = SignedInPage {
                    nav: None,
                    next: next.clone(),
                };
                let mut res = page.into_response();
                start_session(state, &mut res, &token);
                let mut gone = Cookie::build((SSO_COOKIE, ""))
                    .path(SSO_COOKIE_PATH)
                    .build();
                gone.make_removal();
                if let Ok(v) = HeaderValue::from_str(&gone.to_string()) {
                    res.headers_mut().append(header::SET_COOKIE, v);
                }
                return Ok(res);
            }
            Err(strata_core::CoreError::Unauthenticated(why)) => why_not = why,
            Err(other) => return Err(other.into()),
        }
    }
    Err(UiError::new(
        StatusCode::UNAUTHORIZED,
        "Sign-in did not finish",
        format!("strata did not accept the identity provider's token: {why_not}."),
    ))
}
