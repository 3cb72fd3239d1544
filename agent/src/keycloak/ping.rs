//! Is Keycloak there? One anonymous GET of the master realm's public info.

use std::time::Duration;

/// True when `<base_url>/realms/master` answers within `timeout` with
/// anything but a server error. Keycloak answers 200 (the realm's public
/// info); a 5xx means it is up but not working (e.g. its database is down).
pub async fn ping(base_url: &str, timeout: Duration) -> bool {
    let http = match reqwest::Client::builder().timeout(timeout).build() {
        Ok(http) => http,
        Err(error) => {
            tracing::warn!(%error, "could not build an HTTP client to check Keycloak");
            return false;
        }
    };
    let url = format!("{}/realms/master", base_url.trim_end_matches('/'));
    match http.get(&url).send().await {
        Ok(resp) => !resp.status().is_server_error(),
        Err(error) => {
            tracing::debug!(%error, %url, "Keycloak did not answer");
            false
        }
    }
}
