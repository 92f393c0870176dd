//! The SDK adapters against `aws-smithy-mocks`: what moto cannot do (Cost
//! Explorer's tag operations, throttling, ConcurrentModification).

use aws_sdk_costexplorer::operation::list_cost_allocation_tags::ListCostAllocationTagsOutput;
use aws_sdk_costexplorer::operation::update_cost_allocation_tags_status::UpdateCostAllocationTagsStatusOutput;
use aws_sdk_costexplorer::types::{
    CostAllocationTag, CostAllocationTagStatus, CostAllocationTagType,
    UpdateCostAllocationTagsStatusError,
};
use aws_sdk_iam::operation::put_role_policy::PutRolePolicyOutput;
use aws_smithy_mocks::{RuleMode, mock, mock_client};

use crate::cost_tags::SdkCostTags;
use crate::cost_usage::SdkCostUsage;
use crate::iam::SdkIam;
use crate::{AwsCalls, CostAllocationTags, CostQuery, CostTagStatus, CostUsage, ErrorKind, Iam};

fn iam_error(status: u16, code: &str) -> aws_smithy_runtime_api::http::Response {
    let body = format!(
        "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{code} injected</Message></Error><RequestId>1</RequestId></ErrorResponse>"
    );
    aws_smithy_runtime_api::http::Response::new(
        aws_smithy_runtime_api::http::StatusCode::try_from(status)
            .unwrap_or_else(|e| panic!("{e}")),
        aws_smithy_types::body::SdkBody::from(body),
    )
}

#[tokio::test]
async fn cost_tag_statuses_and_activation() {
    let list = mock!(aws_sdk_costexplorer::Client::list_cost_allocation_tags).then_output(|| {
        ListCostAllocationTagsOutput::builder()
            .cost_allocation_tags(
                CostAllocationTag::builder()
                    .tag_key("strata:project")
                    .r#type(CostAllocationTagType::UserDefined)
                    .status(CostAllocationTagStatus::Inactive)
                    .build()
                    .unwrap_or_else(|e| panic!("{e}")),
            )
            .cost_allocation_tags(
                CostAllocationTag::builder()
                    .tag_key("CostCenter")
                    .r#type(CostAllocationTagType::UserDefined)
                    .status(CostAllocationTagStatus::Active)
                    .build()
                    .unwrap_or_else(|e| panic!("{e}")),
            )
            .build()
    });
    let update = mock!(aws_sdk_costexplorer::Client::update_cost_allocation_tags_status)
        .match_requests(|req| req.cost_allocation_tags_status().len() <= 20)
        .then_output(|| {
            UpdateCostAllocationTagsStatusOutput::builder()
                .errors(
                    UpdateCostAllocationTagsStatusError::builder()
                        .tag_key("Team")
                        .code("TagKeysNotFoundException")
                        .message("not seen yet")
                        .build(),
                )
                .build()
        });
    let client = mock_client!(aws_sdk_costexplorer, RuleMode::MatchAny, [&list, &update]);
    let calls = AwsCalls::new();
    let ce = SdkCostTags {
        client,
        calls: calls.clone(),
    };
    let keys = vec![
        "strata:project".to_owned(),
        "CostCenter".to_owned(),
        "Team".to_owned(),
    ];
    let statuses = ce.statuses(&keys).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(statuses["strata:project"], CostTagStatus::Inactive);
    assert_eq!(statuses["CostCenter"], CostTagStatus::Active);
    assert_eq!(statuses["Team"], CostTagStatus::NotSeen);
    let refused = ce
        .activate(&["strata:project".to_owned(), "Team".to_owned()])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(refused.keys().collect::<Vec<_>>(), ["Team"]);
    assert!(refused["Team"].starts_with("TagKeysNotFoundException"));
    assert_eq!((list.num_calls(), update.num_calls()), (1, 1));
    let counts = calls.snapshot();
    assert_eq!((counts.reads(), counts.mutating()), (1, 1));
}

