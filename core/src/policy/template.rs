//! JSON templates with named placeholders. Substitution happens on the parsed
//! document, never on text, so a value can never break out of its string.

use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("the policy template is not valid JSON: {0}")]
    InvalidTemplate(String),
    #[error("the policy template uses '{{{{{0}}}}}', which has no value")]
    MissingValue(String),
    #[error("'{{{{{0}}}}}' stands inside a longer string but its value is not a string")]
    NotAString(String),
    #[error(transparent)]
    Routes(#[from] super::RoutesError),
}

/// Renders `template` with `values`: a string that is exactly `{{name}}` becomes the
/// value; `{{name}}` inside a longer string is replaced by the (string) value.
pub fn render(template: &str, values: &[(&str, Value)]) -> Result<Value, TemplateError> {
    let mut doc: Value = serde_json::from_str(template)
        .map_err(|e| TemplateError::InvalidTemplate(e.to_string()))?;
    substitute(&mut doc, values)?;
    Ok(doc)
}

fn lookup<'a>(values: &'a [(&str, Value)], name: &str) -> Result<&'a Value, TemplateError> {
    values
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .ok_or_else(|| TemplateError::MissingValue(name.to_owned()))
}

/// Replaces every `{{name}}` inside a longer string with its (string) value.
fn substitute_inline(s: &str, values: &[(&str, Value)]) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let name = &rest[start + 2..start + len];
        let value = lookup(values, name)?
            .as_str()
            .ok_or_else(|| TemplateError::NotAString(name.to_owned()))?;
        out.push_str(&rest[..start]);
        out.push_str(value);
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn substitute(node: &mut Value, values: &[(&str, Value)]) -> Result<(), TemplateError> {
    match node {
        Value::String(s) => {
            if let Some(name) = s
                .strip_prefix("{{")
                .and_then(|r| r.strip_suffix("}}"))
                .filter(|n| !n.contains("{{"))
            {
                *node = lookup(values, name)?.clone();
                return Ok(());
            }
            *s = substitute_inline(s, values)?;
        }
        Value::Array(items) => items.iter_mut().try_for_each(|v| substitute(v, values))?,
        // Keys may hold placeholders too (IAM condition keys name the OIDC provider).
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (key, mut value) in entries {
                substitute(&mut value, values)?;
                map.insert(substitute_inline(&key, values)?, value);
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn whole_and_inline_placeholders() {
        let out = render(
            r#"{"a": "{{list}}", "b": "x:{{s}}:{{s}}", "c": 1}"#,
            &[("list", json!(["p", "q"])), ("s", json!("v"))],
        );
        assert_eq!(out, Ok(json!({"a": ["p", "q"], "b": "x:v:v", "c": 1})));
    }

    #[test]
    fn placeholders_in_keys() {
        let out = render(
            r#"{"{{host}}:sub": "{{s}}"}"#,
            &[("host", json!("oidc.example")), ("s", json!("x"))],
        );
        assert_eq!(out, Ok(json!({"oidc.example:sub": "x"})));
    }

    #[test]
    fn values_cannot_escape_their_string() {
        let out = render(
            r#"{"a": "arn:{{s}}"}"#,
            &[("s", json!("\", \"Effect\": \"Deny"))],
        );
        assert_eq!(out, Ok(json!({"a": "arn:\", \"Effect\": \"Deny"})));
    }

    #[test]
    fn missing_and_mistyped_values_are_errors() {
        assert_eq!(
            render(r#"{"a": "{{nope}}"}"#, &[]),
            Err(TemplateError::MissingValue("nope".into()))
        );
        assert_eq!(
            render(r#"{"a": "x{{l}}"}"#, &[("l", json!([1]))]),
            Err(TemplateError::NotAString("l".into()))
        );
        assert!(matches!(
            render("{", &[]),
            Err(TemplateError::InvalidTemplate(_))
        ));
    }
}
