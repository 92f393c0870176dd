//! Where a project's budget counter starts: its metered spend this month, as the
//! control plane has it. Asked only when the store has no counter for the month (a
//! new month, a new process, a Redis that lost its data); concurrent first requests
//! share one answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::control::ControlPlaneError;
use chrono::NaiveDate;
use serde::Deserialize;
use strata_core::config::Secret;
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
    pub async fn get(&self, project: Uuid, month: NaiveDate) -> Result<i64, ControlPlaneError> {
        let cell = {
            let mut recent = self
                .recent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            recent.retain(|_, (at, _)| at.elapsed() < SHARE_FOR);
            recent
                .entry((project, month))
                .or_insert_with(|| (Instant::now(), Arc::new(OnceCell::new())))
                .1
                .clone()
        };
        cell.get_or_try_init(|| self.fetch(project, month))
            .await
            .copied()
    }

    async fn fetch(&self, project: Uuid, month: NaiveDate) -> Result<i64, ControlPlaneError> {
        // A UUID and a date need no escaping.
        let url = format!("{}?project={project}&month={month}", self.url);
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
