//! The environment cost dashboard (month to date, month end, budgets, trend, tag
//! breakdown, same-day estimates next to actuals) and the `/ui` pages over it:
//! sign-in with an HttpOnly SameSite cookie, CSRF on every form, roles on every page
//! and CSV, keys made and revoked from a project's page.

use std::sync::Arc;

use chrono::{Duration, NaiveDate, Utc};
use reqwest::StatusCode;
use serde_json::json;
use strata_core::clock::Clock;
use strata_core::domain::{
    CostFigure, CostGroupBy, Environment, MonthEnd, UsageBatch, UsageRecord,
};
use strata_core::services::Services;
use strata_testkit::browser::Browser;
use strata_testkit::{TestApp, project_body};

struct At(chrono::DateTime<Utc>);

impl Clock for At {
    fn now(&self) -> chrono::DateTime<Utc> {
        self.0
    }
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or_else(|| panic!("{y}-{m}-{d}"))
}

fn figure(d: NaiveDate, env: &str, value: &str, usd: i64) -> CostFigure {
    CostFigure {
        day: d,
        environment: env.into(),
        tag_value: value.into(),
        amount_micros: usd * 1_000_000,
        unit: "USD".into(),
        estimated: false,
    }
}

/// Seeds `strata:project` cost for `project` in prod: `per_day` dollars on each of
/// `days`, plus whatever `extra` figures.
async fn seed_project_costs(
    services: &Services,
    from: NaiveDate,
    to: NaiveDate,
    figures: Vec<CostFigure>,
) {
    services
        .replace_costs("strata:project", from, to, &figures)
        .await
        .unwrap();
}

/// Metered usage of `tokens` input tokens on `model` at `minute`.
async fn meter(
    app: &TestApp,
    project: &str,
    key: &str,
    minute: chrono::DateTime<Utc>,
    tokens: u64,
) {
    let batch = UsageBatch {
        batch_id: uuid::Uuid::now_v7(),
        records: vec![UsageRecord {
            project_id: project.parse().unwrap_or_default(),
            key_id: key.parse().unwrap_or_default(),
            model: "openai.gpt-oss-120b".into(),
            minute,
            requests: 1,
            errors: 0,
            input_tokens: tokens,
            output_tokens: 0,
            cached_tokens: 0,
            cache_write_tokens: 0,
            latency_ms_sum: 10,
            service_tier: Default::default(),
        }],
    };
    app.state.services.record_usage(&batch).await.unwrap();
}

