//! Sign-in and sign-out, the project list, and a project's page with its keys.

use crate::routes::costs::{csv_attachment, csv_failed};
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::Form;
use axum_extra::extract::cookie::Cookie;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use strata_core::auth::{Action, Decision, ListScope};
use strata_core::domain::{KeyCreation, NewApiKey, UsageGroupBy};
use strata_core::services::ProjectFilter;
use strata_web::pages::{
    HomePage, NewKey, ProjectLink, ProjectPage, ProjectRights, ProjectView, SignInPage,
};

use super::session::{
    CSRF_COOKIE, CsrfToken, SESSION_COOKIE, UiCaller, check_form, cookie, form_urlencoded_value,
    new_csrf_token, safe_next,
};
use super::{UiError, UiResult, respond};
use crate::app::AppState;
use crate::routes::{authorize_project, project_id};

/// Projects a page lists at most.
const LIST_LIMIT: u64 = 200;

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn sign_in_form(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfToken>,
    Query(q): Query<NextQuery>,
) -> SignInPage {
    let next = safe_next(q.next.as_deref().unwrap_or("/ui"));
    SignInPage {
        nav: None,
        csrf: csrf.0,
        sso_href: sso_href(&state, &next),
        next,
        error: None,
    }
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: String,
}

/// Seconds until the token's `exp` (read after the token was verified).
fn seconds_left(token: &str, now: i64) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    Some(claims.get("exp")?.as_i64()? - now)
}

fn set_cookie(res: &mut Response, c: Cookie<'_>) {
    if let Ok(v) = HeaderValue::from_str(&c.to_string()) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

pub async fn sign_in(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfToken>,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, axum_extra::extract::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return UiError::new(
            StatusCode::BAD_REQUEST,
            "Cannot sign in",
            "The form could not be read.",
        )
        .into_response();
    };
    if let Err(e) = check_form(&headers, &csrf.0, &form.csrf) {
        return e.into_response();
    }
    let next = safe_next(&form.next);
    let token = form.token.trim();
    let refuse = |message: String| {
        let page = SignInPage {
            nav: None,
            csrf: csrf.0.clone(),
            next: next.clone(),
            error: Some(message),
            sso_href: sso_href(&state, &next),
        };
        (StatusCode::UNAUTHORIZED, page).into_response()
    };
    if token.is_empty() {
        return refuse("Paste a token to sign in.".into());
    }
    if let Err(e) = state.verifier.verify(token).await {
        return match e {
            strata_core::CoreError::Unauthenticated(why) => {
                refuse(format!("The token was not accepted: {why}."))
            }
            other => UiError::from(other).into_response(),
        };
    }
    let mut res = Redirect::to(&next).into_response();
    start_session(&state, &mut res, token);
    res
}

/// Sets the session cookie for a verified `token` (expiring with it) and a new CSRF
/// token: one a page showed before sign-in is not carried over.
pub(super) fn start_session(state: &AppState, res: &mut Response, token: &str) {
    let now = state.services.clock.now().timestamp();
    let secure = state.http.ui_secure_cookies;
    let mut session = cookie(SESSION_COOKIE, token.to_owned(), secure);
    if let Some(left) = seconds_left(token, now).filter(|s| *s > 0) {
        session.set_max_age(time::Duration::seconds(left));
    }
    set_cookie(res, session);
    if let Some(fresh) = new_csrf_token() {
        set_cookie(res, cookie(CSRF_COOKIE, fresh, secure));
    }
}

