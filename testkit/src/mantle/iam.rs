//! AWS's authorization of an inference call, as the fake applies it: the signer's
//! assumed role is found in moto (STS `GetCallerIdentity` with the request's access
//! key), the role's inline policies are read from moto's IAM as they are now, and the
//! IAM action the route needs is evaluated against them on the Mantle project's ARN
//! with the request's condition keys — an explicit Deny wins, otherwise an Allow is
//! needed. Only inline policies are read: strata's project roles have no others.

use std::collections::BTreeMap;

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use serde_json::Value;

/// What one call asks IAM for.
pub(crate) struct Authorization<'a> {
    pub access_key: &'a str,
    pub session_token: Option<&'a str>,
    /// e.g. `bedrock-mantle:GetInference`.
    pub action: &'a str,
    pub region: &'a str,
    pub mantle_project: &'a str,
    /// Condition keys the call carries, e.g. `bedrock-mantle:Model`.
    pub context: BTreeMap<&'static str, String>,
    /// Sent with a short-term Bedrock API key: AWS also checks
    /// `bedrock-mantle:CallWithBearerToken` (`BearerTokenType` `SHORT_TERM`) on `*`.
    pub short_term_key: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Allow,
    ExplicitDeny,
    ImplicitDeny,
}

/// The partition of a region, as in ARNs.
fn partition(region: &str) -> &'static str {
    if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// Reads roles and policies from moto.
#[derive(Clone)]
pub(crate) struct MotoIam {
    pub moto_url: String,
}

impl MotoIam {
    fn config(&self, credentials: Credentials) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.moto_url)
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(credentials),
            )
            .build()
    }

    /// Checks the call; `Err` is AccessDenied's message, as AWS words it.
    pub(crate) async fn authorize(&self, call: &Authorization<'_>) -> Result<(), String> {
        let caller = Credentials::new(
            call.access_key,
            "the fake does not verify signatures",
            call.session_token.map(str::to_owned),
            None,
            "fake-mantle",
        );
        let sts = aws_sdk_sts::Client::new(&self.config(caller));
        let identity =
            sts.get_caller_identity().send().await.map_err(|e| {
                format!("the security token included in the request is invalid ({e})")
            })?;
        let caller_arn = identity.arn().unwrap_or_default().to_owned();
        let account = identity.account().unwrap_or_default().to_owned();
        let resource = format!(
            "arn:{}:bedrock-mantle:{}:{account}:project/{}",
            partition(call.region),
            call.region,
            call.mantle_project
        );
        let denied = |why: &str| {
            format!(
                "User: {caller_arn} is not authorized to perform: {} on resource: {resource} because {why}",
                call.action
            )
        };
        // arn:aws:sts::123456789012:assumed-role/ROLE/SESSION
        let Some(role) = caller_arn
            .split_once(":assumed-role/")
            .and_then(|(_, rest)| rest.split('/').next())
        else {
            return Err(denied(
                "no identity-based policy allows the action (the caller is not an assumed role)",
            ));
        };
        let policies = self.inline_policies(role).await?;
        if call.short_term_key {
            let bearer =
                BTreeMap::from([("bedrock-mantle:BearerTokenType", "SHORT_TERM".to_owned())]);
            let action = "bedrock-mantle:CallWithBearerToken";
            if evaluate(&policies, action, "*", &bearer) != Decision::Allow {
                return Err(format!(
                    "User: {caller_arn} is not authorized to perform: {action} because no identity-based policy allows the {action} action"
                ));
            }
        }
        match evaluate(&policies, call.action, &resource, &call.context) {
            Decision::Allow => Ok(()),
            Decision::ExplicitDeny => Err(denied(&format!(
                "an explicit deny in an identity-based policy denies the {} action",
                call.action
            ))),
            Decision::ImplicitDeny => Err(denied(&format!(
                "no identity-based policy allows the {} action",
                call.action
            ))),
        }
    }

    async fn inline_policies(&self, role: &str) -> Result<Vec<Value>, String> {
        let admin = Credentials::new("testing", "testing", None, None, "fake-mantle");
        let iam = aws_sdk_iam::Client::new(&self.config(admin));
        let names = iam
            .list_role_policies()
            .role_name(role)
            .send()
            .await
            .map_err(|e| format!("reading role {role}'s policies from moto: {e}"))?;
        let mut policies = Vec::new();
        for name in names.policy_names() {
            let doc = iam
                .get_role_policy()
                .role_name(role)
                .policy_name(name)
                .send()
                .await
                .map_err(|e| format!("reading policy {name} of {role} from moto: {e}"))?;
            let parsed = strata_core::policy::parse_policy(doc.policy_document())
                .map_err(|e| format!("policy {name} of {role}: {e}"))?;
            policies.push(parsed);
        }
        Ok(policies)
    }
}

