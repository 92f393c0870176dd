//! IAM over aws-sdk-iam.

use async_trait::async_trait;
use aws_sdk_iam::Client;
use aws_sdk_iam::types::Tag;

use crate::error::AwsError;
use crate::{AwsCalls, ErrorKind, Iam, NewRole, Role, TagMap};

const SERVICE: &str = "iam";

pub(crate) struct SdkIam {
    pub(crate) client: Client,
    pub(crate) calls: AwsCalls,
}

fn to_tags(tags: &TagMap) -> Result<Vec<Tag>, AwsError> {
    tags.iter()
        .map(|(k, v)| {
            Tag::builder().key(k).value(v).build().map_err(|e| {
                AwsError::new(SERVICE, "TagRole", ErrorKind::Invalid, None, e.to_string())
            })
        })
        .collect()
}

fn role_from(role: &aws_sdk_iam::types::Role) -> Role {
    Role {
        name: role.role_name().to_owned(),
        arn: role.arn().to_owned(),
        path: role.path().to_owned(),
        trust_policy: role
            .assume_role_policy_document()
            .unwrap_or_default()
            .to_owned(),
        tags: role
            .tags()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect(),
    }
}

/// `Ok(None)` for NoSuchEntity.
fn absent<T>(result: Result<T, AwsError>) -> Result<Option<T>, AwsError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[async_trait]
impl Iam for SdkIam {
    async fn get_role(&self, name: &str) -> Result<Option<Role>, AwsError> {
        let call = async {
            let out = self
                .client
                .get_role()
                .role_name(name)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(SERVICE, "GetRole", e))?;
            out.role().map(role_from).ok_or_else(|| {
                AwsError::new(
                    SERVICE,
                    "GetRole",
                    ErrorKind::Invalid,
                    None,
                    "no role in the response",
                )
            })
        };
        absent(self.calls.track(SERVICE, "GetRole", call).await)
    }

    async fn create_role(&self, role: &NewRole<'_>) -> Result<Role, AwsError> {
        let call = async {
            let out = self
                .client
                .create_role()
                .role_name(role.name)
                .path(role.path)
                .assume_role_policy_document(role.trust_policy)
                .description(role.description)
                .set_tags(Some(to_tags(role.tags)?))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(SERVICE, "CreateRole", e))?;
            out.role().map(role_from).ok_or_else(|| {
                AwsError::new(
                    SERVICE,
                    "CreateRole",
                    ErrorKind::Invalid,
                    None,
                    "no role in the response",
                )
            })
        };
        self.calls.track(SERVICE, "CreateRole", call).await
    }

    async fn update_trust_policy(&self, role: &str, document: &str) -> Result<(), AwsError> {
        let call = async {
            self.client
                .update_assume_role_policy()
                .role_name(role)
                .policy_document(document)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| AwsError::from_sdk(SERVICE, "UpdateAssumeRolePolicy", e))
        };
        self.calls
            .track(SERVICE, "UpdateAssumeRolePolicy", call)
            .await
    }

    async fn list_role_policies(&self, role: &str) -> Result<Vec<String>, AwsError> {
        let call = async {
            let mut names = Vec::new();
            let mut marker: Option<String> = None;
            loop {
                let out = self
                    .client
                    .list_role_policies()
                    .role_name(role)
                    .set_marker(marker.take())
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk(SERVICE, "ListRolePolicies", e))?;
                names.extend(out.policy_names().iter().cloned());
                match (out.is_truncated(), out.marker()) {
                    (true, Some(m)) => marker = Some(m.to_owned()),
                    _ => break,
                }
            }
            Ok(names)
        };
        self.calls.track(SERVICE, "ListRolePolicies", call).await
    }

    async fn get_role_policy(&self, role: &str, policy: &str) -> Result<Option<String>, AwsError> {
        let call = async {
            self.client
                .get_role_policy()
                .role_name(role)
                .policy_name(policy)
                .send()
                .await
                .map(|out| out.policy_document().to_owned())
                .map_err(|e| AwsError::from_sdk(SERVICE, "GetRolePolicy", e))
        };
        absent(self.calls.track(SERVICE, "GetRolePolicy", call).await)
    }

    async fn put_role_policy(
        &self,
        role: &str,
        policy: &str,
        document: &str,
    ) -> Result<(), AwsError> {
        let call = async {
            self.client
                .put_role_policy()
                .role_name(role)
                .policy_name(policy)
                .policy_document(document)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| AwsError::from_sdk(SERVICE, "PutRolePolicy", e))
        };
        self.calls.track(SERVICE, "PutRolePolicy", call).await
    }

    async fn delete_role_policy(&self, role: &str, policy: &str) -> Result<(), AwsError> {
        let call = async {
            self.client
                .delete_role_policy()
                .role_name(role)
                .policy_name(policy)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| AwsError::from_sdk(SERVICE, "DeleteRolePolicy", e))
        };
        self.calls.track(SERVICE, "DeleteRolePolicy", call).await
    }

    async fn tag_role(&self, role: &str, tags: &TagMap) -> Result<(), AwsError> {
        let call = async {
            self.client
                .tag_role()
                .role_name(role)
                .set_tags(Some(to_tags(tags)?))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| AwsError::from_sdk(SERVICE, "TagRole", e))
        };
        self.calls.track(SERVICE, "TagRole", call).await
    }

    async fn untag_role(&self, role: &str, keys: &[String]) -> Result<(), AwsError> {
        let call = async {
            self.client
                .untag_role()
                .role_name(role)
                .set_tag_keys(Some(keys.to_vec()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| AwsError::from_sdk(SERVICE, "UntagRole", e))
        };
        self.calls.track(SERVICE, "UntagRole", call).await
    }

    async fn delete_role(&self, role: &str) -> Result<(), AwsError> {
        let call = async {
            self.client
                .delete_role()
                .role_name(role)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| AwsError::from_sdk(SERVICE, "DeleteRole", e))
        };
        self.calls.track(SERVICE, "DeleteRole", call).await
    }
}