/// The sign-in page's link to the identity provider, when configured.
fn sso_href(state: &AppState, next: &str) -> Option<String> {
    super::sso::configured(&state.http.sso)
        .map(|_| format!("/ui/signin/oidc?next={}", form_urlencoded_value(next)))
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn sign_out(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfToken>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, axum_extra::extract::FormRejection>,
) -> Response {
    let given = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if let Err(e) = check_form(&headers, &csrf.0, &given) {
        return e.into_response();
    }
    let mut gone = cookie(SESSION_COOKIE, String::new(), state.http.ui_secure_cookies);
    gone.make_removal();
    let mut res = Redirect::to("/ui/signin").into_response();
    set_cookie(&mut res, gone);
    res
}

pub async fn home(State(state): State<AppState>, ui: UiCaller) -> Response {
    let nav = ui.nav(&state);
    let member = match state.rbac.list_scope(ui.principal()) {
        ListScope::All => None,
        ListScope::MemberOf(subject) => Some(subject),
        ListScope::Nothing => {
            return HomePage {
                nav: Some(nav),
                projects: Vec::new(),
                more: false,
            }
            .into_response();
        }
    };
    let filter = ProjectFilter {
        member,
        ..ProjectFilter::default()
    };
    match state
        .services
        .list_projects(&filter, None, Some(LIST_LIMIT))
        .await
    {
        Ok(page) => HomePage {
            nav: Some(nav),
            projects: page.items.iter().map(ProjectLink::new).collect(),
            more: page.next_cursor.is_some(),
        }
        .into_response(),
        Err(e) => UiError::from(e).with_nav(nav).into_response(),
    }
}

/// What the caller may do on this project (each right checked as the API checks it).
/// The caller's membership is read once for all of them (the RBAC table's `decide`,
/// as `authorize_project` uses it).
async fn rights(state: &AppState, ui: &UiCaller, id: uuid::Uuid) -> UiResult<ProjectRights> {
    let p = ui.principal();
    let membership = state.services.membership(id, &p.subject).await?;
    let may = |action| matches!(state.rbac.decide(p, action, membership), Decision::Allow);
    Ok(ProjectRights {
        read_keys: may(Action::KeysRead),
        create_keys: may(Action::KeysCreate),
        revoke_keys: may(Action::KeysRevoke),
        read_costs: state.rbac.allows(p, Action::CostsRead),
    })
}

/// What the key form just did, for the page to say.
#[derive(Default)]
struct KeyOutcome {
    /// A key just made: its secret is shown on this response only.
    new_key: Option<NewKey>,
    error: Option<String>,
    notice: Option<String>,
}

/// Renders a project's page.
async fn render_project(
    state: &AppState,
    ui: &UiCaller,
    raw_id: &str,
    outcome: KeyOutcome,
) -> UiResult<ProjectPage> {
    let id = project_id(raw_id)?;
    authorize_project(state, &ui.caller, id, Action::ProjectsRead).await?;
    let project = state.services.get_project(id).await?;
    let rights = rights(state, ui, id).await?;
    let keys = if rights.read_keys {
        Some(
            state
                .services
                .list_api_keys(id, None, Some(LIST_LIMIT))
                .await?,
        )
    } else {
        None
    };
    let by_model = state
        .services
        .usage_report(id, None, None, UsageGroupBy::Model)
        .await?;
    let by_key = state
        .services
        .usage_report(id, None, None, UsageGroupBy::Key)
        .await?;
    let max_days =
        u64::try_from(state.key_issuer.max_lifetime_secs(project.environment) / 86_400).ok();
    Ok(ProjectPage {
        nav: Some(ui.nav(state)),
        view: ProjectView::new(
            &project,
            rights,
            keys.as_ref()
                .map(|k| (k.items.as_slice(), k.next_cursor.is_some())),
            max_days,
            &by_model,
            &by_key,
        ),
        new_key: outcome.new_key,
        key_error: outcome.error,
        key_notice: outcome.notice,
        form_id: new_csrf_token().unwrap_or_default(),
    })
}

pub async fn project_page(
    State(state): State<AppState>,
    ui: UiCaller,
    Path(id): Path<String>,
) -> Response {
    respond(
        &state,
        &ui,
        render_project(&state, &ui, &id, KeyOutcome::default()).await,
    )
}

#[derive(Debug, Deserialize)]
pub struct NewKeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    /// Ticked checkboxes (repeated `models=` fields).
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    expires_in_days: String,
    /// The page's id for this form: sent twice, it makes one key.
    #[serde(default)]
    form_id: String,
}

