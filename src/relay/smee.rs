//! The smee client: follows a smee.io channel (or a self-hosted smee server)
//! and hands each delivery to the webhook [`Intake`], exactly as if GitHub
//! had posted it to our endpoint.
//!
//! smee speaks Server-Sent Events: a `ready` event when the stream opens,
//! `ping` keep-alives every 30 s, and each delivery as a `message` whose data
//! is JSON holding the request's lower-case headers beside the parsed
//! `body`. Anyone who knows a channel id can post to it, so nothing is
//! trusted: the body is rebuilt as compact JSON with its key order kept
//! ([`prepare_saved_delivery`]) and the intake checks its HMAC like any other.
//!
//! The link is kept up forever: a dropped or refused stream is retried with
//! exponential backoff (capped at a minute) and never ends the task; only
//! shutdown does. State changes are logged and mirrored in [`RelayHealth`].
//!
//! It must not decide anything about a delivery itself; that is the intake's
//! job, so the relay and the endpoint cannot drift apart.

use std::sync::Arc;
use std::time::Duration;

use eventsource_client as sse;
use futures_util::StreamExt;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::saved::prepare_saved_delivery;
use super::{Backoff, RelayHealth};
use crate::webhook::{DeliveryHeaders, Intake};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// smee pings every 30 s; three missed pings mean the stream is dead even
/// if the TCP connection looks open (a NAT or proxy dropped it silently).
const READ_TIMEOUT: Duration = Duration::from_secs(90);
const RECONNECT_INITIAL: Duration = Duration::from_secs(1);
const RECONNECT_MAX: Duration = Duration::from_secs(60);

/// The intake's answer to a delivery whose signature did not check out.
const SIGNATURE_REJECTED: u16 = 401;

#[derive(Debug, Error)]
pub enum SmeeError {
    #[error("smee channel URL {url} cannot be used: {reason}")]
    BadUrl { url: String, reason: String },
}

/// One smee channel followed into one intake.
pub struct SmeeRelay {
    url: String,
    client: Box<dyn sse::Client>,
    intake: Arc<Intake>,
    health: RelayHealth,
    backoff: Backoff,
}

impl SmeeRelay {
    /// A relay for the channel at `url` (`https://smee.io/<id>`, or any smee
    /// server). Connects only once [`SmeeRelay::run`] is awaited.
    pub fn new(url: &str, intake: Arc<Intake>) -> Result<Self, SmeeError> {
        let bad_url = |reason: String| SmeeError::BadUrl {
            url: url.to_string(),
            reason,
        };
        let builder = sse::ClientBuilder::for_url(url)
            .map_err(|error| bad_url(error.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            // Reconnecting is ours to do (see `run`): the crate's own retry
            // would hide state changes from the log and the health view.
            .reconnect(
                sse::ReconnectOptions::reconnect(false)
                    .retry_initial(false)
                    .build(),
            );
        // The TLS client loads the OS's CA roots and panics when there are
        // none; a plain-http channel (self-hosted smee, tests) needs no TLS.
        let client: Box<dyn sse::Client> = if url.starts_with("http://") {
            Box::new(builder.build_http())
        } else if url.starts_with("https://") {
            Box::new(builder.build())
        } else {
            return Err(bad_url("it must start with http:// or https://".into()));
        };
        Ok(Self {
            url: url.to_string(),
            client,
            intake,
            health: RelayHealth::default(),
            backoff: Backoff::new(RECONNECT_INITIAL, RECONNECT_MAX),
        })
    }

    /// Replaces the reconnect delays (tests use short ones).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// A handle on this relay's state; stays valid while the relay runs.
    pub fn health(&self) -> RelayHealth {
        self.health.clone()
    }

    /// Follows the channel until `shutdown` is cancelled, reconnecting
    /// whenever the stream fails or ends.
    pub async fn run(mut self, shutdown: CancellationToken) {
        info!(url = %self.url, "following smee channel");
        let mut is_failing = false;
        loop {
            let ended = tokio::select! {
                _ = shutdown.cancelled() => break,
                ended = self.follow_stream() => ended,
            };
            let was_connected = self.health.disconnected(ended.clone());
            let delay = self.backoff.next_delay();
            if was_connected {
                warn!(url = %self.url, error = %ended, "smee channel disconnected; reconnecting in {delay:?}");
            } else if !is_failing {
                warn!(url = %self.url, error = %ended, "cannot connect to smee channel; retrying in {delay:?} and backing off");
            } else {
                // Already said it is down; one warning per outage is enough.
                debug!(url = %self.url, error = %ended, "smee channel still unreachable; retrying in {delay:?}");
            }
            is_failing = !was_connected;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        info!(url = %self.url, "smee relay stopped");
    }

    /// Opens one stream and handles its events until it fails or ends;
    /// returns why it ended.
    async fn follow_stream(&mut self) -> String {
        // A fresh stream per attempt: the crate's stream must not be polled
        // again after it returned an error.
        let mut stream = self.client.stream();
        while let Some(item) = stream.next().await {
            match item {
                Ok(sse::SSE::Connected(_)) => {
                    self.health.connected();
                    info!(url = %self.url, "connected to smee channel");
                }
                Ok(sse::SSE::Event(event)) => {
                    self.health.event_seen();
                    match event.event_type.as_str() {
                        // smee's greeting proves the channel itself works, not
                        // just some proxy in front of it.
                        "ready" => self.backoff.reset(),
                        "ping" => {}
                        "message" => self.relay_message(&event.data).await,
                        other => debug!(event = other, "ignoring unknown smee event"),
                    }
                }
                Ok(sse::SSE::Comment(_)) => {}
                Err(error) => return error.to_string(),
            }
        }
        "the event stream ended".to_string()
    }

    /// Hands one `message` event to the intake. Problems are logged here:
    /// there is no one to answer, smee does not care.
    async fn relay_message(&self, data: &str) {
        let saved: serde_json::Value = match serde_json::from_str(data) {
            Ok(saved) => saved,
            Err(error) => {
                self.health.message_refused();
                warn!(%error, "smee message is not JSON; dropped");
                return;
            }
        };
        let prepared = match prepare_saved_delivery(&saved, None) {
            Ok(prepared) => prepared,
            Err(error) => {
                self.health.message_refused();
                warn!(%error, "smee message is not a delivery; dropped");
                return;
            }
        };
        let headers = DeliveryHeaders::from_pairs(
            prepared
                .headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        );
        // The intake logs its own verdict, with the delivery id.
        let reply = self.intake.handle(&headers, &prepared.body).await;
        let is_refused = !(200..300).contains(&reply.status);
        self.health.delivery_relayed(is_refused);
        if reply.status == SIGNATURE_REJECTED && !prepared.body.is_ascii() {
            warn!(
                delivery = headers.delivery_id.as_deref().unwrap_or("-"),
                "the signature check failed on a body with non-ASCII text: smee forwards parsed JSON, \
                 not GitHub's bytes, and re-serialising it may have changed them (e.g. how characters \
                 were escaped); such deliveries need the HTTP endpoint or POLL_INTERVAL"
            );
        }
    }
}
