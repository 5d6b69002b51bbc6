//! [`GitHub`]: one method per REST call ember-ci makes, each a single
//! attempt. Retrying is the caller's choice (see [`super::retry`]), so
//! octocrab's own retry layer is off and a 5xx reaches the caller as-is.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use octocrab::etag::EntityTag;
use octocrab::models::pulls::PullRequest;
use octocrab::models::reactions::ReactionContent;
use octocrab::models::IssueState;
use octocrab::service::middleware::retry::RetryConfig;
use octocrab::Octocrab;

use super::{CommentInfo, GitHubError, PullRequestInfo};
use crate::config::Secret;
use crate::model::{CommitSha, CommitStatus, PrNumber, RepoName, StatusState};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Per read/write on the socket, not per request: slow but live answers pass.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// GitHub's largest page size.
const PAGE_SIZE: u8 = 100;
/// Stops paging runaway listings (1000 open PRs or statuses on one commit).
const MAX_PAGES: u32 = 10;
/// The context GitHub gives a status posted without one.
const DEFAULT_CONTEXT: &str = "default";

/// A GitHub API client bound to one repository. Clones share the connection
/// pool; each remembers the open-PR listing it saw last on its own.
pub struct GitHub {
    octocrab: Octocrab,
    api_url: String,
    repo: RepoName,
    /// ETag of the last open-PR listing: asking "changed since?" costs no
    /// rate-limit quota when the answer is 304.
    open_pulls_etag: Mutex<Option<EntityTag>>,
}

/// One page of the open-PR listing.
enum PullsPage {
    NotModified,
    Fetched {
        pulls: Vec<PullRequest>,
        etag: Option<EntityTag>,
    },
}

impl GitHub {
    /// A client for `repo` at `api_url` (e.g. `https://api.github.com`, or a
    /// GitHub Enterprise `https://host/api/v3`). Must run inside a Tokio
    /// runtime: octocrab spawns its request queue there.
    pub fn new(api_url: &str, token: &Secret, repo: RepoName) -> Result<Self, GitHubError> {
        let action = format!("setting up the GitHub client for {api_url}");
        // Octocrab panics on a token that is not a valid header value.
        if token.is_empty() || !token.expose().bytes().all(|b| b.is_ascii_graphic()) {
            return Err(GitHubError::fatal(
                action,
                "GH_TOKEN is empty or contains spaces or non-ASCII characters",
            ));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(GitHubError::fatal(action, "called outside a Tokio runtime"));
        }
        let octocrab = Octocrab::builder()
            .base_uri(api_url)
            .map_err(|error| GitHubError::from_octocrab(action.clone(), error))?
            .personal_token(token.expose().to_string())
            // Octocrab would otherwise replay 5xx answers three times out of
            // sight, multiplying our RetryPolicy's attempts.
            .add_retry_config(RetryConfig::None)
            .set_connect_timeout(Some(CONNECT_TIMEOUT))
            .set_read_timeout(Some(IO_TIMEOUT))
            .set_write_timeout(Some(IO_TIMEOUT))
            .build()
            .map_err(|error| GitHubError::from_octocrab(action, error))?;
        Ok(Self {
            octocrab,
            api_url: api_url.trim_end_matches('/').to_string(),
            repo,
            open_pulls_etag: Mutex::new(None),
        })
    }

    pub fn repo(&self) -> &RepoName {
        &self.repo
    }

    /// The API base URL this client talks to.
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// POST /repos/{owner}/{repo}/statuses/{sha}
    pub async fn post_status(
        &self,
        sha: &CommitSha,
        status: &CommitStatus,
    ) -> Result<(), GitHubError> {
        let action = format!(
            "posting status {} {} on {}",
            status.context,
            status.state,
            sha.short()
        );
        let repos = self.octocrab.repos(self.repo.owner(), self.repo.name());
        let mut request = repos
            .create_status(sha.to_string(), to_octocrab_state(status.state))
            .context(status.context.clone())
            .description(status.sendable_description());
        if let Some(url) = &status.target_url {
            request = request.target(url.clone());
        }
        request
            .send()
            .await
            .map_err(|error| GitHubError::from_octocrab(action, error))?;
        Ok(())
    }

