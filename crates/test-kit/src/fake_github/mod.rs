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

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;
use warp::http::{HeaderMap, Method};
use warp::path::FullPath;
use warp::Filter;

pub const DEFAULT_TOKEN: &str = "ghp_fakeGitHubTokenForEmberCiTests";
pub const DEFAULT_REPO: &str = "embercsi/ember-csi";
/// What `X-OAuth-Scopes` lists unless a test says otherwise.
pub const DEFAULT_SCOPES: &str = "public_repo, repo:status";
/// The login the token belongs to: creator of statuses, comments, reactions.
pub const BOT_LOGIN: &str = "ember-ci-bot";

const DOCS_URL: &str = "https://docs.github.com/rest";
const MAX_DESCRIPTION_CHARS: usize = 140;
const REACTIONS: [&str; 8] = [
    "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
];
const STATUS_STATES: [&str; 4] = ["error", "failure", "pending", "success"];
const POLL_INTERVAL: Duration = Duration::from_millis(20);

mod payloads;
mod server;
mod state;

pub use state::{
    FakePull, FakeState, LoggedRequest, RecordedComment, RecordedReaction, RecordedStatus,
};

use server::{handle, parse_query, Incoming};
use state::PlannedFailure;

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
            state: Mutex::new(FakeState {
                token_scopes: DEFAULT_SCOPES.to_string(),
                ..FakeState::default()
            }),
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

    /// Sets what `X-OAuth-Scopes` lists for the token.
    pub fn set_token_scopes(&self, scopes: &str) {
        self.shared.lock().token_scopes = scopes.to_string();
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
                updated_at: server::unix_now(),
            },
        );
        state.pulls_version += 1;
    }

    /// A comment someone wrote on pull request `pr` (GitHub lists it under
    /// `GET /repos/{o}/{r}/issues/comments`); returns its id.
    pub fn add_comment(&self, pr: u64, author: &str, association: &str, body: &str) -> u64 {
        let mut state = self.shared.lock();
        let id = state.next_id();
        state.comments.push(RecordedComment {
            id,
            pr,
            body: body.to_string(),
            author: author.to_string(),
            author_association: association.to_string(),
            created_at: server::unix_now(),
        });
        id
    }

    pub fn close_pull(&self, number: u64) {
        let mut state = self.shared.lock();
        if let Some(pull) = state.pulls.get_mut(&number) {
            pull.is_open = false;
            pull.updated_at = server::unix_now();
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
        let met = crate::wait::poll_until(timeout, POLL_INTERVAL, || {
            std::future::ready(predicate(&self.shared.lock()).then_some(()))
        })
        .await;
        met.ok_or_else(|| {
            let log: Vec<String> = self
                .requests()
                .iter()
                .map(|r| format!("{} {} -> {}", r.method, r.path, r.status))
                .collect();
            format!(
                "fake GitHub: condition not met within {timeout:?}; requests seen:\n{}",
                log.join("\n")
            )
        })
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
