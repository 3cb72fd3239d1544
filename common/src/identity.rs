//! Who a peer is, read from the URI SAN of its certificate. The contract
//! never lets a peer say who it is: the certificate does.
use std::fmt;

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::{Error, Result};

const AGENT_PREFIX: &str = "spiffe://ferry/cluster/";
const CLIENT_PREFIX: &str = "spiffe://ferry/client/";
/// The coordinator's identity unless configured otherwise.
pub const COORDINATOR_URI: &str = "spiffe://ferry/coordinator";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// The agent of one cluster.
    Agent(String),
    /// An automation client or a person using the CLI.
    Client(String),
    Coordinator,
}

impl Identity {
    pub fn uri(&self) -> String {
        match self {
            Identity::Agent(id) => format!("{AGENT_PREFIX}{id}"),
            Identity::Client(name) => format!("{CLIENT_PREFIX}{name}"),
            Identity::Coordinator => COORDINATOR_URI.to_string(),
        }
    }

    pub fn parse_uri(uri: &str) -> Option<Identity> {
        if uri == COORDINATOR_URI {
            return Some(Identity::Coordinator);
        }
        let (make, rest): (fn(String) -> Identity, &str) =
            if let Some(rest) = uri.strip_prefix(AGENT_PREFIX) {
                (Identity::Agent, rest)
            } else if let Some(rest) = uri.strip_prefix(CLIENT_PREFIX) {
                (Identity::Client, rest)
            } else {
                return None;
            };
        valid_name(rest).then(|| make(rest.to_string()))
    }

    /// The Ferry identity in a DER certificate's URI SANs.
    pub fn from_cert_der(der: &[u8]) -> Result<Identity> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| Error::Identity(format!("unparsable certificate: {e}")))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| Error::Identity(format!("bad subjectAltName: {e}")))?
            .ok_or_else(|| Error::Identity("no subjectAltName extension".into()))?;
        let mut found = None;
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name
                && let Some(id) = Identity::parse_uri(uri)
                && found.replace(id).is_some()
            {
                return Err(Error::Identity(
                    "more than one spiffe://ferry/ URI SAN".into(),
                ));
            }
        }
        found.ok_or_else(|| {
            Error::Identity(
                "no spiffe://ferry/cluster/<id> or spiffe://ferry/client/<name> URI SAN".into(),
            )
        })
    }
}

/// Every URI SAN of a DER certificate (none if it does not parse).
pub fn uri_sans(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return vec![];
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return vec![];
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(uri) => Some(uri.to_string()),
            _ => None,
        })
        .collect()
}

/// Cluster ids and client names: DNS-label-like, so they are safe in URIs,
/// file names and Kubernetes names alike.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Agent(id) => write!(f, "agent of cluster {id}"),
            Identity::Client(name) => write!(f, "client {name}"),
            Identity::Coordinator => write!(f, "coordinator"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ferry_uris_only() {
        assert_eq!(
            Identity::parse_uri("spiffe://ferry/cluster/a"),
            Some(Identity::Agent("a".into()))
        );
        assert_eq!(
            Identity::parse_uri("spiffe://ferry/client/ci-bot"),
            Some(Identity::Client("ci-bot".into()))
        );
        assert_eq!(
            Identity::parse_uri("spiffe://ferry/coordinator"),
            Some(Identity::Coordinator)
        );
        assert_eq!(Identity::parse_uri("spiffe://other/cluster/a"), None);
        assert_eq!(Identity::parse_uri("spiffe://ferry/cluster/"), None);
        assert_eq!(Identity::parse_uri("spiffe://ferry/cluster/a/b"), None);
        assert_eq!(Identity::parse_uri("spiffe://ferry/cluster/A"), None);
    }
}
