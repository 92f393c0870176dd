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
use crate::iam::SdkIam;
use crate::{AwsCalls, CostAllocationTags, CostTagStatus, ErrorKind, Iam};

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
