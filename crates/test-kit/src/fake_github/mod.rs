//! A fake GitHub REST API for tests: a real HTTP server on 127.0.0.1:0 that
//! answers the calls ember-ci makes with complete GitHub-shaped JSON (octocrab
//! refuses partial objects) and keeps a small model of what it was told:
//! statuses per commit, comments, reactions, open pull requests, and a log of
//! every request with the status it got.
//!
//! It checks the token like GitHub does (401 "Bad credentials"), validates
//! what GitHub validates for these calls (status state, 140-character
//! descriptions, reaction names), and can be told to fail: `fail_next` for
//! 5xx/4xx answers, `rate_limit_next` for GitHub's rate-limit 403.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::oneshot;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::path::FullPath;
use warp::{Filter, Reply};

pub const DEFAULT_TOKEN: &str = "ghp_fakeGitHubTokenForEmberCiTests";
pub const DEFAULT_REPO: &str = "embercsi/ember-csi";
/// The login the token belongs to: creator of statuses, comments, reactions.
pub const BOT_LOGIN: &str = "ember-ci-bot";

const DOCS_URL: &str = "https://docs.github.com/rest";
const MAX_DESCRIPTION_CHARS: usize = 140;
const REACTIONS: [&str; 8] = [
    "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
];
const STATUS_STATES: [&str; 4] = ["error", "failure", "pending", "success"];
const POLL_INTERVAL: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedStatus {
    pub id: u64,
    pub context: String,
    pub state: String,
    pub description: Option<String>,
    pub target_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedComment {
    pub id: u64,
    pub pr: u64,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedReaction {
    pub id: u64,
    pub comment_id: u64,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// The status code the fake answered with.
    pub status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePull {
    pub number: u64,
    pub head_sha: String,
    pub title: String,
    pub author: String,
    pub author_association: String,
    pub is_open: bool,
}

/// An answer queued by `fail_next` / `rate_limit_next`.
#[derive(Debug, Clone)]
struct PlannedFailure {
    status: u16,
    retry_after_secs: Option<u64>,
}

/// The fake's model; tests read it through `FakeGitHub::state` or `wait_for`.
#[derive(Debug, Default)]
pub struct FakeState {
    /// Per commit SHA, oldest first.
    pub statuses: BTreeMap<String, Vec<RecordedStatus>>,
    pub comments: Vec<RecordedComment>,
    pub reactions: Vec<RecordedReaction>,
    pub pulls: BTreeMap<u64, FakePull>,
    /// Bumped on every change to `pulls`; the PR list ETag derives from it.
    pub pulls_version: u64,
    /// How many conditional requests were answered 304 Not Modified.
    pub not_modified_count: usize,
    pub requests: Vec<LoggedRequest>,
    planned_failures: VecDeque<PlannedFailure>,
    last_id: u64,
}

impl FakeState {
    pub fn statuses_for(&self, sha: &str) -> Vec<RecordedStatus> {
        self.statuses.get(sha).cloned().unwrap_or_default()
    }

    /// Requests with this method whose path is exactly `path`.
    pub fn count_requests(&self, method: &str, path: &str) -> usize {
        self.requests
            .iter()
            .filter(|request| request.method == method && request.path == path)
            .count()
    }

    fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }
}

/// The fake server; stops when dropped.
pub struct FakeGitHub {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
}

/// What the request handler needs.
#[derive(Debug)]
struct Shared {
    token: String,
    owner: String,
    name: String,
    base_url: String,
    state: Mutex<FakeState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        // A panicking test thread must not hide the model from the others.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FakeGitHub {
    /// A fake for [`DEFAULT_REPO`] accepting [`DEFAULT_TOKEN`].
    pub async fn start() -> Self {
        Self::start_with(DEFAULT_TOKEN, DEFAULT_REPO).await
    }

    pub async fn start_with(token: &str, repo: &str) -> Self {
        let (owner, name) = repo.split_once('/').expect("repo must be owner/name");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the fake GitHub to 127.0.0.1:0");
        let addr = listener.local_addr().expect("bound socket has an address");
        let shared = Arc::new(Shared {
            token: token.to_string(),
            owner: owner.to_string(),
            name: name.to_string(),
            base_url: format!("http://{addr}"),
            state: Mutex::new(FakeState::default()),
        });
        let handler_shared = Arc::clone(&shared);
        let routes = warp::method()
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .map(
                move |method: Method,
                      path: FullPath,
                      query: String,
                      headers: HeaderMap,
                      body: bytes::Bytes| {
                    let request = Incoming {
                        method,
                        path: path.as_str().to_string(),
                        query: parse_query(&query),
                        headers,
                        body,
                    };
                    handle(&handler_shared, &request).into_response()
                },
            );
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(
            warp::serve(routes)
                .incoming(listener)
                .graceful(async {
                    let _ = stopped.await;
                })
                .run(),
        );
        Self {
            addr,
            shared,
            shutdown: Some(shutdown),
        }
    }

    /// Base URL to configure as `GH_API_URL`.
    pub fn url(&self) -> String {
        self.shared.base_url.clone()
    }

    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// `owner/name`
    pub fn repo(&self) -> String {
        format!("{}/{}", self.shared.owner, self.shared.name)
    }

    /// Opens (or reopens/updates) pull request `number` with head `sha`.
    pub fn add_pull(&self, number: u64, sha: &str, title: &str, author: &str, association: &str) {
        let mut state = self.shared.lock();
        state.pulls.insert(
            number,
            FakePull {
                number,
                head_sha: sha.to_string(),
                title: title.to_string(),
                author: author.to_string(),
                author_association: association.to_string(),
                is_open: true,
            },
        );
        state.pulls_version += 1;
    }

    pub fn close_pull(&self, number: u64) {
        let mut state = self.shared.lock();
        if let Some(pull) = state.pulls.get_mut(&number) {
            pull.is_open = false;
            state.pulls_version += 1;
        }
    }

    /// Answers the next `count` requests, whatever they are, with `status`.
    pub fn fail_next(&self, count: usize, status: u16) {
        let mut state = self.shared.lock();
        for _ in 0..count {
            state.planned_failures.push_back(PlannedFailure {
                status,
                retry_after_secs: None,
            });
        }
    }

    /// Answers the next `count` requests like an exhausted rate limit: 403
    /// with `retry-after`, `x-ratelimit-remaining: 0` and `x-ratelimit-reset`.
    pub fn rate_limit_next(&self, count: usize, retry_after_secs: u64) {
        let mut state = self.shared.lock();
        for _ in 0..count {
            state.planned_failures.push_back(PlannedFailure {
                status: 403,
                retry_after_secs: Some(retry_after_secs),
            });
        }
    }

    pub fn statuses_for(&self, sha: &str) -> Vec<RecordedStatus> {
        self.shared.lock().statuses_for(sha)
    }

    pub fn comments(&self) -> Vec<RecordedComment> {
        self.shared.lock().comments.clone()
    }

    pub fn reactions(&self) -> Vec<RecordedReaction> {
        self.shared.lock().reactions.clone()
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.lock().requests.clone()
    }

    pub fn count_requests(&self, method: &str, path: &str) -> usize {
        self.shared.lock().count_requests(method, path)
    }

    pub fn not_modified_count(&self) -> usize {
        self.shared.lock().not_modified_count
    }

    /// Reads the model under its lock.
    pub fn state<R>(&self, read: impl FnOnce(&FakeState) -> R) -> R {
        read(&self.shared.lock())
    }

    /// Polls the model until `predicate` holds; after `timeout` fails with a
    /// message that lists the requests seen, to show what happened instead.
    pub async fn wait_for(
        &self,
        predicate: impl Fn(&FakeState) -> bool,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if predicate(&self.shared.lock()) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let log: Vec<String> = self
                    .requests()
                    .iter()
                    .map(|r| format!("{} {} -> {}", r.method, r.path, r.status))
                    .collect();
                return Err(format!(
                    "fake GitHub: condition not met within {timeout:?}; requests seen:\n{}",
                    log.join("\n")
                ));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits until the latest status posted for `sha` is in `state`.
    pub async fn wait_for_last_state(
        &self,
        sha: &str,
        state: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        self.wait_for(
            |s| {
                s.statuses_for(sha)
                    .last()
                    .is_some_and(|st| st.state == state)
            },
            timeout,
        )
        .await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

struct Incoming {
    method: Method,
    path: String,
    query: BTreeMap<String, String>,
    headers: HeaderMap,
    body: bytes::Bytes,
}

/// A reply before it becomes a warp response.
struct Answer {
    status: u16,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
}

impl Answer {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
            headers: Vec::new(),
        }
    }

    fn error(status: u16, message: &str) -> Self {
        Self::json(
            status,
            json!({ "message": message, "documentation_url": DOCS_URL }),
        )
    }

    fn not_found() -> Self {
        Self::error(404, "Not Found")
    }

    fn validation_failed(resource: &str, field: &str, message: &str) -> Self {
        Self::json(
            422,
            json!({
                "message": "Validation Failed",
                "errors": [{ "resource": resource, "code": "custom", "field": field, "message": message }],
                "documentation_url": DOCS_URL,
            }),
        )
    }

    fn into_response(self) -> warp::reply::Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = match self.body {
            Some(body) => {
                warp::reply::with_status(warp::reply::json(&body), status).into_response()
            }
            None => warp::reply::with_status(warp::reply(), status).into_response(),
        };
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

fn handle(shared: &Shared, request: &Incoming) -> Answer {
    let mut state = shared.lock();
    let answer = if let Some(failure) = state.planned_failures.pop_front() {
        planned_answer(&failure)
    } else if !is_authorized(&request.headers, &shared.token) {
        Answer::error(401, "Bad credentials")
    } else {
        route(shared, &mut state, request)
    };
    state.requests.push(LoggedRequest {
        method: request.method.to_string(),
        path: request.path.clone(),
        status: answer.status,
    });
    answer
}

fn planned_answer(failure: &PlannedFailure) -> Answer {
    match failure.retry_after_secs {
        Some(secs) => {
            let mut answer = Answer::error(403, "API rate limit exceeded for user ID 1.");
            answer.headers = vec![
                ("retry-after", secs.to_string()),
                ("x-ratelimit-limit", "5000".into()),
                ("x-ratelimit-remaining", "0".into()),
                ("x-ratelimit-reset", (unix_now() + secs).to_string()),
            ];
            answer
        }
        None => {
            let reason = StatusCode::from_u16(failure.status)
                .ok()
                .and_then(|code| code.canonical_reason())
                .unwrap_or("Error");
            Answer::error(failure.status, reason)
        }
    }
}

/// GitHub takes a token as `token <t>` or `Bearer <t>`.
fn is_authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let presented = value
        .strip_prefix("token ")
        .or_else(|| value.strip_prefix("Bearer "));
    presented == Some(token)
}

fn route(shared: &Shared, state: &mut FakeState, request: &Incoming) -> Answer {
    let Some(rest) = request.path.strip_prefix("/repos/") else {
        return Answer::not_found();
    };
    let mut segments: Vec<&str> = rest.split('/').collect();
    if segments.len() < 3
        || !segments[0].eq_ignore_ascii_case(&shared.owner)
        || !segments[1].eq_ignore_ascii_case(&shared.name)
    {
        return Answer::not_found();
    }
    let route: Vec<&str> = segments.split_off(2);
    let method = &request.method;
    match route.as_slice() {
        ["statuses", sha] if method == Method::POST => {
            create_status(shared, state, sha, &request.body)
        }
        ["commits", sha, "statuses"] if method == Method::GET => {
            list_statuses(shared, state, sha, &request.query)
        }
        ["pulls"] if method == Method::GET => list_pulls(shared, state, request),
        ["pulls", number] if method == Method::GET => {
            match number.parse::<u64>().ok().and_then(|n| state.pulls.get(&n)) {
                Some(pull) => Answer::json(200, pull_json(shared, pull)),
                None => Answer::not_found(),
            }
        }
        ["issues", number, "comments"] if method == Method::POST => {
            create_comment(shared, state, number, &request.body)
        }
        ["issues", "comments", id, "reactions"] if method == Method::POST => {
            create_reaction(shared, state, id, &request.body)
        }
        _ => Answer::not_found(),
    }
}

fn parse_body(body: &[u8]) -> Result<Value, Answer> {
    serde_json::from_slice(body).map_err(|_| Answer::error(400, "Problems parsing JSON"))
}

fn string_field(body: &Value, field: &str) -> Option<String> {
    body.get(field).and_then(Value::as_str).map(str::to_string)
}

fn create_status(shared: &Shared, state: &mut FakeState, sha: &str, body: &[u8]) -> Answer {
    let body = match parse_body(body) {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let status_state = string_field(&body, "state").unwrap_or_default();
    if !STATUS_STATES.contains(&status_state.as_str()) {
        return Answer::validation_failed("Status", "state", "state is not included in the list");
    }
    let description = string_field(&body, "description");
    if description
        .as_deref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS)
    {
        return Answer::validation_failed(
            "Status",
            "description",
            "description is too long (maximum is 140 characters)",
        );
    }
    if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Answer::validation_failed("Status", "sha", "No commit found for SHA");
    }
    let recorded = RecordedStatus {
        id: state.next_id(),
        context: string_field(&body, "context").unwrap_or_else(|| "default".into()),
        state: status_state,
        description,
        target_url: string_field(&body, "target_url"),
    };
    let json = status_json(shared, &recorded);
    state
        .statuses
        .entry(sha.to_string())
        .or_default()
        .push(recorded);
    Answer::json(201, json)
}

fn list_statuses(
    shared: &Shared,
    state: &FakeState,
    sha: &str,
    query: &BTreeMap<String, String>,
) -> Answer {
    // GitHub lists newest first.
    let newest_first: Vec<Value> = state
        .statuses_for(sha)
        .iter()
        .rev()
        .map(|status| status_json(shared, status))
        .collect();
    Answer::json(200, Value::Array(page_of(newest_first, query)))
}

fn list_pulls(shared: &Shared, state: &mut FakeState, request: &Incoming) -> Answer {
    let wanted = request
        .query
        .get("state")
        .map(String::as_str)
        .unwrap_or("open");
    let (page, per_page) = paging(&request.query);
    let etag = format!(
        "W/\"pulls-v{}-{wanted}-p{page}-n{per_page}\"",
        state.pulls_version
    );
    let if_none_match = request
        .headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok());
    if if_none_match == Some(etag.as_str()) {
        state.not_modified_count += 1;
        return Answer {
            status: 304,
            body: None,
            headers: vec![("etag", etag)],
        };
    }
    // GitHub's default order is newest first, and numbers grow with age.
    let listed: Vec<Value> = state
        .pulls
        .values()
        .rev()
        .filter(|pull| match wanted {
            "all" => true,
            "closed" => !pull.is_open,
            _ => pull.is_open,
        })
        .map(|pull| pull_json(shared, pull))
        .collect();
    let mut answer = Answer::json(200, Value::Array(page_of(listed, &request.query)));
    answer.headers.push(("etag", etag));
    answer
}

fn create_comment(shared: &Shared, state: &mut FakeState, number: &str, body: &[u8]) -> Answer {
    let Some(pr) = number
        .parse::<u64>()
        .ok()
        .filter(|n| state.pulls.contains_key(n))
    else {
        return Answer::not_found();
    };
    let body = match parse_body(body) {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let Some(text) = string_field(&body, "body").filter(|text| !text.is_empty()) else {
        return Answer::validation_failed("IssueComment", "body", "body can't be blank");
    };
    let comment = RecordedComment {
        id: state.next_id(),
        pr,
        body: text,
    };
    let json = comment_json(shared, &comment);
    state.comments.push(comment);
    Answer::json(201, json)
}

/// Reactions are accepted on any comment id: the comments people write
/// arrive through webhooks, which this fake does not model.
fn create_reaction(shared: &Shared, state: &mut FakeState, id: &str, body: &[u8]) -> Answer {
    let Ok(comment_id) = id.parse::<u64>() else {
        return Answer::not_found();
    };
    let body = match parse_body(body) {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let content = string_field(&body, "content").unwrap_or_default();
    if !REACTIONS.contains(&content.as_str()) {
        return Answer::validation_failed(
            "Reaction",
            "content",
            "content is not included in the list",
        );
    }
    // GitHub answers 200 with the existing reaction when it is repeated.
    if let Some(existing) = state
        .reactions
        .iter()
        .find(|r| r.comment_id == comment_id && r.content == content)
    {
        return Answer::json(200, reaction_json(shared, existing));
    }
    let reaction = RecordedReaction {
        id: state.next_id(),
        comment_id,
        content,
    };
    let json = reaction_json(shared, &reaction);
    state.reactions.push(reaction);
    Answer::json(201, json)
}

fn parse_query(raw: &str) -> BTreeMap<String, String> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key.to_string(), value.to_string())
        })
        .collect()
}

