//! `ember-ci health`: the container's health check. Asks the service's own
//! `/api/health` on the address the config makes it listen on, so the
//! check follows WEB_ADDR/WEB_PORT instead of a port baked into the image.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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

/// The URL of `/api/health` as seen from this host: a wildcard listen
/// address is reached through loopback.
pub fn health_url(web: &WebConfig) -> String {
    let ip = match web.addr {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/api/health", SocketAddr::new(ip, web.port))
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

    fn web(addr: &str, port: u16) -> WebConfig {
        WebConfig {
            addr: addr.parse().expect("test address"),
            port,
            admin_token: None,
        }
    }

    #[test]
    fn wildcard_addresses_are_reached_through_loopback() {
        assert_eq!(
            health_url(&web("0.0.0.0", 8010)),
            "http://127.0.0.1:8010/api/health"
        );
        assert_eq!(health_url(&web("::", 9)), "http://[::1]:9/api/health");
        assert_eq!(
            health_url(&web("192.0.2.7", 80)),
            "http://192.0.2.7:80/api/health"
        );
    }
}
