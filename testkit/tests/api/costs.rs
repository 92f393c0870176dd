//! Cost ingestion: the adapter against moto's Cost Explorer (`GetCostAndUsage` answers
//! what the test seeds through `/moto-api/static/ce/cost-and-usage-results`), and the
//! refresh rules (what is asked, what is replaced, the call budget) against a scripted
//! Cost Explorer that pages (moto never does) on both databases.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::NaiveDate;
use serde_json::json;
use strata_aws::{
    AwsError, CostForecast, CostPage, CostQuery, CostRow, CostUsage, ErrorKind, ForecastQuery,
};
use strata_core::clock::Clock;
use strata_core::domain::CostFigure;
use strata_core::services::Services;
use strata_costs::{CostSettings, refresh};
use strata_testkit::moto::{lock_cost_results, moto_clients, seed_cost_results};
use strata_testkit::{TestApp, project_body};

#[tokio::test]
async fn cost_explorer_answers_are_read_by_tag_with_untagged_cost_kept() {
    let group = |keys: [&str; 2], amount: &str| json!({"Keys": keys, "Metrics": {"UnblendedCost": {"Amount": amount, "Unit": "USD"}}});
    let _lock = lock_cost_results().await;
    seed_cost_results(json!([{
        "GroupDefinitions": [
            {"Type": "TAG", "Key": "strata:environment"},
            {"Type": "TAG", "Key": "strata:project"}
        ],
        "ResultsByTime": [
            {
                "TimePeriod": {"Start": "2026-10-30", "End": "2026-10-31"},
                "Total": {},
                "Groups": [
                    group(["strata:environment$prod", "strata:project$checkout"], "41.2500004"),
                    group(["strata:environment$", "strata:project$"], "2.75")
                ],
                "Estimated": false
            },
            {
                "TimePeriod": {"Start": "2026-10-31", "End": "2026-11-01"},
                "Total": {},
                "Groups": [group(["strata:environment$prod", "strata:project$checkout"], "0.0000015")],
                "Estimated": true
            }
        ],
        "DimensionValueAttributes": []
    }]))
    .await;

    let aws = moto_clients("http://127.0.0.1:9/{region}/v1").await;
    let query = CostQuery {
        start: NaiveDate::from_ymd_opt(2026, 10, 30).unwrap_or_default(),
        end: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap_or_default(),
        group_by: vec!["strata:environment".into(), "strata:project".into()],
        services: vec![format!("strata-test-{}", uuid::Uuid::now_v7())],
        metric: "UnblendedCost".into(),
    };
    let page = aws
        .cost_usage
        .page(&query, None)
        .await
        .unwrap_or_else(|e| panic!("GetCostAndUsage on moto: {e}"));
    assert_eq!(page.next_token, None);
    let read: Vec<_> = page
        .rows
        .iter()
        .map(|r| {
            (
                r.day.to_string(),
                r.tags.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(),
                r.amount_micros,
                r.unit.as_str(),
                r.estimated,
            )
        })
        .collect();
    assert_eq!(
        read,
        [
            (
                "2026-10-30".to_owned(),
                vec!["prod", "checkout"],
                41_250_000,
                "USD",
                false
            ),
            (
                "2026-10-30".to_owned(),
                vec!["", ""],
                2_750_000,
                "USD",
                false
            ),
            (
                "2026-10-31".to_owned(),
                vec!["prod", "checkout"],
                2,
                "USD",
                true
            ),
        ]
    );
    assert_eq!(
        aws.calls.snapshot().reads(),
        1,
        "the page was one counted (billed) call"
    );
}

/// A clock pinned to one instant.
struct At(chrono::DateTime<chrono::Utc>);

impl Clock for At {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.0
    }
}

/// A scripted Cost Explorer: answers every question with `pages` pages (`amount` USD per
/// day and group, for every day asked), and remembers the questions.
struct Scripted {
    pages: usize,
    amount: &'static str,
    asked: Mutex<Vec<(CostQuery, Option<String>)>>,
    forecasts: Mutex<Vec<ForecastQuery>>,
}

impl Scripted {
    fn new(pages: usize, amount: &'static str) -> Self {
        Self {
            pages,
            amount,
            asked: Mutex::new(Vec::new()),
            forecasts: Mutex::new(Vec::new()),
        }
    }

