//! Users' credentials (password hashes), which Keycloak's Admin REST API
//! never gives out: `GET users/{id}/credentials` answers without
//! `secretData`, and partial export leaves users out. Keycloak's own export
//! (`kc.sh export --users realm_file`, run against its database) is the one
//! way the server allows to read them, so the agent runs an operator-given
//! export command and reads the realms' documents from its stdout. The
//! hashes stay in memory until they join the realm's export document (the
//! bucket object the export already is); they are never logged.
//!
//! The command is called as `<command> <realm>…` and must print, for each
//! realm, Keycloak's realm document with its `users` (one JSON document
//! after another); its stderr is kept for an error message only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use keycloak::types::{CredentialRepresentation, UserRepresentation};
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::error::{AdminError, Result};

/// A JVM start plus an export of every realm: minutes on a large Keycloak.
const TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Bytes of the command's stderr quoted in an error.
const STDERR_TAIL: usize = 2000;

/// Credentials by realm, then by username.
#[derive(Default)]
pub struct RealmCredentials {
    realms: HashMap<String, HashMap<String, Vec<CredentialRepresentation>>>,
}

impl std::fmt::Debug for RealmCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Counts only: the hashes never reach a log.
        let mut m = f.debug_map();
        for (realm, users) in &self.realms {
            m.entry(realm, &users.len());
        }
        m.finish()
    }
}

/// What of Keycloak's realm document is read: users and their credentials.
#[derive(Deserialize)]
struct ExportedRealm {
    realm: String,
    #[serde(default)]
    users: Vec<ExportedUser>,
}

#[derive(Deserialize)]
struct ExportedUser {
    username: String,
    #[serde(default)]
    credentials: Vec<CredentialRepresentation>,
}

/// The export command, as configured (`--keycloak-export-command`).
#[derive(Debug, Clone)]
pub struct ExportCommand {
    program: PathBuf,
}

impl ExportCommand {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        ExportCommand {
            program: program.into(),
        }
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Runs the command for `realms` and reads their users' credentials.
    pub async fn credentials(&self, realms: &[String]) -> Result<RealmCredentials> {
        let failed = |message: String| AdminError::ExportCommand {
            command: self.program.display().to_string(),
            message,
        };
        let mut child = Command::new(&self.program)
            .args(realms)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failed(format!("could not start it: {e}")))?;
        let (mut stdout, mut stderr) = match (child.stdout.take(), child.stderr.take()) {
            (Some(out), Some(err)) => (out, err),
            _ => return Err(failed("its output pipes were not set up".into())),
        };
        let run = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let (read_out, read_err, status) = tokio::join!(
                stdout.read_to_end(&mut out),
                stderr.read_to_end(&mut err),
                child.wait()
            );
            read_out.map_err(|e| failed(format!("reading its output: {e}")))?;
            read_err.map_err(|e| failed(format!("reading its errors: {e}")))?;
            let status = status.map_err(|e| failed(format!("waiting for it: {e}")))?;
            Ok::<_, AdminError>((status, out, err))
        };
        let (status, out, err) = tokio::time::timeout(TIMEOUT, run)
            .await
            .map_err(|_| failed(format!("it did not finish within {TIMEOUT:?}")))??;
        if !status.success() {
            let err = String::from_utf8_lossy(&err);
            let tail = &err[err.floor_char_boundary(err.len().saturating_sub(STDERR_TAIL))..];
            return Err(failed(format!(
                "it failed ({status}); its errors end with:\n{tail}"
            )));
        }
        let credentials = parse(&out, realms).map_err(failed)?;
        tracing::info!(
            command = %self.program.display(),
            ?credentials,
            "read users' credentials from Keycloak's export"
        );
        Ok(credentials)
    }
}

/// Reads one realm document after another; every requested realm must be
/// there, others are ignored.
fn parse(out: &[u8], realms: &[String]) -> std::result::Result<RealmCredentials, String> {
    let mut credentials = RealmCredentials::default();
    for doc in serde_json::Deserializer::from_slice(out).into_iter::<ExportedRealm>() {
        // serde's message names a position, never the document's content.
        let doc = doc.map_err(|e| format!("its output is not Keycloak realm documents ({e})"))?;
        if !realms.contains(&doc.realm) {
            continue;
        }
        let users = doc
            .users
            .into_iter()
            .map(|u| (u.username, u.credentials))
            .collect();
        credentials.realms.insert(doc.realm, users);
    }
    let missing: Vec<&str> = realms
        .iter()
        .filter(|r| !credentials.realms.contains_key(*r))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "its output has no document for realm(s) {}",
            missing.join(", ")
        ));
    }
    Ok(credentials)
}

impl RealmCredentials {
    /// Gives each user of `realm` its credentials; returns how many users
    /// got at least one. A user the export does not know (created after it
    /// ran) keeps none.
    pub fn attach(&self, realm: &str, users: &mut [UserRepresentation]) -> usize {
        let Some(known) = self.realms.get(realm) else {
            return 0;
        };
        let mut attached = 0;
        for user in users {
            let found = user
                .username
                .as_deref()
                .and_then(|name| known.get(name))
                .filter(|c| !c.is_empty());
            if let Some(credentials) = found {
                user.credentials = Some(credentials.clone());
                attached += 1;
            }
        }
        attached
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = r#"{"realm":"r-a","users":[{"username":"alice","credentials":[
        {"type":"password","secretData":"{\"value\":\"h\",\"salt\":\"s\"}",
         "credentialData":"{\"algorithm\":\"argon2\"}"}]},{"username":"bob"}]}
        {"realm":"other","users":[{"username":"eve","credentials":[{"type":"password"}]}]}
        {"realm":"r-b"}"#;

    fn realms() -> Vec<String> {
        vec!["r-a".into(), "r-b".into()]
    }

    #[test]
    fn reads_the_requested_realms_and_attaches_by_username() -> std::result::Result<(), String> {
        let creds = parse(OUT.as_bytes(), &realms())?;
        let mut users = vec![
            UserRepresentation {
                username: Some("alice".into()),
                ..Default::default()
            },
            UserRepresentation {
                username: Some("bob".into()),
                ..Default::default()
            },
            UserRepresentation {
                username: Some("carol".into()),
                ..Default::default()
            },
        ];
        assert_eq!(creds.attach("r-a", &mut users), 1);
        let alice = users[0].credentials.as_ref().ok_or("alice has none")?;
        assert_eq!(alice[0].type_.as_deref(), Some("password"));
        assert!(
            alice[0]
                .secret_data
                .as_deref()
                .is_some_and(|s| s.contains("salt"))
        );
        assert!(users[1].credentials.is_none() && users[2].credentials.is_none());
        assert_eq!(
            creds.attach("other", &mut users),
            0,
            "not requested, not kept"
        );
        let shown = format!("{creds:?}");
        assert!(!shown.contains("salt") && shown.contains("r-a"), "{shown}");
        Ok(())
    }

    #[test]
    fn a_missing_realm_or_garbage_is_an_error() {
        let missing = parse(br#"{"realm":"r-a","users":[]}"#, &realms());
        assert!(missing.is_err_and(|e| e.contains("r-b")));
        let garbage = parse(b"Keycloak started", &realms());
        assert!(garbage.is_err_and(|e| e.contains("not Keycloak realm documents")));
    }
}
