//! Notifications delivered to a real local HTTP receiver: signed webhooks and Slack's
//! format, budget thresholds sent once per destination (also with two replicas
//! delivering at once), refusals retried with backoff and logged with their error.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use strata_core::services::{DeliveryPolicy, Services, signature};
use strata_testkit::{TestApp, project_body};

/// What the receiver got: headers and body per request; and the statuses it answers
/// with, in order (then 200).
#[derive(Default)]
struct Inbox {
    got: Vec<(HeaderMap, Bytes)>,
    answers: Vec<u16>,
}

struct Receiver {
    url: String,
    inbox: Arc<Mutex<Inbox>>,
}

impl Receiver {
    async fn start() -> Self {
        let inbox: Arc<Mutex<Inbox>> = Arc::default();
        let shared = inbox.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let inbox = shared.clone();
                async move {
                    let mut inbox = inbox.lock().unwrap();
                    inbox.got.push((headers, body));
                    let status = if inbox.answers.is_empty() {
                        200
                    } else {
                        inbox.answers.remove(0)
                    };
                    (StatusCode::from_u16(status).unwrap(), "receiver says so")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, inbox }
    }

    fn bodies(&self) -> Vec<Value> {
        let inbox = self.inbox.lock().unwrap();
        inbox
            .got
            .iter()
            .map(|(_, b)| serde_json::from_slice(b).unwrap())
            .collect()
    }

    fn answer_with(&self, statuses: &[u16]) {
        self.inbox.lock().unwrap().answers = statuses.to_vec();
    }
}

/// A clock pinned to one instant.
struct At(chrono::DateTime<chrono::Utc>);

impl strata_core::clock::Clock for At {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.0
    }
}

fn quick() -> DeliveryPolicy {
    DeliveryPolicy {
        retry_base: Duration::ZERO,
        ..DeliveryPolicy::default()
    }
}

/// What `serve` does: watch for events, then deliver.
async fn pass(app: &TestApp, policy: &DeliveryPolicy) -> strata_core::services::PassReport {
    app.state.services.watch_for_events(policy).await.unwrap();
    app.state
        .services
        .deliver_notifications(&app.state.kek, &app.state.notify_http, policy)
        .await
        .unwrap()
}

/// `usd` of metered gpt-oss-120b input for `project` at `minute` (RFC 3339), through a
/// new key of its own, as the proxy reports it; returns the key's id.
async fn meter(app: &TestApp, project: &str, usd: f64, minute: &str) -> String {
    let key = app
        .post(
            &format!("/api/v1/projects/{project}/keys"),
            &app.admin,
            &json!({"name": format!("meter-{}", uuid::Uuid::now_v7())}),
        )
        .await;
    let kid = key.body["id"].as_str().unwrap().to_owned();
    let price = app
        .get("/api/v1/models/openai.gpt-oss-120b", &app.admin)
        .await
        .body["input_price_per_mtok_usd"]
        .as_f64()
        .unwrap();
    let batch = json!({"batch_id": uuid::Uuid::now_v7(), "records": [
        {"project_id": project, "key_id": kid, "model": "openai.gpt-oss-120b", "minute": minute,
         "requests": 1, "errors": 0, "input_tokens": (usd / price * 1e6).round() as u64,
         "output_tokens": 0, "cached_tokens": 0, "latency_ms_sum": 1}]});
    let proxy = app.state.proxy_token.expose().to_owned();
    assert_eq!(
        app.post("/internal/v1/proxy/usage", &proxy, &batch)
            .await
            .status,
        200
    );
    kid
}

fn this_minute() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:00Z").to_string()
}

/// A project with a $1 budget and usage that crosses all three thresholds.
async fn overspend(app: &TestApp, name: &str) -> String {
    let mut body = project_body(name);
    body["monthly_budget_usd"] = json!(1.0);
    let project = app.create_project(&body).await;
    let id = project["id"].as_str().unwrap().to_owned();
    meter(app, &id, 3.0, &this_minute()).await;
    id
}

