//! Cost-allocation tags over aws-sdk-costexplorer.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_costexplorer::Client;
use aws_sdk_costexplorer::types::{CostAllocationTagStatus, CostAllocationTagStatusEntry};

use crate::error::AwsError;
use crate::{AwsCalls, CostAllocationTags, CostTagStatus, ErrorKind};

const SERVICE: &str = "ce";

pub(crate) struct SdkCostTags {
    pub(crate) client: Client,
    pub(crate) calls: AwsCalls,
}

#[async_trait]
impl CostAllocationTags for SdkCostTags {
    async fn statuses(&self, keys: &[String]) -> Result<BTreeMap<String, CostTagStatus>, AwsError> {
        // A key AWS has not seen yet is simply absent from the answer.
        let mut out: BTreeMap<String, CostTagStatus> = keys
            .iter()
            .map(|k| (k.clone(), CostTagStatus::NotSeen))
            .collect();
        for chunk in keys.chunks(100) {
            let mut token: Option<String> = None;
            loop {
                let call = async {
                    self.client
                        .list_cost_allocation_tags()
                        .set_tag_keys(Some(chunk.to_vec()))
                        .set_next_token(token.clone())
                        .send()
                        .await
                        .map_err(|e| AwsError::from_sdk(SERVICE, "ListCostAllocationTags", e))
                };
                let page = self
                    .calls
                    .track(SERVICE, "ListCostAllocationTags", call)
                    .await?;
                for tag in page.cost_allocation_tags() {
                    let status = match tag.status() {
                        CostAllocationTagStatus::Active => CostTagStatus::Active,
                        _ => CostTagStatus::Inactive,
                    };
                    if let Some(entry) = out.get_mut(tag.tag_key()) {
                        *entry = status;
                    }
                }
                match page.next_token() {
                    Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                    _ => break,
                }
            }
        }
        Ok(out)
    }

    async fn activate(&self, keys: &[String]) -> Result<BTreeMap<String, String>, AwsError> {
        let entries = keys
            .iter()
            .map(|k| {
                CostAllocationTagStatusEntry::builder()
                    .tag_key(k)
                    .status(CostAllocationTagStatus::Active)
                    .build()
                    .map_err(|e| {
                        AwsError::new(
                            SERVICE,
                            "UpdateCostAllocationTagsStatus",
                            ErrorKind::Invalid,
                            None,
                            e.to_string(),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let call = async {
            self.client
                .update_cost_allocation_tags_status()
                .set_cost_allocation_tags_status(Some(entries))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(SERVICE, "UpdateCostAllocationTagsStatus", e))
        };
        let out = self
            .calls
            .track(SERVICE, "UpdateCostAllocationTagsStatus", call)
            .await?;
        Ok(out
            .errors()
            .iter()
            .map(|e| {
                (
                    e.tag_key().unwrap_or_default().to_owned(),
                    format!(
                        "{}: {}",
                        e.code().unwrap_or("Error"),
                        e.message().unwrap_or_default()
                    ),
                )
            })
            .collect())
    }
}
