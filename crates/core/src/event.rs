//! A verified delivery body -> [`Event`], chosen by the `X-GitHub-Event` name.
//!
//! The serde structs below read only the fields ember-ci acts on and are
//! strict about those: a missing or ill-typed field is a [`ParseError`] that
//! names the field's path, so a bad delivery is answered with a 400 that says
//! why. Everything else in GitHub's (large) payloads is ignored. Parsing
//! decides nothing about whether an event is wanted; that is the intake's job.

use std::fmt;
use std::time::SystemTime;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use thiserror::Error;

use crate::model::{CommitSha, PrNumber, RepoName};

/// One delivery's meaning, as far as ember-ci cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Sent once when the webhook is created.
    Ping {
        zen: Option<String>,
    },
    PullRequest(PullRequestEvent),
    IssueComment(IssueCommentEvent),
    /// An event we do not read; the body was still checked to be JSON.
    Other {
        name: String,
    },
}

impl Event {
    /// Parses `body` as the payload of the event called `name`.
    pub fn parse(name: &str, body: &[u8]) -> Result<Self, ParseError> {
        match name {
            "ping" => {
                let payload: PingPayload = deserialize(name, body)?;
                Ok(Event::Ping { zen: payload.zen })
            }
            "pull_request" => deserialize::<PullRequestPayload>(name, body).map(Event::from),
            "issue_comment" => deserialize::<IssueCommentPayload>(name, body).map(Event::from),
            _ => {
                deserialize::<IgnoredAny>(name, body)?;
                Ok(Event::Other {
                    name: name.to_string(),
                })
            }
        }
    }
}

/// A `pull_request` delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestEvent {
    pub action: PrAction,
    pub repo: RepoName,
    pub pr: PrNumber,
    pub head_sha: CommitSha,
    pub title: String,
    /// The PR author's login.
    pub author: String,
    /// The PR author's numeric id (logins can be renamed and taken over).
    pub author_id: Option<u64>,
    /// The author's relation to the repository (`MEMBER`, `CONTRIBUTOR`, ...).
    pub author_association: String,
    pub html_url: String,
    /// Who caused the event (for `synchronize`: who pushed), when known.
    pub sender: Option<String>,
    /// The login owning the head branch's repository (None when the fork
    /// was deleted, or unknown).
    pub head_owner: Option<String>,
    /// The PR's signed `updated_at`: for `opened` and `synchronize`, when
    /// the head was pushed. The trust gate judges an ok against it, never
    /// against arrival times.
    pub updated_at: Option<SystemTime>,
}

/// What happened to a pull request. Only the actions that change what
/// should be tested have their own variant.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum PrAction {
    Opened,
    /// New commits were pushed to the PR's branch.
    Synchronize,
    Reopened,
    Closed,
    /// Any other action (`labeled`, `edited`, ...), kept by name for logs.
    Other(String),
}

impl PrAction {
    pub fn as_str(&self) -> &str {
        match self {
            PrAction::Opened => "opened",
            PrAction::Synchronize => "synchronize",
            PrAction::Reopened => "reopened",
            PrAction::Closed => "closed",
            PrAction::Other(name) => name,
        }
    }
}

impl From<String> for PrAction {
    fn from(action: String) -> Self {
        match action.as_str() {
            "opened" => PrAction::Opened,
            "synchronize" => PrAction::Synchronize,
            "reopened" => PrAction::Reopened,
            "closed" => PrAction::Closed,
            _ => PrAction::Other(action),
        }
    }
}

impl fmt::Display for PrAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `issue_comment` delivery. GitHub treats PRs as issues, so comments on
/// PRs arrive as this event too, with `is_pull_request` set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueCommentEvent {
    /// `created`, `edited` or `deleted`.
    pub action: String,
    pub repo: RepoName,
    pub issue_number: PrNumber,
    pub is_pull_request: bool,
    pub comment_id: u64,
    pub body: String,
    /// The commenter's login.
    pub author: String,
    /// The commenter's numeric id.
    pub author_id: Option<u64>,
    pub author_association: String,
    /// The comment's signed `created_at`: an ok covers only heads pushed
    /// before it.
    pub created_at: Option<SystemTime>,
}

/// Why a verified body could not be read as its event.
#[derive(Debug, Error)]
pub enum ParseError {
    #[error("malformed JSON in {event} payload: {source}")]
    Json {
        event: String,
        source: serde_json::Error,
    },
    /// A field we need is missing or has the wrong type; `reason` starts with
    /// the field's path, e.g. `pull_request.head: missing field `sha``.
    #[error("bad {event} payload: {reason}")]
    Field { event: String, reason: String },
}

