//! Cost ingestion against moto's Cost Explorer (`GetCostAndUsage` answers what the
//! test seeds through `/moto-api/static/ce/cost-and-usage-results`).

use chrono::NaiveDate;
use serde_json::json;
use strata_aws::CostQuery;
use strata_testkit::moto::{moto_clients, moto_url};

/// Queues `GetCostAndUsage` answers in moto. moto gives each new distinct request body
/// the next queued answer, so a test asks questions no other test asks (here: its own
/// service name in the filter).
async fn seed_cost_results(results: serde_json::Value) {
    let res = reqwest::Client::new()
        .post(format!(
            "{}/moto-api/static/ce/cost-and-usage-results",
            moto_url()
        ))
        .json(&json!({ "results": results }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("seeding moto: {e}"));
    assert_eq!(res.status().as_u16(), 201, "seeding moto's Cost Explorer");
}

#[tokio::test]
async fn cost_explorer_answers_are_read_by_tag_with_untagged_cost_kept() {
    let group = |keys: [&str; 2], amount: &str| json!({"Keys": keys, "Metrics": {"UnblendedCost": {"Amount": amount, "Unit": "USD"}}});
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
