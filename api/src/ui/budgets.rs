//! The budgets page: every budget with its spend this period; adding, changing and
//! removing one for those who may.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::Form;
use serde::Deserialize;
use strata_core::CoreError;
use strata_core::auth::Action;
use strata_core::domain::{
    BudgetEnforcement, BudgetPatch, BudgetPeriod, BudgetScope, BudgetView, NewBudget,
};
use strata_web::pages::{BudgetForm, BudgetRow, BudgetsPage};
use uuid::Uuid;

use super::session::{UiCaller, check_form};
use super::{UiError, UiResult, respond};
use crate::app::AppState;

/// What a page shows above its table and form after a change.
#[derive(Default)]
struct Outcome {
    notice: Option<String>,
    errors: Vec<String>,
    form: BudgetForm,
}

fn allowed(state: &AppState, ui: &UiCaller, action: Action) -> UiResult<()> {
    if state.rbac.allows(ui.principal(), action) {
        Ok(())
    } else {
        Err(UiError::new(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "Your roles do not let you see or change budgets.",
        ))
    }
}

async fn page(state: &AppState, ui: &UiCaller, outcome: Outcome) -> UiResult<BudgetsPage> {
    allowed(state, ui, Action::BudgetsRead)?;
    let budgets = state.services.list_budgets().await?;
    let mut rows = Vec::with_capacity(budgets.len());
    for b in &budgets {
        rows.push(BudgetRow::new(b, project_name(state, b).await.as_deref()));
    }
    Ok(BudgetsPage {
        nav: Some(ui.nav(state)),
        can_write: state.rbac.allows(ui.principal(), Action::BudgetsWrite),
        budgets: rows,
        notice: outcome.notice,
        errors: outcome.errors,
        form: outcome.form,
    })
}

/// A project budget's project name (none when the project is gone).
async fn project_name(state: &AppState, budget: &BudgetView) -> Option<String> {
    if budget.scope != BudgetScope::Project {
        return None;
    }
    let id = Uuid::parse_str(&budget.target).ok()?;
    let project = state.services.get_project(id).await.ok()?;
    Some(project.name.to_string())
}

pub async fn budgets(State(state): State<AppState>, ui: UiCaller) -> Response {
    respond(&state, &ui, page(&state, &ui, Outcome::default()).await)
}

fn read<T>(form: Result<Form<T>, axum_extra::extract::FormRejection>) -> UiResult<T> {
    form.map(|Form(f)| f).map_err(|e| {
        UiError::new(
            StatusCode::BAD_REQUEST,
            "Cannot change the budgets",
            format!("The form could not be read: {e}"),
        )
    })
}

/// The messages of a refused change, field by field.
fn refusal(e: CoreError) -> UiResult<Vec<String>> {
    match e {
        CoreError::Validation(fields) => Ok(fields
            .iter()
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect()),
        CoreError::Conflict { message, .. } => Ok(vec![message]),
        other => Err(other.into()),
    }
}

/// A form's amount, or its error added to `errors`.
fn parse_amount(text: &str, errors: &mut Vec<String>) -> Option<f64> {
    text.trim()
        .parse::<f64>()
        .map_err(|_| errors.push(format!("amount_usd: '{text}' is not a number")))
        .ok()
}

/// A form's enforcement, or its error added to `errors`.
fn parse_enforcement(text: &str, errors: &mut Vec<String>) -> Option<BudgetEnforcement> {
    BudgetEnforcement::parse(text)
        .map_err(|e| errors.push(format!("enforcement: {e}")))
        .ok()
}

/// The form as the API's body; a value the selects cannot send is the field's error.
fn new_budget(form: &BudgetForm) -> Result<NewBudget, Vec<String>> {
    let mut errors = Vec::new();
    let scope = BudgetScope::parse(&form.scope)
        .map_err(|e| errors.push(format!("scope: {e}")))
        .ok();
    let period = BudgetPeriod::parse(&form.period)
        .map_err(|e| errors.push(format!("period: {e}")))
        .ok();
    let enforcement = parse_enforcement(&form.enforcement, &mut errors);
    let amount_usd = parse_amount(&form.amount_usd, &mut errors);
    match (scope, period, enforcement, amount_usd) {
        (Some(scope), Some(period), Some(enforcement), Some(amount_usd)) if errors.is_empty() => {
            Ok(NewBudget {
                name: form.name.clone(),
                scope,
                target: form.target.clone(),
                period,
                amount_usd,
                enforcement,
            })
        }
        _ => Err(errors),
    }
}

