//! Notifications delivered: destinations, the events recorded for them (once, by a
//! unique key, in the transaction that noticed them, or by the pass that watches for
//! expiring keys, failing reconciles and budgets forecast to be exceeded), and a
//! delivery pass any replica may run — deliveries are leased, so each goes out once
//! per destination, retried with backoff until it is accepted or its attempts run out.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;

use super::Services;
use super::audit::{Change, record, snapshot};
use crate::CoreError;
use crate::auth::Actor;
use crate::config::{NotifyConfig, Secret};
use crate::domain::{
    Condition, ConditionStatus, ConditionType, CreatedDestination, Delivery, Destination,
    DestinationKind, NewDestination, micros_to_usd, month_start, next_month_start,
};
use crate::keys::KeyEncryptionKey;
use crate::store::entities::{
    api_keys, notification_deliveries, notification_destinations, notifications, project_sync,
    projects,
};

/// How deliveries are made and retried, and what the pass watches for.
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    /// The first retry's wait; each later one doubles it, up to an hour.
    pub retry_base: StdDuration,
    /// Attempts before a delivery is given up (`failed`).
    pub max_attempts: i32,
    /// How long a replica holds a delivery it is sending.
    pub lease: StdDuration,
    /// How long one attempt may take.
    pub timeout: StdDuration,
    /// A key expiring within this many days is announced (once per key).
    pub key_expiry_days: i64,
    /// A project whose reconcile has failed for this long is announced (once per
    /// failure).
    pub reconcile_failing_minutes: i64,
    /// The SMTP server's URL (it may hold a password) and the sender, for e-mail.
    pub smtp: Option<(Secret, String)>,
}

impl DeliveryPolicy {
    pub fn from_config(config: &NotifyConfig) -> Self {
        Self {
            retry_base: StdDuration::from_secs(config.retry_base_secs),
            key_expiry_days: i64::from(config.key_expiry_days),
            reconcile_failing_minutes: i64::from(config.reconcile_failing_minutes),
            smtp: config
                .smtp_url
                .clone()
                .map(|url| (url, config.smtp_from.clone())),
            ..Self::default()
        }
    }
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            retry_base: StdDuration::from_secs(30),
            max_attempts: 10,
            lease: StdDuration::from_secs(60),
            timeout: StdDuration::from_secs(10),
            key_expiry_days: 7,
            reconcile_failing_minutes: 30,
            smtp: None,
        }
    }
}

/// What one delivery pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    pub fanned_out: usize,
    pub delivered: usize,
    pub retrying: usize,
    pub failed: usize,
}

/// An event to record; see [`record_notification`].
pub struct Event {
    pub kind: &'static str,
    /// What makes it one event: recording it again changes nothing.
    pub dedupe_key: String,
    pub environment: Option<String>,
    pub summary: String,
    pub payload: Value,
}

/// Records `event` once (a second record with its key is ignored); called inside the
/// transaction that noticed it.
pub async fn record_notification(
    db: &impl ConnectionTrait,
    event: Event,
    now: DateTime<Utc>,
) -> Result<(), CoreError> {
    notifications::Entity::insert(notifications::ActiveModel {
        id: Set(Uuid::now_v7()),
        kind: Set(event.kind.into()),
        dedupe_key: Set(event.dedupe_key),
        environment: Set(event.environment),
        summary: Set(event.summary),
        payload: Set(event.payload),
        fanned_out: Set(false),
        created_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(notifications::Column::DedupeKey)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// A webhook URL as shown: its scheme and host only, since the rest may be a token
/// (Slack's are).
fn shown_url(kind: DestinationKind, url: &str) -> String {
    if kind == DestinationKind::Email {
        return url.to_owned();
    }
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let rest = if u.path().len() > 1 || u.query().is_some() {
                "/…"
            } else {
                ""
            };
            format!(
                "{}://{}{port}{rest}",
                u.scheme(),
                u.host_str().unwrap_or_default()
            )
        }
        Err(_) => "(unreadable)".into(),
    }
}

fn destination_of(row: &notification_destinations::Model) -> Result<Destination, CoreError> {
    let kind = DestinationKind::parse(&row.kind)
        .map_err(|e| CoreError::Internal(format!("stored destination kind: {e}")))?;
    Ok(Destination {
        id: row.id,
        name: row.name.clone(),
        kind,
        url: shown_url(kind, &row.url),
        events: serde_json::from_value(row.events.clone()).unwrap_or_default(),
        environment: row.environment.clone(),
        created_at: row.created_at,
        last_delivery_at: None,
        last_error: None,
    })
}

fn wants(row: &notification_destinations::Model, event: &notifications::Model) -> bool {
    let events: Vec<String> = serde_json::from_value(row.events.clone()).unwrap_or_default();
    let kind_ok = events.is_empty() || events.contains(&event.kind);
    let env_ok = match (&row.environment, &event.environment) {
        (None, _) => true,
        (Some(wanted), Some(got)) => wanted == got,
        (Some(_), None) => false,
    };
    kind_ok && env_ok
}

/// `t=<unix>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>`: what a receiver checks.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> Result<String, CoreError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .map_err(|e| CoreError::Internal(format!("HMAC key: {e}")))?;
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!("t={timestamp},v1={hex}"))
}

