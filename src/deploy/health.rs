//! `ember-ci health`: the container's health check. Asks the service's own
//! `/api/health` on the web UI's loopback listener, so the check follows
//! WEB_UI_PORT instead of a port baked into the image.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::config::WebConfig;

/// Long enough for a busy host, short enough for Podman's check interval.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("no answer from {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
}

/// The URL of `/api/health`: the web UI listens on 127.0.0.1 only.
pub fn health_url(web: &WebConfig) -> String {
    let address = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), web.ui_port);
    format!("http://{address}/api/health")
}

/// Ok when the local service answers its health endpoint with a success.
pub async fn check(web: &WebConfig) -> Result<(), HealthError> {
    let url = health_url(web);
    let unreachable = |source| HealthError::Unreachable {
        url: url.clone(),
        source,
    };
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(unreachable)?;
    let response = client.get(&url).send().await.map_err(unreachable)?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(HealthError::Status { url, status })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web(addr: &str, port: u16, ui_port: u16) -> WebConfig {
        WebConfig {
            addr: addr.parse().expect("test address"),
            port,
            ui_port,
            admin_token: None,
        }
    }

    #[test]
    fn the_check_asks_the_loopback_ui_whatever_the_webhook_address() {
        for addr in ["0.0.0.0", "::", "192.0.2.7"] {
            assert_eq!(
                health_url(&web(addr, 8010, 8011)),
                "http://127.0.0.1:8011/api/health"
            );
        }
    }
}
