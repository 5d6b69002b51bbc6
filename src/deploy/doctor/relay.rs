//! The relay: a configured smee channel must open an event stream, or no
//! delivery arrives on a host without an open port.

use std::time::Duration;

use super::Finding;
use crate::config::RelayConfig;

const TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn check(relay: &RelayConfig) -> Finding {
    let Some(url) = relay.smee_url.as_deref() else {
        return Finding::ok("relay", "no smee channel: deliveries come to WEB_PORT");
    };
    let fix = "check SMEE_ID / SMEE_URL (a new channel: https://smee.io/new) and outbound HTTPS";
    // The channel is a secret (whoever follows it collects signed bodies):
    // findings never show it. Only the response head is read: the stream
    // itself never ends.
    let answer = match reqwest::Client::builder().timeout(TIMEOUT).build() {
        Ok(client) => client
            .get(url)
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|err| err.without_url().to_string()),
        Err(err) => Err(err.to_string()),
    };
    match answer {
        Ok(response) if response.status().is_success() => {
            Finding::ok("relay", "the smee channel opens an event stream")
        }
        Ok(response) => Finding::block(
            "relay",
            format!("the smee channel answers {}", response.status()),
            fix,
        ),
        Err(err) => Finding::block("relay", format!("the smee channel: {err}"), fix),
    }
}