/// `page` (from 1) and `per_page` (GitHub: default 30, at most 100).
fn paging(query: &BTreeMap<String, String>) -> (usize, usize) {
    let number = |key: &str, default: usize| {
        query
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    (
        number("page", 1).max(1),
        number("per_page", 30).clamp(1, 100),
    )
}

fn page_of(items: Vec<Value>, query: &BTreeMap<String, String>) -> Vec<Value> {
    let (page, per_page) = paging(query);
    items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

fn timestamp() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|now| {
            now.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "2026-01-01T00:00:00Z".to_string())
}

/// A stable fake numeric id for a login, so the same user keeps one id.
fn user_id(login: &str) -> u64 {
    login.bytes().fold(1000u64, |id, b| {
        id.wrapping_mul(31).wrapping_add(u64::from(b))
    }) % 100_000_000
}

fn user_json(shared: &Shared, login: &str) -> Value {
    let api = format!("{}/users/{login}", shared.base_url);
    let id = user_id(login);
    json!({
        "login": login,
        "id": id,
        "node_id": format!("MDQ6VXNlcj{id}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "gravatar_id": "",
        "url": api,
        "html_url": format!("https://github.com/{login}"),
        "followers_url": format!("{api}/followers"),
        "following_url": format!("{api}/following{{/other_user}}"),
        "gists_url": format!("{api}/gists{{/gist_id}}"),
        "starred_url": format!("{api}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{api}/subscriptions"),
        "organizations_url": format!("{api}/orgs"),
        "repos_url": format!("{api}/repos"),
        "events_url": format!("{api}/events{{/privacy}}"),
        "received_events_url": format!("{api}/received_events"),
        "type": "User",
        "user_view_type": "public",
        "site_admin": false,
    })
}

/// The `*_url` fields of a repository object: (field, suffix after the repo's API URL).
const REPO_API_URLS: [(&str, &str); 36] = [
    ("archive_url", "/{archive_format}{/ref}"),
    ("assignees_url", "/assignees{/user}"),
    ("blobs_url", "/git/blobs{/sha}"),
    ("branches_url", "/branches{/branch}"),
    ("collaborators_url", "/collaborators{/collaborator}"),
    ("comments_url", "/comments{/number}"),
    ("commits_url", "/commits{/sha}"),
    ("compare_url", "/compare/{base}...{head}"),
    ("contents_url", "/contents/{+path}"),
    ("contributors_url", "/contributors"),
    ("deployments_url", "/deployments"),
    ("downloads_url", "/downloads"),
    ("events_url", "/events"),
    ("forks_url", "/forks"),
    ("git_commits_url", "/git/commits{/sha}"),
    ("git_refs_url", "/git/refs{/sha}"),
    ("git_tags_url", "/git/tags{/sha}"),
    ("hooks_url", "/hooks"),
    ("issue_comment_url", "/issues/comments{/number}"),
    ("issue_events_url", "/issues/events{/number}"),
    ("issues_url", "/issues{/number}"),
    ("keys_url", "/keys{/key_id}"),
    ("labels_url", "/labels{/name}"),
    ("languages_url", "/languages"),
    ("merges_url", "/merges"),
    ("milestones_url", "/milestones{/number}"),
    (
        "notifications_url",
        "/notifications{?since,all,participating}",
    ),
    ("pulls_url", "/pulls{/number}"),
    ("releases_url", "/releases{/id}"),
    ("stargazers_url", "/stargazers"),
    ("statuses_url", "/statuses/{sha}"),
    ("subscribers_url", "/subscribers"),
    ("subscription_url", "/subscription"),
    ("tags_url", "/tags"),
    ("teams_url", "/teams"),
    ("trees_url", "/git/trees{/sha}"),
];

fn repo_json(shared: &Shared, owner: &str, name: &str) -> Value {
    let api = format!("{}/repos/{owner}/{name}", shared.base_url);
    let full_name = format!("{owner}/{name}");
    let id = user_id(&full_name);
    let mut repo = json!({
        "id": id,
        "node_id": format!("MDEwOlJlcG9zaXRvcnk{id}"),
        "name": name,
        "full_name": full_name,
        "private": false,
        "owner": user_json(shared, owner),
        "html_url": format!("https://github.com/{full_name}"),
        "description": "CSI driver for Ember",
        "fork": owner != shared.owner,
        "url": api,
        "git_url": format!("git://github.com/{full_name}.git"),
        "ssh_url": format!("git@github.com:{full_name}.git"),
        "clone_url": format!("https://github.com/{full_name}.git"),
        "svn_url": format!("https://github.com/{full_name}"),
        "mirror_url": null,
        "homepage": null,
        "language": "Python",
        "forks_count": 3,
        "stargazers_count": 40,
        "watchers_count": 40,
        "size": 2048,
        "default_branch": "master",
        "open_issues_count": 12,
        "is_template": false,
        "topics": [],
        "has_issues": true,
        "has_projects": true,
        "has_wiki": true,
        "has_pages": false,
        "has_downloads": true,
        "archived": false,
        "disabled": false,
        "visibility": "public",
        "pushed_at": "2026-01-01T00:00:00Z",
        "created_at": "2018-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "forks": 3,
        "open_issues": 12,
        "watchers": 40,
    });
    for (field, suffix) in REPO_API_URLS {
        repo[field] = Value::from(format!("{api}{suffix}"));
    }
    repo
}

fn status_json(shared: &Shared, status: &RecordedStatus) -> Value {
    let now = timestamp();
    json!({
        "url": format!("{}/repos/{}/{}/statuses/{}", shared.base_url, shared.owner, shared.name, status.id),
        "avatar_url": "https://avatars.githubusercontent.com/u/1?v=4",
        "id": status.id,
        "node_id": format!("MDY6U3RhdHVz{}", status.id),
        "state": status.state,
        "description": status.description,
        "target_url": status.target_url,
        "context": status.context,
        "created_at": now,
        "updated_at": now,
        "creator": user_json(shared, BOT_LOGIN),
    })
}

fn comment_json(shared: &Shared, comment: &RecordedComment) -> Value {
    let repo_api = format!("{}/repos/{}/{}", shared.base_url, shared.owner, shared.name);
    let now = timestamp();
    json!({
        "id": comment.id,
        "node_id": format!("MDEyOklzc3VlQ29tbWVudA{}", comment.id),
        "url": format!("{repo_api}/issues/comments/{}", comment.id),
        "html_url": format!("https://github.com/{}/{}/pull/{}#issuecomment-{}", shared.owner, shared.name, comment.pr, comment.id),
        "issue_url": format!("{repo_api}/issues/{}", comment.pr),
        "body": comment.body,
        "user": user_json(shared, BOT_LOGIN),
        "created_at": now,
        "updated_at": now,
        "author_association": "NONE",
        "performed_via_github_app": null,
        "reactions": reactions_summary_json(&format!("{repo_api}/issues/comments/{}/reactions", comment.id)),
    })
}

fn reactions_summary_json(url: &str) -> Value {
    json!({
        "url": url, "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "hooray": 0,
        "confused": 0, "heart": 0, "rocket": 0, "eyes": 0,
    })
}

fn reaction_json(shared: &Shared, reaction: &RecordedReaction) -> Value {
    json!({
        "id": reaction.id,
        "node_id": format!("MDg6UmVhY3Rpb24{}", reaction.id),
        "user": user_json(shared, BOT_LOGIN),
        "content": reaction.content,
        "created_at": timestamp(),
    })
}

/// A full pull request object as GET /repos/{o}/{r}/pulls/{n} returns it:
/// the head is a branch on the author's fork, the base is `master`.
fn pull_json(shared: &Shared, pull: &FakePull) -> Value {
    let repo_api = format!("{}/repos/{}/{}", shared.base_url, shared.owner, shared.name);
    let number = pull.number;
    let html = format!(
        "https://github.com/{}/{}/pull/{number}",
        shared.owner, shared.name
    );
    let head_branch = format!("pr-{number}");
    // (field in the object, name in `_links`, URL)
    let urls = [
        ("url", Some("self"), format!("{repo_api}/pulls/{number}")),
        ("html_url", Some("html"), html.clone()),
        ("diff_url", None, format!("{html}.diff")),
        ("patch_url", None, format!("{html}.patch")),
        (
            "issue_url",
            Some("issue"),
            format!("{repo_api}/issues/{number}"),
        ),
        (
            "commits_url",
            Some("commits"),
            format!("{repo_api}/pulls/{number}/commits"),
        ),
        (
            "review_comments_url",
            Some("review_comments"),
            format!("{repo_api}/pulls/{number}/comments"),
        ),
        (
            "review_comment_url",
            Some("review_comment"),
            format!("{repo_api}/pulls/comments{{/number}}"),
        ),
        (
            "comments_url",
            Some("comments"),
            format!("{repo_api}/issues/{number}/comments"),
        ),
        (
            "statuses_url",
            Some("statuses"),
            format!("{repo_api}/statuses/{}", pull.head_sha),
        ),
    ];
    let head = json!({
        "label": format!("{}:{head_branch}", pull.author),
        "ref": head_branch,
        "sha": pull.head_sha,
        "user": user_json(shared, &pull.author),
        "repo": repo_json(shared, &pull.author, &shared.name),
    });
    let base = json!({
        "label": format!("{}:master", shared.owner),
        "ref": "master",
        "sha": "0000000000000000000000000000000000000001",
        "user": user_json(shared, &shared.owner),
        "repo": repo_json(shared, &shared.owner, &shared.name),
    });
    let closed_at = if pull.is_open {
        Value::Null
    } else {
        json!("2026-01-03T00:00:00Z")
    };
    let mut object = json!({
        "id": 100_000 + number,
        "node_id": format!("MDExOlB1bGxSZXF1ZXN0{number}"),
        "number": number,
        "state": if pull.is_open { "open" } else { "closed" },
        "locked": false,
        "title": pull.title,
        "user": user_json(shared, &pull.author),
        "body": "Pull request body.",
        "labels": [],
        "milestone": null,
        "active_lock_reason": null,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-02T00:00:00Z",
        "closed_at": closed_at,
        "merged_at": null,
        "merge_commit_sha": null,
        "assignee": null,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "head": head,
        "base": base,
        "author_association": pull.author_association,
        "auto_merge": null,
        "draft": false,
        "merged": false,
        "mergeable": null,
        "rebaseable": null,
        "mergeable_state": "unknown",
        "merged_by": null,
        "comments": 0,
        "review_comments": 0,
        "maintainer_can_modify": true,
        "commits": 1,
        "additions": 10,
        "deletions": 2,
        "changed_files": 1,
    });
    let mut links = serde_json::Map::new();
    for (field, link_name, url) in urls {
        if let Some(link_name) = link_name {
            links.insert(link_name.to_string(), json!({ "href": url }));
        }
        object[field] = Value::from(url);
    }
    object["_links"] = Value::Object(links);
    object
}
