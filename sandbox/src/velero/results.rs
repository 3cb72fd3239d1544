//! What a backup or restore has to say: its log (Velero's logrus text
//! format) and its results file (errors and warnings by namespace).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use super::clock::now_rfc3339;

/// Errors or warnings, grouped as Velero's `results` file groups them.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct Messages {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub velero: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cluster: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub namespaces: BTreeMap<String, Vec<String>>,
}

impl Messages {
    fn add(&mut self, namespace: Option<&str>, message: String) {
        match namespace {
            Some(ns) => self
                .namespaces
                .entry(ns.to_owned())
                .or_default()
                .push(message),
            None => self.velero.push(message),
        }
    }

    pub fn count(&self) -> u64 {
        (self.velero.len()
            + self.cluster.len()
            + self.namespaces.values().map(Vec::len).sum::<usize>()) as u64
    }
}

/// The log and results of one backup or restore being run.
#[derive(Debug)]
pub(crate) struct Journal {
    /// `backup=velero/name` or `restore=velero/name`.
    owner: String,
    lines: Vec<String>,
    pub errors: Messages,
    pub warnings: Messages,
}

impl Journal {
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        Journal {
            owner: format!("{kind}={namespace}/{name}"),
            lines: Vec::new(),
            errors: Messages::default(),
            warnings: Messages::default(),
        }
    }

    fn line(&mut self, level: &str, message: &str, fields: &str) {
        let message = message.replace('"', "\\\"");
        let sep = if fields.is_empty() { "" } else { " " };
        self.lines.push(format!(
            "time=\"{}\" level={level} msg=\"{message}\" {}{sep}{fields}",
            now_rfc3339(),
            self.owner
        ));
    }

    pub fn info(&mut self, message: &str, fields: &str) {
        self.line("info", message, fields);
    }

    pub fn warn(&mut self, namespace: Option<&str>, message: String) {
        self.line("warning", &message, "");
        self.warnings.add(namespace, message);
    }

    pub fn error(&mut self, namespace: Option<&str>, message: String) {
        self.line("error", &message, "");
        self.errors.add(namespace, message);
    }

    pub fn log_text(&self) -> String {
        let mut text = self.lines.join("\n");
        text.push('\n');
        text
    }

    /// `{"errors": {...}, "warnings": {...}}`
    pub fn results(&self) -> Value {
        json!({"errors": self.errors, "warnings": self.warnings})
    }
}