    fn asked(&self) -> Vec<(CostQuery, Option<String>)> {
        self.asked.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl CostUsage for Scripted {
    async fn page(&self, query: &CostQuery, token: Option<&str>) -> Result<CostPage, AwsError> {
        if let Ok(mut asked) = self.asked.lock() {
            asked.push((query.clone(), token.map(str::to_owned)));
        }
        let index: usize = token.map_or(0, |t| t.parse().unwrap_or(0));
        let amount = usd_micros(self.amount);
        let mut rows = Vec::new();
        let mut day = query.start;
        while day < query.end {
            // Page i carries the group "team-i" (and the first page the untagged cost).
            let key = &query.group_by[1];
            rows.push(CostRow {
                day,
                tags: vec![
                    ("strata:environment".into(), "prod".into()),
                    (key.clone(), format!("team-{index}")),
                ],
                amount_micros: amount,
                unit: "USD".into(),
                estimated: day + chrono::Duration::days(3) > query.end,
            });
            if index == 0 {
                rows.push(CostRow {
                    day,
                    tags: vec![
                        ("strata:environment".into(), String::new()),
                        (key.clone(), String::new()),
                    ],
                    amount_micros: 1_000_000,
                    unit: "USD".into(),
                    estimated: false,
                });
            }
            day += chrono::Duration::days(1);
        }
        Ok(CostPage {
            rows,
            skipped: Vec::new(),
            next_token: (index + 1 < self.pages).then(|| (index + 1).to_string()),
        })
    }

    /// $1,000 for the rest of the month in `prod`; refused elsewhere.
    async fn forecast(&self, query: &ForecastQuery) -> Result<CostForecast, AwsError> {
        if let Ok(mut asked) = self.forecasts.lock() {
            asked.push(query.clone());
        }
        if query.tag.1 == "prod" {
            Ok(CostForecast {
                amount_micros: 1_000_000_000,
                unit: "USD".into(),
            })
        } else {
            Err(AwsError::new(
                "ce",
                "GetCostForecast",
                ErrorKind::Invalid,
                None,
                "DataUnavailableException: insufficient amount of historical data",
            ))
        }
    }
}

fn usd_micros(amount: &str) -> i64 {
    let usd: f64 = amount.parse().unwrap_or_else(|e| panic!("{amount}: {e}"));
    (usd * 1_000_000.0).round() as i64
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or_else(|| panic!("{y}-{m}-{d}"))
}

fn noon(d: NaiveDate) -> Arc<dyn Clock> {
    Arc::new(At(d.and_hms_opt(12, 0, 0).unwrap_or_default().and_utc()))
}

#[tokio::test]
async fn a_refresh_fetches_history_once_then_only_the_restated_days() {
    let app = TestApp::spawn().await;
    let settings = CostSettings {
        tag_keys: vec!["CostCenter".into()],
        history_days: 10,
        restate_days: 3,
        ..CostSettings::default()
    };
    let today = day(2026, 11, 20);
    let services = Services::new(app.state.services.store.clone(), noon(today));

    // First run: the whole history for both keys, every page, untagged cost kept.
    let ce = Scripted::new(2, "2.5");
    let report = refresh(&services, &ce, &settings).await.unwrap();
    // Two keys × two pages, then prod's month-end forecast (prod had cost).
    assert_eq!(report.calls, 5, "{report:?}");
    assert_eq!(report.refreshed, ["strata:project", "CostCenter"]);
    assert_eq!(report.forecasts, ["prod"]);
    let forecasts = ce.forecasts.lock().map(|f| f.clone()).unwrap_or_default();
    assert_eq!(
        forecasts
            .iter()
            .map(|q| (q.start, q.end, q.tag.0.as_str(), q.tag.1.as_str()))
            .collect::<Vec<_>>(),
        [(today, day(2026, 12, 1), "strata:environment", "prod")]
    );
    assert_eq!(forecasts[0].services, ["Amazon Bedrock"]);
    assert!(!report.budget_exhausted && report.failed.is_empty());
    let asked = ce.asked();
    assert_eq!(
        asked
            .iter()
            .map(|(q, t)| (q.group_by[1].as_str(), q.start, q.end, t.as_deref()))
            .collect::<Vec<_>>(),
        [
            ("strata:project", day(2026, 11, 10), day(2026, 11, 21), None),
            (
                "strata:project",
                day(2026, 11, 10),
                day(2026, 11, 21),
                Some("1")
            ),
            ("CostCenter", day(2026, 11, 10), day(2026, 11, 21), None),
            (
                "CostCenter",
                day(2026, 11, 10),
                day(2026, 11, 21),
                Some("1")
            ),
        ]
    );
    assert!(
        asked
            .iter()
            .all(|(q, _)| q.group_by[0] == "strata:environment"
                && q.services == ["Amazon Bedrock"]
                && q.metric == "UnblendedCost")
    );
    let stored = services
        .costs("CostCenter", day(2026, 11, 1), day(2026, 12, 1))
        .await
        .unwrap();
    // 11 days × (team-0, team-1, untagged).
    assert_eq!(stored.len(), 33);
    let untagged: Vec<_> = stored.iter().filter(|f| f.tag_value.is_empty()).collect();
    assert_eq!(untagged.len(), 11, "untagged cost is kept, never dropped");
    assert!(
        untagged
            .iter()
            .all(|f| f.environment.is_empty() && f.amount_micros == 1_000_000)
    );
    assert_eq!(
        services
            .cost_explorer_calls_today()
            .await
            .unwrap_or_default(),
        5,
        "every call is recorded, the forecast too"
    );
    let forecast = services
        .cost_forecast("prod")
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("prod's forecast was not stored"));
    assert_eq!(
        (forecast.period_start, forecast.period_end, forecast.outcome),
        (today, day(2026, 12, 1), Ok(1_000_000_000))
    );
    // Later the same day (the same answers) the forecast is not asked for again.
    let report = refresh(&services, &Scripted::new(2, "2.5"), &settings)
        .await
        .unwrap();
    assert_eq!((report.calls, report.forecasts.len()), (4, 0), "{report:?}");

    // A day later Cost Explorer restates recent days: only those are asked again, and
    // their figures replace the old ones; older days stay as they were.
    let tomorrow = today + chrono::Duration::days(1);
    let services = Services::new(app.state.services.store.clone(), noon(tomorrow));
    let ce = Scripted::new(1, "4");
    let report = refresh(&services, &ce, &settings).await.unwrap();
    // One page per key, and a new day's forecast.
    assert_eq!(report.calls, 3, "{report:?}");
    assert!(
        ce.asked()
            .iter()
            .all(|(q, _)| (q.start, q.end) == (day(2026, 11, 18), day(2026, 11, 22))),
        "{:?}",
        ce.asked()
    );
    let stored = services
        .costs("strata:project", day(2026, 11, 1), day(2026, 12, 1))
        .await
        .unwrap();
    let on = |d: NaiveDate, value: &str| {
        stored
            .iter()
            .find(|f| f.day == d && f.tag_value == value)
            .map(|f| f.amount_micros)
    };
    assert_eq!(
        on(day(2026, 11, 17), "team-0"),
        Some(2_500_000),
        "not refetched"
    );
    assert_eq!(on(day(2026, 11, 17), "team-1"), Some(2_500_000));
    assert_eq!(on(day(2026, 11, 18), "team-0"), Some(4_000_000), "restated");
    assert_eq!(
        on(day(2026, 11, 18), "team-1"),
        None,
        "a group that vanished from a restated day is gone"
    );
    assert_eq!(on(day(2026, 11, 21), "team-0"), Some(4_000_000));
    assert_eq!(
        services
            .cost_coverage("strata:project")
            .await
            .unwrap_or_default(),
        Some((day(2026, 11, 10), day(2026, 11, 22)))
    );
}

#[tokio::test]
async fn the_daily_call_budget_is_never_exceeded() {
    let app = TestApp::spawn().await;
    let settings = CostSettings {
        tag_keys: vec!["CostCenter".into(), "Team".into()],
        daily_call_budget: 5,
        history_days: 5,
        ..CostSettings::default()
    };
    let today = day(2026, 11, 20);
    let services = Services::new(app.state.services.store.clone(), noon(today));
    // Three pages per key: 9 calls wanted, 5 allowed.
    let ce = Scripted::new(3, "1");
    let report = refresh(&services, &ce, &settings).await.unwrap();
    assert!(report.budget_exhausted);
    assert_eq!(report.calls, 5);
    assert_eq!(ce.asked().len(), 5);
    assert_eq!(
        report.refreshed,
        ["strata:project"],
        "only complete keys are stored"
    );
    assert_eq!(
        services
            .costs("CostCenter", day(2026, 11, 1), day(2026, 12, 1))
            .await
            .map(|c| c.len())
            .unwrap_or(usize::MAX),
        0,
        "a key cut off mid-way keeps what it had"
    );
    // The same day, nothing more is spent; the next day the budget is fresh.
    let again = refresh(&services, &ce, &settings).await.unwrap();
    assert_eq!((again.calls, again.budget_exhausted), (0, true));
    assert_eq!(ce.asked().len(), 5);
    let next_day = Services::new(
        app.state.services.store.clone(),
        noon(today + chrono::Duration::days(1)),
    );
    let later = refresh(&next_day, &ce, &settings).await.unwrap();
    assert_eq!(later.calls, 5);
}

fn figure(d: NaiveDate, env: &str, value: &str, micros: i64, estimated: bool) -> CostFigure {
    CostFigure {
        day: d,
        environment: env.into(),
        tag_value: value.into(),
        amount_micros: micros,
        unit: "USD".into(),
        estimated,
    }
}

#[tokio::test]
async fn the_cost_api_groups_stored_figures_by_project_environment_or_tag() {
    let app = TestApp::spawn().await;
    let project = app.create_project(&project_body("checkout")).await;
    let pid = project["id"].as_str().unwrap_or_default().to_owned();
    let services = &app.state.services;
    let (d1, d2, end) = (day(2026, 10, 1), day(2026, 10, 2), day(2026, 10, 3));
    services
        .replace_costs(
            "strata:project",
            d1,
            end,
            &[
                figure(d1, "prod", &pid, 10_000_000, false),
                figure(d2, "prod", &pid, 5_500_000, true),
                figure(
                    d1,
                    "dev",
                    "0192c0de-0000-7000-8000-000000000000",
                    1_000_000,
                    false,
                ),
                figure(d1, "", "", 250_000, false),
            ],
        )
        .await
        .unwrap();
    services
        .replace_costs(
            "CostCenter",
            d1,
            end,
            &[
                figure(d1, "prod", "eng", 12_000_000, false),
                figure(d2, "prod", "", 3_000_000, false),
            ],
        )
        .await
        .unwrap();
    let finance = app.token("fiona", &["finance"]);
    let range = "from=2026-10-01&to=2026-10-03";

    let r = app.get(&format!("/api/v1/costs?{range}"), &finance).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
    assert_eq!(r.body["group_by"], "project");
    assert_eq!(r.body["total_usd"], 16.75);
    assert_eq!(r.body["untagged_usd"], 0.25);
    assert_eq!(r.body["estimated"], true);
    let groups = r.body["groups"].as_array().cloned().unwrap_or_default();
    assert_eq!(groups.len(), 3, "{}", r.body);
    assert_eq!(groups[0]["value"], pid.as_str(), "largest first");
    assert_eq!(groups[0]["project_name"], "checkout");
    assert_eq!(groups[0]["amount_usd"], 15.5);
    assert_eq!(groups[0]["days"][1]["estimated"], true);
    assert!(
        groups[1].get("project_name").is_none(),
        "an unknown project has no name"
    );
    assert_eq!(groups[2]["untagged"], true);

    let r = app
        .get(&format!("/api/v1/costs?{range}&environment=prod"), &finance)
        .await;
    assert_eq!(
        (r.body["total_usd"].as_f64(), r.body["environment"].as_str()),
        (Some(15.5), Some("prod"))
    );

    let r = app
        .get(
            &format!("/api/v1/costs?{range}&group_by=environment"),
            &finance,
        )
        .await;
    let by_env: Vec<_> = r.body["groups"]
        .as_array()
        .map(|g| {
            g.iter()
                .map(|g| (g["value"].clone(), g["amount_usd"].clone()))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        by_env,
        [
            (json!("prod"), json!(15.5)),
            (json!("dev"), json!(1.0)),
            (json!(""), json!(0.25))
        ]
    );

    let r = app
        .get(
            &format!("/api/v1/costs?{range}&group_by=tag:CostCenter"),
            &finance,
        )
        .await;
    assert_eq!(
        (
            r.body["total_usd"].as_f64(),
            r.body["untagged_usd"].as_f64()
        ),
        (Some(15.0), Some(3.0))
    );

    // The same report as CSV, a row per group and day, named for what it holds.
    let r = app
        .get(
            &format!("/api/v1/costs.csv?{range}&environment=prod"),
            &finance,
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"costs-prod-project-2026-10-01-2026-10-03.csv\"")
    );
    assert_eq!(
        r.body.as_str().unwrap_or_default(),
        format!(
            "day,group,untagged,project_name,amount_usd,estimated\n\
             2026-10-01,{pid},false,checkout,10.000000,false\n\
             2026-10-02,{pid},false,checkout,5.500000,true\n"
        )
    );
    let r = app
        .get(
            &format!("/api/v1/costs.csv?{range}&group_by=nope"),
            &finance,
        )
        .await;
    assert_eq!(
        r.status.as_u16(),
        422,
        "bad input is an error envelope, not CSV"
    );

    // A range outside the stored days is empty, not an error.
    let r = app
        .get("/api/v1/costs?from=2025-01-01&to=2025-02-01", &finance)
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["total_usd"].as_f64()),
        (200, Some(0.0))
    );

    // Bad input: clear 4xx naming the parameter.
    for (query, status, field) in [
        ("group_by=model", 422, "group_by"),
        ("from=2026-10-03&to=2026-10-01", 422, "to"),
        ("from=2020-01-01&to=2026-01-01", 422, "to"),
        ("from=0001-01-01&to=0001-02-01", 422, "from"),
    ] {
        let r = app.get(&format!("/api/v1/costs?{query}"), &finance).await;
        assert_eq!(r.status.as_u16(), status, "{query}: {}", r.body);
        assert_eq!(
            r.body["error"]["details"][0]["field"], field,
            "{query}: {}",
            r.body
        );
    }
    for query in ["from=yesterday", "environment=moon"] {
        let r = app.get(&format!("/api/v1/costs?{query}"), &finance).await;
        assert_eq!(r.status.as_u16(), 400, "{query}: {}", r.body);
    }
}