/// How long to wait before the attempt after `attempts` failed ones.
fn backoff(policy: &DeliveryPolicy, attempts: i32) -> Duration {
    let factor = 2u32.saturating_pow(u32::try_from(attempts.max(1) - 1).unwrap_or(0).min(16));
    let wait = policy
        .retry_base
        .saturating_mul(factor)
        .min(StdDuration::from_secs(3_600));
    Duration::from_std(wait).unwrap_or(Duration::hours(1))
}

/// One attempt: the HTTP status, or why there was none.
type Attempt = Result<u16, (Option<u16>, String)>;

async fn send(
    http: &reqwest::Client,
    policy: &DeliveryPolicy,
    destination: &notification_destinations::Model,
    secret: Option<&[u8]>,
    event: &notifications::Model,
    now: DateTime<Utc>,
) -> Attempt {
    let kind = DestinationKind::parse(&destination.kind).map_err(|e| (None, e))?;
    if kind == DestinationKind::Email {
        return send_email(policy, destination, event).await;
    }
    let body = match kind {
        DestinationKind::Email | DestinationKind::Slack => json!({"text": event.summary}),
        DestinationKind::Webhook => json!({
            "id": event.id, "type": event.kind, "created_at": event.created_at,
            "environment": event.environment, "summary": event.summary, "data": event.payload,
        }),
    };
    let body = serde_json::to_vec(&body).map_err(|e| (None, e.to_string()))?;
    let target = match (kind, secret) {
        (DestinationKind::Slack, Some(url)) => String::from_utf8_lossy(url).into_owned(),
        _ => destination.url.clone(),
    };
    let mut request = http
        .post(&target)
        .timeout(policy.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("Strata-Event", event.kind.as_str())
        .header("Strata-Delivery", event.id.to_string());
    if let (DestinationKind::Webhook, Some(secret)) = (kind, secret) {
        let signed =
            signature(secret, now.timestamp(), &body).map_err(|e| (None, e.to_string()))?;
        request = request.header("Strata-Signature", signed);
    }
    match request.body(body).send().await {
        Ok(r) if r.status().is_success() => Ok(r.status().as_u16()),
        Ok(r) => {
            let status = r.status().as_u16();
            let text: String = r
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect();
            Err((Some(status), format!("HTTP {status}: {text}")))
        }
        // The URL may carry a token (Slack's do): say what failed, not where.
        Err(e) => Err((
            None,
            if e.is_timeout() {
                "timed out".to_owned()
            } else if e.is_connect() {
                "could not connect".to_owned()
            } else {
                "the request failed".to_owned()
            },
        )),
    }
}

/// Sends an e-mail destination's message through the configured SMTP server.
async fn send_email(
    policy: &DeliveryPolicy,
    destination: &notification_destinations::Model,
    event: &notifications::Model,
) -> Attempt {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let Some((url, from)) = &policy.smtp else {
        return Err((
            None,
            "no SMTP server is configured (STRATA_SMTP_URL)".into(),
        ));
    };
    let from = from
        .parse()
        .map_err(|e| (None, format!("STRATA_SMTP_FROM is not an address: {e}")))?;
    let mut message = Message::builder().from(from).subject(format!(
        "[strata] {}",
        event.summary.chars().take(150).collect::<String>()
    ));
    for address in email_addresses(&destination.url) {
        let to = address
            .parse()
            .map_err(|e| (None, format!("'{address}' is not an address: {e}")))?;
        message = message.to(to);
    }
    let details = serde_json::to_string_pretty(&event.payload).unwrap_or_default();
    let message = message
        .body(format!(
            "{}\n\nEvent: {} ({})\n\n{details}\n",
            event.summary, event.kind, event.id
        ))
        .map_err(|e| (None, format!("cannot write the e-mail: {e}")))?;
    // The URL may carry the server's password: errors never quote it.
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
        .map_err(|e| {
            (
                None,
                format!("STRATA_SMTP_URL is not a usable SMTP URL: {e}"),
            )
        })?
        .timeout(Some(policy.timeout))
        .build();
    match transport.send(message).await {
        Ok(response) => Ok(response.code().into()),
        Err(e) => Err((e.status().map(u16::from), format!("SMTP: {e}"))),
    }
}

/// The addresses of a `mailto:a@example.com,b@example.com` destination.
fn email_addresses(url: &str) -> Vec<String> {
    url.strip_prefix("mailto:")
        .unwrap_or(url)
        .split('?')
        .next()
        .unwrap_or_default()
        .split(',')
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .collect()
}

impl Services {
    pub async fn create_destination(
        &self,
        actor: &Actor,
        kek: &KeyEncryptionKey,
        input: &NewDestination,
    ) -> Result<CreatedDestination, CoreError> {
        input.validate().map_err(CoreError::Validation)?;
        let now = self.clock.now();
        let id = Uuid::now_v7();
        let secret = match input.kind {
            DestinationKind::Webhook => {
                let mut bytes = [0u8; 24];
                getrandom::fill(&mut bytes)
                    .map_err(|e| CoreError::Internal(format!("no randomness: {e}")))?;
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                Some(format!("whsec_{hex}"))
            }
            DestinationKind::Slack | DestinationKind::Email => None,
        };
        // A Slack URL is itself the credential: kept sealed, stored shown as its host.
        let (stored_url, to_seal) = match input.kind {
            DestinationKind::Slack => (shown_url(input.kind, &input.url), Some(input.url.clone())),
            _ => (input.url.clone(), secret.clone()),
        };
        let sealed = to_seal
            .as_deref()
            .map(|s| kek.seal(&id.to_string(), s.as_bytes()))
            .transpose()
            .map_err(|e| CoreError::internal("sealing a destination's secret", e))?;
        let tx = self.store.begin_write().await?;
        let taken = notification_destinations::Entity::find()
            .filter(notification_destinations::Column::Name.eq(input.name.trim()))
            .one(&*tx)
            .await?;
        if taken.is_some() {
            return Err(CoreError::Conflict {
                code: "destination_name_taken",
                message: format!("a destination named '{}' exists", input.name.trim()),
            });
        }
        let row = notification_destinations::ActiveModel {
            id: Set(id),
            name: Set(input.name.trim().to_owned()),
            kind: Set(input.kind.as_str().into()),
            url: Set(stored_url),
            secret: Set(sealed),
            events: Set(json!(input.events)),
            environment: Set(input.environment.map(|e| e.as_str().to_owned())),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&*tx)
        .await?;
        let destination = destination_of(&row)?;
        let change = Change {
            action: "notification_destination.create",
            target_type: "notification_destination",
            target_id: id.to_string(),
            before: None,
            after: snapshot(&destination),
        };
        record(&*tx, actor, now, change).await?;
        tx.commit().await?;
        Ok(CreatedDestination {
            destination,
            signing_secret: secret,
        })
    }

    /// Every destination, with its last delivery's time and error.
    pub async fn list_destinations(&self) -> Result<Vec<Destination>, CoreError> {
        let db = self.store.db();
        let mut out = Vec::new();
        for row in notification_destinations::Entity::find()
            .order_by_asc(notification_destinations::Column::Name)
            .all(db)
            .await?
        {
            let mut destination = destination_of(&row)?;
            let last = notification_deliveries::Entity::find()
                .filter(notification_deliveries::Column::DestinationId.eq(row.id))
                .filter(notification_deliveries::Column::Attempts.gt(0))
                .order_by_desc(notification_deliveries::Column::UpdatedAt)
                .one(db)
                .await?;
            if let Some(last) = last {
                destination.last_delivery_at = Some(last.updated_at);
                destination.last_error = last.last_error;
            }
            out.push(destination);
        }
        Ok(out)
    }

    pub async fn delete_destination(&self, actor: &Actor, id: Uuid) -> Result<(), CoreError> {
        let tx = self.store.begin_write().await?;
        let row = notification_destinations::Entity::find_by_id(id)
            .one(&*tx)
            .await?
            .ok_or_else(|| CoreError::NotFound {
                kind: "notification_destination",
                id: id.to_string(),
            })?;
        let before = destination_of(&row)?;
        notification_destinations::Entity::delete_by_id(id)
            .exec(&*tx)
            .await?;
        let change = Change {
            action: "notification_destination.delete",
            target_type: "notification_destination",
            target_id: id.to_string(),
            before: snapshot(&before),
            after: None,
        };
        record(&*tx, actor, self.clock.now(), change).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A destination's deliveries, newest first.
    pub async fn deliveries(&self, id: Uuid, limit: u64) -> Result<Vec<Delivery>, CoreError> {
        self.delivery_log(id, None, limit).await
    }

    /// A destination's deliveries, newest first; with `only`, just that notification's.
    async fn delivery_log(
        &self,
        id: Uuid,
        only: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<Delivery>, CoreError> {
        let db = self.store.db();
        notification_destinations::Entity::find_by_id(id)
            .one(db)
            .await?
            .ok_or_else(|| CoreError::NotFound {
                kind: "notification_destination",
                id: id.to_string(),
            })?;
        let mut select = notification_deliveries::Entity::find()
            .filter(notification_deliveries::Column::DestinationId.eq(id));
        if let Some(notification) = only {
            select =
                select.filter(notification_deliveries::Column::NotificationId.eq(notification));
        }
        let rows = select
            .order_by_desc(notification_deliveries::Column::NotificationId)
            .limit(limit.clamp(1, 200))
            .all(db)
            .await?;
        // The events of the page in one query, not one per delivery.
        let mut events: std::collections::HashMap<Uuid, notifications::Model> =
            notifications::Entity::find()
                .filter(notifications::Column::Id.is_in(rows.iter().map(|d| d.notification_id)))
                .all(db)
                .await?
                .into_iter()
                .map(|e| (e.id, e))
                .collect();
        let mut out = Vec::with_capacity(rows.len());
        for d in rows {
            let Some(event) = events.remove(&d.notification_id) else {
                continue;
            };
            out.push(Delivery {
                notification_id: d.notification_id,
                kind: event.kind,
                summary: event.summary,
                next_attempt_at: (d.status == "pending").then_some(d.next_attempt_at),
                status: d.status,
                attempts: d.attempts,
                last_status: d.last_status,
                last_error: d.last_error,
                delivered_at: d.delivered_at,
                created_at: event.created_at,
            });
        }
        Ok(out)
    }

    /// Sends a test notification to one destination now, and records it in its log.
    pub async fn test_destination(
        &self,
        kek: &KeyEncryptionKey,
        http: &reqwest::Client,
        policy: &DeliveryPolicy,
        id: Uuid,
    ) -> Result<Delivery, CoreError> {
        let now = self.clock.now();
        let destination = notification_destinations::Entity::find_by_id(id)
            .one(self.store.db())
            .await?
            .ok_or_else(|| CoreError::NotFound {
                kind: "notification_destination",
                id: id.to_string(),
            })?;
        let event = Event {
            kind: "test",
            dedupe_key: format!("test:{}", Uuid::now_v7()),
            environment: destination.environment.clone(),
            summary: format!("strata test notification for '{}'", destination.name),
            payload: json!({"destination": destination.name}),
        };
        let key = event.dedupe_key.clone();
        record_notification(self.store.db(), event, now).await?;
        let event = notifications::Entity::find()
            .filter(notifications::Column::DedupeKey.eq(key))
            .one(self.store.db())
            .await?
            .ok_or_else(|| CoreError::Internal("the test notification vanished".into()))?;
        // Only this destination gets it.
        notifications::Entity::update_many()
            .col_expr(notifications::Column::FannedOut, Expr::value(true))
            .filter(notifications::Column::Id.eq(event.id))
            .exec(self.store.db())
            .await?;
        self.insert_delivery(event.id, id, now).await?;
        self.attempt(kek, http, policy, &destination, &event)
            .await?;
        self.delivery_log(id, Some(event.id), 1)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| CoreError::Internal("the test delivery vanished".into()))
    }

    async fn insert_delivery(
        &self,
        notification: Uuid,
        destination: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(), CoreError> {
        notification_deliveries::Entity::insert(notification_deliveries::ActiveModel {
            notification_id: Set(notification),
            destination_id: Set(destination),
            status: Set("pending".into()),
            attempts: Set(0),
            next_attempt_at: Set(now),
            lease_until: Set(None),
            last_status: Set(None),
            last_error: Set(None),
            delivered_at: Set(None),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::columns([
                notification_deliveries::Column::NotificationId,
                notification_deliveries::Column::DestinationId,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(self.store.db())
        .await?;
        Ok(())
    }

    /// One delivery pass: new events fanned out to the destinations that want them,
    /// then every due delivery this replica can lease, sent.
    pub async fn deliver_notifications(
        &self,
        kek: &KeyEncryptionKey,
        http: &reqwest::Client,
        policy: &DeliveryPolicy,
    ) -> Result<PassReport, CoreError> {
        let db = self.store.db();
        let mut report = PassReport::default();
        let now = self.clock.now();
        let destinations = notification_destinations::Entity::find().all(db).await?;
        let fresh = notifications::Entity::find()
            .filter(notifications::Column::FannedOut.eq(false))
            .order_by_asc(notifications::Column::Id)
            .limit(100)
            .all(db)
            .await?;
        for event in fresh {
            for destination in destinations.iter().filter(|d| wants(d, &event)) {
                self.insert_delivery(event.id, destination.id, now).await?;
            }
            notifications::Entity::update_many()
                .col_expr(notifications::Column::FannedOut, Expr::value(true))
                .filter(notifications::Column::Id.eq(event.id))
                .exec(db)
                .await?;
            report.fanned_out += 1;
        }
        let due = notification_deliveries::Entity::find()
            .filter(notification_deliveries::Column::Status.eq("pending"))
            .filter(notification_deliveries::Column::NextAttemptAt.lte(now))
            .order_by_asc(notification_deliveries::Column::NextAttemptAt)
            .limit(50)
            .all(db)
            .await?;
        let lease_until = now + Duration::from_std(policy.lease).unwrap_or(Duration::minutes(1));
        for delivery in due {
            // Leased by exactly one replica: the update matches only while it is free.
            let claimed = notification_deliveries::Entity::update_many()
                .col_expr(
                    notification_deliveries::Column::LeaseUntil,
                    Expr::value(lease_until),
                )
                .filter(
                    notification_deliveries::Column::NotificationId.eq(delivery.notification_id),
                )
                .filter(notification_deliveries::Column::DestinationId.eq(delivery.destination_id))
                .filter(notification_deliveries::Column::Status.eq("pending"))
                .filter(notification_deliveries::Column::Attempts.eq(delivery.attempts))
                .filter(
                    sea_orm::Condition::any()
                        .add(notification_deliveries::Column::LeaseUntil.is_null())
                        .add(notification_deliveries::Column::LeaseUntil.lt(now)),
                )
                .exec(db)
                .await?
                .rows_affected
                == 1;
            if !claimed {
                continue;
            }
            let destination = destinations
                .iter()
                .find(|d| d.id == delivery.destination_id);
            let event = notifications::Entity::find_by_id(delivery.notification_id)
                .one(db)
                .await?;
            let (Some(destination), Some(event)) = (destination, event) else {
                continue;
            };
            match self.attempt(kek, http, policy, destination, &event).await? {
                Outcome::Delivered => report.delivered += 1,
                Outcome::Retrying => report.retrying += 1,
                Outcome::Failed => report.failed += 1,
            }
        }
        Ok(report)
    }

    /// Records what is watched for (each once, by its key): budgets' thresholds, keys
    /// about to expire, reconciles failing for too long, months forecast to exceed a
    /// budget. Heavier than a delivery pass, so `serve` runs it once a minute.
    pub async fn watch_for_events(&self, policy: &DeliveryPolicy) -> Result<(), CoreError> {
        let now = self.clock.now();
        self.announce_budget_thresholds(now).await?;
        let db = self.store.db();
        let live: std::collections::HashMap<Uuid, (String, String, Option<i64>)> =
            projects::Entity::find()
                .filter(projects::Column::Status.eq("active"))
                .all(db)
                .await?
                .into_iter()
                .map(|p| (p.id, (p.name, p.environment, p.monthly_budget_cents)))
                .collect();
        let label = |id: &Uuid| {
            live.get(id)
                .map(|(n, e, _)| (n.clone(), e.clone()))
                .unwrap_or_default()
        };
        let soon = now + Duration::days(policy.key_expiry_days);
        for key in api_keys::Entity::find()
            .filter(api_keys::Column::RevokedAt.is_null())
            .filter(api_keys::Column::ExpiresAt.gt(now))
            .filter(api_keys::Column::ExpiresAt.lte(soon))
            .all(db)
            .await?
        {
            if !live.contains_key(&key.project_id) {
                continue;
            }
            let (name, environment) = label(&key.project_id);
            let event = Event {
                kind: "key.expiring",
                dedupe_key: format!("key.expiring:{}", key.id),
                environment: Some(environment.clone()),
                summary: format!(
                    "Key '{}' of {name} ({environment}), owned by {}, expires {}",
                    key.name,
                    key.owner,
                    key.expires_at.format("%Y-%m-%d %H:%M UTC")
                ),
                payload: json!({"key_id": key.id, "key_name": key.name, "owner": key.owner,
                    "project_id": key.project_id, "project_name": name,
                    "environment": environment, "expires_at": key.expires_at}),
            };
            record_notification(db, event, now).await?;
        }
        let failing_since = now - Duration::minutes(policy.reconcile_failing_minutes);
        for sync in project_sync::Entity::find().all(db).await? {
            if !live.contains_key(&sync.project_id) {
                continue;
            }
            let conditions: Vec<Condition> =
                serde_json::from_value(sync.conditions.clone()).unwrap_or_default();
            let Some(ready) = conditions.iter().find(|c| c.kind == ConditionType::Ready) else {
                continue;
            };
            if ready.status != ConditionStatus::False || ready.last_transition_time > failing_since
            {
                continue;
            }
            let (name, environment) = label(&sync.project_id);
            let event = Event {
                kind: "reconcile.failing",
                dedupe_key: format!(
                    "reconcile.failing:{}:{}",
                    sync.project_id,
                    ready.last_transition_time.timestamp()
                ),
                environment: Some(environment.clone()),
                summary: format!(
                    "{name} ({environment}) has not been in sync with AWS since {}: {} — {}",
                    ready.last_transition_time.format("%Y-%m-%d %H:%M UTC"),
                    ready.reason,
                    ready.message
                ),
                payload: json!({"project_id": sync.project_id, "project_name": name,
                    "environment": environment, "since": ready.last_transition_time,
                    "reason": ready.reason, "message": ready.message}),
            };
            record_notification(db, event, now).await?;
        }
        // A month's spend so far, projected linearly to its end (after its first day).
        let month = month_start(now.date_naive());
        let elapsed = (now - month.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()).num_seconds()
            as f64
            / 86_400.0;
        if elapsed >= 1.0 {
            let days = (next_month_start(month) - month).num_days() as f64;
            let budgeted: Vec<Uuid> = live
                .iter()
                .filter(|(_, (_, _, b))| b.is_some_and(|c| c > 0))
                .map(|(id, _)| *id)
                .collect();
            let spends = super::budgets::month_spends(db, &budgeted, month).await?;
            for id in budgeted {
                let (name, environment, cents) = live.get(&id).cloned().unwrap_or_default();
                let budget = cents.unwrap_or(0).saturating_mul(10_000);
                let spent = spends.get(&id).copied().unwrap_or(0);
                let forecast = (spent as f64 * days / elapsed) as i64;
                if spent >= budget || forecast <= budget {
                    continue;
                }
                let event = Event {
                    kind: "budget.forecast",
                    dedupe_key: format!("budget.forecast:{id}:{month}"),
                    environment: Some(environment.clone()),
                    summary: format!(
                        "{name} ({environment}) is on course to exceed its monthly budget: ${:.2} spent, ${:.2} forecast, ${:.2} budget for {}",
                        micros_to_usd(spent),
                        micros_to_usd(forecast),
                        micros_to_usd(budget),
                        month.format("%B %Y")
                    ),
                    payload: json!({"project_id": id, "project_name": name, "environment": environment,
                        "month": month, "spent_usd": micros_to_usd(spent),
                        "forecast_usd": micros_to_usd(forecast), "budget_usd": micros_to_usd(budget)}),
                };
                record_notification(db, event, now).await?;
            }
        }
        Ok(())
    }

    /// Sends one leased delivery and records how it went.
    async fn attempt(
        &self,
        kek: &KeyEncryptionKey,
        http: &reqwest::Client,
        policy: &DeliveryPolicy,
        destination: &notification_destinations::Model,
        event: &notifications::Model,
    ) -> Result<Outcome, CoreError> {
        let secret = destination
            .secret
            .as_deref()
            .map(|sealed| kek.open(&destination.id.to_string(), sealed))
            .transpose()?;
        let now = self.clock.now();
        let outcome = send(http, policy, destination, secret.as_deref(), event, now).await;
        let key = (event.id, destination.id);
        let current = notification_deliveries::Entity::find_by_id(key)
            .one(self.store.db())
            .await?
            .ok_or_else(|| CoreError::Internal("a leased delivery vanished".into()))?;
        let attempts = current.attempts + 1;
        let mut row: notification_deliveries::ActiveModel = current.into();
        row.attempts = Set(attempts);
        row.lease_until = Set(None);
        row.updated_at = Set(now);
        let result = match outcome {
            Ok(status) => {
                row.status = Set("delivered".into());
                row.last_status = Set(Some(i32::from(status)));
                row.last_error = Set(None);
                row.delivered_at = Set(Some(now));
                Outcome::Delivered
            }
            Err((status, error)) => {
                tracing::warn!(
                    notification.destination = %destination.name,
                    notification.kind = %event.kind,
                    notification.attempts = attempts,
                    error.cause = %error,
                    "a notification was not accepted"
                );
                row.last_status = Set(status.map(i32::from));
                row.last_error = Set(Some(error));
                if attempts >= policy.max_attempts {
                    row.status = Set("failed".into());
                    Outcome::Failed
                } else {
                    row.next_attempt_at = Set(now + backoff(policy, attempts));
                    Outcome::Retrying
                }
            }
        };
        row.update(self.store.db()).await?;
        Ok(result)
    }
}

enum Outcome {
    Delivered,
    Retrying,
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let policy = DeliveryPolicy::default();
        let waits: Vec<i64> = [1, 2, 3, 8, 30]
            .iter()
            .map(|a| backoff(&policy, *a).num_seconds())
            .collect();
        assert_eq!(waits, [30, 60, 120, 3_600, 3_600]);
    }

    #[test]
    fn signatures_are_hmac_sha256_of_timestamp_and_body() {
        let sig = signature(b"Jefe", 0, b"for nothing?").unwrap();
        assert!(sig.starts_with("t=0,v1="));
        let again = signature(b"Jefe", 0, b"for nothing?").unwrap();
        assert_eq!(sig, again);
        assert_ne!(sig, signature(b"Jefe", 1, b"for nothing?").unwrap());
    }
}