async fn key_for(app: &TestApp, project: &str) -> String {
    let k = app
        .post(
            &format!("/api/v1/projects/{project}/keys"),
            &app.admin,
            &json!({"name": "k"}),
        )
        .await;
    assert_eq!(k.status, StatusCode::CREATED, "{}", k.body);
    k.body["id"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn the_dashboard_sums_the_month_budgets_trend_estimates_and_forecast() {
    let app = TestApp::spawn().await;
    let checkout = app.create_project(&project_body("checkout")).await;
    let search = app
        .create_project(
            &json!({"name": "search", "environment": "prod", "team": "discovery",
            "region": "us-east-1", "allowed_models": ["openai.gpt-oss-120b"]}),
        )
        .await;
    let (cid, sid) = (
        checkout["id"].as_str().unwrap_or_default().to_owned(),
        search["id"].as_str().unwrap_or_default().to_owned(),
    );
    // Archived projects with a budget: one without cost is not listed, one with
    // cost in the days shown (October 5, in the trend's base) is, and neither budget
    // counts any more.
    let retired = app.create_project(&project_body("retired")).await;
    let r = app
        .post(
            &format!(
                "/api/v1/projects/{}/archive",
                retired["id"].as_str().unwrap_or_default()
            ),
            &app.admin,
            &json!({}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let old = app.create_project(&project_body("old")).await;
    let oid = old["id"].as_str().unwrap_or_default().to_owned();
    let r = app
        .post(
            &format!("/api/v1/projects/{oid}/archive"),
            &app.admin,
            &json!({}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let today = day(2026, 11, 20);
    let services = Services::new(
        app.state.services.store.clone(),
        Arc::new(At(today
            .and_hms_opt(15, 0, 0)
            .unwrap_or_default()
            .and_utc())),
    );
    // October 1–20 at $1 a day (the trend's base), November 1–19 at $2 a day for
    // checkout; search $5 on the 18th; $1 untagged on the 19th; dev's cost elsewhere.
    let mut figures = Vec::new();
    let mut d = day(2026, 10, 1);
    while d < day(2026, 11, 20) {
        let usd = if d < day(2026, 11, 1) { 1 } else { 2 };
        if d <= day(2026, 10, 20) || d >= day(2026, 11, 1) {
            figures.push(figure(d, "prod", &cid, usd));
        }
        d += Duration::days(1);
    }
    figures.push(figure(day(2026, 11, 18), "prod", &sid, 5));
    figures.push(figure(day(2026, 11, 19), "prod", "", 1));
    figures.push(figure(day(2026, 11, 10), "dev", &cid, 100));
    figures.push(figure(day(2026, 10, 5), "prod", &oid, 4));
    seed_project_costs(&services, day(2026, 10, 1), day(2026, 11, 21), figures).await;
    services
        .replace_costs(
            "CostCenter",
            day(2026, 11, 1),
            day(2026, 11, 21),
            &[
                figure(day(2026, 11, 19), "prod", "eng", 3),
                figure(day(2026, 11, 19), "prod", "", 1),
                figure(day(2026, 11, 19), "dev", "eng", 50),
            ],
        )
        .await
        .unwrap();
    // Metered usage: today (not reported by Cost Explorer yet) and yesterday (reported).
    let key = key_for(&app, &cid).await;
    let at = |d: NaiveDate, h: u32| d.and_hms_opt(h, 0, 0).unwrap_or_default().and_utc();
    meter(&app, &cid, &key, at(today, 9), 2_000_000).await;
    meter(&app, &cid, &key, at(day(2026, 11, 19), 9), 1_000_000).await;
    let price = app
        .get("/api/v1/models/openai.gpt-oss-120b", &app.admin)
        .await
        .body["input_price_per_mtok_usd"]
        .as_f64()
        .unwrap_or_default();
    let per_million = (price * 1e6).round() as i64;
    assert!(per_million > 0, "the catalog prices the model");

    let tag = CostGroupBy::Tag("CostCenter".into());
    let board = services
        .cost_dashboard(Environment::Prod, &tag, None, None)
        .await
        .unwrap();
    assert_eq!(
        (board.from, board.to),
        (day(2026, 11, 1), day(2026, 11, 21))
    );
    // 19 × $2 + $5 + $1 untagged; dev's $100 is not prod's.
    assert_eq!(board.month_actual_micros, 44_000_000);
    assert_eq!(
        board.month_estimated_micros,
        2 * per_million,
        "today's metering stands in"
    );
    assert_eq!(board.range_micros, 44_000_000);
    assert_eq!(board.untagged_micros, 1_000_000);
    let names: Vec<&str> = board.projects.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["checkout", "search", "old"]);
    assert_eq!(board.projects[2].budget_micros, None, "archived: no budget");
    let c = &board.projects[0];
    assert_eq!(c.range_micros, 38_000_000);
    assert_eq!(c.month_micros, 38_000_000 + 2 * per_million);
    assert_eq!(
        c.last_month_micros, 20_000_000,
        "October 1–20, the same days"
    );
    assert_eq!(c.budget_micros, Some(500_000_000));
    assert_eq!(
        board.budget_micros,
        Some(500_000_000),
        "search has no budget"
    );
    assert_eq!(board.budgeted_month_micros, c.month_micros);
    // No forecast stored yet: a linear projection that says why.
    match &board.month_end {
        MonthEnd::Linear {
            amount_micros,
            reason,
        } => {
            assert_eq!(*amount_micros, (44_000_000 + 2 * per_million) * 30 / 20);
            assert!(reason.contains("no forecast"), "{reason}");
        }
        other => panic!("expected a linear projection, got {other:?}"),
    }
    // The breakdown by CostCenter: prod only, untagged kept.
    let breakdown = board
        .breakdown
        .clone()
        .unwrap_or_else(|| panic!("no breakdown"));
    let rows = breakdown.values;
    assert_eq!(breakdown.key, "CostCenter");
    assert_eq!(
        rows.iter()
            .map(|r| (r.value.as_str(), r.micros))
            .collect::<Vec<_>>(),
        [("eng", 3_000_000), ("", 1_000_000)]
    );
    assert_eq!(board.tag_keys, ["CostCenter"]);
    // The chart's series and the days table: actual next to estimate, and today.
    let series: Vec<&str> = board.series.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(series, ["checkout", "search", "Other projects", "Untagged"]);
    let on = |d: NaiveDate| board.days.iter().find(|x| x.day == d).cloned();
    let yesterday = on(day(2026, 11, 19)).unwrap_or_else(|| panic!("no Nov 19"));
    assert_eq!(yesterday.by_series, [2_000_000, 0, 0, 1_000_000]);
    assert_eq!(yesterday.actual_micros, Some(3_000_000));
    assert_eq!(yesterday.estimate_micros, Some(per_million));
    assert_eq!(yesterday.difference_micros(), Some(3_000_000 - per_million));
    let now = on(today).unwrap_or_else(|| panic!("no Nov 20"));
    assert_eq!(
        (now.actual_micros, now.estimate_micros),
        (None, Some(2 * per_million))
    );

    // Cost Explorer's forecast for the rest of the month replaces the projection.
    services
        .store_cost_forecast(
            "prod",
            (today, day(2026, 12, 1)),
            Ok((1_000_000_000, "USD".into())),
        )
        .await
        .unwrap();
    let board = services
        .cost_dashboard(Environment::Prod, &CostGroupBy::Project, None, None)
        .await
        .unwrap();
    assert_eq!(
        board.month_end,
        MonthEnd::Forecast {
            amount_micros: 44_000_000 + 1_000_000_000
        }
    );
    assert_eq!(board.breakdown, None);
    // A refused forecast: the projection again, with Cost Explorer's reason.
    services
        .store_cost_forecast(
            "prod",
            (today, day(2026, 12, 1)),
            Err("DataUnavailableException: too little history".into()),
        )
        .await
        .unwrap();
    let board = services
        .cost_dashboard(
            Environment::Prod,
            &CostGroupBy::Project,
            Some(day(2026, 11, 18)),
            Some(day(2026, 11, 20)),
        )
        .await
        .unwrap();
    match &board.month_end {
        MonthEnd::Linear { reason, .. } => {
            assert!(reason.contains("too little history"), "{reason}")
        }
        other => panic!("expected a linear projection, got {other:?}"),
    }
    // A narrower range changes the range figures, not the month's.
    assert_eq!(board.range_micros, 2_000_000 * 2 + 5_000_000 + 1_000_000);
    assert_eq!(board.month_actual_micros, 44_000_000);
    assert_eq!(board.days.len(), 2);
}

/// Pages need a session; the sign-in form sets it as a Strict, HttpOnly cookie.
#[tokio::test]
async fn sign_in_keeps_the_token_in_a_strict_http_only_cookie_behind_csrf() {
    let app = TestApp::spawn().await;
    let mut browser = Browser::new(&app);
    let page = browser.get("/ui/env/prod/costs?from=2026-11-01").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(
        page.header("location"),
        "/ui/signin?next=/ui/env/prod/costs%3Ffrom%3D2026-11-01"
    );
    // A form posted without a session comes back to its page after sign-in.
    let post = browser
        .post_form(
            "/ui/projects/0192c0de-0000-7000-8000-000000000000/keys",
            &[],
        )
        .await;
    assert_eq!(post.status, StatusCode::SEE_OTHER);
    assert_eq!(
        post.header("location"),
        "/ui/signin?next=/ui/projects/0192c0de-0000-7000-8000-000000000000"
    );
    assert_eq!(browser.get("/ui/").await.header("location"), "/ui");
    let form = browser.get("/ui/signin?next=https://evil.example/").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.header("content-type").starts_with("text/html"));
    assert!(
        form.header("content-security-policy")
            .contains("default-src 'self'")
    );
    let csrf = browser.csrf();
    assert_eq!(csrf.len(), 43, "a CSRF cookie for the form");
    let set = browser.set_cookies.last().cloned().unwrap_or_default();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(
        form.text
            .contains(&format!("name=\"csrf\" value=\"{csrf}\""))
    );
    assert!(
        form.text.contains("name=\"next\" value=\"/ui\""),
        "an open redirect is dropped"
    );

    let token = app.token("fin@example.com", &["finance"]);
    // Without the CSRF token, or from another site: refused, no session.
    let r = browser
        .post_form(
            "/ui/signin",
            &[("csrf", "forged"), ("token", &token), ("next", "/ui")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = browser
        .post_form_from(
            "/ui/signin",
            &[("csrf", &csrf), ("token", &token), ("next", "/ui")],
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!browser.cookies.contains_key("strata_session"));
    // A bad token: the form again, with why.
    let r = browser
        .post_form(
            "/ui/signin",
            &[("csrf", &csrf), ("token", "not-a-jwt"), ("next", "/ui")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.text.contains("The token was not accepted"), "{}", r.text);
    assert!(
        !r.text.contains("not-a-jwt"),
        "the token is not echoed back"
    );

    let r = browser
        .post_form(
            "/ui/signin",
            &[
                ("csrf", &csrf),
                ("token", &token),
                ("next", "/ui/env/prod/costs"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), "/ui/env/prod/costs");
    let session = browser
        .set_cookies
        .iter()
        .find(|c| c.starts_with("strata_session="))
        .cloned()
        .unwrap_or_default();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age="] {
        assert!(session.contains(attr), "{session}");
    }
    assert_ne!(browser.csrf(), csrf, "signing in gives a new CSRF token");
    let page = browser.get("/ui/env/prod/costs").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(
        page.text
            .contains("Signed in as <strong>fin@example.com</strong>")
    );
    assert_eq!(page.header("cache-control"), "no-store");

    // Signing out needs the CSRF token too, then removes the session.
    let r = browser.post_form("/ui/signout", &[("csrf", "x")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let fresh = browser.csrf();
    let r = browser.post_form("/ui/signout", &[("csrf", &fresh)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(!browser.cookies.contains_key("strata_session"));
    assert_eq!(browser.get("/ui").await.status, StatusCode::SEE_OTHER);
}

/// Finance reads every environment's costs and no keys; a developer sees its own
/// projects only and no costs; every page and CSV enforces it.
#[tokio::test]
async fn roles_hold_on_every_page_and_csv() {
    let app = TestApp::spawn().await;
    let mine = app.create_project(&project_body("mine")).await;
    let theirs = app.create_project(&project_body("theirs")).await;
    let (mid, tid) = (
        mine["id"].as_str().unwrap_or_default().to_owned(),
        theirs["id"].as_str().unwrap_or_default().to_owned(),
    );
    app.add_member(&mid, "dev@example.com", "developer").await;
    let today = Utc::now().date_naive();
    let first = today - Duration::days(2);
    seed_project_costs(
        &app.state.services,
        first,
        today,
        vec![
            figure(first, "prod", &mid, 7),
            figure(first, "prod", &tid, 11),
        ],
    )
    .await;
    let from = first.to_string();

    let mut finance = Browser::new(&app);
    finance
        .sign_in(&app.token("fin@example.com", &["finance"]))
        .await;
    let costs = finance
        .get(&format!("/ui/env/prod/costs?from={from}"))
        .await;
    assert_eq!(costs.status, StatusCode::OK, "{}", costs.text);
    for text in [
        "mine",
        "theirs",
        "$7.00",
        "$11.00",
        "$18.00",
        "<svg",
        "Download CSV",
    ] {
        assert!(costs.text.contains(text), "{text} missing");
    }
    let csv = finance
        .get(&format!(
            "/ui/env/prod/costs.csv?group_by=project&from={from}"
        ))
        .await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.text);
    assert!(csv.header("content-type").starts_with("text/csv"));
    assert!(csv.text.contains("11"), "{}", csv.text);
    let days = finance
        .get(&format!("/ui/env/prod/costs.csv?group_by=day&from={from}"))
        .await;
    assert_eq!(days.status, StatusCode::OK, "{}", days.text);
    assert!(
        days.text
            .starts_with("day,cost_explorer_usd,estimated_usd,difference_usd,status")
    );
    assert!(days.text.contains(&format!("{first},18,")), "{}", days.text);
    // Finance opens a project: settings and usage, no keys.
    let project = finance.get(&format!("/ui/projects/{tid}")).await;
    assert_eq!(project.status, StatusCode::OK, "{}", project.text);
    assert!(project.text.contains("Reconcile conditions"));
    assert!(
        !project.text.contains("keys-heading"),
        "finance sees no keys"
    );
    assert!(!project.text.contains("Usage by key"));
    let usage = finance
        .get(&format!("/ui/projects/{tid}/usage.csv?group_by=model"))
        .await;
    assert_eq!(usage.status, StatusCode::OK);
    assert!(usage.text.starts_with("group,requests,errors,input_tokens"));
    assert!(usage.text.contains("\ntotal,0,0,"), "{}", usage.text);
    let by_key = finance
        .get(&format!("/ui/projects/{tid}/usage.csv?group_by=key"))
        .await;
    assert_eq!(by_key.status, StatusCode::FORBIDDEN, "no keys for finance");
    let bad = finance
        .get(&format!("/ui/projects/{tid}/usage.csv?group_by=week"))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let mut developer = Browser::new(&app);
    developer
        .sign_in(&app.token("dev@example.com", &["developer"]))
        .await;
    let home = developer.get("/ui").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.text.contains("mine") && !home.text.contains("theirs"));
    assert!(
        !home.text.contains("/ui/env/prod/costs"),
        "no costs link for a developer"
    );
    for path in [
        format!("/ui/env/prod/costs?from={from}"),
        format!("/ui/env/prod/costs.csv?group_by=project&from={from}"),
        format!("/ui/env/prod/costs.csv?group_by=day&from={from}"),
    ] {
        let r = developer.get(&path).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        // Neither the amount nor the other team's project id leaks.
        assert!(
            !r.text.contains("$11.00") && !r.text.contains(&tid),
            "{path}: {}",
            r.text
        );
    }
    let other = developer.get(&format!("/ui/projects/{tid}")).await;
    assert_eq!(
        other.status,
        StatusCode::NOT_FOUND,
        "another team's project"
    );
    assert!(!other.text.contains("theirs service"));
    let other = developer
        .get(&format!("/ui/projects/{tid}/usage.csv"))
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND, "another team's usage");
    let own = developer.get(&format!("/ui/projects/{mid}")).await;
    assert_eq!(own.status, StatusCode::OK);
    assert!(own.text.contains("keys-heading") && own.text.contains("Create key"));

    let mut admin = Browser::new(&app);
    admin.sign_in(&app.admin).await;
    assert_eq!(
        admin
            .get(&format!("/ui/env/prod/costs?from={from}"))
            .await
            .status,
        StatusCode::OK
    );
    let theirs_page = admin.get(&format!("/ui/projects/{tid}")).await;
    assert!(theirs_page.text.contains("keys-heading"));
}

#[tokio::test]
async fn a_member_makes_and_revokes_a_key_on_the_project_page() {
    let app = TestApp::spawn().await;
    let p = app.create_project(&project_body("keys-page")).await;
    let pid = p["id"].as_str().unwrap_or_default().to_owned();
    app.add_member(&pid, "dev@example.com", "developer").await;
    let mut browser = Browser::new(&app);
    browser
        .sign_in(&app.token("dev@example.com", &["developer"]))
        .await;
    let page = browser.get(&format!("/ui/projects/{pid}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = browser.csrf();
    let path = format!("/ui/projects/{pid}/keys");
    let fields = [
        ("csrf", csrf.as_str()),
        ("name", "worker"),
        ("models", "openai.gpt-oss-20b"),
        ("expires_in_days", "7"),
    ];

    // Forged or cross-site: refused, and nothing is made.
    let mut forged = fields;
    forged[0] = ("csrf", "forged");
    assert_eq!(
        browser.post_form(&path, &forged).await.status,
        StatusCode::FORBIDDEN
    );
    let r = browser
        .post_form_from(&path, &fields, Some("https://evil.example"))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let listed = app
        .get(&format!("/api/v1/projects/{pid}/keys"), &app.admin)
        .await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(0));

    // Too long a lifetime: the page again, saying why.
    let mut long = fields;
    long[3] = ("expires_in_days", "100000");
    let r = browser.post_form(&path, &long).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains("expires in: must be at most"), "{}", r.text);

    let form_id = {
        let marker = "name=\"form_id\" value=\"";
        let start = page
            .text
            .find(marker)
            .unwrap_or_else(|| panic!("no form id on the page"))
            + marker.len();
        page.text[start..]
            .chars()
            .take_while(|c| *c != '"')
            .collect::<String>()
    };
    let fields = [
        fields[0],
        fields[1],
        fields[2],
        fields[3],
        ("form_id", form_id.as_str()),
    ];
    let made = browser.post_form(&path, &fields).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    // The same form again (a double click, a reload): no second key, no secret.
    let again = browser.post_form(&path, &fields).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert!(
        again.text.contains("This form was already sent"),
        "{}",
        again.text
    );
    assert!(!again.text.contains("sk-strata-"));
    assert_eq!(made.header("cache-control"), "no-store");
    let start = made
        .text
        .find("sk-strata-")
        .unwrap_or_else(|| panic!("no secret shown"));
    let secret: String = made.text[start..]
        .chars()
        .take_while(|c| *c != '"')
        .collect();
    let listed = app
        .get(&format!("/api/v1/projects/{pid}/keys"), &app.admin)
        .await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1));
    let key = listed.body["items"][0].clone();
    assert_eq!(key["name"], "worker");
    assert_eq!(key["models"], json!(["openai.gpt-oss-20b"]));
    assert_eq!(key["owner"], "dev@example.com");
    let again = browser.get(&format!("/ui/projects/{pid}")).await;
    assert!(!again.text.contains(&secret), "the secret is shown once");
    assert!(again.text.contains("worker"));

    let kid = key["id"].as_str().unwrap_or_default();
    let revoke = format!("/ui/projects/{pid}/keys/{kid}/revoke");
    assert_eq!(
        browser.post_form(&revoke, &[("csrf", "x")]).await.status,
        StatusCode::FORBIDDEN
    );
    let csrf = browser.csrf();
    let r = browser.post_form(&revoke, &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let k = app
        .get(&format!("/api/v1/projects/{pid}/keys/{kid}"), &app.admin)
        .await;
    assert_eq!(k.body["status"], "revoked");

    // A viewer sees the keys but may not make or revoke them.
    app.add_member(&pid, "viewer@example.com", "viewer").await;
    let mut viewer = Browser::new(&app);
    viewer
        .sign_in(&app.token("viewer@example.com", &["developer"]))
        .await;
    let page = viewer.get(&format!("/ui/projects/{pid}")).await;
    assert!(page.text.contains("worker") && !page.text.contains("Create key"));
    let csrf = viewer.csrf();
    let r = viewer
        .post_form(&path, &[("csrf", &csrf), ("name", "sneaky")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

/// The page's figures as JSON, for finance's own tools.
#[tokio::test]
async fn the_dashboard_is_in_the_api_as_json() {
    let app = TestApp::spawn().await;
    let p = app.create_project(&project_body("json-costs")).await;
    let pid = p["id"].as_str().unwrap_or_default().to_owned();
    let today = Utc::now().date_naive();
    let first = today - Duration::days(1);
    seed_project_costs(
        &app.state.services,
        first,
        today,
        vec![figure(first, "prod", &pid, 9), figure(first, "prod", "", 1)],
    )
    .await;
    let finance = app.token("fin@example.com", &["finance"]);
    let r = app
        .get(
            &format!("/api/v1/environments/prod/costs?from={first}"),
            &finance,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["environment"], "prod");
    assert_eq!(r.body["range_micros"], 10_000_000);
    assert_eq!(r.body["untagged_micros"], 1_000_000);
    assert_eq!(r.body["projects"][0]["name"], "json-costs");
    assert_eq!(r.body["projects"][0]["budget_micros"], 500_000_000);
    assert_eq!(r.body["month_end"]["source"], "linear");
    assert!(
        r.body["month_end"]["reason"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert_eq!(r.body["days"][0]["actual_micros"], 10_000_000);
    for (path, status) in [
        ("/api/v1/environments/qa/costs", StatusCode::NOT_FOUND),
        (
            "/api/v1/environments/prod/costs?group_by=environment",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/api/v1/environments/prod/costs?from=2026-02-01&to=2026-01-01",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/api/v1/environments/prod/costs?from=soon",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = app.get(path, &finance).await;
        assert_eq!(r.status, status, "{path}: {}", r.body);
    }
}

#[tokio::test]
async fn bad_page_input_gets_a_page_with_a_4xx() {
    let app = TestApp::spawn().await;
    let mut browser = Browser::new(&app);
    browser
        .sign_in(&app.token("fin@example.com", &["finance"]))
        .await;
    for (path, status, says) in [
        ("/ui/env/qa/costs", StatusCode::NOT_FOUND, "no environment"),
        (
            "/ui/env/prod/costs?from=yesterday",
            StatusCode::BAD_REQUEST,
            "not a date",
        ),
        (
            "/ui/env/prod/costs?from=2026-11-10&through=2026-11-01",
            StatusCode::UNPROCESSABLE_ENTITY,
            "through: must be after",
        ),
        (
            "/ui/env/prod/costs?from=2020-01-01&through=2026-01-01",
            StatusCode::UNPROCESSABLE_ENTITY,
            "at most 732 days",
        ),
        (
            "/ui/env/prod/costs?group_by=environment",
            StatusCode::UNPROCESSABLE_ENTITY,
            "Break down by",
        ),
        (
            "/ui/env/prod/costs.csv?group_by=tag:",
            StatusCode::UNPROCESSABLE_ENTITY,
            "Break down by",
        ),
        (
            "/ui/projects/not-a-uuid",
            StatusCode::NOT_FOUND,
            "was not found",
        ),
    ] {
        let r = browser.get(path).await;
        assert_eq!(r.status, status, "{path}: {}", r.text);
        assert!(r.header("content-type").starts_with("text/html"), "{path}");
        assert!(
            r.text.to_lowercase().contains(&says.to_lowercase()),
            "{path}: {}",
            r.text
        );
    }
    // An empty date picker means the default range.
    let r = browser
        .get("/ui/env/prod/costs?from=&through=&group_by=project")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let css = browser.get("/ui/static/strata.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.header("content-type").starts_with("text/css"));
}

/// Signing in to the pages through the identity provider: authorization code with
/// PKCE, `state` checked, the provider's ID token kept as the session.
#[tokio::test]
async fn sign_in_through_the_identity_provider() {
    use strata_api::{HttpConfig, SsoConfig};
    use strata_core::config::AuthConfig;
    let idp = strata_testkit::FakeIdp::start().await;
    let app = TestApp::builder()
        .auth(AuthConfig {
            oidc_issuer: Some(idp.issuer.clone()),
            oidc_jwks_url: Some(idp.jwks_url.clone()),
            oidc_audience: Some("strata-ui".into()),
            ..AuthConfig::default()
        })
        .http(HttpConfig {
            sso: SsoConfig {
                authorization_url: Some(idp.authorization_url.clone()),
                token_url: Some(idp.token_url.clone()),
                client_id: Some("strata-ui".into()),
                ..SsoConfig::default()
            },
            ..HttpConfig::default()
        })
        .spawn()
        .await;
    let base = app.url("");
    let hop = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The provider's authorization endpoint answers with a redirect back to strata.
    let via_provider = |url: String| {
        let hop = hop.clone();
        async move {
            let r = hop.get(&url).send().await.unwrap();
            assert!(r.status().is_redirection(), "{}", r.status());
            r.headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        }
    };

    let mut browser = Browser::new(&app);
    let form = browser.get("/ui/signin?next=/ui/env/prod/costs").await;
    assert!(
        form.text
            .contains("href=\"/ui/signin/oidc?next=/ui/env/prod/costs\""),
        "{}",
        form.text
    );
    idp.sign_in_as(Some(("fin@example.com", &["strata-finance"])));
    let start = browser.get("/ui/signin/oidc?next=/ui/env/prod/costs").await;
    assert_eq!(start.status, StatusCode::SEE_OTHER);
    let to_provider = start.header("location").to_owned();
    assert!(
        to_provider.starts_with(&idp.authorization_url),
        "{to_provider}"
    );
    for part in [
        "response_type=code",
        "client_id=strata-ui",
        "code_challenge_method=S256",
        &format!(
            "redirect_uri={}",
            base.replace(':', "%3A").replace('/', "%2F") + "%2Fui%2Fsignin%2Fcallback"
        ),
    ] {
        assert!(to_provider.contains(part), "{part} missing: {to_provider}");
    }
    let flow = browser
        .set_cookies
        .iter()
        .find(|c| c.starts_with("strata_sso="))
        .cloned()
        .unwrap_or_default();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/ui/signin", "Max-Age=600"] {
        assert!(flow.contains(attr), "{flow}");
    }
    let back = via_provider(to_provider.clone()).await;
    let callback = back.strip_prefix(&base).unwrap_or(&back).to_owned();
    assert!(callback.starts_with("/ui/signin/callback?code="), "{back}");

    // An answer with another state is refused, and spends the flow.
    let forged = callback.replace("state=", "state=x");
    let r = browser.get(&forged).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(!browser.cookies.contains_key("strata_session"));
    assert!(!browser.cookies.contains_key("strata_sso"));

    // Again, properly: signed in, then a same-site step to the page asked for.
    let start = browser.get("/ui/signin/oidc?next=/ui/env/prod/costs").await;
    let back = via_provider(start.header("location").to_owned()).await;
    let callback = back.strip_prefix(&base).unwrap_or(&back).to_owned();
    let flow_cookie = browser
        .cookies
        .get("strata_sso")
        .cloned()
        .unwrap_or_default();
    let done = browser.get(&callback).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert!(
        done.text
            .contains("http-equiv=\"refresh\" content=\"0; url=/ui/env/prod/costs\""),
        "{}",
        done.text
    );
    let session = browser
        .set_cookies
        .iter()
        .rev()
        .find(|c| c.starts_with("strata_session="))
        .cloned()
        .unwrap_or_default();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(session.contains(attr), "{session}");
    }
    assert!(!browser.cookies.contains_key("strata_sso"));
    let page = browser.get("/ui/env/prod/costs").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(
        page.text
            .contains("Signed in as <strong>fin@example.com</strong> (finance)")
    );

    // The flow is spent: its answer again is refused here …
    let replay = browser.get(&callback).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST, "{}", replay.text);
    // … and with its cookie put back, at the provider (a code works once).
    browser.cookies.insert("strata_sso".into(), flow_cookie);
    let replay = browser.get(&callback).await;
    assert_eq!(replay.status, StatusCode::BAD_GATEWAY, "{}", replay.text);
    assert!(replay.text.contains("did not complete the sign-in"));
    // The provider refusing: said on the page.
    idp.sign_in_as(None);
    let start = browser.get("/ui/signin/oidc").await;
    let back = via_provider(start.header("location").to_owned()).await;
    let refused = browser.get(back.strip_prefix(&base).unwrap_or(&back)).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.text.contains("access_denied"), "{}", refused.text);

    // Without the provider configured there is no such sign-in.
    let plain = TestApp::spawn().await;
    let mut other = Browser::new(&plain);
    let form = other.get("/ui/signin").await;
    assert!(!form.text.contains("/ui/signin/oidc"));
    assert_eq!(
        other.get("/ui/signin/oidc").await.status,
        StatusCode::NOT_FOUND
    );
}
