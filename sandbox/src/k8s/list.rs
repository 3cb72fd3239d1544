//! List parameters, list pages and continue tokens, and the selectors
//! parsed from them once per request.

use serde_json::Value;

use super::error::{K8sError, Result};
use super::selector::{FieldSelector, LabelSelector};
use super::state::ObjKey;

/// Options of list, deletecollection and watch.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

/// A page of a list.
#[derive(Debug, Clone)]
pub struct ObjectList {
    pub items: Vec<Value>,
    pub resource_version: String,
    pub continue_token: Option<String>,
    pub remaining_item_count: Option<usize>,
}

/// Selectors parsed once per request.
pub(crate) struct Selectors {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selectors {
    pub fn parse(params: &ListParams) -> Result<Self> {
        Ok(Selectors {
            labels: LabelSelector::parse(params.label_selector.as_deref().unwrap_or(""))?,
            fields: FieldSelector::parse(params.field_selector.as_deref().unwrap_or(""))?,
        })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

pub(crate) fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    bytes.and_then(|b| String::from_utf8(b).ok())
}

/// The continue token: the hex of "namespace/name" of the last item sent.
pub(crate) fn continue_after(token: &str) -> Result<ObjKey> {
    unhex(token)
        .and_then(|s| {
            s.split_once('/')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .ok_or_else(|| K8sError::BadRequest(format!("invalid continue token \"{token}\"")))
}