/// A row Cost Explorer wrote that cannot be read is left out and named (call, row,
/// field); the rest of the page is kept.
#[tokio::test]
async fn an_unreadable_row_is_named_and_the_rest_of_the_page_kept() {
    let group = |keys: [&str; 2], amount: &str| json!({"Keys": keys, "Metrics": {"UnblendedCost": {"Amount": amount, "Unit": "USD"}}});
    let _lock = lock_cost_results().await;
    seed_cost_results(json!([{
        "GroupDefinitions": [
            {"Type": "TAG", "Key": "strata:environment"},
            {"Type": "TAG", "Key": "strata:project"}
        ],
        "ResultsByTime": [
            {
                "TimePeriod": {"Start": "2026-10-30", "End": "2026-10-31"},
                "Total": {},
                "Groups": [
                    group(["strata:environment$prod", "strata:project$checkout"], "1.5"),
                    group(["strata:environment$prod", "strata:project$search"], "n/a")
                ],
                "Estimated": false
            },
            {
                "TimePeriod": {"Start": "30/10/2026", "End": "2026-11-01"},
                "Total": {},
                "Groups": [group(["strata:environment$dev", "strata:project$x"], "2")],
                "Estimated": false
            }
        ],
        "DimensionValueAttributes": []
    }]))
    .await;
    let aws = moto_clients("http://127.0.0.1:9/{region}/v1").await;
    let query = CostQuery {
        start: day(2026, 10, 30),
        end: day(2026, 11, 1),
        group_by: vec!["strata:environment".into(), "strata:project".into()],
        services: vec![format!("strata-test-{}", uuid::Uuid::now_v7())],
        metric: "UnblendedCost".into(),
    };
    let page = aws.cost_usage.page(&query, None).await.unwrap();
    assert_eq!(page.rows.len(), 1);
    assert_eq!(page.rows[0].amount_micros, 1_500_000);
    let skipped: Vec<String> = page.skipped.iter().map(ToString::to_string).collect();
    assert_eq!(
        skipped,
        [
            "GetCostAndUsage: the row of 2026-10-30 for [strata:environment$prod, strata:project$search]: Metrics.UnblendedCost.Amount: not a number: \"n/a\"",
            "GetCostAndUsage: the row of 30/10/2026 for [strata:environment$dev, strata:project$x]: TimePeriod.Start: not a day: \"30/10/2026\"",
        ]
    );
}