#[tokio::test]
async fn a_signed_webhook_gets_each_budget_threshold_once_and_a_test_send() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let created = app
        .post(
            "/api/v1/notification-destinations",
            &app.admin,
            &json!({"name": "finance", "kind": "webhook", "url": receiver.url,
                    "events": ["budget.threshold", "test"], "environment": "prod"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let secret = created.body["signing_secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let id = created.body["id"].as_str().unwrap().to_owned();
    let listed = app
        .get("/api/v1/notification-destinations", &app.admin)
        .await;
    assert!(
        !listed.body.to_string().contains(&secret),
        "the secret is shown once"
    );
    let shown = listed.body["items"][0]["url"].as_str().unwrap();
    assert!(
        shown.ends_with("/…") && !shown.contains("/hook"),
        "only scheme and host: {shown}"
    );

    // The test send: delivered, signed with the secret, in the log.
    let test = app
        .post(
            &format!("/api/v1/notification-destinations/{id}/test"),
            &app.admin,
            &json!({}),
        )
        .await;
    assert_eq!(
        (test.status, test.body["status"].as_str()),
        (reqwest::StatusCode::OK, Some("delivered")),
        "{}",
        test.body
    );
    let (headers, body) = receiver.inbox.lock().unwrap().got[0].clone();
    let sig = headers["strata-signature"].to_str().unwrap().to_owned();
    let t: i64 = sig
        .split(',')
        .next()
        .unwrap()
        .trim_start_matches("t=")
        .parse()
        .unwrap();
    assert_eq!(
        sig,
        signature(secret.as_bytes(), t, &body).unwrap(),
        "HMAC over t.body"
    );
    assert_eq!(headers["strata-event"], "test");

    // A project crosses 50, 80 and 100 %: three events, each delivered once.
    let project = overspend(&app, "spender").await;
    let report = pass(&app, &quick()).await;
    assert_eq!(report.delivered, 3, "{report:?}");
    assert_eq!(pass(&app, &quick()).await.delivered, 0, "nothing twice");
    let bodies = receiver.bodies();
    let thresholds: Vec<i64> = bodies[1..]
        .iter()
        .map(|b| b["data"]["threshold_percent"].as_i64().unwrap())
        .collect();
    assert_eq!(thresholds, [50, 80, 100]);
    assert_eq!(bodies[1]["type"], "budget.threshold");
    assert_eq!(bodies[1]["data"]["project_id"], project.as_str());
    assert!(
        bodies[3]["summary"]
            .as_str()
            .unwrap()
            .starts_with("spender (prod) has used 100 % of its monthly budget")
    );
    let log = app
        .get(
            &format!("/api/v1/notification-destinations/{id}/deliveries"),
            &app.admin,
        )
        .await;
    let statuses: Vec<&str> = log.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["delivered"; 4]);

    // Finance reads destinations but may not add one; a bad URL is a 422 naming it.
    let finance = app.token("fin@example.com", &["finance"]);
    assert_eq!(
        app.get("/api/v1/notification-destinations", &finance)
            .await
            .status,
        200
    );
    let refused = app
        .post(
            "/api/v1/notification-destinations",
            &finance,
            &json!({"name": "x", "kind": "slack", "url": "https://x"}),
        )
        .await;
    assert_eq!(refused.status, 403);
    let bad = app
        .post(
            "/api/v1/notification-destinations",
            &app.admin,
            &json!({"name": "y", "kind": "slack", "url": "ftp://x", "events": ["nope"]}),
        )
        .await;
    assert_eq!(bad.status, 422);
    let fields: Vec<&str> = bad.body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["url", "events[0]"]);
}

#[tokio::test]
async fn refusals_are_retried_and_logged_and_slack_gets_its_format() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let created = app
        .post(
            "/api/v1/notification-destinations",
            &app.admin,
            &json!({"name": "slack", "kind": "slack", "url": receiver.url}),
        )
        .await;
    assert_eq!(created.status, 201);
    assert!(created.body["signing_secret"].is_null());
    // Slack's URL is its credential: not stored in the clear.
    let stored = {
        use sea_orm::EntityTrait;
        strata_core::store::entities::notification_destinations::Entity::find()
            .all(app.state.services.store.db())
            .await
            .unwrap()
    };
    assert!(!stored[0].url.contains("/hook"), "{}", stored[0].url);
    assert!(
        !stored[0]
            .secret
            .clone()
            .unwrap_or_default()
            .contains("/hook")
    );
    let id = created.body["id"].as_str().unwrap().to_owned();
    receiver.answer_with(&[500, 500, 500]);
    overspend(&app, "retried").await;
    // With a long backoff, a refused delivery waits: the next pass sends nothing.
    let slow = DeliveryPolicy::default();
    let first = pass(&app, &slow).await;
    assert_eq!((first.delivered, first.retrying), (0, 3), "{first:?}");
    assert_eq!(pass(&app, &slow).await.retrying, 0, "backing off");
    let log = app
        .get(
            &format!("/api/v1/notification-destinations/{id}/deliveries"),
            &app.admin,
        )
        .await;
    let d = &log.body["items"][0];
    assert_eq!(
        (
            d["status"].as_str(),
            d["attempts"].as_i64(),
            d["last_status"].as_i64()
        ),
        (Some("pending"), Some(1), Some(500))
    );
    assert_eq!(d["last_error"], "HTTP 500: receiver says so");
    let listed = app
        .get("/api/v1/notification-destinations", &app.admin)
        .await;
    assert_eq!(
        listed.body["items"][0]["last_error"],
        "HTTP 500: receiver says so"
    );
    // Retried when due (a replica two minutes later): delivered.
    let later = Services::new(
        app.state.services.store.clone(),
        Arc::new(At(chrono::Utc::now() + chrono::Duration::minutes(2))),
    );
    let retried = later
        .deliver_notifications(&app.state.kek, &app.state.notify_http, &slow)
        .await
        .unwrap();
    assert_eq!(retried.delivered, 3, "{retried:?}");
    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), 6);
    assert!(
        bodies[5]["text"]
            .as_str()
            .unwrap()
            .contains("retried (prod) has used"),
        "{}",
        bodies[5]
    );
    assert_eq!(
        bodies[5].as_object().unwrap().len(),
        1,
        "Slack's format: text only"
    );

    // Attempts run out: failed, and not tried again.
    receiver.answer_with(&[503; 20]);
    let test = app
        .post(
            &format!("/api/v1/notification-destinations/{id}/test"),
            &app.admin,
            &json!({}),
        )
        .await;
    assert_eq!(test.body["status"], "pending");
    let tight = DeliveryPolicy {
        retry_base: Duration::ZERO,
        max_attempts: 3,
        ..DeliveryPolicy::default()
    };
    let later_pass = || later.deliver_notifications(&app.state.kek, &app.state.notify_http, &tight);
    assert_eq!(later_pass().await.unwrap().retrying, 1, "attempt 2 of 3");
    assert_eq!(
        later_pass().await.unwrap().failed,
        1,
        "attempt 3 of 3: given up"
    );
    assert_eq!(
        later_pass().await.unwrap(),
        strata_core::services::PassReport::default()
    );
    let log = app
        .get(
            &format!("/api/v1/notification-destinations/{id}/deliveries"),
            &app.admin,
        )
        .await;
    assert_eq!(
        (
            log.body["items"][0]["status"].as_str(),
            log.body["items"][0]["attempts"].as_i64()
        ),
        (Some("failed"), Some(3))
    );
}

