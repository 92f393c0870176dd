//! The notifications pages: destinations with their last delivery, a test send, and
//! each destination's delivery log.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum_extra::extract::Form;
use serde::Deserialize;
use strata_core::auth::Action;
use strata_core::services::DeliveryPolicy;
use strata_web::pages::{DeliveriesPage, DeliveryRow, DestinationRow, NotificationsPage};

use super::session::{UiCaller, check_form};
use super::{UiError, UiResult, respond};
use crate::app::AppState;

fn allowed(state: &AppState, ui: &UiCaller, action: Action) -> UiResult<()> {
    if state.rbac.allows(ui.principal(), action) {
        Ok(())
    } else {
        Err(UiError::new(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "Your roles do not let you see notification destinations.",
        ))
    }
}

async fn list_page(
    state: &AppState,
    ui: &UiCaller,
    tested: Option<(String, String)>,
) -> UiResult<NotificationsPage> {
    allowed(state, ui, Action::NotificationsRead)?;
    let destinations = state.services.list_destinations().await?;
    Ok(NotificationsPage {
        nav: Some(ui.nav(state)),
        can_test: state
            .rbac
            .allows(ui.principal(), Action::NotificationsWrite),
        destinations: destinations.iter().map(DestinationRow::new).collect(),
        tested,
    })
}

pub async fn notifications(State(state): State<AppState>, ui: UiCaller) -> Response {
    respond(&state, &ui, list_page(&state, &ui, None).await)
}

pub async fn deliveries(
    State(state): State<AppState>,
    ui: UiCaller,
    Path(id): Path<String>,
) -> Response {
    let page = async {
        allowed(&state, &ui, Action::NotificationsRead)?;
        let not_found = || {
            UiError::new(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such notification destination.",
            )
        };
        let id = uuid::Uuid::parse_str(&id).map_err(|_| not_found())?;
        let destination = state
            .services
            .list_destinations()
            .await?
            .into_iter()
            .find(|d| d.id == id)
            .ok_or_else(not_found)?;
        let rows = state.services.deliveries(id, 200).await?;
        Ok::<_, UiError>(DeliveriesPage {
            nav: Some(ui.nav(&state)),
            name: destination.name,
            rows: rows.iter().map(DeliveryRow::new).collect(),
        })
    };
    respond(&state, &ui, page.await)
}

#[derive(Debug, Deserialize)]
pub struct TestForm {
    #[serde(default)]
    csrf: String,
}

pub async fn send_test(
    State(state): State<AppState>,
    ui: UiCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<TestForm>, axum_extra::extract::FormRejection>,
) -> Response {
    let page = async {
        let Form(form) = form.map_err(|e| {
            UiError::new(
                StatusCode::BAD_REQUEST,
                "Cannot send the test",
                format!("The form could not be read: {e}"),
            )
        })?;
        check_form(&headers, &ui.csrf, &form.csrf)?;
        allowed(&state, &ui, Action::NotificationsWrite)?;
        let id = uuid::Uuid::parse_str(&id).map_err(|_| {
            UiError::new(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such notification destination.",
            )
        })?;
        let delivery = state
            .services
            .test_destination(
                &state.kek,
                &state.notify_http,
                &DeliveryPolicy::from_config(&state.http.notify),
                id,
            )
            .await?;
        let outcome = match (delivery.status.as_str(), delivery.last_error) {
            ("delivered", _) => "delivered".to_owned(),
            (_, Some(error)) => format!("not accepted: {error} (retried later)"),
            (status, None) => status.to_owned(),
        };
        let name = state
            .services
            .list_destinations()
            .await?
            .into_iter()
            .find(|d| d.id == id)
            .map(|d| d.name)
            .unwrap_or_default();
        list_page(&state, &ui, Some((name, outcome))).await
    };
    respond(&state, &ui, page.await)
}
