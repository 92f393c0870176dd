//! Comparing IAM policy documents as IAM means them, so a pass over a role that is in
//! sync sees no difference: IAM returns documents URL-encoded, turns one-element lists
//! into strings (and back), and does not care about the order of actions, resources,
//! condition values, principals or statements.

use serde_json::{Map, Value};

/// Keys whose value is a string or a set of strings.
const SET_KEYS: &[&str] = &["Action", "NotAction", "Resource", "NotResource"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CanonicalError {
    #[error("the policy document is not valid UTF-8 after URL-decoding")]
    NotUtf8,
    #[error("the policy document is not valid JSON: {0}")]
    NotJson(String),
}

/// Parses a policy document as IAM returns it (URL-encoded or not) into its
/// canonical form.
pub fn parse_policy(document: &str) -> Result<Value, CanonicalError> {
    let decoded = if document.trim_start().starts_with('{') {
        document.to_owned()
    } else {
        percent_encoding::percent_decode_str(document)
            .decode_utf8()
            .map_err(|_| CanonicalError::NotUtf8)?
            .into_owned()
    };
    let value: Value =
        serde_json::from_str(&decoded).map_err(|e| CanonicalError::NotJson(e.to_string()))?;
    Ok(canonical(value))
}

/// The canonical form of a parsed policy document.
pub fn canonical(mut policy: Value) -> Value {
    if let Some(statements) = policy.as_object_mut().and_then(|o| o.get_mut("Statement")) {
        let mut list = match statements.take() {
            Value::Array(items) => items,
            single => vec![single],
        };
        for s in &mut list {
            if let Some(stmt) = s.as_object_mut() {
                canonical_statement(stmt);
            }
        }
        // Keys sorted first: serde_json may keep insertion order (its
        // `preserve_order` feature is switched on by other crates in the build).
        let mut list: Vec<Value> = list.into_iter().map(sort_keys).collect();
        list.sort_by_key(Value::to_string);
        *statements = Value::Array(list);
    }
    sort_keys(policy)
}

/// The same value with every object's keys in sorted order, whatever map type
/// serde_json was built with.
pub fn sort_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sort_keys(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

fn canonical_statement(stmt: &mut Map<String, Value>) {
    for key in SET_KEYS {
        if let Some(v) = stmt.get_mut(*key) {
            *v = string_set(v.take());
        }
    }
    for key in ["Principal", "NotPrincipal"] {
        if let Some(Value::Object(principals)) = stmt.get_mut(key) {
            for v in principals.values_mut() {
                *v = string_set(v.take());
            }
        }
    }
    // Condition: operator → key → value(s); the values are a set.
    if let Some(Value::Object(operators)) = stmt.get_mut("Condition") {
        for keys in operators.values_mut() {
            if let Value::Object(keys) = keys {
                for v in keys.values_mut() {
                    *v = string_set(v.take());
                }
            }
        }
    }
}

/// A string or a list of strings as a sorted, de-duplicated list.
fn string_set(value: Value) -> Value {
    let mut items = match value {
        Value::Array(items) => items,
        Value::Null => return Value::Null,
        single => vec![single],
    };
    items.sort_by_key(Value::to_string);
    items.dedup();
    Value::Array(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn url_encoded_and_reordered_documents_are_the_same_policy() {
        let ours = json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "A", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::b/*",
             "Condition": {"StringEquals": {"bedrock-mantle:Model": ["m2", "m1"]}}},
            {"Sid": "B", "Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": "arn:aws:iam::1:role/x"}}
        ]});
        let theirs = json!({"Statement": [
            {"Principal": {"AWS": ["arn:aws:iam::1:role/x"]}, "Action": ["sts:AssumeRole"], "Effect": "Allow", "Sid": "B"},
            {"Sid": "A", "Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"], "Resource": ["arn:aws:s3:::b/*"],
             "Condition": {"StringEquals": {"bedrock-mantle:Model": ["m1", "m2"]}}}
        ], "Version": "2012-10-17"});
        let encoded: String = percent_encoding::utf8_percent_encode(
            &theirs.to_string(),
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string();
        assert!(encoded.starts_with("%7B"));
        assert_eq!(parse_policy(&encoded), Ok(canonical(ours.clone())));
        assert_eq!(parse_policy(&ours.to_string()), Ok(canonical(ours)));
    }

    #[test]
    fn real_differences_remain() {
        let a =
            json!({"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]});
        let b =
            json!({"Statement": [{"Effect": "Deny", "Action": "s3:GetObject", "Resource": "*"}]});
        let c = json!({"Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "*"}]});
        assert_ne!(canonical(a.clone()), canonical(b));
        assert_ne!(canonical(a), canonical(c));
        assert!(matches!(
            parse_policy("%7Bnot"),
            Err(CanonicalError::NotJson(_))
        ));
    }
}