#[tokio::test]
async fn two_replicas_delivering_at_once_send_each_notification_once() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    for name in ["a", "b"] {
        let r = app
            .post(
                "/api/v1/notification-destinations",
                &app.admin,
                &json!({"name": name, "kind": "webhook", "url": receiver.url}),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    overspend(&app, "raced").await;
    // A second replica: its own services on the same database.
    let other = Services::new(
        app.state.services.store.clone(),
        app.state.services.clock.clone(),
    );
    let policy = quick();
    let (a, b) = tokio::join!(
        app.state
            .services
            .deliver_notifications(&app.state.kek, &app.state.notify_http, &policy),
        other.deliver_notifications(&app.state.kek, &app.state.notify_http, &policy),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.delivered + b.delivered, 6, "{a:?} {b:?}");
    assert_eq!(
        receiver.bodies().len(),
        6,
        "3 thresholds × 2 destinations, once each"
    );
}

/// What the delivery pass watches for, each announced once: a key about to expire, a
/// reconcile failing for too long, a month on course to exceed its budget.
#[tokio::test]
async fn expiring_keys_failing_reconciles_and_budget_forecasts_are_announced_once() {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    use strata_core::store::entities::project_sync;
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let r = app
        .post(
            "/api/v1/notification-destinations",
            &app.admin,
            &json!({"name": "ops", "kind": "webhook", "url": receiver.url,
                    "events": ["key.expiring", "reconcile.failing", "budget.forecast"]}),
        )
        .await;
    assert_eq!(r.status, 201);
    // A key that expires in two days; another in sixty (not yet).
    let mut body = project_body("watched");
    body["monthly_budget_usd"] = json!(100.0);
    let project = app.create_project(&body).await;
    let id = project["id"].as_str().unwrap().to_owned();
    for (name, secs) in [("soon", 2 * 86_400), ("later", 60 * 86_400)] {
        let k = app
            .post(
                &format!("/api/v1/projects/{id}/keys"),
                &app.admin,
                &json!({"name": name, "expires_in": secs}),
            )
            .await;
        assert_eq!(k.status, 201);
    }
    // The reconcile has failed for an hour.
    let hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    let conditions = json!([{"type": "Ready", "status": "False", "reason": "AccessDenied",
        "message": "iam:CreateRole was refused", "last_transition_time": hour_ago, "observed_generation": 1}]);
    project_sync::Entity::update_many()
        .col_expr(project_sync::Column::Conditions, Expr::value(conditions))
        .filter(project_sync::Column::ProjectId.eq(uuid::Uuid::parse_str(&id).unwrap()))
        .exec(app.state.services.store.db())
        .await
        .unwrap();
    // $40 spent in the first 9 days of a 30-day month: $133.33 forecast against $100.
    meter(&app, &id, 40.0, "2026-11-05T10:00:00Z").await;
    // The team's month is on course past $120 too; its week (from Monday the 9th) has
    // no spend yet.
    for (name, period, amount) in [
        ("team-monthly", "month", 120.0),
        ("team-weekly", "week", 50.0),
    ] {
        let r = app
            .post(
                "/api/v1/budgets",
                &app.admin,
                &json!({"name": name, "scope": "team", "target": "payments", "period": period, "amount_usd": amount}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }

    let tenth = Services::new(
        app.state.services.store.clone(),
        Arc::new(At("2026-11-10T00:00:00Z".parse().unwrap())),
    );
    let policy = quick();
    // On the 10th for the forecast; now for the key and the reconcile (they date from now).
    tenth.watch_for_events(&policy).await.unwrap();
    tenth
        .deliver_notifications(&app.state.kek, &app.state.notify_http, &policy)
        .await
        .unwrap();
    pass(&app, &policy).await;
    pass(&app, &policy).await;
    let kinds: Vec<(String, String)> = receiver
        .bodies()
        .iter()
        .map(|b| {
            (
                b["type"].as_str().unwrap().to_owned(),
                b["summary"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let of = |kind: &str| {
        kinds
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, s)| s.clone())
            .collect::<Vec<_>>()
    };
    let mut forecasts = of("budget.forecast");
    forecasts.sort();
    assert_eq!(forecasts.len(), 2, "{kinds:?}");
    assert!(
        forecasts[0].starts_with("Budget 'team-monthly' (team payments, per month) is on course to be exceeded: $40.00 spent, $133.33 forecast, $120.00 budget for the month from 2026-11-01"),
        "{forecasts:?}"
    );
    assert!(
        forecasts[1].contains("$40.00 spent, $133.33 forecast, $100.00 budget for November 2026"),
        "{forecasts:?}"
    );
    let expiring = of("key.expiring");
    assert_eq!(expiring.len(), 1, "only the key within 7 days: {kinds:?}");
    assert!(
        expiring[0].starts_with("Key 'soon' of watched (prod)"),
        "{expiring:?}"
    );
    let failing = of("reconcile.failing");
    assert_eq!(failing.len(), 1, "{kinds:?}");
    assert!(
        failing[0].contains("AccessDenied — iam:CreateRole was refused"),
        "{failing:?}"
    );
    assert_eq!(kinds.len(), 4, "nothing else, nothing twice: {kinds:?}");
}

/// aiosmtpd (a real SMTP server, from the test venv) writing what it receives to a
/// maildir; killed on drop.
struct SmtpServer {
    url: String,
    maildir: tempfile::TempDir,
    child: std::process::Child,
}

impl SmtpServer {
    async fn start() -> Self {
        let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run scripts/test (it makes the venv with aiosmtpd)",
            python.display()
        );
        let maildir = tempfile::tempdir().unwrap();
        let port = strata_testkit::free_port();
        let child = std::process::Command::new(python)
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(maildir.path().join("mail"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            url: format!("smtp://127.0.0.1:{port}"),
            maildir,
            child,
        }
    }

    fn messages(&self) -> Vec<String> {
        let new = self.maildir.path().join("mail/new");
        let mut out: Vec<String> = std::fs::read_dir(new)
            .map(|d| {
                d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn e_mail_goes_out_through_a_real_smtp_server() {
    let smtp = SmtpServer::start().await;
    let app = TestApp::spawn().await;
    let created = app
        .post(
            "/api/v1/notification-destinations",
            &app.admin,
            &json!({"name": "mail", "kind": "email", "url": "mailto:finance@example.com, cfo@example.com",
                    "events": ["budget.threshold"]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let bad = app
        .post(
            "/api/v1/notification-destinations",
            &app.admin,
            &json!({"name": "nope", "kind": "email", "url": "mailto:not an address"}),
        )
        .await;
    assert_eq!(bad.status, 422);
    overspend(&app, "mailed").await;
    let policy = DeliveryPolicy {
        smtp: Some((
            strata_core::config::Secret::new(smtp.url.clone()),
            "strata <strata@example.com>".into(),
        )),
        ..quick()
    };
    let report = pass(&app, &policy).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let log = app
        .get(
            &format!("/api/v1/notification-destinations/{id}/deliveries"),
            &app.admin,
        )
        .await;
    assert_eq!(report.delivered, 3, "{report:?} {}", log.body);
    let mail = smtp.messages();
    assert_eq!(mail.len(), 3, "one message per threshold");
    let first = mail.iter().find(|m| m.contains("has used 50 %")).unwrap();
    assert!(
        first.contains("From: strata <strata@example.com>"),
        "{first}"
    );
    assert!(
        first.contains("To: finance@example.com, cfo@example.com"),
        "{first}"
    );
    assert!(
        first.contains("Subject: [strata] mailed (prod) has used 50 %"),
        "{first}"
    );
    assert!(first.contains("\"threshold_percent\": 50"), "{first}");

    // Without a server configured, the delivery says so and waits.
    overspend(&app, "unmailed").await;
    let report = pass(&app, &quick()).await;
    assert_eq!(report.retrying, 3, "{report:?}");
    let log = app
        .get(
            &format!("/api/v1/notification-destinations/{id}/deliveries"),
            &app.admin,
        )
        .await;
    assert_eq!(
        log.body["items"][0]["last_error"],
        "no SMTP server is configured (STRATA_SMTP_URL)"
    );
}

/// Budgets on a team, an environment, a cost tag and a key, per period: each shows its
/// period's spend, and its thresholds reach the destinations once.
#[tokio::test]
async fn budgets_at_every_level_show_their_spend_and_announce_thresholds() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let r = app
        .post(
            "/api/v1/notification-destinations",
            &app.admin,
            &json!({"name": "budgets", "kind": "webhook", "url": receiver.url, "events": ["budget.threshold"]}),
        )
        .await;
    assert_eq!(r.status, 201);
    // $3 of metered spend today on a payments project with CostCenter cc-1234 (the
    // project's own monthly budget is large: only the new budgets cross anything).
    let mut body = project_body("levels");
    body["monthly_budget_usd"] = json!(1000.0);
    let project = app.create_project(&body).await;
    let id = project["id"].as_str().unwrap().to_owned();
    let kid = meter(&app, &id, 3.0, &this_minute()).await;

    for (name, scope, target, period, amount) in [
        ("team-weekly", "team", "payments", "week", 4.0),
        ("prod-daily", "environment", "prod", "day", 5.0),
        ("cc-monthly", "tag", "CostCenter=cc-1234", "month", 3.0),
        ("key-daily", "key", kid.as_str(), "day", 100.0),
        ("other-team", "team", "search", "month", 1.0),
    ] {
        let r = app
            .post(
                "/api/v1/budgets",
                &app.admin,
                &json!({"name": name, "scope": scope, "target": target, "period": period, "amount_usd": amount}),
            )
            .await;
        assert_eq!(r.status, 201, "{name}: {}", r.body);
    }
    let list = app.get("/api/v1/budgets", &app.admin).await;
    let by_name = |n: &str| {
        list.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == n)
            .unwrap()
            .clone()
    };
    let spent = |n: &str| by_name(n)["spent_usd"].as_f64().unwrap();
    for n in ["team-weekly", "prod-daily", "cc-monthly", "key-daily"] {
        assert!((spent(n) - 3.0).abs() < 0.01, "{n}: {}", by_name(n));
    }
    assert_eq!(spent("other-team"), 0.0);
    assert!((by_name("team-weekly")["percent_used"].as_f64().unwrap() - 75.0).abs() < 0.5);

    pass(&app, &quick()).await;
    pass(&app, &quick()).await;
    let mut got: Vec<(String, i64)> = receiver
        .bodies()
        .iter()
        .map(|b| {
            (
                b["data"]["budget_name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                b["data"]["threshold_percent"].as_i64().unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("cc-monthly".to_owned(), 50),
            ("cc-monthly".to_owned(), 80),
            ("cc-monthly".to_owned(), 100),
            ("prod-daily".to_owned(), 50),
            ("team-weekly".to_owned(), 50),
        ],
        "each once; the key's and the other team's not reached"
    );

    // Bad budgets are 422s naming the field.
    for (body, field) in [
        (
            json!({"name": "x", "scope": "key", "target": "nope", "period": "day", "amount_usd": 1}),
            "target",
        ),
        (
            json!({"name": "x", "scope": "team", "target": "payments", "period": "day", "amount_usd": 0}),
            "amount_usd",
        ),
        (
            json!({"name": "x", "scope": "team", "target": "payments", "period": "day", "amount_usd": 0.004}),
            "amount_usd",
        ),
        (
            json!({"name": "x", "scope": "project", "target": uuid::Uuid::nil(), "period": "day", "amount_usd": 1}),
            "target",
        ),
    ] {
        let r = app.post("/api/v1/budgets", &app.admin, &body).await;
        assert_eq!(r.status.as_u16(), 422, "{body}: {}", r.body);
        assert_eq!(r.body["error"]["details"][0]["field"], field, "{}", r.body);
    }
    let strict = json!({"name": "x", "scope": "team", "target": "payments", "period": "day",
        "amount_usd": 1, "enforcement": "strict"});
    let r = app.post("/api/v1/budgets", &app.admin, &strict).await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("enforcement: unknown variant `strict`")),
        "{}",
        r.body
    );
    let finance = app.token("fin@example.com", &["finance"]);
    assert_eq!(app.get("/api/v1/budgets", &finance).await.status, 200);
    let cc = by_name("cc-monthly")["id"].as_str().unwrap().to_owned();
    // A change keeps the scope and its spend; bad values and other roles are refused.
    let path = format!("/api/v1/budgets/{cc}");
    let r = app
        .patch(
            &path,
            &app.admin,
            &json!({"amount_usd": 6.0, "enforcement": "hard", "period": "week"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (
            &r.body["amount_usd"],
            &r.body["enforcement"],
            &r.body["period"],
            &r.body["target"]
        ),
        (
            &json!(6.0),
            &json!("hard"),
            &json!("week"),
            &json!("CostCenter=cc-1234")
        )
    );
    assert!((r.body["percent_used"].as_f64().unwrap() - 50.0).abs() < 0.5);
    for (body, status) in [
        (json!({"amount_usd": 0}), 422),
        (json!({"scope": "team"}), 422),
    ] {
        let r = app.patch(&path, &app.admin, &body).await;
        assert_eq!(r.status.as_u16(), status, "{body}: {}", r.body);
    }
    assert_eq!(
        app.patch(&path, &finance, &json!({"amount_usd": 1.0}))
            .await
            .status,
        403
    );
    assert_eq!(
        app.patch(
            &format!("/api/v1/budgets/{}", uuid::Uuid::nil()),
            &app.admin,
            &json!({"amount_usd": 1.0})
        )
        .await
        .status,
        404
    );
    assert_eq!(
        app.delete(&format!("/api/v1/budgets/{cc}"), &finance)
            .await
            .status,
        403
    );
    assert_eq!(
        app.delete(&format!("/api/v1/budgets/{cc}"), &app.admin)
            .await
            .status,
        204
    );
}

#[tokio::test]
async fn budgets_are_added_changed_and_removed_on_their_page() {
    let app = TestApp::spawn().await;
    let mut admin = strata_testkit::browser::Browser::new(&app);
    admin.sign_in(&app.admin).await;
    let page = admin.get("/ui/budgets").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("No budgets yet."), "{}", page.text);
    let csrf = admin.csrf();
    let fields = [
        ("csrf", csrf.as_str()),
        ("name", "payments-weekly"),
        ("scope", "team"),
        ("target", "payments"),
        ("period", "week"),
        ("amount_usd", "10"),
        ("enforcement", "hard"),
    ];
    let mut forged = fields;
    forged[0] = ("csrf", "forged");
    assert_eq!(
        admin.post_form("/ui/budgets", &forged).await.status,
        StatusCode::FORBIDDEN
    );
    let r = admin.post_form("/ui/budgets", &fields).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("Budget &#39;payments-weekly&#39; added."));
    let listed = app.get("/api/v1/budgets", &app.admin).await;
    let items = listed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", listed.body);
    assert_eq!(
        (&items[0]["enforcement"], &items[0]["amount_usd"]),
        (&json!("hard"), &json!(10.0))
    );
    let id = items[0]["id"].as_str().unwrap().to_owned();

    // Refused forms come back with the reason and the values typed.
    let mut bad = fields;
    bad[1] = ("name", "tiny");
    bad[5] = ("amount_usd", "0");
    let r = admin.post_form("/ui/budgets", &bad).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.text.contains("amount_usd: must be at least 0.01"),
        "{}",
        r.text
    );
    assert!(r.text.contains("value=\"tiny\""), "the name is kept");
    let r = admin.post_form("/ui/budgets", &fields).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.text
            .contains("a budget named &#39;payments-weekly&#39; exists")
    );
    let mut odd = fields;
    odd[2] = ("scope", "galaxy");
    let r = admin.post_form("/ui/budgets", &odd).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains("scope: "), "{}", r.text);

    // Changed in place.
    let change = format!("/ui/budgets/{id}");
    let r = admin
        .post_form(
            &change,
            &[
                ("csrf", &csrf),
                ("amount_usd", "20.5"),
                ("enforcement", "soft"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        r.text.contains("is now $20.50 per week, soft."),
        "{}",
        r.text
    );
    let listed = app.get("/api/v1/budgets", &app.admin).await;
    assert_eq!(
        (
            &listed.body["items"][0]["enforcement"],
            &listed.body["items"][0]["amount_usd"]
        ),
        (&json!("soft"), &json!(20.5))
    );
    let r = admin
        .post_form(
            &change,
            &[
                ("csrf", &csrf),
                ("amount_usd", "lots"),
                ("enforcement", "soft"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Finance reads without the forms and cannot change; a developer cannot read.
    let mut finance = strata_testkit::browser::Browser::new(&app);
    finance
        .sign_in(&app.token("fin@example.com", &["finance"]))
        .await;
    let page = finance.get("/ui/budgets").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("payments-weekly") && !page.text.contains("Add budget"));
    let fin_csrf = finance.csrf();
    let r = finance
        .post_form(&format!("/ui/budgets/{id}/delete"), &[("csrf", &fin_csrf)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let mut developer = strata_testkit::browser::Browser::new(&app);
    developer
        .sign_in(&app.token("dev@example.com", &["developer"]))
        .await;
    assert_eq!(
        developer.get("/ui/budgets").await.status,
        StatusCode::FORBIDDEN
    );

    let r = admin
        .post_form(&format!("/ui/budgets/{id}/delete"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("Budget removed.") && r.text.contains("No budgets yet."));
    assert_eq!(
        admin
            .post_form(&format!("/ui/budgets/{id}/delete"), &[("csrf", &csrf)])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}