pub async fn create_key(
    State(state): State<AppState>,
    ui: UiCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<NewKeyForm>, axum_extra::extract::FormRejection>,
) -> Response {
    let result = async {
        let Form(form) = form.map_err(|e| {
            UiError::new(
                StatusCode::BAD_REQUEST,
                "Cannot create the key",
                format!("The form could not be read: {e}"),
            )
        })?;
        check_form(&headers, &ui.csrf, &form.csrf)?;
        let project = project_id(&id)?;
        authorize_project(&state, &ui.caller, project, Action::KeysCreate).await?;
        let days = form.expires_in_days.trim();
        let expires_in = if days.is_empty() {
            None
        } else {
            match days.parse::<u64>() {
                Ok(d) if d >= 1 => Some(d.saturating_mul(86_400)),
                _ => {
                    let error =
                        format!("Expires in: '{days}' is not a whole number of days (1 or more).");
                    let outcome = KeyOutcome {
                        error: Some(error),
                        ..KeyOutcome::default()
                    };
                    let page = render_project(&state, &ui, &id, outcome).await?;
                    return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
                }
            }
        };
        let input = NewApiKey {
            name: form.name.trim().to_owned(),
            models: (!form.models.is_empty()).then_some(form.models),
            expires_in,
            rate_limits: None,
        };
        let form_id = Some(form.form_id.trim()).filter(|f| !f.is_empty() && f.len() <= 64);
        match state
            .services
            .create_api_key_once(
                &ui.caller.actor(),
                &state.key_issuer,
                project,
                &input,
                form_id,
            )
            .await
        {
            Ok(KeyCreation::Created(created)) => {
                let outcome = KeyOutcome {
                    new_key: Some(NewKey {
                        name: created.key.name.clone(),
                        secret: created.secret.clone(),
                    }),
                    ..KeyOutcome::default()
                };
                let page = render_project(&state, &ui, &id, outcome).await?;
                Ok((StatusCode::CREATED, page).into_response())
            }
            Ok(KeyCreation::Repeated(key)) => {
                let notice = format!(
                    "This form was already sent: it made the key “{}”, whose secret was shown then and cannot be shown again. Revoke it and make another if the secret is lost.",
                    key.name
                );
                let outcome = KeyOutcome {
                    notice: Some(notice),
                    ..KeyOutcome::default()
                };
                let page = render_project(&state, &ui, &id, outcome).await?;
                Ok(page.into_response())
            }
            Err(strata_core::CoreError::Validation(errors)) => {
                let message = errors
                    .iter()
                    .map(|e| {
                        let field = if e.field == "expires_in" {
                            "expires in"
                        } else {
                            &e.field
                        };
                        format!("{field}: {}", e.message)
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                let outcome = KeyOutcome {
                    error: Some(message),
                    ..KeyOutcome::default()
                };
                let page = render_project(&state, &ui, &id, outcome).await?;
                Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
            }
            Err(e) => Err(UiError::from(e)),
        }
    };
    respond(&state, &ui, result.await)
}

pub async fn revoke_key(
    State(state): State<AppState>,
    ui: UiCaller,
    headers: HeaderMap,
    Path((id, key_id)): Path<(String, String)>,
    form: Result<Form<CsrfForm>, axum_extra::extract::FormRejection>,
) -> Response {
    let result = async {
        let given = form.map(|Form(f)| f.csrf).unwrap_or_default();
        check_form(&headers, &ui.csrf, &given)?;
        let project = project_id(&id)?;
        authorize_project(&state, &ui.caller, project, Action::KeysRevoke).await?;
        state
            .services
            .revoke_api_key(&ui.caller.actor(), project, &key_id)
            .await?;
        Ok::<_, UiError>(Redirect::to(&format!("/ui/projects/{project}")).into_response())
    };
    respond(&state, &ui, result.await)
}

#[derive(Debug, Deserialize)]
pub struct UsageCsvQuery {
    group_by: Option<UsageGroupBy>,
}

/// This month's usage table as CSV (`group_by=model`, `key`, `day` or
/// `service_tier`); by key only
/// for who may see the project's keys.
pub async fn usage_csv(
    State(state): State<AppState>,
    ui: UiCaller,
    Path(id): Path<String>,
    query: Result<Query<UsageCsvQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let csv = async {
        let Query(q) = query.map_err(|e| {
            UiError::new(
                StatusCode::BAD_REQUEST,
                "Cannot show this",
                format!("A parameter is invalid: {}", e.body_text()),
            )
        })?;
        let group_by = q.group_by.unwrap_or(UsageGroupBy::Model);
        let project = project_id(&id)?;
        authorize_project(&state, &ui.caller, project, Action::ProjectsRead).await?;
        if group_by == UsageGroupBy::Key {
            authorize_project(&state, &ui.caller, project, Action::KeysRead).await?;
        }
        let report = state
            .services
            .usage_report(project, None, None, group_by)
            .await?;
        let body = report.to_csv().map_err(csv_failed)?;
        let group = match group_by {
            UsageGroupBy::Model => "model",
            UsageGroupBy::Key => "key",
            UsageGroupBy::Day => "day",
            UsageGroupBy::ServiceTier => "service-tier",
        };
        Ok::<_, UiError>(csv_attachment(
            &format!("usage-{project}-{group}-{}.csv", report.from.date_naive()),
            body,
        ))
    };
    respond(&state, &ui, csv.await)
}