/// Rows strata cannot attribute (an unknown environment, a project it never had) are
/// stored as reported and counted; a row outside the days asked is left out and named;
/// the refresh as a whole succeeds.
#[tokio::test]
async fn a_refresh_keeps_and_counts_what_it_cannot_attribute() {
    struct Messy(String);
    #[async_trait]
    impl CostUsage for Messy {
        async fn page(&self, query: &CostQuery, _: Option<&str>) -> Result<CostPage, AwsError> {
            let row = |day: NaiveDate, env: &str, value: &str, usd: i64| CostRow {
                day,
                tags: vec![
                    ("strata:environment".into(), env.into()),
                    (query.group_by[1].clone(), value.into()),
                ],
                amount_micros: usd * 1_000_000,
                unit: "USD".into(),
                estimated: false,
            };
            Ok(CostPage {
                rows: vec![
                    row(query.start, "prod", &self.0, 5),
                    row(query.start, "qa", &self.0, 7),
                    row(query.start, "prod", "not-a-project", 11),
                    row(query.start, "", "", 13),
                    row(query.end, "prod", &self.0, 17),
                ],
                next_token: None,
                skipped: Vec::new(),
            })
        }

        async fn forecast(&self, _: &ForecastQuery) -> Result<CostForecast, AwsError> {
            Err(AwsError::new(
                "ce",
                "GetCostForecast",
                ErrorKind::Invalid,
                None,
                "none",
            ))
        }
    }
    let app = TestApp::spawn().await;
    let created = app
        .post("/api/v1/projects", &app.admin, &project_body("billed"))
        .await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let today = day(2026, 11, 20);
    let services = Services::new(app.state.services.store.clone(), noon(today));
    let settings = CostSettings {
        history_days: 2,
        ..CostSettings::default()
    };
    let report = refresh(&services, &Messy(id.clone()), &settings)
        .await
        .unwrap();
    assert_eq!(report.refreshed, ["strata:project"]);
    assert_eq!(
        (report.unattributed_rows, report.unattributed_micros),
        (2, 18_000_000)
    );
    assert_eq!(report.rows, 4, "the unattributed rows are stored too");
    let skipped: Vec<String> = report.skipped.iter().map(ToString::to_string).collect();
    assert_eq!(
        skipped,
        [format!(
            "GetCostAndUsage: the row of 2026-11-21 for [strata:environment$prod, strata:project${id}]: \
             TimePeriod.Start: outside the days asked, 2026-11-18 to 2026-11-21"
        )]
    );
}

