//! The moto server, the AWS wire-protocol fake the test command starts
//! (`STRATA_TEST_MOTO_URL`), and AWS clients pointed at it.

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use strata_aws::{AwsCalls, AwsClients, AwsSettings};

/// The account moto answers for.
pub const MOTO_ACCOUNT: &str = "123456789012";

/// moto's URL; a missing server fails the test with how to start one.
pub fn moto_url() -> String {
    std::env::var("STRATA_TEST_MOTO_URL").unwrap_or_else(|_| {
        panic!(
            "STRATA_TEST_MOTO_URL is not set: these tests need the moto server. Run scripts/test \
             (it starts one), or: .venv/bin/moto_server -H 127.0.0.1 -p 5055 & \
             export STRATA_TEST_MOTO_URL=http://127.0.0.1:5055"
        )
    })
}

/// An SDK configuration that talks to moto with test credentials.
pub async fn moto_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(moto_url())
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await
}

/// strata's adapters against moto (IAM, tagging, STS) and the given Mantle URL.
pub async fn moto_clients(mantle_url: &str) -> AwsClients {
    let config = moto_sdk_config().await;
    AwsClients::from_sdk_config(
        &config,
        &AwsSettings {
            mantle_url: mantle_url.to_owned(),
        },
        AwsCalls::new(),
        None,
    )
}

/// A raw IAM client on moto, to make drift behind strata's back.
pub async fn moto_iam() -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::new(&moto_sdk_config().await)
}

/// Makes an S3 bucket on moto (through its REST API; no S3 SDK needed) and
/// returns its ARN.
pub async fn create_bucket(name: &str) -> String {
    let url = format!("{}/{name}", moto_url());
    let res = reqwest::Client::new()
        .put(&url)
        .header("authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0")
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating bucket {name} on moto: {e}"));
    assert!(
        res.status().is_success(),
        "creating bucket {name}: {}",
        res.status()
    );
    format!("arn:aws:s3:::{name}")
}

/// moto hands each new distinct `GetCostAndUsage` request the next queued answer,
/// whoever asks: a test that seeds answers and then asks holds this lock (across test
/// processes) from seeding to its last call, so no other test takes its answers.
pub struct CostResultsLock(std::path::PathBuf);

impl Drop for CostResultsLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Takes the Cost Explorer lock of this moto (a directory only one process can make).
pub async fn lock_cost_results() -> CostResultsLock {
    let name: String = moto_url()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let path = std::env::temp_dir().join(format!("strata-moto-ce-{name}"));
    for _ in 0..600 {
        if std::fs::create_dir(&path).is_ok() {
            return CostResultsLock(path);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "waited 30 s for {}; if no test is running, remove it",
        path.display()
    )
}

/// Queues `GetCostAndUsage` answers in moto (hold `lock_cost_results` meanwhile).
pub async fn seed_cost_results(results: serde_json::Value) {
    let res = reqwest::Client::new()
        .post(format!(
            "{}/moto-api/static/ce/cost-and-usage-results",
            moto_url()
        ))
        .json(&serde_json::json!({ "results": results }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("seeding moto: {e}"));
    assert_eq!(res.status().as_u16(), 201, "seeding moto's Cost Explorer");
}
