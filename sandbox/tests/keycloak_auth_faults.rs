//! Authentication of the Keycloak sandbox (admin token, service account,
//! 401 without a valid token) and its 5xx fault switch.

use anyhow::{Result, bail};
use ferry_sandbox::keycloak::KeycloakServer;
use keycloak::prelude::reqwest;
use keycloak::{
    KeycloakAdmin, KeycloakAdminToken, KeycloakError, KeycloakServiceAccountAdminTokenRetriever,
};

fn status_of(e: &KeycloakError) -> Option<u16> {
    match e {
        KeycloakError::HttpFailure { status, .. } => Some(*status),
        _ => None,
    }
}

#[tokio::test]
async fn admin_calls_need_a_valid_bearer_token() -> Result<()> {
    let server = KeycloakServer::start("admin", "s3cret").await?;
    let http = reqwest::Client::new();

    let no_token = http
        .get(format!("{}/admin/realms", server.base_url()))
        .send()
        .await?;
    assert_eq!(no_token.status().as_u16(), 401);
    let bogus = http
        .get(format!("{}/admin/realms", server.base_url()))
        .bearer_auth("not-a-token")
        .send()
        .await?;
    assert_eq!(bogus.status().as_u16(), 401);

    match KeycloakAdminToken::acquire(server.base_url(), "admin", "wrong", &http).await {
        // Keycloak 26 answers invalid_grant with 400 (RFC 6749 §5.2).
        Err(e) if status_of(&e) == Some(400) => {}
        other => bail!("a wrong password must get 400, got {:?}", other.map(|_| ())),
    }

    let token = KeycloakAdminToken::acquire(server.base_url(), "admin", "s3cret", &http).await?;
    // JWT-shaped, so clients that peek at `exp` work.
    assert_eq!(token.access_token().split('.').count(), 3);
    assert!(token.refresh_token().is_some());
    let admin = KeycloakAdmin::new(server.base_url(), token, http.clone());
    let realms = admin.get(None).await?;
    assert_eq!(realms.len(), 1);
    assert_eq!(realms[0].realm.as_deref(), Some("master"));
    Ok(())
}

#[tokio::test]
async fn service_account_gets_admin_token() -> Result<()> {
    let server = KeycloakServer::start("admin", "s3cret").await?;
    server.register_service_account("ferry-agent", "agent-secret")?;
    let http = reqwest::Client::new();

    let wrong =
        KeycloakServiceAccountAdminTokenRetriever::create("ferry-agent", "nope", http.clone());
    match wrong.acquire(server.base_url()).await {
        Err(e) if status_of(&e) == Some(401) => {}
        other => bail!(
            "a wrong client secret must get 401, got {:?}",
            other.map(|_| ())
        ),
    }

    let retriever = KeycloakServiceAccountAdminTokenRetriever::create(
        "ferry-agent",
        "agent-secret",
        http.clone(),
    );
    let admin = KeycloakAdmin::new(server.base_url(), retriever, http);
    assert_eq!(admin.get(Some(true)).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn fault_switch_answers_503_until_switched_off() -> Result<()> {
    let server = KeycloakServer::start("admin", "s3cret").await?;
    let http = reqwest::Client::new();
    let token = KeycloakAdminToken::acquire(server.base_url(), "admin", "s3cret", &http).await?;
    let admin = KeycloakAdmin::new(server.base_url(), token, http.clone());
    admin.realm_get("master").await?;

    server.set_unavailable(true);
    assert!(server.is_unavailable());
    match admin.realm_get("master").await {
        Err(e) if status_of(&e) == Some(503) => {}
        other => bail!(
            "admin calls must get 503 while the fault is on, got {:?}",
            other.map(|_| ())
        ),
    }
    match KeycloakAdminToken::acquire(server.base_url(), "admin", "s3cret", &http).await {
        Err(e) if status_of(&e) == Some(503) => {}
        other => bail!(
            "the token endpoint must get 503 too, got {:?}",
            other.map(|_| ())
        ),
    }

    server.set_unavailable(false);
    admin.realm_get("master").await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn access_tokens_expire_and_refresh_tokens_renew_them() -> Result<()> {
    use ferry_sandbox::keycloak::KeycloakConfig;
    use std::time::Duration;

    let mut config = KeycloakConfig::new("admin", "s3cret");
    config.access_token_lifespan = Duration::from_secs(1);
    let server = KeycloakServer::start_with(config).await?;
    let http = reqwest::Client::new();
    let token = KeycloakAdminToken::acquire(server.base_url(), "admin", "s3cret", &http).await?;
    assert_eq!(token.expires_in(), 1);
    let refresh = token.refresh_token().map(str::to_owned);
    let admin = KeycloakAdmin::new(server.base_url(), token, http.clone());
    admin.realm_get("master").await?;

    tokio::time::sleep(Duration::from_millis(1200)).await;
    match admin.realm_get("master").await {
        Err(e) if status_of(&e) == Some(401) => {}
        other => bail!("an expired token must get 401, got {:?}", other.map(|_| ())),
    }

    let renewed: serde_json::Value = http
        .post(format!(
            "{}/realms/master/protocol/openid-connect/token",
            server.base_url()
        ))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "admin-cli"),
            ("refresh_token", refresh.as_deref().unwrap_or_default()),
        ])
        .send()
        .await?
        .json()
        .await?;
    let fresh = renewed["access_token"].as_str().unwrap_or_default();
    let status = http
        .get(format!("{}/admin/realms", server.base_url()))
        .bearer_auth(fresh)
        .send()
        .await?
        .status();
    assert_eq!(status.as_u16(), 200, "{renewed}");
    Ok(())
}
