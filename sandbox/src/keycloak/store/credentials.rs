//! Password credentials kept as Keycloak keeps them: a salted hash in
//! `secretData` (`{"value", "salt", "additionalParameters"}`, base64) with
//! its parameters in `credentialData` (`{"hashIterations", "algorithm",
//! "additionalParameters"}`), never the password itself. A plain `value`
//! given on create or import is hashed on arrival; a hashed credential (as
//! Keycloak's own export writes it, and as an import from another Keycloak
//! carries it) is kept as sent. The Admin API shows credentials without
//! `secretData`, as Keycloak does.
//!
//! The sandbox hashes with PBKDF2-HMAC-SHA512 (Keycloak's pre-argon2 default
//! and its FIPS choice) at fewer iterations than Keycloak's 210,000, to keep
//! the fast tier fast; it verifies `pbkdf2`, `pbkdf2-sha256` and
//! `pbkdf2-sha512` at any iteration count. Keycloak 26's default, argon2,
//! is carried as sent but cannot be verified here.

use std::num::NonZeroU32;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use serde_json::{Value, json};

use super::super::model::CredentialRepresentation;
use super::{new_id, now_millis};

/// The sandbox's own hashing: algorithm name and iterations.
const ALGORITHM: &str = "pbkdf2-sha512";
const ITERATIONS: u32 = 1000;
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 64;

const SECRET_DATA: &str = "secretData";
const CREDENTIAL_DATA: &str = "credentialData";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CredentialData {
    algorithm: String,
    hash_iterations: u32,
}

#[derive(Deserialize)]
struct SecretData {
    value: String,
    salt: String,
}

fn is_password(c: &CredentialRepresentation) -> bool {
    c.type_.as_deref().is_none_or(|t| t == "password")
}

/// A credential as stored: a plain password hashed, a hashed one kept;
/// each with an id and a creation date.
pub(crate) fn stored(mut c: CredentialRepresentation) -> CredentialRepresentation {
    if is_password(&c)
        && let Some(password) = c.value.take()
    {
        let mut salt = [0u8; SALT_LEN];
        // The system RNG only fails when the OS has none; a zero salt is
        // still a working (if weaker) hash in a test sandbox.
        let _ = SystemRandom::new().fill(&mut salt);
        let hash = derive(ALGORITHM, ITERATIONS, &salt, password.as_bytes()).unwrap_or_default();
        let secret = json!({
            "value": STANDARD.encode(hash),
            "salt": STANDARD.encode(salt),
            "additionalParameters": {},
        });
        let data = json!({
            "hashIterations": ITERATIONS,
            "algorithm": ALGORITHM,
            "additionalParameters": {},
        });
        c.type_ = Some("password".to_owned());
        c.extra
            .insert(SECRET_DATA.to_owned(), Value::String(secret.to_string()));
        c.extra
            .insert(CREDENTIAL_DATA.to_owned(), Value::String(data.to_string()));
    }
    c.extra
        .entry("id")
        .or_insert_with(|| Value::String(new_id()));
    c.extra
        .entry("createdDate")
        .or_insert_with(|| Value::from(now_millis()));
    c
}

/// As `GET /users/{id}/credentials` shows it: no `secretData`.
pub(crate) fn public(c: &CredentialRepresentation) -> CredentialRepresentation {
    let mut c = c.clone();
    c.extra.remove(SECRET_DATA);
    c.value = None;
    c
}

/// Whether `password` matches the credential's hash.
pub(crate) fn matches(c: &CredentialRepresentation, password: &str) -> bool {
    if !is_password(c) {
        return false;
    }
    let text = |key: &str| c.extra.get(key).and_then(Value::as_str);
    let (Some(secret), Some(data)) = (text(SECRET_DATA), text(CREDENTIAL_DATA)) else {
        return false;
    };
    let (Ok(secret), Ok(data)) = (
        serde_json::from_str::<SecretData>(secret),
        serde_json::from_str::<CredentialData>(data),
    ) else {
        return false;
    };
    let (Ok(salt), Ok(expected)) = (
        STANDARD.decode(&secret.salt),
        STANDARD.decode(&secret.value),
    ) else {
        return false;
    };
    let Some(algorithm) = algorithm(&data.algorithm) else {
        return false;
    };
    let Some(iterations) = NonZeroU32::new(data.hash_iterations) else {
        return false;
    };
    pbkdf2::verify(algorithm, iterations, &salt, password.as_bytes(), &expected).is_ok()
}

fn algorithm(name: &str) -> Option<pbkdf2::Algorithm> {
    match name {
        "pbkdf2" => Some(pbkdf2::PBKDF2_HMAC_SHA1),
        "pbkdf2-sha256" => Some(pbkdf2::PBKDF2_HMAC_SHA256),
        "pbkdf2-sha512" => Some(pbkdf2::PBKDF2_HMAC_SHA512),
        _ => None,
    }
}

fn derive(name: &str, iterations: u32, salt: &[u8], password: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; HASH_LEN];
    pbkdf2::derive(
        algorithm(name)?,
        NonZeroU32::new(iterations)?,
        salt,
        password,
        &mut out,
    );
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(password: &str) -> CredentialRepresentation {
        CredentialRepresentation {
            type_: Some("password".into()),
            value: Some(password.into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_plain_password_is_stored_as_a_hash_that_verifies() {
        let c = stored(plain("s3cret"));
        assert!(c.value.is_none());
        let secret = c.extra[SECRET_DATA].as_str().unwrap_or_default();
        assert!(secret.contains("salt") && !secret.contains("s3cret"));
        assert!(matches(&c, "s3cret"));
        assert!(!matches(&c, "s3cret!"));
        assert!(public(&c).extra.get(SECRET_DATA).is_none());
        assert!(public(&c).extra.contains_key(CREDENTIAL_DATA));
    }

    #[test]
    fn a_hashed_credential_from_elsewhere_is_kept_and_verifies() {
        // As another Keycloak's export carries it: pbkdf2-sha256, 27500 rounds.
        let salt = b"0123456789abcdef";
        let hash = derive("pbkdf2-sha256", 27_500, salt, b"pw").unwrap_or_default();
        let mut c = CredentialRepresentation {
            type_: Some("password".into()),
            ..Default::default()
        };
        let secret = json!({"value": STANDARD.encode(&hash[..32]), "salt": STANDARD.encode(salt)});
        let data = json!({"hashIterations": 27_500, "algorithm": "pbkdf2-sha256"});
        c.extra
            .insert(SECRET_DATA.into(), Value::String(secret.to_string()));
        c.extra
            .insert(CREDENTIAL_DATA.into(), Value::String(data.to_string()));
        let kept = stored(c.clone());
        assert_eq!(kept.extra[SECRET_DATA], c.extra[SECRET_DATA]);
        assert!(matches(&kept, "pw"));
        assert!(!matches(&kept, "other"));
    }
}
