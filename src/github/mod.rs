//! Everything ember-ci says to or asks of GitHub: commit statuses, pull
//! requests, comments and reactions.
//!
//! This is the only module that imports octocrab; its types stop here, so
//! callers see [`crate::model::CommitStatus`], [`PullRequestInfo`] and
//! [`GitHubError`] only.
//! The API base URL comes from config (`GH_API_URL`), which is how tests point
//! the client at a local fake GitHub.
//!
//! - [`client`]: one [`GitHub`] call per REST endpoint, single attempt each.
//! - [`error`]: maps HTTP and transport failures to retryable or fatal.
//! - [`retry`]: the backoff loop used for anything that must reach GitHub.
//! - [`reporter`]: where statuses go: GitHub, or stdout when there is no token.
//! - [`outbox`]: [`StatusOutbox`], one task posting every status in order,
//!   kept in the journal until GitHub took it.
//! - [`types`]: the plain data crossing this module's edge.
//!
//! It must not decide *what* to report (that is the scheduler's and the
//! dispatcher's job) nor log failures it returns: the caller handles and
//! logs them once.

mod client;
mod error;
mod outbox;
mod reporter;
mod retry;
mod types;

pub use client::GitHub;
pub use error::GitHubError;
pub use outbox::StatusOutbox;
pub use reporter::Reporter;
pub use retry::{retry, RetryPolicy};
pub use types::{CommentInfo, PullRequestInfo};
