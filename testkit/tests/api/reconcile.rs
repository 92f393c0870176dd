//! The reconciler against real wire protocols: moto for IAM, STS and the tagging
//! API, the fake Mantle for Mantle's Projects API.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use strata_aws::{
    AwsClients, AwsError, CostAllocationTags, CostTagStatus, ErrorKind, Iam, NewRole, Role, TagMap,
};
use strata_core::domain::{Environment, ProjectSlug};
use strata_core::policy::{parse_policy, role_name};
use strata_core::store::entities::project_sync;
use strata_reconciler::{Reconciler, ReconcilerConfig};
use strata_testkit::moto::{MOTO_ACCOUNT, create_bucket, moto_clients, moto_iam};
use strata_testkit::{FakeMantle, TestApp, project_body};
use uuid::Uuid;

struct World {
    app: TestApp,
    mantle: FakeMantle,
    iam: aws_sdk_iam::Client,
}

async fn world() -> World {
    world_with(|aws| aws).await
}

async fn world_with(wrap: impl FnOnce(AwsClients) -> AwsClients) -> World {
    let mantle = FakeMantle::start().await;
    let aws = wrap(moto_clients(&mantle.url()).await);
    let app = TestApp::builder()
        .aws(aws)
        .reconciler(ReconcilerConfig {
            cost_allocation_tags: Vec::new(),
            ..ReconcilerConfig::default()
        })
        .spawn()
        .await;
    World {
        app,
        mantle,
        iam: moto_iam().await,
    }
}

fn uniq(prefix: &str) -> String {
    format!("{prefix}-{}", &Uuid::now_v7().simple().to_string()[20..])
}

impl World {
    fn reconciler(&self) -> &Reconciler {
        &self.app.state.reconciler
    }

    async fn create(&self, body: Value) -> (Uuid, Value) {
        let p = self.app.create_project(&body).await;
        let id = Uuid::parse_str(p["id"].as_str().unwrap_or_default()).unwrap();
        (id, p)
    }

    /// One pass over the project; returns what it changed.
    async fn pass(&self, id: Uuid) -> strata_reconciler::runner::PassSummary {
        self.reconciler()
            .run_for(&[id])
            .await
            .unwrap_or_else(|e| panic!("pass: {e}"))
    }

    async fn project(&self, id: Uuid) -> Value {
        self.app
            .get(&format!("/api/v1/projects/{id}"), &self.app.admin)
            .await
            .body
    }

    fn role(&self, project: &Value) -> String {
        let slug = ProjectSlug::parse(project["name"].as_str().unwrap_or_default()).unwrap();
        let env = Environment::parse(project["environment"].as_str().unwrap_or_default()).unwrap();
        let id = Uuid::parse_str(project["id"].as_str().unwrap_or_default()).unwrap();
        role_name(env, &slug, id)
    }

    async fn policy_models(&self, role: &str) -> Vec<String> {
        let doc = self
            .iam
            .get_role_policy()
            .role_name(role)
            .policy_name("strata-inference")
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetRolePolicy: {e:?}"));
        let policy = parse_policy(doc.policy_document()).unwrap();
        let statements = policy["Statement"].as_array().cloned().unwrap_or_default();
        let Some(scoped) = statements.iter().find(|s| s["Sid"] == "MantleInference") else {
            panic!("no MantleInference statement in {policy}");
        };
        let models = &scoped["Condition"]["StringEquals"]["bedrock-mantle:Model"];
        let mut out: Vec<String> = match models {
            Value::Array(a) => a
                .iter()
                .filter_map(|m| m.as_str().map(str::to_owned))
                .collect(),
            Value::String(s) => vec![s.clone()],
            _ => Vec::new(),
        };
        out.sort();
        out
    }

    async fn role_tags(&self, role: &str) -> BTreeMap<String, String> {
        let out = self
            .iam
            .list_role_tags()
            .role_name(role)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        out.tags()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect()
    }

    async fn role_exists(&self, role: &str) -> bool {
        self.iam.get_role().role_name(role).send().await.is_ok()
    }

    async fn bucket_tags(&self, arn: &str) -> BTreeMap<String, String> {
        let tagging = aws_sdk_resourcegroupstagging::Client::new(
            &strata_testkit::moto::moto_sdk_config().await,
        );
        // Every page: a moto that outlived many runs holds more buckets than one page.
        let mut token: Option<String> = None;
        loop {
            let out = tagging
                .get_resources()
                .resource_type_filters("s3")
                .set_pagination_token(token.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e:?}"));
            if let Some(m) = out
                .resource_tag_mapping_list()
                .iter()
                .find(|m| m.resource_arn() == Some(arn))
            {
                return m
                    .tags()
                    .iter()
                    .map(|t| (t.key().to_owned(), t.value().to_owned()))
                    .collect();
            }
            match out.pagination_token().filter(|t| !t.is_empty()) {
                Some(next) => token = Some(next.to_owned()),
                None => return BTreeMap::new(),
            }
        }
    }
}