#[tokio::test]
async fn throttling_is_retried_by_the_sdk_and_concurrent_modification_is_ours_to_retry() {
    let throttled_then_ok = mock!(aws_sdk_iam::Client::put_role_policy)
        .sequence()
        .http_response(|| iam_error(400, "Throttling"))
        .output(|| PutRolePolicyOutput::builder().build())
        .build();
    let client = mock_client!(aws_sdk_iam, RuleMode::Sequential, [&throttled_then_ok]);
    let iam = SdkIam {
        client,
        calls: AwsCalls::new(),
    };
    iam.put_role_policy("r", "p", "{}")
        .await
        .unwrap_or_else(|e| panic!("throttling should be retried: {e}"));
    assert_eq!(throttled_then_ok.num_calls(), 2);

    let conflict = mock!(aws_sdk_iam::Client::put_role_policy)
        .then_http_response(|| iam_error(409, "ConcurrentModification"));
    let client = mock_client!(aws_sdk_iam, [&conflict]);
    let iam = SdkIam {
        client,
        calls: AwsCalls::new(),
    };
    let err = iam
        .put_role_policy("r", "p", "{}")
        .await
        .err()
        .unwrap_or_else(|| panic!("ConcurrentModification should fail"));
    assert_eq!(err.kind, ErrorKind::Retryable, "{err}");
    assert_eq!(err.code.as_deref(), Some("ConcurrentModification"));

    let missing =
        mock!(aws_sdk_iam::Client::get_role).then_http_response(|| iam_error(404, "NoSuchEntity"));
    let client = mock_client!(aws_sdk_iam, [&missing]);
    let iam = SdkIam {
        client,
        calls: AwsCalls::new(),
    };
    assert_eq!(iam.get_role("nope").await.ok(), Some(None));
}