pub async fn create(
    State(state): State<AppState>,
    ui: UiCaller,
    headers: HeaderMap,
    form: Result<Form<BudgetForm>, axum_extra::extract::FormRejection>,
) -> Response {
    let result = async {
        let form = read(form)?;
        check_form(&headers, &ui.csrf, &form.csrf)?;
        allowed(&state, &ui, Action::BudgetsWrite)?;
        let created = match new_budget(&form) {
            Ok(input) => state
                .services
                .create_budget(&ui.caller.actor(), &input)
                .await
                .map_err(refusal),
            Err(errors) => Err(Ok(errors)),
        };
        match created {
            Ok(view) => {
                let notice = format!("Budget '{}' added.", view.name);
                page(
                    &state,
                    &ui,
                    Outcome {
                        notice: Some(notice),
                        ..Outcome::default()
                    },
                )
                .await
                .map(IntoResponse::into_response)
            }
            Err(Ok(errors)) => {
                let outcome = Outcome {
                    errors,
                    form: BudgetForm {
                        csrf: String::new(),
                        ..form
                    },
                    ..Outcome::default()
                };
                let page = page(&state, &ui, outcome).await?;
                Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
            }
            Err(Err(e)) => Err(e),
        }
    };
    respond(&state, &ui, result.await)
}

#[derive(Debug, Deserialize)]
pub struct ChangeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    amount_usd: String,
    #[serde(default)]
    enforcement: String,
}

fn budget_id(id: &str) -> UiResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| {
        UiError::new(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such budget.",
        )
    })
}

pub async fn change(
    State(state): State<AppState>,
    ui: UiCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<ChangeForm>, axum_extra::extract::FormRejection>,
) -> Response {
    let result = async {
        let form = read(form)?;
        check_form(&headers, &ui.csrf, &form.csrf)?;
        allowed(&state, &ui, Action::BudgetsWrite)?;
        let id = budget_id(&id)?;
        let mut errors = Vec::new();
        let patch = BudgetPatch {
            period: None,
            amount_usd: parse_amount(&form.amount_usd, &mut errors),
            enforcement: parse_enforcement(&form.enforcement, &mut errors),
        };
        if errors.is_empty() {
            match state
                .services
                .update_budget(&ui.caller.actor(), id, &patch)
                .await
            {
                Ok(view) => {
                    let notice = format!(
                        "Budget '{}' is now ${:.2} per {}, {}.",
                        view.name, view.amount_usd, view.period, view.enforcement
                    );
                    let outcome = Outcome {
                        notice: Some(notice),
                        ..Outcome::default()
                    };
                    return page(&state, &ui, outcome)
                        .await
                        .map(IntoResponse::into_response);
                }
                Err(e) => errors = refusal(e)?,
            }
        }
        let outcome = Outcome {
            errors,
            ..Outcome::default()
        };
        let page = page(&state, &ui, outcome).await?;
        Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
    };
    respond(&state, &ui, result.await)
}

#[derive(Debug, Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    csrf: String,
}

pub async fn delete(
    State(state): State<AppState>,
    ui: UiCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<DeleteForm>, axum_extra::extract::FormRejection>,
) -> Response {
    let result = async {
        let form = read(form)?;
        check_form(&headers, &ui.csrf, &form.csrf)?;
        allowed(&state, &ui, Action::BudgetsWrite)?;
        let id = budget_id(&id)?;
        state.services.delete_budget(&ui.caller.actor(), id).await?;
        let outcome = Outcome {
            notice: Some("Budget removed.".into()),
            ..Outcome::default()
        };
        page(&state, &ui, outcome).await
    };
    respond(&state, &ui, result.await)
}