fn deserialize<T: DeserializeOwned>(event: &str, body: &[u8]) -> Result<T, ParseError> {
    let mut json = serde_json::Deserializer::from_slice(body);
    let parsed = serde_path_to_error::deserialize(&mut json).map_err(|error| {
        if error.inner().is_data() {
            ParseError::Field {
                event: event.to_string(),
                reason: error.to_string(),
            }
        } else {
            ParseError::Json {
                event: event.to_string(),
                source: error.into_inner(),
            }
        }
    })?;
    // Trailing bytes after the value mean the body is not one JSON document.
    json.end().map_err(|source| ParseError::Json {
        event: event.to_string(),
        source,
    })?;
    Ok(parsed)
}

// The wire shapes: only the fields we read.

#[derive(Deserialize)]
struct PingPayload {
    #[serde(default)]
    zen: Option<String>,
}

#[derive(Deserialize)]
struct PullRequestPayload {
    action: PrAction,
    pull_request: PullRequestObject,
    repository: RepositoryObject,
    #[serde(default)]
    sender: Option<UserObject>,
}

#[derive(Deserialize)]
struct PullRequestObject {
    number: PrNumber,
    title: String,
    html_url: String,
    author_association: String,
    user: UserObject,
    head: HeadObject,
    #[serde(default, deserialize_with = "rfc3339")]
    updated_at: Option<SystemTime>,
}

#[derive(Deserialize)]
struct HeadObject {
    sha: CommitSha,
    /// Null when the head's fork was deleted.
    #[serde(default)]
    repo: Option<HeadRepoObject>,
}

#[derive(Deserialize)]
struct HeadRepoObject {
    owner: UserObject,
}

#[derive(Deserialize)]
struct IssueCommentPayload {
    action: String,
    issue: IssueObject,
    comment: CommentObject,
    repository: RepositoryObject,
}