    /// The current state of each context on `sha`, from
    /// GET /repos/{owner}/{repo}/commits/{sha}/statuses.
    pub async fn statuses(
        &self,
        sha: &CommitSha,
    ) -> Result<Vec<(String, StatusState)>, GitHubError> {
        let action = format!("reading statuses of {}", sha.short());
        let repos = self.octocrab.repos(self.repo.owner(), self.repo.name());
        let mut latest: Vec<(String, StatusState)> = Vec::new();
        for page in 1..=MAX_PAGES {
            let statuses = repos
                .list_statuses(sha.to_string())
                .per_page(PAGE_SIZE)
                .page(page)
                .send()
                .await
                .map_err(|error| GitHubError::from_octocrab(action.clone(), error))?;
            let is_last_page = statuses.items.len() < usize::from(PAGE_SIZE);
            // GitHub lists newest first: the first status seen for a context
            // is its current one, later ones are history.
            for status in statuses.items {
                let context = status
                    .context
                    .unwrap_or_else(|| DEFAULT_CONTEXT.to_string());
                if latest.iter().any(|(known, _)| *known == context) {
                    continue;
                }
                let state = from_octocrab_state(status.state).ok_or_else(|| {
                    GitHubError::fatal(
                        action.clone(),
                        format!("unknown state {:?} for {context}", status.state),
                    )
                })?;
                latest.push((context, state));
            }
            if is_last_page {
                break;
            }
        }
        Ok(latest)
    }

    /// GET /repos/{owner}/{repo}/pulls/{number}
    pub async fn pull_request(&self, pr: PrNumber) -> Result<PullRequestInfo, GitHubError> {
        let action = format!("reading pull request #{pr}");
        let pull = self
            .octocrab
            .pulls(self.repo.owner(), self.repo.name())
            .get(pr.get())
            .await
            .map_err(|error| GitHubError::from_octocrab(action.clone(), error))?;
        pull_request_info(pull).map_err(|detail| GitHubError::fatal(action, detail))
    }

