//! The Resource Groups Tagging API over aws-sdk-resourcegroupstagging.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_resourcegroupstagging::Client;
use aws_sdk_resourcegroupstagging::config::Region;
use aws_sdk_resourcegroupstagging::types::{FailureInfo, TagFilter};

use crate::error::AwsError;
use crate::{AwsCalls, TagMap, TaggedResource, Tagging};

const SERVICE: &str = "tagging";

pub(crate) struct SdkTagging {
    pub(crate) client: Client,
    pub(crate) calls: AwsCalls,
}

fn in_region(region: &str) -> aws_sdk_resourcegroupstagging::config::Builder {
    aws_sdk_resourcegroupstagging::config::Builder::default().region(Region::new(region.to_owned()))
}

fn failures(
    map: Option<&std::collections::HashMap<String, FailureInfo>>,
) -> BTreeMap<String, String> {
    map.into_iter()
        .flatten()
        .map(|(arn, info)| {
            let reason = format!(
                "{}: {}",
                info.error_code().map(|c| c.as_str()).unwrap_or("Error"),
                info.error_message().unwrap_or_default()
            );
            (arn.clone(), reason)
        })
        .collect()
}

#[async_trait]
impl Tagging for SdkTagging {
    async fn tag_resources(
        &self,
        region: &str,
        arns: &[String],
        tags: &TagMap,
    ) -> Result<BTreeMap<String, String>, AwsError> {
        let call = async {
            self.client
                .tag_resources()
                .set_resource_arn_list(Some(arns.to_vec()))
                .set_tags(Some(tags.clone().into_iter().collect()))
                .customize()
                .config_override(in_region(region))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(SERVICE, "TagResources", e))
        };
        let out = self.calls.track(SERVICE, "TagResources", call).await?;
        Ok(failures(out.failed_resources_map()))
    }

    async fn untag_resources(
        &self,
        region: &str,
        arns: &[String],
        keys: &[String],
    ) -> Result<BTreeMap<String, String>, AwsError> {
        let call = async {
            self.client
                .untag_resources()
                .set_resource_arn_list(Some(arns.to_vec()))
                .set_tag_keys(Some(keys.to_vec()))
                .customize()
                .config_override(in_region(region))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(SERVICE, "UntagResources", e))
        };
        let out = self.calls.track(SERVICE, "UntagResources", call).await?;
        Ok(failures(out.failed_resources_map()))
    }

    async fn resources_tagged(
        &self,
        region: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<Vec<TaggedResource>, AwsError> {
        let filter = TagFilter::builder()
            .key(key)
            .set_values(value.map(|v| vec![v.to_owned()]))
            .build();
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let call = async {
                self.client
                    .get_resources()
                    .tag_filters(filter.clone())
                    .resources_per_page(100)
                    .set_pagination_token(token.clone())
                    .customize()
                    .config_override(in_region(region))
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk(SERVICE, "GetResources", e))
            };
            let page = self.calls.track(SERVICE, "GetResources", call).await?;
            for mapping in page.resource_tag_mapping_list() {
                let Some(arn) = mapping.resource_arn() else {
                    continue;
                };
                out.push(TaggedResource {
                    arn: arn.to_owned(),
                    tags: mapping
                        .tags()
                        .iter()
                        .map(|t| (t.key().to_owned(), t.value().to_owned()))
                        .collect(),
                });
            }
            match page.pagination_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(out)
    }
}
