//! Who strata runs as, over aws-sdk-sts.

use async_trait::async_trait;
use aws_sdk_sts::Client;

use crate::error::AwsError;
use crate::{AwsCalls, ErrorKind, Identity};

const SERVICE: &str = "sts";

pub(crate) struct SdkIdentity {
    pub(crate) client: Client,
    pub(crate) calls: AwsCalls,
    /// The account never changes while the process runs.
    pub(crate) account: tokio::sync::OnceCell<String>,
}

#[async_trait]
impl Identity for SdkIdentity {
    async fn account_id(&self) -> Result<String, AwsError> {
        self.account
            .get_or_try_init(|| async {
                let call = async {
                    let out = self
                        .client
                        .get_caller_identity()
                        .send()
                        .await
                        .map_err(|e| AwsError::from_sdk(SERVICE, "GetCallerIdentity", e))?;
                    out.account().map(str::to_owned).ok_or_else(|| {
                        AwsError::new(
                            SERVICE,
                            "GetCallerIdentity",
                            ErrorKind::Invalid,
                            None,
                            "no account in the response",
                        )
                    })
                };
                self.calls.track(SERVICE, "GetCallerIdentity", call).await
            })
            .await
            .cloned()
    }
}
