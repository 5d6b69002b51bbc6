//! The smee client: follows a smee.io channel (or a self-hosted smee server)
//! and hands each delivery to the webhook [`Intake`], exactly as if GitHub
//! had posted it to our endpoint.
//!
//! smee speaks Server-Sent Events: a `ready` event when the stream opens,
//! `ping` keep-alives every 30 s, and each delivery as a `message` whose data
//! is JSON holding the request's lower-case headers beside `body`. Anyone
//! who knows a channel id can post to it, so nothing is trusted: the body is
//! forwarded as the text smee sent ([`prepare_saved_text`], raw JSON, never
//! re-printed) and the intake checks its HMAC like any other. smee did
//! re-print GitHub's JSON, though; when the signature does not match, the
//! known changes are undone one [`Repair`] at a time, each logged by name,
//! and a body none of them restores is reported as changed in transit, not
//! as signed with another secret.
//!
//! The link is kept up forever: while the channel refuses connections it is
//! retried every [`RETRY_INTERVAL`]; only error answers back off (to a
//! minute). One warning per outage, and one line when it ends, with its
//! length and what the [`CatchUp`] sweep found (smee keeps no history).
//! State changes are mirrored in [`RelayHealth`].
//!
//! It must not decide anything about a delivery itself; that is the intake's
//! job, so the relay and the endpoint cannot drift apart.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use eventsource_client as sse;
use futures_util::StreamExt;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::catch_up::CatchUp;
use super::saved::{prepare_saved_text, BodyEncoding};
use super::{Backoff, RelayHealth};
use crate::webhook::relayed::Repair;
use crate::webhook::{DeliveryHeaders, Intake};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// smee pings every 30 s; three missed pings mean the stream is dead even
/// if the TCP connection looks open (a NAT or proxy dropped it silently).
const READ_TIMEOUT: Duration = Duration::from_secs(90);
/// Between attempts while the channel cannot be reached at all: it costs
/// the server nothing, and every second down may lose deliveries.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);
const RECONNECT_INITIAL: Duration = Duration::from_secs(1);
const RECONNECT_MAX: Duration = Duration::from_secs(60);
/// How often, at most, the catch-up mark is written while the link is up.
const MARK_EVERY: Duration = Duration::from_secs(5);

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
    /// For error answers (5xx, 404...): the server is there but unwell.
    backoff: Backoff,
    /// While the channel cannot be reached at all.
    retry_interval: Duration,
    catch_up: Option<Arc<CatchUp>>,
    /// Since when the link is down; None while it is up.
    outage: Option<Instant>,
    /// When the catch-up mark was last written.
    marked_at: Option<Instant>,
}