/// IAM's evaluation of identity-based policies for one action on one resource.
pub(crate) fn evaluate(
    policies: &[Value],
    action: &str,
    resource: &str,
    context: &BTreeMap<&'static str, String>,
) -> Decision {
    let mut allowed = false;
    for statement in policies.iter().flat_map(statements) {
        if !applies(statement, action, resource, context) {
            continue;
        }
        match statement["Effect"].as_str() {
            Some("Deny") => return Decision::ExplicitDeny,
            Some("Allow") => allowed = true,
            _ => {}
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

fn statements(policy: &Value) -> Vec<&Value> {
    match &policy["Statement"] {
        Value::Array(items) => items.iter().collect(),
        one @ Value::Object(_) => vec![one],
        _ => Vec::new(),
    }
}

fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn applies(
    statement: &Value,
    action: &str,
    resource: &str,
    context: &BTreeMap<&'static str, String>,
) -> bool {
    let action_matches = |list: &Value| {
        strings(list)
            .iter()
            .any(|p| wildcard(&p.to_ascii_lowercase(), &action.to_ascii_lowercase()))
    };
    let resource_matches = |list: &Value| strings(list).iter().any(|p| wildcard(p, resource));
    let action_ok = match (statement.get("Action"), statement.get("NotAction")) {
        (Some(list), _) => action_matches(list),
        (None, Some(list)) => !action_matches(list),
        (None, None) => false,
    };
    let resource_ok = match (statement.get("Resource"), statement.get("NotResource")) {
        (Some(list), _) => resource_matches(list),
        (None, Some(list)) => !resource_matches(list),
        (None, None) => false,
    };
    action_ok && resource_ok && conditions_hold(statement.get("Condition"), context)
}

/// Every operator must hold; within one key, any of its values may match.
fn conditions_hold(condition: Option<&Value>, context: &BTreeMap<&'static str, String>) -> bool {
    let Some(Value::Object(operators)) = condition else {
        return condition.is_none();
    };
    operators.iter().all(|(operator, keys)| {
        let Value::Object(keys) = keys else {
            return false;
        };
        let (base, if_exists) = match operator.strip_suffix("IfExists") {
            Some(base) => (base, true),
            None => (operator.as_str(), false),
        };
        keys.iter().all(|(key, expected)| {
            // Condition keys are case-insensitive.
            let actual = context
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_str());
            let expected = strings(expected);
            match (base, actual) {
                (_, None) if if_exists => true,
                ("StringNotEquals" | "StringNotLike", None) => true,
                (_, None) => false,
                ("StringEquals", Some(v)) => expected.contains(&v),
                ("StringNotEquals", Some(v)) => !expected.contains(&v),
                ("StringEqualsIgnoreCase", Some(v)) => {
                    expected.iter().any(|e| e.eq_ignore_ascii_case(v))
                }
                ("StringLike", Some(v)) => expected.iter().any(|e| wildcard(e, v)),
                ("StringNotLike", Some(v)) => !expected.iter().any(|e| wildcard(e, v)),
                // An operator the fake does not know never matches.
                _ => false,
            }
        })
    })
}

/// IAM's wildcards: `*` any run of characters, `?` one.
fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PROJECT: &str = "arn:aws:bedrock-mantle:us-east-1:123456789012:project/proj_1";

    fn model(m: &str) -> BTreeMap<&'static str, String> {
        BTreeMap::from([("bedrock-mantle:Model", m.to_owned())])
    }

    #[test]
    fn an_allow_needs_action_resource_and_conditions() {
        let policy = json!({"Statement": [{"Effect": "Allow", "Action": "bedrock-mantle:CreateInference",
            "Resource": PROJECT, "Condition": {"StringEquals": {"bedrock-mantle:Model": ["openai.gpt-oss-20b"]}}}]});
        let p = [policy];
        let create = "bedrock-mantle:CreateInference";
        assert_eq!(
            evaluate(&p, create, PROJECT, &model("openai.gpt-oss-20b")),
            Decision::Allow
        );
        assert_eq!(
            evaluate(&p, create, PROJECT, &model("openai.gpt-oss-120b")),
            Decision::ImplicitDeny
        );
        assert_eq!(
            evaluate(&p, create, PROJECT, &BTreeMap::new()),
            Decision::ImplicitDeny
        );
        assert_eq!(
            evaluate(&p, "bedrock-mantle:GetInference", PROJECT, &BTreeMap::new()),
            Decision::ImplicitDeny
        );
        let other = "arn:aws:bedrock-mantle:us-east-1:123456789012:project/proj_2";
        assert_eq!(
            evaluate(&p, create, other, &model("openai.gpt-oss-20b")),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn wildcards_if_exists_and_explicit_deny() {
        let p = [json!({"Statement": [
            {"Effect": "Allow", "Action": "bedrock-mantle:*", "Resource": "arn:aws:bedrock-mantle:*:*:project/*",
             "Condition": {"StringEqualsIfExists": {"bedrock-mantle:Model": "openai.*"}}},
            {"Effect": "Deny", "Action": "bedrock-mantle:DeleteInference", "Resource": "*"}
        ]})];
        assert_eq!(
            evaluate(&p, "bedrock-mantle:GetInference", PROJECT, &BTreeMap::new()),
            Decision::Allow
        );
        // StringEquals takes no wildcards: "openai.*" is literal.
        assert_eq!(
            evaluate(
                &p,
                "bedrock-mantle:CreateInference",
                PROJECT,
                &model("openai.gpt-oss-20b")
            ),
            Decision::ImplicitDeny
        );
        assert_eq!(
            evaluate(
                &p,
                "bedrock-mantle:DeleteInference",
                PROJECT,
                &BTreeMap::new()
            ),
            Decision::ExplicitDeny
        );
        assert!(wildcard("a*c?e", "abbbcde"));
        assert!(!wildcard("a*c?e", "abbbce"));
    }
}