/// One day of `GetCostAndUsage` output with the given (keys, amount) groups.
fn cost_day(
    start: &str,
    end: &str,
    estimated: bool,
    groups: &[(&[&str], &str)],
) -> aws_sdk_costexplorer::types::ResultByTime {
    use aws_sdk_costexplorer::types::{DateInterval, Group, MetricValue, ResultByTime};
    let mut day = ResultByTime::builder()
        .time_period(
            DateInterval::builder()
                .start(start)
                .end(end)
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .estimated(estimated);
    for (keys, amount) in groups {
        let mut group = Group::builder().metrics(
            "UnblendedCost",
            MetricValue::builder().amount(*amount).unit("USD").build(),
        );
        for key in *keys {
            group = group.keys(*key);
        }
        day = day.groups(group.build());
    }
    day.build()
}

#[tokio::test]
async fn cost_pages_follow_the_token_and_keep_untagged_cost() {
    use aws_sdk_costexplorer::operation::get_cost_and_usage::GetCostAndUsageOutput;
    use aws_sdk_costexplorer::types::{Dimension, Granularity, GroupDefinitionType};

    let first = mock!(aws_sdk_costexplorer::Client::get_cost_and_usage)
        .match_requests(|req| {
            let period = req.time_period();
            let groups: Vec<_> = req
                .group_by()
                .iter()
                .map(|g| (g.r#type().cloned(), g.key().unwrap_or_default().to_owned()))
                .collect();
            let services = req
                .filter()
                .and_then(|f| f.dimensions())
                .filter(|d| d.key() == Some(&Dimension::Service))
                .map(|d| d.values().to_vec());
            req.next_page_token().is_none()
                && period.map(|p| (p.start(), p.end())) == Some(("2026-11-01", "2026-11-03"))
                && req.granularity() == Some(&Granularity::Daily)
                && req.metrics() == ["UnblendedCost"]
                && groups
                    == [
                        (
                            Some(GroupDefinitionType::Tag),
                            "strata:environment".to_owned(),
                        ),
                        (Some(GroupDefinitionType::Tag), "CostCenter".to_owned()),
                    ]
                && services == Some(vec!["Amazon Bedrock".to_owned()])
        })
        .then_output(|| {
            GetCostAndUsageOutput::builder()
                .results_by_time(cost_day(
                    "2026-11-01",
                    "2026-11-02",
                    false,
                    &[
                        (&["strata:environment$prod", "CostCenter$eng"], "12.3456789"),
                        (&["strata:environment$prod", "CostCenter$"], "0.5"),
                    ],
                ))
                .next_page_token("page-2")
                .build()
        });
    let second = mock!(aws_sdk_costexplorer::Client::get_cost_and_usage)
        .match_requests(|req| req.next_page_token() == Some("page-2"))
        .then_output(|| {
            GetCostAndUsageOutput::builder()
                .results_by_time(cost_day(
                    "2026-11-02",
                    "2026-11-03",
                    true,
                    &[(&["strata:environment$", "CostCenter$"], "3")],
                ))
                .build()
        });
    let client = mock_client!(aws_sdk_costexplorer, RuleMode::MatchAny, [&first, &second]);
    let calls = AwsCalls::new();
    let ce = SdkCostUsage {
        client,
        calls: calls.clone(),
    };
    let query = CostQuery {
        start: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap_or_default(),
        end: chrono::NaiveDate::from_ymd_opt(2026, 11, 3).unwrap_or_default(),
        group_by: vec!["strata:environment".into(), "CostCenter".into()],
        services: vec!["Amazon Bedrock".into()],
        metric: "UnblendedCost".into(),
    };
    let page = ce
        .page(&query, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.next_token.as_deref(), Some("page-2"));
    let read: Vec<_> = page
        .rows
        .iter()
        .map(|r| {
            (
                r.day.to_string(),
                r.tags.clone(),
                r.amount_micros,
                r.estimated,
            )
        })
        .collect();
    let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    assert_eq!(
        read,
        [
            (
                "2026-11-01".to_owned(),
                vec![
                    pair("strata:environment", "prod"),
                    pair("CostCenter", "eng")
                ],
                12_345_679,
                false
            ),
            (
                "2026-11-01".to_owned(),
                vec![pair("strata:environment", "prod"), pair("CostCenter", "")],
                500_000,
                false
            ),
        ]
    );
    let last = ce
        .page(&query, page.next_token.as_deref())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(last.next_token, None);
    assert_eq!(last.rows.len(), 1);
    assert_eq!(
        (
            last.rows[0].tags.clone(),
            last.rows[0].amount_micros,
            last.rows[0].estimated
        ),
        (
            vec![pair("strata:environment", ""), pair("CostCenter", "")],
            3_000_000,
            true
        )
    );
    assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
    assert_eq!(calls.snapshot().reads(), 2, "every page is a counted call");
}

#[tokio::test]
async fn cost_forecast_asks_for_one_environment_and_reads_the_total() {
    use aws_sdk_costexplorer::operation::get_cost_forecast::{
        GetCostForecastError, GetCostForecastOutput,
    };
    use aws_sdk_costexplorer::types::{Granularity, Metric, MetricValue};
    let answer = mock!(aws_sdk_costexplorer::Client::get_cost_forecast)
        .match_requests(|req| {
            let filter = req.filter();
            let and = filter.map(|f| f.and()).unwrap_or_default();
            let tag = and.iter().find_map(|e| e.tags());
            let services = and.iter().find_map(|e| e.dimensions());
            req.granularity() == Some(&Granularity::Monthly)
                && req.metric() == Some(&Metric::UnblendedCost)
                && req.time_period().map(|p| (p.start(), p.end()))
                    == Some(("2026-11-27", "2026-12-01"))
                && tag.and_then(|t| t.key()) == Some("strata:environment")
                && tag.map(|t| t.values()) == Some(&["prod".to_owned()][..])
                && services.map(|d| d.values()) == Some(&["Amazon Bedrock".to_owned()][..])
        })
        .then_output(|| {
            GetCostForecastOutput::builder()
                .total(
                    MetricValue::builder()
                        .amount("1234.5678912")
                        .unit("USD")
                        .build(),
                )
                .build()
        });
    let refused = mock!(aws_sdk_costexplorer::Client::get_cost_forecast)
        .match_requests(|req| {
            req.filter()
                .map(|f| f.and())
                .unwrap_or_default()
                .iter()
                .any(|e| e.tags().is_some_and(|t| t.values() == ["dev".to_owned()]))
        })
        .then_error(|| {
            GetCostForecastError::DataUnavailableException(
                aws_sdk_costexplorer::types::error::DataUnavailableException::builder()
                    .message("not enough history")
                    .meta(
                        aws_smithy_types::error::ErrorMetadata::builder()
                            .code("DataUnavailableException")
                            .message("not enough history")
                            .build(),
                    )
                    .build(),
            )
        });
    let client = mock_client!(
        aws_sdk_costexplorer,
        RuleMode::MatchAny,
        [&answer, &refused]
    );
    let calls = AwsCalls::new();
    let ce = SdkCostUsage {
        client,
        calls: calls.clone(),
    };
    let query = |env: &str| crate::ForecastQuery {
        start: chrono::NaiveDate::from_ymd_opt(2026, 11, 27).unwrap_or_default(),
        end: chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap_or_default(),
        tag: ("strata:environment".into(), env.into()),
        services: vec!["Amazon Bedrock".into()],
        metric: "UnblendedCost".into(),
    };
    let forecast = ce
        .forecast(&query("prod"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        forecast,
        crate::CostForecast {
            amount_micros: 1_234_567_891,
            unit: "USD".into()
        }
    );
    let refusal = match ce.forecast(&query("dev")).await {
        Ok(f) => panic!("a refused forecast was read as {f:?}"),
        Err(e) => e,
    };
    assert!(
        refusal.to_string().contains("not enough history"),
        "{refusal}"
    );
    assert_eq!((answer.num_calls(), refused.num_calls()), (1, 1));
    assert_eq!(
        calls.snapshot().reads(),
        2,
        "both forecasts are counted calls"
    );
}

/// IAM through a credentials provider that fails with `error`.
fn iam_without_credentials(
    error: fn() -> aws_credential_types::provider::error::CredentialsError,
) -> SdkIam {
    let failing = aws_credential_types::provider::SharedCredentialsProvider::new(
        aws_credential_types::credential_fn::provide_credentials_fn(
            move || async move { Err(error()) },
        ),
    );
    let config = aws_sdk_iam::Config::builder()
        .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
        .region(aws_sdk_iam::config::Region::new("us-east-1"))
        // Never reached: the call fails before it is sent.
        .endpoint_url("http://127.0.0.1:9")
        .credentials_provider(failing)
        .build();
    SdkIam {
        client: aws_sdk_iam::Client::from_conf(config),
        calls: AwsCalls::new(),
    }
}

#[tokio::test]
async fn missing_credentials_are_a_denial_and_a_slow_provider_is_retried() {
    use aws_credential_types::provider::error::CredentialsError;
    let missing =
        iam_without_credentials(|| CredentialsError::not_loaded("no profile, no environment"));
    let err = missing
        .get_role("r")
        .await
        .err()
        .unwrap_or_else(|| panic!("a call without credentials succeeded"));
    assert_eq!(err.kind, ErrorKind::Denied, "{err}");
    let slow = iam_without_credentials(|| {
        CredentialsError::provider_timed_out(std::time::Duration::from_secs(1))
    });
    let err = slow
        .get_role("r")
        .await
        .err()
        .unwrap_or_else(|| panic!("a call without credentials succeeded"));
    assert_eq!(err.kind, ErrorKind::Retryable, "{err}");
}
