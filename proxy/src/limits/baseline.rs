//! Where a budget counter starts: the metered spend of the project this month, or of
//! a hard budget's scope this period, as the control plane has it. Asked only when the
//! store has no counter for the period (a new period, a new process, a Redis that lost
//! its data); concurrent first requests share one answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::control::ControlPlaneError;
use chrono::NaiveDate;
use serde::Deserialize;
use strata_contract::Secret;
use tokio::sync::OnceCell;
use uuid::Uuid;

/// How long one answer is shared between requests.
const SHARE_FOR: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
struct MonthSpend {
    spent_micros: i64,
}

type Shared = Arc<OnceCell<i64>>;

pub struct SpendBaselines {
    http: reqwest::Client,
    url: String,
    credential: Secret,
    recent: Mutex<HashMap<(Uuid, NaiveDate), (Instant, Shared)>>,
}

impl SpendBaselines {
    pub fn new(http: reqwest::Client, control_plane: &str, credential: Secret) -> Self {
        Self {
            http,
            url: format!(
                "{}/internal/v1/proxy/spend",
                control_plane.trim_end_matches('/')
            ),
            credential,
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// The project's metered spend in the month starting `month`, in micro-dollars.
    pub async fn project(&self, project: Uuid, month: NaiveDate) -> Result<i64, ControlPlaneError> {
        self.get("project", project, month).await
    }

    /// A hard budget's metered spend in the period starting `start`.
    pub async fn budget(&self, budget: Uuid, start: NaiveDate) -> Result<i64, ControlPlaneError> {
        self.get("budget", budget, start).await
    }

    /// Project and budget ids are both random UUIDs, so they share the cache.
    async fn get(
        &self,
        what: &'static str,
        id: Uuid,
        start: NaiveDate,
    ) -> Result<i64, ControlPlaneError> {
        let cell = {
            let mut recent = self
                .recent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            recent.retain(|_, (at, _)| at.elapsed() < SHARE_FOR);
            recent
                .entry((id, start))
                .or_insert_with(|| (Instant::now(), Arc::new(OnceCell::new())))
                .1
                .clone()
        };
        cell.get_or_try_init(|| self.fetch(what, id, start))
            .await
            .copied()
    }

    async fn fetch(
        &self,
        what: &'static str,
        id: Uuid,
        start: NaiveDate,
    ) -> Result<i64, ControlPlaneError> {
        // A UUID and a date need no escaping.
        let url = format!("{}?{what}={id}&month={start}", self.url);
        let response = self
            .http
            .get(url)
            .bearer_auth(self.credential.expose())
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(ControlPlaneError::unreachable)?;
        if !response.status().is_success() {
            return Err(ControlPlaneError::Status(response.status()));
        }
        response
            .json::<MonthSpend>()
            .await
            .map(|s| s.spent_micros)
            .map_err(ControlPlaneError::body)
    }
}