#[derive(Deserialize)]
struct IssueObject {
    number: PrNumber,
    /// Present (an object of URLs) only when the issue is a pull request.
    #[serde(default)]
    pull_request: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct CommentObject {
    id: u64,
    body: String,
    user: UserObject,
    author_association: String,
    #[serde(default, deserialize_with = "rfc3339")]
    created_at: Option<SystemTime>,
}

#[derive(Deserialize)]
struct RepositoryObject {
    full_name: RepoName,
}

#[derive(Deserialize)]
struct UserObject {
    login: String,
    #[serde(default)]
    id: Option<u64>,
}

/// GitHub's timestamps (`2024-03-15T10:41:07Z`); a malformed one is a
/// field error, not a missing time.
fn rfc3339<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SystemTime>, D::Error> {
    let Some(text) = Option::<String>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let parsed = time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
        .map_err(|error| {
            serde::de::Error::custom(format!("invalid timestamp {text:?}: {error}"))
        })?;
    Ok(Some(parsed.into()))
}

impl From<PullRequestPayload> for Event {
    fn from(payload: PullRequestPayload) -> Self {
        let pr = payload.pull_request;
        Event::PullRequest(PullRequestEvent {
            action: payload.action,
            repo: payload.repository.full_name,
            pr: pr.number,
            head_sha: pr.head.sha,
            title: pr.title,
            author: pr.user.login,
            author_id: pr.user.id,
            author_association: pr.author_association,
            html_url: pr.html_url,
            sender: payload.sender.map(|user| user.login),
            head_owner: pr.head.repo.map(|repo| repo.owner.login),
            updated_at: pr.updated_at,
        })
    }
}

impl From<IssueCommentPayload> for Event {
    fn from(payload: IssueCommentPayload) -> Self {
        Event::IssueComment(IssueCommentEvent {
            action: payload.action,
            repo: payload.repository.full_name,
            issue_number: payload.issue.number,
            is_pull_request: payload.issue.pull_request.is_some(),
            comment_id: payload.comment.id,
            body: payload.comment.body,
            author: payload.comment.user.login,
            author_id: payload.comment.user.id,
            author_association: payload.comment.author_association,
            created_at: payload.comment.created_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a smee-form fixture from tests/data/github the way the intake
    /// would see it: event name from the header, body as compact JSON.
    fn parse_fixture(file: &str) -> Event {
        let path = format!(
            "{}/../../tests/data/github/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).expect("fixture is readable");
        let saved: serde_json::Value = serde_json::from_str(&text).expect("fixture is JSON");
        let name = saved["x-github-event"]
            .as_str()
            .expect("fixture names its event");
        let body = serde_json::to_vec(&saved["body"]).expect("a JSON value serialises");
        Event::parse(name, &body).expect("fixture parses")
    }

    fn reason(name: &str, body: &str) -> String {
        Event::parse(name, body.as_bytes())
            .expect_err("payload must be refused")
            .to_string()
    }

    #[test]
    fn ok_pr_fixture_snapshot() {
        insta::assert_debug_snapshot!(parse_fixture("test-ok.json"));
    }

    #[test]
    fn broken_pr_fixture_snapshot() {
        insta::assert_debug_snapshot!(parse_fixture("test-broken.json"));
    }

    #[test]
    fn pr_synchronize_snapshot() {
        insta::assert_debug_snapshot!(parse_fixture("pull_request-synchronize.json"));
    }

    #[test]
    fn pr_closed_snapshot() {
        insta::assert_debug_snapshot!(parse_fixture("pull_request-closed.json"));
    }

    #[test]
    fn issue_comment_on_pr_snapshot() {
        insta::assert_debug_snapshot!(parse_fixture("issue_comment-created.json"));
    }

    #[test]
    fn ping_snapshot() {
        insta::assert_debug_snapshot!(parse_fixture("ping.json"));
    }

    #[test]
    fn comment_on_plain_issue_is_not_a_pull_request() {
        let body = r#"{"action":"created","issue":{"number":7},"comment":{"id":1,"body":"hi",
            "user":{"login":"someone"},"author_association":"NONE"},
            "repository":{"full_name":"embercsi/ember-csi"}}"#;
        match Event::parse("issue_comment", body.as_bytes()) {
            Ok(Event::IssueComment(comment)) => assert!(!comment.is_pull_request),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_events_are_kept_by_name() {
        assert_eq!(
            Event::parse("push", br#"{"ref":"refs/heads/main"}"#).ok(),
            Some(Event::Other {
                name: "push".into()
            })
        );
    }

    #[test]
    fn unknown_pr_actions_are_kept_by_name() {
        assert_eq!(
            PrAction::from("labeled".to_string()),
            PrAction::Other("labeled".into())
        );
        assert_eq!(
            PrAction::from("synchronize".to_string()),
            PrAction::Synchronize
        );
    }

    #[test]
    fn missing_field_is_named_with_its_path() {
        let body = r#"{"action":"opened","repository":{"full_name":"embercsi/ember-csi"},
            "pull_request":{"number":129,"title":"t","html_url":"u","author_association":"MEMBER",
            "user":{"login":"Akrog"},"head":{}}}"#;
        let reason = reason("pull_request", body);
        assert!(
            reason.starts_with("bad pull_request payload: pull_request.head: missing field `sha`"),
            "{reason}"
        );
    }

    #[test]
    fn ill_typed_field_is_named_with_its_path() {
        let body = r#"{"action":"created","issue":{"number":129,"pull_request":{}},
            "comment":{"id":"12","body":"hi","user":{"login":"x"},"author_association":"NONE"},
            "repository":{"full_name":"embercsi/ember-csi"}}"#;
        let reason = reason("issue_comment", body);
        assert!(
            reason.starts_with("bad issue_comment payload: comment.id: invalid type: string"),
            "{reason}"
        );
    }

    #[test]
    fn invalid_sha_is_refused_with_its_path() {
        let body = r#"{"action":"opened","repository":{"full_name":"embercsi/ember-csi"},
            "pull_request":{"number":129,"title":"t","html_url":"u","author_association":"MEMBER",
            "user":{"login":"Akrog"},"head":{"sha":"--upload-pack=evil"}}}"#;
        let reason = reason("pull_request", body);
        assert!(
            reason.contains("pull_request.head.sha: invalid commit SHA"),
            "{reason}"
        );
    }

    #[test]
    fn a_malformed_timestamp_is_refused_with_its_path() {
        let body = r#"{"action":"created","issue":{"number":129,"pull_request":{}},
            "comment":{"id":12,"body":"hi","user":{"login":"x"},"author_association":"NONE",
            "created_at":"yesterday"},"repository":{"full_name":"embercsi/ember-csi"}}"#;
        let reason = reason("issue_comment", body);
        assert!(
            reason.contains("comment.created_at: invalid timestamp \"yesterday\""),
            "{reason}"
        );
    }

    #[test]
    fn malformed_json_is_reported_as_such() {
        assert!(reason("pull_request", "{\"action\":")
            .starts_with("malformed JSON in pull_request payload"));
        assert!(reason("push", "not json").starts_with("malformed JSON in push payload"));
        assert!(reason("ping", "{} {}").starts_with("malformed JSON in ping payload: trailing"));
    }
}
