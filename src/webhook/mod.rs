//! Webhook intake: GitHub deliveries in, [`Delivery`] values out on a channel.
//!
//! Owns the HTTP endpoint (`POST /change_hook/github`, the path the old
//! buildbot CI used), the body cap, the HMAC check over the raw bytes, payload
//! parsing and the decision whether a delivery concerns us. The same
//! [`Intake`] serves the smee relay, so both paths apply identical rules.
//!
//! It must stay cheap and fast: GitHub gives up on a delivery after 10 s, so
//! the handler only checks, parses and enqueues. It never calls GitHub or
//! Podman; whoever reads the channel does the work.
//!
//! - [`signature`]: `X-Hub-Signature-256` / `X-Hub-Signature` signing and
//!   checking, and [`event`]: a verified body -> [`Event`]; both pure, in
//!   the core crate (`ember_ci_core`), re-exported here.
//! - `intake`: the order of checks, the decision, de-duplication, counters.
//! - `endpoint`: the warp filter, body cap and rejection replies.
//! - `form`: the JSON inside a form-encoded delivery.

mod endpoint;
mod form;
mod intake;
mod seen;

pub use ember_ci_core::{event, relayed, signature};

use std::time::SystemTime;

pub use endpoint::{recover, routes};
pub use event::{Event, IssueCommentEvent, ParseError, PrAction, PullRequestEvent};
pub use intake::{event_key, Intake, IntakeCounts, IntakeReply, IntakeStats};

/// The largest body accepted: GitHub caps payloads at 25 MB and drops
/// anything larger itself, so a bigger body did not come from GitHub.
pub const MAX_BODY_BYTES: u64 = 25 * 1024 * 1024;

/// The request headers the intake reads, whatever transport brought them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryHeaders {
    /// `X-GitHub-Event`.
    pub event: Option<String>,
    /// `X-GitHub-Delivery`: GitHub's id for this delivery, kept across redeliveries.
    pub delivery_id: Option<String>,
    /// `X-Hub-Signature-256`.
    pub signature_256: Option<String>,
    /// `X-Hub-Signature` (legacy SHA-1).
    pub signature_sha1: Option<String>,
    /// `Content-Type`: JSON, or the form encoding (`payload=<JSON>`).
    pub content_type: Option<String>,
}

impl DeliveryHeaders {
    /// Picks the intake's headers out of `(name, value)` pairs, matching names
    /// case-insensitively (HTTP gives canonical names, smee lower-case ones).
    /// The first occurrence of a header wins; other headers are ignored.
    pub fn from_pairs<N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> Self
    where
        N: AsRef<str>,
        V: Into<String>,
    {
        let mut headers = Self::default();
        for (name, value) in pairs {
            let slot = match name.as_ref().to_ascii_lowercase().as_str() {
                "x-github-event" => &mut headers.event,
                "x-github-delivery" => &mut headers.delivery_id,
                "x-hub-signature-256" => &mut headers.signature_256,
                "x-hub-signature" => &mut headers.signature_sha1,
                "content-type" => &mut headers.content_type,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value.into());
            }
        }
        headers
    }
}

/// A verified delivery that concerns the watched repository, handed on for work.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `X-GitHub-Delivery`, or a local id (`local-…`) when the header was
    /// absent, or for what was read from the API a key naming it
    /// (`issue-comment-<id>`, `pr-head-<n>-<sha>`, `poll-…`).
    pub id: String,
    pub event: Event,
    pub received_at: SystemTime,
    pub origin: Origin,
}

/// How a delivery reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A signed webhook delivery (HTTP endpoint or relay).
    Webhook,
    /// Read from GitHub's API (catch-up sweep, poller): authentic, since
    /// GitHub itself answered, but unsigned and without a `sender`: for a
    /// head found this way nobody is known to have pushed it.
    Api,
}

/// Id prefixes of deliveries read from the API; webhook ids may not use them.
pub const API_ID_PREFIXES: [&str; 3] = ["issue-comment-", "pr-head-", "poll-"];

impl Origin {
    /// The origin of a journaled delivery, from its id.
    pub fn of_id(id: &str) -> Self {
        if API_ID_PREFIXES.iter().any(|prefix| id.starts_with(prefix)) {
            Origin::Api
        } else {
            Origin::Webhook
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_matched_case_insensitively_first_one_wins() {
        let headers = DeliveryHeaders::from_pairs([
            ("X-GitHub-Event", "pull_request"),
            ("x-github-delivery", "abc"),
            ("X-Hub-Signature-256", "sha256=00"),
            ("x-hub-signature", "sha1=00"),
            ("x-github-event", "push"),
            ("content-type", "application/json"),
        ]);
        assert_eq!(
            headers,
            DeliveryHeaders {
                event: Some("pull_request".into()),
                delivery_id: Some("abc".into()),
                signature_256: Some("sha256=00".into()),
                signature_sha1: Some("sha1=00".into()),
                content_type: Some("application/json".into()),
            }
        );
    }
}
