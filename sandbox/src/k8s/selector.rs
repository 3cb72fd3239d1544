//! Label selectors (equality- and set-based) and field selectors, parsed from
//! the query strings clients send and matched against stored objects.

use serde_json::Value;

use super::error::{K8sError, Result};

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector`; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

/// Splits on commas outside parentheses: `a in (x,y),b` → [`a in (x,y)`, `b`].
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn bad(selector: &str, why: &str) -> K8sError {
    K8sError::BadRequest(format!(
        "unable to parse requirement: invalid label selector \"{selector}\": {why}"
    ))
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

/// Parses `(a, b, c)` into its values.
fn parse_set(selector: &str, rest: &str) -> Result<Vec<String>> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| bad(selector, "expected a parenthesised set of values"))?;
    Ok(inner
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect())
}

fn parse_requirement(selector: &str, part: &str) -> Result<Requirement> {
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        return if valid_key(key) {
            Ok(Requirement::NotExists(key.into()))
        } else {
            Err(bad(selector, "invalid key after '!'"))
        };
    }
    // Set-based forms: `key in (..)`, `key notin (..)`.
    let words: Vec<&str> = part.splitn(3, char::is_whitespace).collect();
    if words.len() >= 2 {
        let key = words[0];
        let op_and_rest = part[key.len()..].trim_start();
        if let Some(rest) = op_and_rest.strip_prefix("notin")
            && rest.trim_start().starts_with('(')
            && valid_key(key)
        {
            return Ok(Requirement::NotIn(key.into(), parse_set(selector, rest)?));
        }
        if let Some(rest) = op_and_rest.strip_prefix("in")
            && rest.trim_start().starts_with('(')
            && valid_key(key)
        {
            return Ok(Requirement::In(key.into(), parse_set(selector, rest)?));
        }
    }
    for (op, make) in [
        (
            "!=",
            Requirement::NotEquals as fn(String, String) -> Requirement,
        ),
        ("==", Requirement::Equals),
        ("=", Requirement::Equals),
    ] {
        if let Some((key, value)) = part.split_once(op) {
            let key = key.trim();
            if !valid_key(key) {
                return Err(bad(selector, "invalid key"));
            }
            return Ok(make(key.into(), value.trim().into()));
        }
    }
    if valid_key(part) {
        Ok(Requirement::Exists(part.into()))
    } else {
        Err(bad(selector, "unsupported operator"))
    }
}

impl LabelSelector {
    pub fn parse(selector: &str) -> Result<Self> {
        let requirements = split_top_level(selector)
            .into_iter()
            .map(|part| parse_requirement(selector, part))
            .collect::<Result<_>>()?;
        Ok(LabelSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Matches the object's `metadata.labels`.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.get("metadata").and_then(|m| m.get("labels"));
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            Requirement::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => !label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::NotExists(k) => label(k).is_none(),
        })
    }
}

/// A parsed `fieldSelector`: `path=value` / `path==value` / `path!=value`
/// terms over dotted paths (`metadata.name`, `metadata.namespace`,
/// `status.phase`, …). A missing field compares as the empty string, as the
/// real server does for the fields it indexes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

impl FieldSelector {
    pub fn parse(selector: &str) -> Result<Self> {
        let mut terms = Vec::new();
        for part in split_top_level(selector) {
            let (path, equal, value) = if let Some((p, v)) = part.split_once("!=") {
                (p, false, v)
            } else if let Some((p, v)) = part.split_once("==") {
                (p, true, v)
            } else if let Some((p, v)) = part.split_once('=') {
                (p, true, v)
            } else {
                return Err(K8sError::BadRequest(format!(
                    "invalid field selector \"{selector}\": \"{part}\" has no operator"
                )));
            };
            terms.push((path.trim().to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|(path, equal, value)| {
            let found = path
                .split('.')
                .try_fold(object, |v, k| v.get(k))
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            (found == *value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns1", "labels": labels}})
    }

    #[test]
    fn equality_and_existence() -> Result<()> {
        let o = obj(json!({"app": "vault", "tier": "db"}));
        assert!(LabelSelector::parse("app=vault")?.matches(&o));
        assert!(LabelSelector::parse("app==vault,tier")?.matches(&o));
        assert!(!LabelSelector::parse("app!=vault")?.matches(&o));
        assert!(LabelSelector::parse("other!=x")?.matches(&o));
        assert!(LabelSelector::parse("!other")?.matches(&o));
        assert!(!LabelSelector::parse("!app")?.matches(&o));
        assert!(LabelSelector::parse("")?.matches(&o));
        Ok(())
    }

    #[test]
    fn set_based() -> Result<()> {
        let o = obj(json!({"app": "vault"}));
        assert!(LabelSelector::parse("app in (nexus, vault)")?.matches(&o));
        assert!(!LabelSelector::parse("app notin (nexus,vault)")?.matches(&o));
        assert!(LabelSelector::parse("tier notin (db)")?.matches(&o));
        assert!(!LabelSelector::parse("tier in (db)")?.matches(&o));
        assert!(LabelSelector::parse("app in (vault),app")?.matches(&o));
        assert!(LabelSelector::parse("app in vault").is_err());
        Ok(())
    }

    #[test]
    fn field_selectors() -> Result<()> {
        let o = obj(json!({}));
        assert!(FieldSelector::parse("metadata.name=a")?.matches(&o));
        assert!(FieldSelector::parse("metadata.name==a,metadata.namespace=ns1")?.matches(&o));
        assert!(!FieldSelector::parse("metadata.namespace!=ns1")?.matches(&o));
        assert!(FieldSelector::parse("status.phase!=Running")?.matches(&o));
        assert!(FieldSelector::parse("nonsense").is_err());
        Ok(())
    }
}