/// Per project and day: the proxy's estimate beside the bill, drift above the threshold
/// flagged (not on days Cost Explorer may restate), billed spend without metered
/// traffic flagged as having bypassed the proxy.
#[tokio::test]
async fn estimate_vs_bill_flags_drift_and_spend_that_bypassed_the_proxy() {
    let app = TestApp::spawn().await;
    let proxy = app.state.proxy_token.expose().to_owned();
    let metered = app.create_project(&project_body("metered")).await;
    let silent = app.create_project(&project_body("silent")).await;
    let (m, s) = (
        metered["id"].as_str().unwrap().to_owned(),
        silent["id"].as_str().unwrap().to_owned(),
    );
    let key = app
        .post(
            &format!("/api/v1/projects/{m}/keys"),
            &app.admin,
            &json!({"name": "k"}),
        )
        .await;
    let kid = key.body["id"].as_str().unwrap().to_owned();
    let record = |minute: &str| {
        json!({"project_id": m, "key_id": kid, "model": "openai.gpt-oss-120b", "minute": minute,
               "requests": 10, "errors": 0, "input_tokens": 1_000_000, "output_tokens": 100_000,
               "cached_tokens": 0, "latency_ms_sum": 10})
    };
    let batch = json!({"batch_id": uuid::Uuid::now_v7(), "records": [
        record("2026-11-10T10:00:00Z"), record("2026-11-11T10:00:00Z"), record("2026-11-12T10:00:00Z")]});
    assert_eq!(
        app.post("/internal/v1/proxy/usage", &proxy, &batch)
            .await
            .status,
        200
    );
    let url = "/api/v1/environments/prod/estimate-vs-bill?from=2026-11-10&to=2026-11-14";
    let before = app.get(url, &app.admin).await;
    assert_eq!(before.status, 200, "{}", before.body);
    let metered_usd = before.body["days"][0]["metered_usd"].as_f64().unwrap();
    assert!(metered_usd > 0.0);
    assert_eq!(
        before.body["days"][0]["billed_usd"],
        serde_json::Value::Null,
        "not reported yet"
    );

    // The bill: day 10 as metered, day 11 10 % higher (drift), day 12 higher still but
    // estimated (no flag yet), and `silent` billed on day 13 without any traffic.
    let micros = (metered_usd * 1e6).round() as i64;
    let figure = |d: u32, project: &str, amount: i64, estimated: bool| CostFigure {
        day: day(2026, 11, d),
        environment: "prod".into(),
        tag_value: project.to_owned(),
        amount_micros: amount,
        unit: "USD".into(),
        estimated,
    };
    app.state
        .services
        .replace_costs(
            "strata:project",
            day(2026, 11, 10),
            day(2026, 11, 14),
            &[
                figure(10, &m, micros, false),
                figure(11, &m, micros * 11 / 10, false),
                figure(12, &m, micros * 2, true),
                figure(13, &s, 3_000_000, false),
            ],
        )
        .await
        .unwrap();
    let r = app.get(url, &app.admin).await;
    let days = r.body["days"].as_array().unwrap();
    let row = |d: &str, p: &str| {
        days.iter()
            .find(|r| r["day"] == d && r["project_id"] == p)
            .unwrap_or_else(|| panic!("{d} {p} missing: {days:?}"))
            .clone()
    };
    assert_eq!(r.body["threshold_percent"], 5.0);
    let exact = row("2026-11-10", &m);
    assert_eq!(
        (exact["difference_percent"].as_f64(), &exact["drift"]),
        (Some(0.0), &json!(false))
    );
    let drifted = row("2026-11-11", &m);
    let diff = drifted["difference_percent"].as_f64().unwrap();
    assert!((diff + 9.0909).abs() < 0.01, "{drifted}");
    assert_eq!(drifted["drift"], true);
    let restated = row("2026-11-12", &m);
    assert_eq!(
        (&restated["billed_estimated"], &restated["drift"]),
        (&json!(true), &json!(false))
    );
    let bypass = row("2026-11-13", &s);
    assert_eq!(
        (&bypass["bypassed_proxy"], &bypass["project_name"]),
        (&json!(true), &json!("silent"))
    );
    assert_eq!(bypass["metered_usd"], 0.0);
    assert_eq!(
        (r.body["drifted"].as_u64(), r.body["bypassed"].as_u64()),
        (Some(1), Some(1))
    );

    // Finance reads it; a developer may not; a bad range is a 422.
    let dev = app.token("dev@example.com", &["developer"]);
    assert_eq!(app.get(url, &dev).await.status, 403);
    let bad = app
        .get(
            "/api/v1/environments/prod/estimate-vs-bill?from=2026-11-14&to=2026-11-10",
            &app.admin,
        )
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(
        app.get("/api/v1/environments/moon/estimate-vs-bill", &app.admin)
            .await
            .status,
        404
    );
}

