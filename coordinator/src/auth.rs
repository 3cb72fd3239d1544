//! Who may do what. A peer's identity comes from its certificate (see
//! `ferry_common::tls`); a client's role comes from the coordinator's own
//! configuration, never from what the client says.
use std::collections::HashMap;
use std::str::FromStr;

use ferry_common::Identity;
use ferry_common::tls::PeerInfo;
use tonic::{Request, Status};

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

#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    roles: HashMap<String, Role>,
}

impl Authorizer {
    pub fn new(bindings: &[RoleBinding]) -> Self {
        Self {
            roles: bindings
                .iter()
                .map(|b| (b.client.clone(), b.role))
                .collect(),
        }
    }

    /// The calling client's name, if its role is at least `needed`.
    pub fn require<T>(&self, req: &Request<T>, needed: Role) -> Result<String, Status> {
        match peer(req)?.identity {
            Identity::Client(name) => match self.roles.get(&name) {
                Some(role) if *role >= needed => Ok(name),
                Some(role) => Err(Status::permission_denied(format!(
                    "client {name} has role {role}; this call needs {needed}"
                ))),
                None => Err(Status::permission_denied(format!(
                    "client {name} has no role on this coordinator; an admin must add `--role {name}=viewer|operator|admin`"
                ))),
            },
            other => Err(Status::permission_denied(format!(
                "{other} may not call the client API; use a client certificate (spiffe://ferry/client/<name>)"
            ))),
        }
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