fn condition<'a>(project: &'a Value, kind: &str) -> &'a Value {
    project["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind))
        .unwrap_or_else(|| panic!("no {kind} condition in {project}"))
}

fn body_with_bucket(name: &str, bucket_arn: &str) -> Value {
    let mut body = project_body(name);
    body["resources"] = json!([bucket_arn]);
    body
}

#[tokio::test]
async fn a_new_project_gets_its_aws_resources_and_a_second_pass_writes_nothing() {
    let w = world().await;
    let bucket = create_bucket(&uniq("prompts")).await;
    let (id, created) = w.create(body_with_bucket("checkout", &bucket)).await;
    assert!(
        w.project(id).await["conditions"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "no conditions before the first pass"
    );
    let first = w.pass(id).await;
    assert_eq!(first.ready, 1, "{:?}", first.failed);

    let p = w.project(id).await;
    for kind in ["MantleProjectReady", "IamRoleReady", "TagsReady", "Ready"] {
        assert_eq!(condition(&p, kind)["status"], "True", "{kind}: {p}");
    }
    assert_eq!(p["observed_generation"], p["generation"]);
    let mantle_id = p["aws"]["mantle_project_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(mantle_id.starts_with("proj_"), "{p}");
    assert_eq!(
        p["aws"]["mantle_project_arn"],
        format!("arn:aws:bedrock-mantle:us-east-1:{MOTO_ACCOUNT}:project/{mantle_id}")
    );

    // Mantle: one project, named and tagged for this project.
    let projects = w.mantle.projects();
    assert_eq!(projects.len(), 1);
    assert_eq!(projects[0].tags["strata:project"], id.to_string());
    assert_eq!(projects[0].tags["CostCenter"], "cc-1234");

    // IAM: the role under /strata/prod/, its tags, exactly the project's models.
    let role = w.role(&created);
    let got = w
        .iam
        .get_role()
        .role_name(&role)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(got.role().map(|r| r.path()), Some("/strata/prod/"));
    assert_eq!(
        p["aws"]["role_arn"],
        format!("arn:aws:iam::{MOTO_ACCOUNT}:role/strata/prod/{role}")
    );
    assert_eq!(
        w.policy_models(&role).await,
        ["openai.gpt-oss-120b", "openai.gpt-oss-20b"]
    );
    let tags = w.role_tags(&role).await;
    assert_eq!(tags["strata:managed-by"], "strata");
    assert_eq!(tags["strata:project"], id.to_string());
    assert_eq!(tags["strata:environment"], "prod");
    assert_eq!(tags["Owner"], "payments-team");
    // The attached bucket carries the cost tags.
    let bucket_tags = w.bucket_tags(&bucket).await;
    assert_eq!(
        bucket_tags.get("CostCenter").map(String::as_str),
        Some("cc-1234"),
        "{bucket_tags:?}"
    );
    assert_eq!(bucket_tags.get("strata:project"), Some(&id.to_string()));

    // In sync: a second pass reads and writes nothing.
    let before = w.reconciler().aws().calls.snapshot();
    let second = w.pass(id).await;
    let calls = w.reconciler().aws().calls.snapshot().since(&before);
    assert!(second.changes.is_empty(), "{:?}", second.changes);
    assert_eq!(calls.mutating(), 0, "{calls:?}");
    assert!(calls.reads() > 0);
    assert_eq!(w.mantle.calls("CreateProject"), 1);

    let metrics = w.app.get("/metrics", "").await;
    let text = metrics.body.as_str().unwrap_or_default().to_owned();
    for name in [
        "strata_reconcile_passes_total{result=\"ok\"} 2",
        "strata_reconcile_duration_seconds_count{result=\"ok\"} 2",
        "strata_aws_calls_total{service=\"iam\",operation=\"CreateRole\",outcome=\"Ok\"} 1",
        "strata_reconcile_queue_depth",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
}

#[tokio::test]
async fn edits_change_only_what_differs() {
    let w = world().await;
    let (id, created) = w.create(project_body("edits")).await;
    w.pass(id).await;
    let role = w.role(&created);
    let patch = json!({"allowed_models": ["openai.gpt-oss-20b", "mistral.mistral-large-3-675b-instruct"], "tags": {"Owner": null, "CostCenter": "cc-9"}});
    let r = w
        .app
        .patch(&format!("/api/v1/projects/{id}"), &w.app.admin, &patch)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // The plan shows the policy change before anything happens.
    let plan = w
        .app
        .get(&format!("/api/v1/projects/{id}/plan"), &w.app.admin)
        .await;
    assert_eq!(plan.status, 200, "{}", plan.body);
    assert_eq!(plan.body["aws_configured"], true);
    let change = plan.body["changes"]
        .as_array()
        .and_then(|c| {
            c.iter()
                .find(|c| c["resource"] == "iam_role_policy/strata-inference")
        })
        .cloned()
        .unwrap_or_else(|| panic!("no policy change in {}", plan.body));
    assert_eq!(change["action"], "update");
    assert!(change["before"].to_string().contains("openai.gpt-oss-120b"));
    assert!(
        change["after"]
            .to_string()
            .contains("mistral.mistral-large-3-675b-instruct")
    );
    assert_eq!(
        w.policy_models(&role).await,
        ["openai.gpt-oss-120b", "openai.gpt-oss-20b"],
        "a plan changes nothing"
    );

    let before = w.reconciler().aws().calls.snapshot();
    let pass = w.pass(id).await;
    assert_eq!(pass.ready, 1, "{:?}", pass.failed);
    let calls = w.reconciler().aws().calls.snapshot().since(&before);
    let mutating: Vec<&str> = calls
        .0
        .keys()
        .map(|(_, op)| *op)
        .filter(|op| !op.starts_with("Get") && !op.starts_with("List"))
        .collect();
    assert_eq!(
        mutating,
        ["UpdateProject", "PutRolePolicy", "TagRole", "UntagRole"],
        "{calls:?}"
    );
    assert_eq!(
        w.policy_models(&role).await,
        [
            "mistral.mistral-large-3-675b-instruct",
            "openai.gpt-oss-20b"
        ]
    );
    let tags = w.role_tags(&role).await;
    assert_eq!(tags["CostCenter"], "cc-9");
    assert!(!tags.contains_key("Owner"));
    let mantle = &w.mantle.projects()[0];
    assert!(!mantle.tags.contains_key("Owner"));
    let p = w.project(id).await;
    assert_eq!(p["observed_generation"], 2);
}

#[tokio::test]
async fn data_retention_is_set_on_the_mantle_project_planned_and_repaired() {
    let w = world().await;
    let (id, _) = w.create(project_body(&uniq("retention"))).await; // zdr by default
    w.pass(id).await;
    let mantle_id = w.mantle.projects()[0].id.clone();
    assert_eq!(w.mantle.retention_mode(&mantle_id).as_deref(), Some("none"));
    w.pass(id).await;
    assert_eq!(
        w.mantle.calls("UpdateProject"),
        0,
        "in sync: nothing written"
    );

    // Someone relaxes it behind strata's back: the plan shows it, a pass repairs it.
    w.mantle
        .edit(&mantle_id, |p| p.data_retention = "default".into());
    let plan = w
        .app
        .get(&format!("/api/v1/projects/{id}/plan"), &w.app.admin)
        .await;
    let change = plan.body["changes"]
        .as_array()
        .and_then(|c| {
            c.iter()
                .find(|c| c["resource"] == "mantle_project_data_retention")
        })
        .cloned()
        .unwrap_or_else(|| panic!("no retention change in {}", plan.body));
    assert_eq!(change["action"], "update");
    assert_eq!(change["before"], json!({"mode": "default"}));
    assert_eq!(change["after"], json!({"mode": "none"}));
    let pass = w.pass(id).await;
    assert_eq!(pass.ready, 1, "{:?}", pass.failed);
    assert_eq!(w.mantle.retention_mode(&mantle_id).as_deref(), Some("none"));

    // A new mode and new tags in one edit: AWS takes the mode only on its own, so
    // strata sends two updates (the fake refuses a combined one).
    let patch = json!({"data_retention": "provider_data_share", "tags": {"CostCenter": "cc-77"}});
    let r = w
        .app
        .patch(&format!("/api/v1/projects/{id}"), &w.app.admin, &patch)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let pass = w.pass(id).await;
    assert_eq!(pass.ready, 1, "{:?}", pass.failed);
    let mantle = &w.mantle.projects()[0];
    assert_eq!(mantle.data_retention, "provider_data_share");
    assert_eq!(mantle.tags["CostCenter"], "cc-77");
    assert_eq!(w.mantle.calls("UpdateProject"), 3);
    let r = w
        .app
        .patch(
            &format!("/api/v1/projects/{id}"),
            &w.app.admin,
            &json!({"data_retention": "standard"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    w.pass(id).await;
    assert_eq!(
        w.mantle.retention_mode(&mantle_id).as_deref(),
        Some("default")
    );
}

#[tokio::test]
async fn drift_made_outside_strata_is_repaired() {
    let w = world().await;
    let (id, created) = w.create(project_body("drift")).await;
    w.pass(id).await;
    let role = w.role(&created);
    let mantle_id = w.mantle.projects()[0].id.clone();

    // Someone widens the policy, removes a tag and renames the Mantle project.
    let wide = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "bedrock:*", "Resource": "*"}]});
    w.iam
        .put_role_policy()
        .role_name(&role)
        .policy_name("strata-inference")
        .policy_document(wide.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    w.iam
        .put_role_policy()
        .role_name(&role)
        .policy_name("extra")
        .policy_document(wide.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    w.iam
        .untag_role()
        .role_name(&role)
        .tag_keys("CostCenter")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    w.mantle.edit(&mantle_id, |p| p.name = "renamed".into());
    let pass = w.pass(id).await;
    assert_eq!(pass.ready, 1, "{:?}", pass.failed);
    assert_eq!(
        w.policy_models(&role).await,
        ["openai.gpt-oss-120b", "openai.gpt-oss-20b"]
    );
    let policies = w
        .iam
        .list_role_policies()
        .role_name(&role)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(policies.policy_names(), ["strata-inference"]);
    assert_eq!(w.role_tags(&role).await["CostCenter"], "cc-1234");
    assert!(w.mantle.projects()[0].name.starts_with("strata-prod-drift"));
    // The repair is an event for the notification destinations, naming what changed.
    let drift = strata_core::store::entities::notifications::Entity::find()
        .filter(strata_core::store::entities::notifications::Column::Kind.eq("drift.repaired"))
        .all(w.app.state.services.store.db())
        .await
        .unwrap();
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert!(
        drift[0]
            .summary
            .starts_with("drift (prod): changes made on AWS outside strata were put back"),
        "{}",
        drift[0].summary
    );
    assert!(
        drift[0]
            .summary
            .contains("iam_role_policy/strata-inference"),
        "{}",
        drift[0].summary
    );

    // Someone deletes the role: it comes back.
    w.iam
        .delete_role_policy()
        .role_name(&role)
        .policy_name("strata-inference")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    w.iam
        .delete_role()
        .role_name(&role)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let pass = w.pass(id).await;
    assert_eq!(pass.ready, 1, "{:?}", pass.failed);
    assert!(w.role_exists(&role).await);
    assert_eq!(
        w.policy_models(&role).await,
        ["openai.gpt-oss-120b", "openai.gpt-oss-20b"]
    );
    // Someone archives the Mantle project: a new one is made and recorded.
    w.mantle.edit(&mantle_id, |p| p.status = "archived".into());
    let pass = w.pass(id).await;
    assert_eq!(pass.ready, 1, "{:?}", pass.failed);
    let p = w.project(id).await;
    assert_ne!(p["aws"]["mantle_project_id"], mantle_id);
    assert_eq!(w.mantle.calls("CreateProject"), 2);
}

#[tokio::test]
async fn archiving_removes_what_the_project_owns() {
    let w = world().await;
    let bucket = create_bucket(&uniq("archive")).await;
    let (id, created) = w.create(body_with_bucket("archived", &bucket)).await;
    w.pass(id).await;
    let role = w.role(&created);
    assert!(w.role_exists(&role).await);
    let r = w
        .app
        .post(
            &format!("/api/v1/projects/{id}/archive"),
            &w.app.admin,
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let pass = w.pass(id).await;
    assert!(pass.failed.is_empty(), "{:?}", pass.failed);
    assert!(!w.role_exists(&role).await, "the role is deleted");
    assert_eq!(w.mantle.projects()[0].status, "archived");
    let tags = w.bucket_tags(&bucket).await;
    assert!(
        !tags.contains_key("strata:project") && !tags.contains_key("CostCenter"),
        "{tags:?}"
    );
    let p = w.project(id).await;
    assert_eq!(condition(&p, "Ready")["reason"], "Archived");
    // Done: it is no longer looked at, and a pass over everything skips it.
    let ids = w
        .app
        .state
        .services
        .live_project_ids()
        .await
        .unwrap_or_default();
    assert!(!ids.contains(&id));

    // Archived before its first pass: cleanup is a no-op that still succeeds.
    let (early, _) = w.create(project_body("never-made")).await;
    w.app
        .post(
            &format!("/api/v1/projects/{early}/archive"),
            &w.app.admin,
            &json!({}),
        )
        .await;
    let pass = w.pass(early).await;
    assert!(pass.failed.is_empty(), "{:?}", pass.failed);
    assert_eq!(w.mantle.calls("CreateProject"), 1);
}

#[tokio::test]
async fn a_foreign_role_with_the_same_name_is_reported_and_left_alone() {
    let w = world().await;
    let (id, created) = w.create(project_body("foreign")).await;
    let role = w.role(&created);
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    w.iam
        .create_role()
        .role_name(&role)
        .assume_role_policy_document(trust.to_string())
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("team")
                .value("someone-else")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let pass = w.pass(id).await;
    assert_eq!(pass.failed.len(), 1);
    let p = w.project(id).await;
    let c = condition(&p, "IamRoleReady");
    assert_eq!(c["status"], "False");
    assert_eq!(c["reason"], "RoleConflict");
    assert!(
        c["message"]
            .as_str()
            .unwrap_or_default()
            .contains("next try at"),
        "{c}"
    );
    assert_eq!(condition(&p, "Ready")["status"], "False");
    let policies = w
        .iam
        .list_role_policies()
        .role_name(&role)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(policies.policy_names().is_empty(), "nothing was attached");
    assert_eq!(
        w.role_tags(&role).await,
        BTreeMap::from([("team".into(), "someone-else".into())])
    );
    // Archiving does not delete it either.
    w.app
        .post(
            &format!("/api/v1/projects/{id}/archive"),
            &w.app.admin,
            &json!({}),
        )
        .await;
    w.pass(id).await;
    assert!(w.role_exists(&role).await);
}

/// IAM that fails the first `failures` calls the way a throttling storm or
/// `ConcurrentModification` does once the SDK's own retries are spent.
struct Stormy {
    inner: Arc<dyn Iam>,
    failures: AtomicU32,
}

impl Stormy {
    fn check(&self, op: &'static str) -> Result<(), AwsError> {
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(AwsError::new(
                "iam",
                op,
                ErrorKind::Retryable,
                Some("Throttling".into()),
                "Rate exceeded",
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Iam for Stormy {
    async fn get_role(&self, n: &str) -> Result<Option<Role>, AwsError> {
        self.check("GetRole")?;
        self.inner.get_role(n).await
    }
    async fn create_role(&self, r: &NewRole<'_>) -> Result<Role, AwsError> {
        self.check("CreateRole")?;
        self.inner.create_role(r).await
    }
    async fn update_trust_policy(&self, r: &str, d: &str) -> Result<(), AwsError> {
        self.check("UpdateAssumeRolePolicy")?;
        self.inner.update_trust_policy(r, d).await
    }
    async fn list_role_policies(&self, r: &str) -> Result<Vec<String>, AwsError> {
        self.check("ListRolePolicies")?;
        self.inner.list_role_policies(r).await
    }
    async fn get_role_policy(&self, r: &str, p: &str) -> Result<Option<String>, AwsError> {
        self.check("GetRolePolicy")?;
        self.inner.get_role_policy(r, p).await
    }
    async fn put_role_policy(&self, r: &str, p: &str, d: &str) -> Result<(), AwsError> {
        self.check("PutRolePolicy")?;
        self.inner.put_role_policy(r, p, d).await
    }
    async fn delete_role_policy(&self, r: &str, p: &str) -> Result<(), AwsError> {
        self.check("DeleteRolePolicy")?;
        self.inner.delete_role_policy(r, p).await
    }
    async fn tag_role(&self, r: &str, t: &TagMap) -> Result<(), AwsError> {
        self.check("TagRole")?;
        self.inner.tag_role(r, t).await
    }
    async fn untag_role(&self, r: &str, k: &[String]) -> Result<(), AwsError> {
        self.check("UntagRole")?;
        self.inner.untag_role(r, k).await
    }
    async fn delete_role(&self, r: &str) -> Result<(), AwsError> {
        self.check("DeleteRole")?;
        self.inner.delete_role(r).await
    }
}

#[tokio::test]
async fn a_throttling_storm_backs_off_then_succeeds() {
    let w = world_with(|mut aws| {
        aws.iam = Arc::new(Stormy {
            inner: aws.iam.clone(),
            failures: AtomicU32::new(3),
        });
        aws
    })
    .await;
    let (id, _) = w.create(project_body("stormy")).await;
    let mut waits = Vec::new();
    for _ in 0..3 {
        let started = chrono::Utc::now();
        let pass = w.pass(id).await;
        assert_eq!(pass.failed.len(), 1);
        let sync = w.project(id).await;
        let ready = condition(&sync, "Ready");
        assert_eq!(ready["reason"], "AwsRetrying", "{ready}");
        let row = project_sync::Entity::find_by_id(id);
        let row = row
            .one(w.app.state.services.store.db())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no sync row"));
        waits.push((row.next_attempt_at - started).num_milliseconds());
    }
    // 2 s, 4 s, 8 s with ±20 % jitter: each wait longer than the one before.
    assert!(waits[0] >= 1_500 && waits[0] <= 2_600, "{waits:?}");
    assert!(waits[1] > waits[0] && waits[2] > waits[1], "{waits:?}");
    let pass = w.pass(id).await;
    assert_eq!(pass.ready, 1, "the storm is over: {:?}", pass.failed);
    let p = w.project(id).await;
    assert_eq!(condition(&p, "Ready")["status"], "True");
}

#[tokio::test]
async fn without_aws_credentials_projects_say_so_and_plans_still_work() {
    let app = TestApp::spawn().await;
    let p = app.create_project(&project_body("laptop")).await;
    let id = Uuid::parse_str(p["id"].as_str().unwrap_or_default()).unwrap();
    let before = app.state.reconciler.aws().calls.snapshot();
    let pass = app.state.reconciler.run_for(&[id]).await.unwrap();
    assert_eq!(pass.failed.len(), 1);
    assert_eq!(
        app.state
            .reconciler
            .aws()
            .calls
            .snapshot()
            .since(&before)
            .total(),
        0,
        "no AWS call is attempted"
    );
    let got = app
        .get(&format!("/api/v1/projects/{id}"), &app.admin)
        .await
        .body;
    let ready = condition(&got, "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("Unknown"), Some("AwsNotConfigured"))
    );
    // Not looked at again before the resync interval: no spinning.
    let row = project_sync::Entity::find_by_id(id)
        .one(app.state.services.store.db())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no sync row"));
    assert!(
        row.next_attempt_at - chrono::Utc::now() > chrono::Duration::minutes(4),
        "{:?}",
        row.next_attempt_at
    );

    let plan = app
        .get(&format!("/api/v1/projects/{id}/plan"), &app.admin)
        .await;
    assert_eq!(plan.status, 200, "{}", plan.body);
    assert_eq!(plan.body["aws_configured"], false);
    let resources: Vec<(&str, &str)> = plan.body["changes"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| {
                    (
                        c["resource"].as_str().unwrap_or_default(),
                        c["action"].as_str().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        resources,
        [
            ("mantle_project", "create"),
            ("iam_role", "create"),
            ("iam_role_policy/strata-inference", "create")
        ]
    );
    insta::assert_json_snapshot!("plan_without_aws", plan.body["changes"][2]["after"]);
    // A developer who is not a member does not learn the project exists.
    let dev = app.token("dev", &["developer"]);
    assert_eq!(
        app.get(&format!("/api/v1/projects/{id}/plan"), &dev)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn a_change_through_the_api_is_reconciled_within_a_second() {
    let mantle = FakeMantle::start().await;
    let app = TestApp::builder()
        .aws(moto_clients(&mantle.url()).await)
        .reconciler(ReconcilerConfig {
            cost_allocation_tags: Vec::new(),
            ..ReconcilerConfig::default()
        })
        .run_reconciler()
        .spawn()
        .await;
    let started = Instant::now();
    let p = app.create_project(&project_body("fast")).await;
    let id = p["id"].as_str().unwrap_or_default().to_owned();
    let ready_at = |generation: i64| {
        let app = &app;
        let id = id.clone();
        async move {
            loop {
                let p = app
                    .get(&format!("/api/v1/projects/{id}"), &app.admin)
                    .await
                    .body;
                if p["observed_generation"] == generation {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), ready_at(1))
        .await
        .unwrap_or_else(|_| panic!("not reconciled after create"));
    let created_in = started.elapsed();
    let started = Instant::now();
    app.patch(
        &format!("/api/v1/projects/{id}"),
        &app.admin,
        &json!({"allowed_models": ["openai.gpt-oss-20b"]}),
    )
    .await;
    tokio::time::timeout(Duration::from_secs(5), ready_at(2))
        .await
        .unwrap_or_else(|_| panic!("not reconciled after patch"));
    let patched_in = started.elapsed();
    // The loop looks every 500 ms; the AWS calls to moto add a little.
    assert!(
        patched_in < Duration::from_millis(1_500),
        "patch reconciled after {patched_in:?} (create: {created_in:?})"
    );
}

#[tokio::test]
async fn a_pass_killed_after_the_mantle_create_adopts_instead_of_duplicating() {
    let w = world().await;
    let (id, _) = w.create(project_body("crashy")).await;
    w.mantle.delay_creates(Duration::from_millis(800));
    let r = w.reconciler().clone();
    let task = tokio::spawn(async move { r.run_for(&[id]).await });
    // The create has reached Mantle; the process dies before recording the answer.
    for _ in 0..100 {
        if w.mantle.calls("CreateProject") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
    let _ = task.await;
    assert_eq!(w.mantle.projects().len(), 1);
    assert!(
        w.project(id).await["aws"]["mantle_project_id"].is_null(),
        "the id was never recorded"
    );
    w.mantle.delay_creates(Duration::ZERO);
    let pass = w.pass(id).await;
    assert_eq!(pass.ready, 1, "{:?}", pass.failed);
    assert_eq!(
        w.mantle.calls("CreateProject"),
        1,
        "no second Mantle project"
    );
    assert_eq!(w.mantle.projects().len(), 1);
    assert_eq!(
        w.project(id).await["aws"]["mantle_project_id"],
        w.mantle.projects()[0].id
    );
}

#[tokio::test]
async fn two_reconcilers_on_one_database_never_work_on_one_project_at_once() {
    let w = world().await;
    w.mantle.delay_creates(Duration::from_millis(100));
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(w.create(project_body(&format!("pair-{i}"))).await.0);
    }
    let second = Reconciler::new(
        w.app.state.services.store.clone(),
        moto_clients(&w.mantle.url()).await,
        ReconcilerConfig {
            cost_allocation_tags: Vec::new(),
            poll_ms: 100,
            ..ReconcilerConfig::default()
        },
        Arc::new(strata_core::clock::SystemClock),
    );
    let first = w.reconciler().clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let a = tokio::spawn(first.run(stop.clone()));
    let b = tokio::spawn(second.clone().run(stop.clone()));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut done = 0;
        for id in &ids {
            if w.project(*id).await["observed_generation"] == 1 {
                done += 1;
            }
        }
        if done == ids.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    let _ = (a.await, b.await);
    for id in &ids {
        assert_eq!(
            w.project(*id).await["observed_generation"],
            1,
            "{id} not reconciled"
        );
    }
    assert_eq!(
        w.mantle.calls("CreateProject"),
        12,
        "one Mantle project per project, never two"
    );
    assert_eq!(w.mantle.projects().len(), 12);
    let by_first = w
        .reconciler()
        .aws()
        .calls
        .snapshot()
        .0
        .get(&("bedrock-mantle", "CreateProject"))
        .copied()
        .unwrap_or(0);
    let by_second = second
        .aws()
        .calls
        .snapshot()
        .0
        .get(&("bedrock-mantle", "CreateProject"))
        .copied()
        .unwrap_or(0);
    assert_eq!(by_first + by_second, 12);
    assert!(
        by_first > 0 && by_second > 0,
        "both replicas took work: {by_first} + {by_second}"
    );
}

/// Cost Explorer's tag operations, which moto lacks.
struct FakeCostTags {
    activated: std::sync::Mutex<Vec<String>>,
}

#[async_trait]
impl CostAllocationTags for FakeCostTags {
    async fn statuses(&self, keys: &[String]) -> Result<BTreeMap<String, CostTagStatus>, AwsError> {
        let on = self.activated.lock().map(|a| a.clone()).unwrap_or_default();
        Ok(keys
            .iter()
            .map(|k| {
                let status = if k == "NeverUsed" {
                    CostTagStatus::NotSeen
                } else if on.contains(k) {
                    CostTagStatus::Active
                } else {
                    CostTagStatus::Inactive
                };
                (k.clone(), status)
            })
            .collect())
    }
    async fn activate(&self, keys: &[String]) -> Result<BTreeMap<String, String>, AwsError> {
        assert!(keys.len() <= 20);
        if let Ok(mut a) = self.activated.lock() {
            a.extend(keys.iter().cloned());
        }
        Ok(BTreeMap::new())
    }
}

#[tokio::test]
async fn the_environment_pass_activates_cost_tags_and_reports_coverage() {
    let mantle = FakeMantle::start().await;
    let fake_ce = Arc::new(FakeCostTags {
        activated: std::sync::Mutex::default(),
    });
    let aws = moto_clients(&mantle.url())
        .await
        .with_cost_tags(fake_ce.clone());
    let app = TestApp::builder()
        .aws(aws)
        .reconciler(ReconcilerConfig {
            cost_allocation_tags: vec![
                "strata:project".into(),
                "CostCenter".into(),
                "NeverUsed".into(),
            ],
            ..ReconcilerConfig::default()
        })
        .spawn()
        .await;
    let finance = app.token("fin", &["finance"]);
    assert_eq!(
        app.get("/api/v1/cost-allocation-tags", &finance)
            .await
            .code(),
        "report_not_ready"
    );

    let owned = create_bucket(&uniq("owned")).await;
    let stray = create_bucket(&uniq("stray")).await;
    let mut body = project_body("coverage");
    body["resources"] = json!([owned]);
    let p = app.create_project(&body).await;
    let id = Uuid::parse_str(p["id"].as_str().unwrap_or_default()).unwrap();
    // A bucket tagged for a project that does not exist.
    let tagging =
        aws_sdk_resourcegroupstagging::Client::new(&strata_testkit::moto::moto_sdk_config().await);
    tagging
        .tag_resources()
        .resource_arn_list(&stray)
        .tags("strata:project", Uuid::now_v7().to_string())
        .tags("strata:environment", "prod")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    // Before the project's pass its bucket lacks the cost tags.
    let pass = app.state.reconciler.environment_pass().await.unwrap();
    let prod = pass
        .coverage
        .iter()
        .find(|c| c.environment == Environment::Prod)
        .unwrap_or_else(|| panic!("no prod report"));
    assert!(prod.orphaned.iter().any(|o| o.arn == stray), "{prod:?}");
    let missing = prod
        .missing_cost_tags
        .iter()
        .find(|m| m.arn == owned)
        .unwrap_or_else(|| panic!("{prod:?}"));
    assert_eq!(missing.missing, ["strata:project", "CostCenter", "Owner"]);
    assert_eq!(
        fake_ce
            .activated
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default(),
        ["CostCenter", "strata:project"]
    );

    app.state.reconciler.run_for(&[id]).await.unwrap();
    app.state.reconciler.environment_pass().await.unwrap();
    let report = app
        .get("/api/v1/environments/prod/tag-coverage", &finance)
        .await;
    assert_eq!(report.status, 200, "{}", report.body);
    let missing: Vec<&Value> = report.body["missing_cost_tags"]
        .as_array()
        .map(|m| m.iter().filter(|m| m["arn"] == owned.as_str()).collect())
        .unwrap_or_default();
    assert!(
        missing.is_empty(),
        "tagged by the project's pass: {}",
        report.body
    );
    let tags = app.get("/api/v1/cost-allocation-tags", &finance).await;
    assert_eq!(tags.status, 200);
    let states: Vec<(String, String)> = tags.body["keys"]
        .as_array()
        .map(|k| {
            k.iter()
                .map(|k| {
                    (
                        k["key"].as_str().unwrap_or_default().to_owned(),
                        k["status"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        states,
        [
            ("CostCenter".into(), "active".into()),
            ("NeverUsed".into(), "not_seen".into()),
            ("strata:project".into(), "active".into())
        ]
    );
    assert_eq!(
        app.get("/api/v1/environments/nowhere/tag-coverage", &finance)
            .await
            .status,
        404
    );
    let dev = app.token("dev", &["developer"]);
    assert_eq!(
        app.get("/api/v1/cost-allocation-tags", &dev).await.status,
        403
    );
}

#[tokio::test]
async fn mantle_failures_are_retried_and_reported() {
    let w = world().await;
    let (id, _) = w.create(project_body("flaky-mantle")).await;
    w.mantle.fail_next(&[503]);
    let pass = w.pass(id).await;
    assert_eq!(pass.failed.len(), 1);
    let p = w.project(id).await;
    let mantle = condition(&p, "MantleProjectReady");
    assert_eq!(
        (mantle["status"].as_str(), mantle["reason"].as_str()),
        (Some("False"), Some("AwsRetrying")),
        "{mantle}"
    );
    assert!(
        mantle["message"]
            .as_str()
            .unwrap_or_default()
            .contains("injected failure"),
        "{mantle}"
    );
    assert_eq!(
        condition(&p, "IamRoleReady")["reason"],
        "WaitingForMantleProject"
    );
    let row = project_sync::Entity::find_by_id(id)
        .one(w.app.state.services.store.db())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no sync row"));
    assert!(
        row.mantle_pending,
        "a failed create may still have made the project: the next pass looks first"
    );
    let pass = w.pass(id).await;
    assert_eq!(
        pass.ready, 1,
        "the failures were used up: {:?}",
        pass.failed
    );
    assert_eq!(w.mantle.projects().len(), 1);
}

#[tokio::test]
async fn the_trust_policy_follows_the_configured_principals() {
    let mantle = FakeMantle::start().await;
    let provider = format!(
        "arn:aws:iam::{MOTO_ACCOUNT}:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC"
    );
    let app = TestApp::builder()
        .aws(moto_clients(&mantle.url()).await)
        .reconciler(ReconcilerConfig {
            cost_allocation_tags: Vec::new(),
            trusted_principals: vec![format!("arn:aws:iam::{MOTO_ACCOUNT}:role/strata-proxy")],
            trusted_oidc_provider: Some(provider.clone()),
            ..ReconcilerConfig::default()
        })
        .spawn()
        .await;
    let p = app.create_project(&project_body("trusting")).await;
    let id = Uuid::parse_str(p["id"].as_str().unwrap_or_default()).unwrap();
    let pass = app.state.reconciler.run_for(&[id]).await.unwrap();
    assert_eq!(pass.ready, 1, "{:?}", pass.failed);
    let slug = ProjectSlug::parse("trusting").unwrap();
    let role = role_name(Environment::Prod, &slug, id);
    let got = moto_iam()
        .await
        .get_role()
        .role_name(&role)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let trust = parse_policy(
        got.role()
            .and_then(|r| r.assume_role_policy_document())
            .unwrap_or_default(),
    )
    .unwrap();
    let text = trust.to_string();
    assert!(
        text.contains(&format!("arn:aws:iam::{MOTO_ACCOUNT}:role/strata-proxy")),
        "{text}"
    );
    assert!(text.contains(&provider), "{text}");
    assert!(text.contains("\"oidc.eks.us-east-1.amazonaws.com/id/ABC:sub\":[\"system:serviceaccount:prod:trusting\"]"), "{text}");
}