/// An environment's cost as FOCUS 1.0: the 43 columns then strata's, Cost Explorer's
/// actuals, and the proxy's estimates (marked) for the days it has not reported.
#[tokio::test]
async fn focus_export_has_focus_columns_actuals_and_marked_estimates() {
    let app = TestApp::spawn().await;
    let proxy = app.state.proxy_token.expose().to_owned();
    let project = app.create_project(&project_body("focused")).await;
    let id = project["id"].as_str().unwrap().to_owned();
    let key = app
        .post(
            &format!("/api/v1/projects/{id}/keys"),
            &app.admin,
            &json!({"name": "k"}),
        )
        .await;
    let kid = key.body["id"].as_str().unwrap().to_owned();
    let batch = json!({"batch_id": uuid::Uuid::now_v7(), "records": [
        {"project_id": id, "key_id": kid, "model": "openai.gpt-oss-120b", "minute": "2026-11-12T09:00:00Z",
         "requests": 1, "errors": 0, "input_tokens": 1_000_000, "output_tokens": 0, "cached_tokens": 0,
         "latency_ms_sum": 1}]});
    assert_eq!(
        app.post("/internal/v1/proxy/usage", &proxy, &batch)
            .await
            .status,
        200
    );
    // Reconciled: its role's account is the billing account of every row.
    {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
        use strata_core::store::entities::project_sync;
        project_sync::Entity::update_many()
            .col_expr(
                project_sync::Column::RoleArn,
                Expr::value("arn:aws:iam::123456789012:role/strata-focused"),
            )
            .filter(project_sync::Column::ProjectId.eq(uuid::Uuid::parse_str(&id).unwrap()))
            .exec(app.state.services.store.db())
            .await
            .unwrap();
    }
    let figure = |d: u32, value: &str, amount: i64, estimated: bool| CostFigure {
        day: day(2026, 11, d),
        environment: "prod".into(),
        tag_value: value.to_owned(),
        amount_micros: amount,
        unit: "USD".into(),
        estimated,
    };
    app.state
        .services
        .replace_costs(
            "strata:project",
            day(2026, 11, 10),
            day(2026, 11, 12),
            &[
                figure(10, &id, 4_250_000, false),
                figure(11, "=HYPERLINK(1)", 1_000_000, true),
            ],
        )
        .await
        .unwrap();
    let r = app
        .client
        .get(app.url("/api/v1/environments/prod/focus.csv?from=2026-11-10&to=2026-11-13"))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("focus-1.0-prod-2026-11-10-2026-11-13.csv")
    );
    let text = r.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header.len(), 47);
    assert_eq!(&header[..43], strata_core::domain::FOCUS_COLUMNS);
    let rows: Vec<std::collections::HashMap<String, String>> = reader
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.unwrap().iter().map(str::to_owned))
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 3, "{text}");
    // FOCUS 1.0: BillingAccountId is never null; a row strata cannot attribute bills
    // to the account strata's roles live in.
    for row in &rows {
        assert_eq!(row["BillingAccountId"], "123456789012", "{row:?}");
    }
    let actual = &rows[0];
    assert_eq!(actual["ChargePeriodStart"], "2026-11-10T00:00:00Z");
    assert_eq!(actual["ChargePeriodEnd"], "2026-11-11T00:00:00Z");
    assert_eq!(actual["BillingPeriodStart"], "2026-11-01T00:00:00Z");
    assert_eq!(actual["BilledCost"], "4.250000");
    assert_eq!(actual["EffectiveCost"], "4.250000");
    assert_eq!(
        (
            actual["ServiceName"].as_str(),
            actual["ChargeCategory"].as_str()
        ),
        ("Amazon Bedrock", "Usage")
    );
    assert_eq!(
        (actual["ResourceName"].as_str(), actual["RegionId"].as_str()),
        ("focused", "us-east-1")
    );
    assert_eq!(
        (actual["x_Source"].as_str(), actual["x_Estimated"].as_str()),
        ("aws-cost-explorer", "false")
    );
    let tags: serde_json::Value = serde_json::from_str(&actual["Tags"]).unwrap();
    assert_eq!(tags["CostCenter"], "cc-1234");
    assert_eq!(tags["strata:project"], id.as_str());
    // A tag value strata does not know is kept, named as it is, never as a formula.
    let unknown = &rows[1];
    assert_eq!(unknown["ResourceName"], "'=HYPERLINK(1)");
    assert_eq!(
        (
            unknown["x_StrataProjectId"].as_str(),
            unknown["x_Estimated"].as_str()
        ),
        ("", "true")
    );
    // Day 12: Cost Explorer was not asked yet, the proxy's metering stands in.
    let estimate = &rows[2];
    assert_eq!(estimate["ChargePeriodStart"], "2026-11-12T00:00:00Z");
    assert_eq!(
        (
            estimate["x_Source"].as_str(),
            estimate["x_Estimated"].as_str()
        ),
        ("strata-proxy-estimate", "true")
    );
    assert!(estimate["BilledCost"].parse::<f64>().unwrap() > 0.0);

    let dev = app.token("dev@example.com", &["developer"]);
    let refused = app.get("/api/v1/environments/prod/focus.csv", &dev).await;
    assert_eq!(refused.status, 403);
}