    /// The repository's open pull requests, or `None` when nothing changed
    /// since the previous call (GitHub answered 304 to our If-None-Match).
    pub async fn open_pull_requests(&self) -> Result<Option<Vec<PullRequestInfo>>, GitHubError> {
        let action = format!("listing open pull requests of {}", self.repo);
        let known_etag = self
            .open_pulls_etag
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let (mut pulls, etag) = match self.open_pulls_page(&action, 1, known_etag).await? {
            PullsPage::NotModified => return Ok(None),
            PullsPage::Fetched { pulls, etag } => (pulls, etag),
        };
        let fits_one_page = pulls.len() < usize::from(PAGE_SIZE);
        let mut last_page_len = pulls.len();
        let mut page = 1;
        while last_page_len == usize::from(PAGE_SIZE) && page < MAX_PAGES {
            page += 1;
            match self.open_pulls_page(&action, page, None).await? {
                PullsPage::Fetched { pulls: more, .. } => {
                    last_page_len = more.len();
                    pulls.extend(more);
                }
                // Only sent If-None-Match on page 1; treat a stray 304 as empty.
                PullsPage::NotModified => break,
            }
        }
        let infos = pulls
            .into_iter()
            .map(pull_request_info)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|detail| GitHubError::fatal(action, detail))?;
        // The ETag covers page 1 only: behind a 304 a change on a later page
        // would go unseen, so it is only reused when everything fit on one
        // page. Stored last, so an answer we failed to use is fetched again.
        *self
            .open_pulls_etag
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = etag.filter(|_| fits_one_page);
        Ok(Some(infos))
    }

    async fn open_pulls_page(
        &self,
        action: &str,
        page: u32,
        if_none_match: Option<EntityTag>,
    ) -> Result<PullsPage, GitHubError> {
        let uri = format!(
            "/repos/{}/{}/pulls?state=open&per_page={PAGE_SIZE}&page={page}",
            self.repo.owner(),
            self.repo.name()
        );
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(etag) = if_none_match {
            EntityTag::insert_if_none_match_header(&mut headers, etag)
                .map_err(|error| GitHubError::from_octocrab(action, error))?;
        }
        let response = self
            .octocrab
            ._get_with_headers(uri, Some(headers))
            .await
            .map_err(|error| GitHubError::from_octocrab(action, error))?;
        if response.status().as_u16() == 304 {
            return Ok(PullsPage::NotModified);
        }
        let response = octocrab::map_github_error(response)
            .await
            .map_err(|error| GitHubError::from_octocrab(action, error))?;
        let etag = EntityTag::extract_from_response(&response);
        let body = self
            .octocrab
            .body_to_string(response)
            .await
            .map_err(|error| GitHubError::from_octocrab(action, error))?;
        let pulls = serde_json::from_str(&body).map_err(|error| {
            GitHubError::fatal(action, format!("unexpected pull request list: {error}"))
        })?;
        Ok(PullsPage::Fetched { pulls, etag })
    }

    /// Comments on the repository's pull requests last updated at or after
    /// `since` (`GET /repos/{o}/{r}/issues/comments?since=`), oldest first,
    /// every page: a long outage on a busy repository is exactly when the
    /// listing is longest. Comments on plain issues are left out.
    pub async fn pr_comments_since(
        &self,
        since: SystemTime,
    ) -> Result<Vec<CommentInfo>, GitHubError> {
        let action = format!("listing comments of {} since {}", self.repo, rfc3339(since));
        let mut comments = Vec::new();
        for page in 1.. {
            let uri = format!(
                "/repos/{}/{}/issues/comments?since={}&sort=created&direction=asc&per_page={PAGE_SIZE}&page={page}",
                self.repo.owner(),
                self.repo.name(),
                rfc3339(since),
            );
            let listed: Vec<ApiComment> = self.get_json(&action, uri).await?;
            let is_last_page = listed.len() < usize::from(PAGE_SIZE);
            for comment in listed {
                if let Some(info) = comment_info(comment)
                    .map_err(|detail| GitHubError::fatal(action.clone(), detail))?
                {
                    comments.push(info);
                }
            }
            if is_last_page {
                break;
            }
        }
        Ok(comments)
    }

    /// Open pull requests updated at or after `since`, newest first, every
    /// page (`sort=updated`, so paging stops at the first older one).
    pub async fn open_pulls_updated_since(
        &self,
        since: SystemTime,
    ) -> Result<Vec<PullRequestInfo>, GitHubError> {
        let action = format!(
            "listing pull requests of {} updated since {}",
            self.repo,
            rfc3339(since)
        );
        let mut found = Vec::new();
        for page in 1.. {
            let uri = format!(
                "/repos/{}/{}/pulls?state=open&sort=updated&direction=desc&per_page={PAGE_SIZE}&page={page}",
                self.repo.owner(),
                self.repo.name()
            );
            let pulls: Vec<PullRequest> = self.get_json(&action, uri).await?;
            let is_last_page = pulls.len() < usize::from(PAGE_SIZE);
            let mut is_older = false;
            for pull in pulls {
                let updated_at = pull.updated_at.map(SystemTime::from);
                if updated_at.is_some_and(|at| at < since) {
                    is_older = true;
                    break;
                }
                found.push(
                    pull_request_info(pull)
                        .map_err(|detail| GitHubError::fatal(action.clone(), detail))?,
                );
            }
            if is_last_page || is_older {
                break;
            }
        }
        Ok(found)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        action: &str,
        uri: String,
    ) -> Result<T, GitHubError> {
        let response = self
            .octocrab
            ._get(uri)
            .await
            .map_err(|error| GitHubError::from_octocrab(action, error))?;
        let response = octocrab::map_github_error(response)
            .await
            .map_err(|error| GitHubError::from_octocrab(action, error))?;
        let body = self
            .octocrab
            .body_to_string(response)
            .await
            .map_err(|error| GitHubError::from_octocrab(action, error))?;
        serde_json::from_str(&body)
            .map_err(|error| GitHubError::fatal(action, format!("unexpected answer: {error}")))
    }

    /// POST /repos/{owner}/{repo}/issues/{number}/comments
    pub async fn create_comment(&self, pr: PrNumber, body: &str) -> Result<(), GitHubError> {
        let action = format!("commenting on pull request #{pr}");
        self.octocrab
            .issues(self.repo.owner(), self.repo.name())
            .create_comment(pr.get(), body)
            .await
            .map_err(|error| GitHubError::from_octocrab(action, error))?;
        Ok(())
    }

    /// POST /repos/{owner}/{repo}/issues/comments/{id}/reactions, `content`
    /// being one of GitHub's reactions (`+1`, `-1`, `laugh`, `confused`,
    /// `heart`, `hooray`, `rocket`, `eyes`).
    pub async fn add_reaction(&self, comment_id: u64, content: &str) -> Result<(), GitHubError> {
        let action = format!("reacting {content:?} to comment {comment_id}");
        let reaction: ReactionContent = serde_json::from_value(serde_json::Value::from(content))
            .map_err(|_| GitHubError::fatal(action.clone(), "GitHub has no such reaction"))?;
        self.octocrab
            .issues(self.repo.owner(), self.repo.name())
            .create_comment_reaction(comment_id, reaction)
            .await
            .map_err(|error| GitHubError::from_octocrab(action, error))?;
        Ok(())
    }
}

