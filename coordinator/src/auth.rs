//! Who may do what. A peer's identity comes from its certificate (see
//! `ferry_common::tls`); a client's role comes from the coordinator's own
//! configuration, never from what the client says.
use std::collections::HashMap;
use std::str::FromStr;

use ferry_common::tls::PeerInfo;
use ferry_common::{Identity, pb};
use tonic::{Request, Status};

use crate::error::denied;
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}: use viewer, operator or admin"
            )),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        })
    }
}

/// `name=role` from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleBinding {
    pub client: String,
    pub role: Role,
}

impl FromStr for RoleBinding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (client, role) = s.split_once('=').ok_or_else(|| {
            format!("bad role binding {s:?}: use client-name=viewer|operator|admin")
        })?;
        Ok(RoleBinding {
            client: client.trim().to_string(),
            role: role.trim().parse()?,
        })
    }
}

#[derive(Clone, Default)]
pub struct Authorizer {
    roles: HashMap<String, Role>,
    /// Where refusals are recorded (the audit log); none in unit tests.
    audit: Option<Store>,
}

impl Authorizer {
    pub fn new(bindings: &[RoleBinding]) -> Self {
        Self {
            roles: bindings
                .iter()
                .map(|b| (b.client.clone(), b.role))
                .collect(),
            audit: None,
        }
    }

    /// Records every refusal in `store`'s audit log.
    pub fn with_audit(mut self, store: Store) -> Self {
        self.audit = Some(store);
        self
    }

    /// The calling client's name, if its role is at least `needed`. A
    /// refusal is audited and logged: who, `action` on `object`, and why.
    pub fn require<T>(
        &self,
        req: &Request<T>,
        needed: Role,
        action: &str,
        object: &str,
    ) -> Result<String, Status> {
        self.check(req, needed)
            .inspect_err(|status| self.refused(req, action, object, status))
    }

    /// Records a refused call — `{action}-denied` on `object` by the peer of
    /// `req`, with the reason — in the audit log and the log.
    pub fn refused<T>(&self, req: &Request<T>, action: &str, object: &str, why: &Status) {
        self.refused_by(&actor(req), action, object, why);
    }

    /// [`Authorizer::refused`] for a caller named already (see [`actor`]).
    pub fn refused_by(&self, who: &str, action: &str, object: &str, why: &Status) {
        let object = ferry_common::limits::shorten(object);
        tracing::warn!(%who, %action, %object, code = ?why.code(), reason = %why.message(), "call refused");
        if let Some(store) = &self.audit {
            let entry = pb::AuditEntry {
                actor: who.to_string(),
                action: format!("{action}-denied"),
                object,
                detail: why.message().to_string(),
                ..Default::default()
            };
            if let Err(e) = store.audit(entry) {
                tracing::error!(error = %e, %who, %action, "cannot append a refusal to the audit log");
            }
        }
    }

    /// Audits `result` if it is a refusal (not allowed, or the state does
    /// not allow it) rather than a failure, and passes it on.
    pub fn audit_refusal<T, R>(
        &self,
        req: &Request<T>,
        action: &str,
        object: &str,
        result: Result<R, Status>,
    ) -> Result<R, Status> {
        self.audit_refusal_by(&actor(req), action, object, result)
    }

    /// [`Authorizer::audit_refusal`] for a caller named already.
    pub fn audit_refusal_by<R>(
        &self,
        who: &str,
        action: &str,
        object: &str,
        result: Result<R, Status>,
    ) -> Result<R, Status> {
        if let Err(status) = &result
            && matches!(
                status.code(),
                tonic::Code::PermissionDenied
                    | tonic::Code::Unauthenticated
                    | tonic::Code::FailedPrecondition
            )
        {
            self.refused_by(who, action, object, status);
        }
        result
    }

    /// The calling client's name, if its role is at least `needed`; a
    /// refusal is the caller's to audit.
    pub fn check<T>(&self, req: &Request<T>, needed: Role) -> Result<String, Status> {
        match peer(req)?.identity {
            Identity::Client(name) => match self.roles.get(&name) {
                Some(role) if *role >= needed => Ok(name),
                Some(role) => Err(denied(format!(
                    "client {name} has role {role}; this call needs {needed}"
                ))),
                None => Err(denied(format!(
                    "client {name} has no role on this coordinator; an admin must add `--role {name}=viewer|operator|admin`"
                ))),
            },
            other => Err(denied(format!(
                "{other} may not call the client API; use a client certificate (spiffe://ferry/client/<name>)"
            ))),
        }
    }
}

/// Who a request comes from, as the audit log names it: `client/<name>`,
/// `cluster/<id>`, `coordinator`, or `unauthenticated`.
pub fn actor<T>(req: &Request<T>) -> String {
    match peer(req).map(|p| p.identity) {
        Ok(Identity::Client(name)) => format!("client/{name}"),
        Ok(Identity::Agent(cluster)) => format!("cluster/{cluster}"),
        Ok(Identity::Coordinator) => "coordinator".to_string(),
        Err(_) => "unauthenticated".to_string(),
    }
}

/// The peer of a request, as identified at the TLS handshake.
pub fn peer<T>(req: &Request<T>) -> Result<PeerInfo, Status> {
    req.extensions()
        .get::<PeerInfo>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no verified peer certificate on this connection"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parsed() {
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
        assert_eq!(
            "ci=operator".parse::<RoleBinding>(),
            Ok(RoleBinding {
                client: "ci".into(),
                role: Role::Operator
            })
        );
        assert!("ci".parse::<RoleBinding>().is_err());
        assert!("ci=root".parse::<RoleBinding>().is_err());
    }
}