/// Why a stream ended.
struct StreamEnd {
    reason: String,
    /// The server answered, with an error: back off rather than hammer it.
    is_error_answer: bool,
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
            retry_interval: RETRY_INTERVAL,
            catch_up: None,
            outage: None,
            marked_at: None,
        })
    }

    /// Replaces the delays between attempts: `backoff` after error answers,
    /// `retry_interval` while the channel cannot be reached (tests use
    /// short ones).
    pub fn with_backoff(mut self, backoff: Backoff, retry_interval: Duration) -> Self {
        self.backoff = backoff;
        self.retry_interval = retry_interval;
        self
    }

    /// Sweeps the API with `catch_up` at start and after every reconnect.
    pub fn with_catch_up(mut self, catch_up: Arc<CatchUp>) -> Self {
        self.catch_up = Some(catch_up);
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
        // Start-up counts as the end of an outage of unknown length.
        self.outage = Some(Instant::now());
        let mut is_warned = false;
        loop {
            let ended = tokio::select! {
                _ = shutdown.cancelled() => break,
                ended = self.follow_stream(&shutdown) => ended,
            };
            let was_connected = self.health.disconnected(ended.reason.clone());
            if was_connected {
                self.outage = Some(Instant::now());
                is_warned = false;
                if let Some(catch_up) = &self.catch_up {
                    catch_up.fell_behind();
                }
            }
            let delay = if ended.is_error_answer {
                self.backoff.next_delay()
            } else {
                self.retry_interval
            };
            if !is_warned {
                // One warning per outage; the line at its end says how long.
                warn!(url = %self.url, error = %ended.reason, "smee channel {}; retrying every {delay:?} until it is back", if was_connected { "disconnected" } else { "unreachable" });
                is_warned = true;
            } else {
                debug!(url = %self.url, error = %ended.reason, "smee channel still down; retrying in {delay:?}");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        info!(url = %self.url, "smee relay stopped");
    }

    /// Opens one stream and handles its events until it fails or ends;
    /// returns why it ended.
    async fn follow_stream(&mut self, shutdown: &CancellationToken) -> StreamEnd {
        // A fresh stream per attempt: the crate's stream must not be polled
        // again after it returned an error.
        let mut stream = self.client.stream();
        while let Some(item) = stream.next().await {
            match item {
                Ok(sse::SSE::Connected(_)) => {
                    self.health.connected();
                    debug!(url = %self.url, "smee stream open");
                }
                Ok(sse::SSE::Event(event)) => {
                    self.health.event_seen();
                    match event.event_type.as_str() {
                        // smee's greeting proves the channel itself works, not
                        // just some proxy in front of it.
                        "ready" => {
                            self.backoff.reset();
                            self.back_up(shutdown);
                        }
                        "ping" => {}
                        "message" => self.relay_message(&event.data).await,
                        other => debug!(event = other, "ignoring unknown smee event"),
                    }
                    self.mark_seen();
                }
                Ok(sse::SSE::Comment(_)) => {}
                Err(error) => {
                    return StreamEnd {
                        is_error_answer: matches!(error, sse::Error::UnexpectedResponse(..)),
                        reason: error.to_string(),
                    }
                }
            }
        }
        StreamEnd {
            reason: "the event stream ended".to_string(),
            is_error_answer: false,
        }
    }

    /// The link is back: sweeps the gap in the background (the stream must
    /// keep being read meanwhile) and logs the outage's one closing line.
    fn back_up(&mut self, shutdown: &CancellationToken) {
        let Some(outage) = self.outage.take() else {
            return;
        };
        let is_start = self.marked_at.is_none();
        self.marked_at = Some(Instant::now());
        let length = outage.elapsed();
        info!(url = %self.url, "connected to smee channel");
        let Some(catch_up) = self.catch_up.clone() else {
            if !is_start {
                info!(outage_secs = length.as_secs_f64(), "smee channel back after a {length:.1?} outage; no catch-up sweep without GH_TOKEN, deliveries sent meanwhile are lost");
            }
            return;
        };
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let swept = tokio::select! {
                _ = shutdown.cancelled() => return,
                swept = catch_up.sweep() => swept,
            };
            let what = if is_start {
                "start-up".to_string()
            } else {
                format!("smee channel back after a {length:.1?} outage;")
            };
            match swept {
                Ok(report) => info!(
                    outage_secs = length.as_secs_f64(),
                    found = report.found,
                    comments = report.comments,
                    heads = report.heads,
                    "{what} catch-up found {} missed deliveries",
                    report.found
                ),
                Err(error) => {
                    warn!(%error, "{what} catch-up sweep failed; the next reconnect sweeps the gap again")
                }
            }
        });
    }

    /// Advances the catch-up mark every [`MARK_EVERY`] while the link is up.
    fn mark_seen(&mut self) {
        let Some(catch_up) = &self.catch_up else {
            return;
        };
        if self.marked_at.is_some_and(|at| at.elapsed() >= MARK_EVERY) {
            catch_up.seen_until(SystemTime::now());
            self.marked_at = Some(Instant::now());
        }
    }

    /// Hands one `message` event to the intake. Problems are logged here:
    /// there is no one to answer, smee does not care.
    async fn relay_message(&self, data: &str) {
        let prepared = match prepare_saved_text(data, None, BodyEncoding::AsSaved) {
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
        let delivery = headers.delivery_id.as_deref().unwrap_or("-");
        let body = match self.repaired(&headers, prepared.body) {
            Ok(body) => body,
            Err(tried) => {
                self.health.delivery_relayed(true);
                warn!(
                    delivery,
                    tried = tried.join(", "),
                    "relayed body changed in transit: its signature matches neither smee's text nor                      any known repair of it, so it was dropped (not a wrong secret: the relay changed                      the bytes GitHub signed); such deliveries need the HTTP endpoint or the catch-up sweep"
                );
                return;
            }
        };
        // The intake logs its own verdict, with the delivery id.
        let reply = self.intake.handle(&headers, &body).await;
        self.health
            .delivery_relayed(!(200..300).contains(&reply.status));
    }

    /// The body whose signature matches: smee's text, or the first repair
    /// of it that does. `Err` names the repairs tried when none did; a body
    /// no repair changes goes to the intake as it is (and is refused there
    /// if it is not signed with our secret).
    fn repaired(
        &self,
        headers: &DeliveryHeaders,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, Vec<&'static str>> {
        if self.intake.verifies(headers, &body) {
            return Ok(body);
        }
        let delivery = headers.delivery_id.as_deref().unwrap_or("-");
        let mut tried = Vec::new();
        for repair in Repair::ALL {
            let Some(candidate) = repair.apply(&body) else {
                continue;
            };
            tried.push(repair.name());
            if self.intake.verifies(headers, &candidate) {
                info!(
                    delivery,
                    repair = repair.name(),
                    "signature matched after undoing smee's re-serialisation"
                );
                return Ok(candidate);
            }
            debug!(
                delivery,
                repair = repair.name(),
                "repair tried; signature still does not match"
            );
        }
        if tried.is_empty() {
            Ok(body)
        } else {
            Err(tried)
        }
    }
}