impl Clone for GitHub {
    fn clone(&self) -> Self {
        let etag = self
            .open_pulls_etag
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Self {
            octocrab: self.octocrab.clone(),
            api_url: self.api_url.clone(),
            repo: self.repo.clone(),
            open_pulls_etag: Mutex::new(etag),
        }
    }
}

impl fmt::Debug for GitHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHub")
            .field("repo", &self.repo)
            .finish_non_exhaustive()
    }
}

fn to_octocrab_state(state: StatusState) -> octocrab::models::StatusState {
    match state {
        StatusState::Pending => octocrab::models::StatusState::Pending,
        StatusState::Success => octocrab::models::StatusState::Success,
        StatusState::Failure => octocrab::models::StatusState::Failure,
        StatusState::Error => octocrab::models::StatusState::Error,
    }
}

fn from_octocrab_state(state: octocrab::models::StatusState) -> Option<StatusState> {
    match state {
        octocrab::models::StatusState::Pending => Some(StatusState::Pending),
        octocrab::models::StatusState::Success => Some(StatusState::Success),
        octocrab::models::StatusState::Failure => Some(StatusState::Failure),
        octocrab::models::StatusState::Error => Some(StatusState::Error),
        _ => None,
    }
}

/// The fields of an issue comment the catch-up reads.
#[derive(serde::Deserialize)]
struct ApiComment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    user: Option<ApiUser>,
    author_association: String,
    html_url: String,
    issue_url: String,
    created_at: String,
}

#[derive(serde::Deserialize)]
struct ApiUser {
    login: String,
}

/// A pull request's comment as [`CommentInfo`]; None for a plain issue's.
fn comment_info(comment: ApiComment) -> Result<Option<CommentInfo>, String> {
    // Issue comments name their issue only by URL; a PR's page is /pull/N.
    if !comment.html_url.contains("/pull/") {
        return Ok(None);
    }
    let bad = |what: &str| format!("comment {} has {what}", comment.id);
    let number = comment
        .issue_url
        .rsplit('/')
        .next()
        .and_then(|n| n.parse::<u64>().ok())
        .and_then(|n| PrNumber::new(n).ok())
        .ok_or_else(|| bad("no issue number in its issue_url"))?;
    let created_at = time::OffsetDateTime::parse(
        &comment.created_at,
        &time::format_description::well_known::Rfc3339,
    )
    .map_err(|_| bad("an unreadable created_at"))?;
    Ok(Some(CommentInfo {
        id: comment.id,
        pr: number,
        body: comment.body.unwrap_or_default(),
        author: comment
            .user
            .map(|user| user.login)
            .ok_or_else(|| bad("no user"))?,
        author_association: comment.author_association,
        created_at: created_at.into(),
    }))
}

/// `at` as GitHub writes times (`2026-12-06T01:02:03Z`).
fn rfc3339(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .replace_nanosecond(0)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
}

/// Our view of an octocrab pull request; `Err` names what was missing or wrong.
fn pull_request_info(pull: PullRequest) -> Result<PullRequestInfo, String> {
    let number = PrNumber::new(pull.number).map_err(|error| error.to_string())?;
    let missing = |field: &str| format!("pull request #{number} has no {field}");
    let author_association = match pull.author_association {
        Some(association) => match serde_json::to_value(association) {
            Ok(serde_json::Value::String(text)) => text,
            _ => return Err(missing("readable author_association")),
        },
        // Absent only in abridged payloads; the least trusted value is the
        // safe reading for the trust policy.
        None => "NONE".to_string(),
    };
    Ok(PullRequestInfo {
        number,
        head_sha: CommitSha::new(&pull.head.sha).map_err(|error| error.to_string())?,
        title: pull.title.ok_or_else(|| missing("title"))?,
        author: pull
            .user
            .map(|user| user.login)
            .ok_or_else(|| missing("user"))?,
        author_association,
        html_url: pull
            .html_url
            .map(String::from)
            .ok_or_else(|| missing("html_url"))?,
        is_open: matches!(
            pull.state.ok_or_else(|| missing("state"))?,
            IssueState::Open
        ),
    })
}
