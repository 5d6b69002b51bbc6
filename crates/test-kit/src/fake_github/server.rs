//! The fake's request handling: authentication as GitHub does it, the
//! failures it was told to answer with, and one function per REST call
//! ember-ci makes, validating what GitHub validates.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::Reply;

use super::payloads::{comment_json, pull_json, reaction_json, repo_json, status_json, user_json};
use super::state::{
    FakePull, FakeState, LoggedRequest, PlannedFailure, RecordedComment, RecordedReaction,
    RecordedStatus,
};
use super::{Shared, BOT_LOGIN, DOCS_URL, MAX_DESCRIPTION_CHARS, REACTIONS, STATUS_STATES};

pub(super) struct Incoming {
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) query: BTreeMap<String, String>,
    pub(super) headers: HeaderMap,
    pub(super) body: bytes::Bytes,
}

/// A reply before it becomes a warp response.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) body: Option<Value>,
    pub(super) headers: Vec<(&'static str, String)>,
}

impl Answer {
    pub(super) fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
            headers: Vec::new(),
        }
    }

    pub(super) fn error(status: u16, message: &str) -> Self {
        Self::json(
            status,
            json!({ "message": message, "documentation_url": DOCS_URL }),
        )
    }

    pub(super) fn not_found() -> Self {
        Self::error(404, "Not Found")
    }

    pub(super) fn validation_failed(resource: &str, field: &str, message: &str) -> Self {
        Self::json(
            422,
            json!({
                "message": "Validation Failed",
                "errors": [{ "resource": resource, "code": "custom", "field": field, "message": message }],
                "documentation_url": DOCS_URL,
            }),
        )
    }

    pub(super) fn into_response(self) -> warp::reply::Response {
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

pub(super) fn handle(shared: &Shared, request: &Incoming) -> Answer {
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

pub(super) fn planned_answer(failure: &PlannedFailure) -> Answer {
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
pub(super) fn is_authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let presented = value
        .strip_prefix("token ")
        .or_else(|| value.strip_prefix("Bearer "));
    presented == Some(token)
}

pub(super) fn route(shared: &Shared, state: &mut FakeState, request: &Incoming) -> Answer {
    if request.path == "/user" && request.method == Method::GET {
        return with_scopes(state, Answer::json(200, user_json(shared, BOT_LOGIN)));
    }
    let Some(rest) = request.path.strip_prefix("/repos/") else {
        return Answer::not_found();
    };
    let mut segments: Vec<&str> = rest.split('/').collect();
    if let [owner, name] = segments.as_slice() {
        if owner.eq_ignore_ascii_case(&shared.owner) && name.eq_ignore_ascii_case(&shared.name) {
            let mut repo = repo_json(shared, &shared.owner, &shared.name);
            repo["permissions"] = json!({
                "admin": false, "maintain": false, "push": true, "triage": true, "pull": true
            });
            return with_scopes(state, Answer::json(200, repo));
        }
        return Answer::not_found();
    }
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
        ["issues", "comments"] if method == Method::GET => list_comments(shared, state, request),
        ["issues", number, "comments"] if method == Method::POST => {
            create_comment(shared, state, number, &request.body)
        }
        ["issues", "comments", id, "reactions"] if method == Method::POST => {
            create_reaction(shared, state, id, &request.body)
        }
        _ => Answer::not_found(),
    }
}

/// GitHub lists a classic token's scopes on every authenticated answer.
fn with_scopes(state: &FakeState, mut answer: Answer) -> Answer {
    answer
        .headers
        .push(("x-oauth-scopes", state.token_scopes.clone()));
    answer
}

pub(super) fn parse_body(body: &[u8]) -> Result<Value, Answer> {
    serde_json::from_slice(body).map_err(|_| Answer::error(400, "Problems parsing JSON"))
}

pub(super) fn string_field(body: &Value, field: &str) -> Option<String> {
    body.get(field).and_then(Value::as_str).map(str::to_string)
}

pub(super) fn create_status(
    shared: &Shared,
    state: &mut FakeState,
    sha: &str,
    body: &[u8],
) -> Answer {
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

pub(super) fn list_statuses(
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

pub(super) fn list_pulls(shared: &Shared, state: &mut FakeState, request: &Incoming) -> Answer {
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
    let mut pulls: Vec<&FakePull> = state
        .pulls
        .values()
        .rev()
        .filter(|pull| match wanted {
            "all" => true,
            "closed" => !pull.is_open,
            _ => pull.is_open,
        })
        .collect();
    if request.query.get("sort").map(String::as_str) == Some("updated") {
        // Recently updated first (`direction=desc`, GitHub's default here).
        pulls.sort_by_key(|pull| std::cmp::Reverse(pull.updated_at));
    }
    let listed: Vec<Value> = pulls
        .into_iter()
        .map(|pull| pull_json(shared, pull))
        .collect();
    let mut answer = Answer::json(200, Value::Array(page_of(listed, &request.query)));
    answer.headers.push(("etag", etag));
    answer
}

/// `GET /repos/{o}/{r}/issues/comments`: `since` (updated at or after,
/// RFC 3339), `sort=created|updated`, `direction=asc|desc`, paged.
pub(super) fn list_comments(shared: &Shared, state: &FakeState, request: &Incoming) -> Answer {
    let since = match request.query.get("since") {
        Some(text) => match time::OffsetDateTime::parse(
            &percent_decoded(text),
            &time::format_description::well_known::Rfc3339,
        ) {
            Ok(at) => u64::try_from(at.unix_timestamp()).unwrap_or(0),
            Err(_) => return Answer::validation_failed("IssueComment", "since", "invalid time"),
        },
        None => 0,
    };
    let mut comments: Vec<&RecordedComment> = state
        .comments
        .iter()
        .filter(|comment| comment.created_at >= since)
        .collect();
    // Ids grow with creation time, as GitHub's do.
    comments.sort_by_key(|comment| comment.id);
    if request.query.get("direction").map(String::as_str) == Some("desc") {
        comments.reverse();
    }
    let listed = comments
        .into_iter()
        .map(|comment| comment_json(shared, comment))
        .collect();
    Answer::json(200, Value::Array(page_of(listed, &request.query)))
}

fn percent_decoded(text: &str) -> String {
    text.replace("%3A", ":")
        .replace("%3a", ":")
        .replace("%2B", "+")
}

pub(super) fn create_comment(
    shared: &Shared,
    state: &mut FakeState,
    number: &str,
    body: &[u8],
) -> Answer {
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
        author: BOT_LOGIN.to_string(),
        author_association: "NONE".to_string(),
        created_at: unix_now(),
    };
    let json = comment_json(shared, &comment);
    state.comments.push(comment);
    Answer::json(201, json)
}

/// Reactions are accepted on any comment id: the comments people write
/// arrive through webhooks, which this fake does not model.
pub(super) fn create_reaction(
    shared: &Shared,
    state: &mut FakeState,
    id: &str,
    body: &[u8],
) -> Answer {
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

pub(super) fn parse_query(raw: &str) -> BTreeMap<String, String> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key.to_string(), value.to_string())
        })
        .collect()
}

/// `page` (from 1) and `per_page` (GitHub: default 30, at most 100).
pub(super) fn paging(query: &BTreeMap<String, String>) -> (usize, usize) {
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

pub(super) fn page_of(items: Vec<Value>, query: &BTreeMap<String, String>) -> Vec<Value> {
    let (page, per_page) = paging(query);
    items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect()
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// Unix seconds as GitHub writes times.
pub(super) fn iso_time(unix_secs: u64) -> String {
    i64::try_from(unix_secs)
        .ok()
        .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "2026-01-01T00:00:00Z".to_string())
}

pub(super) fn timestamp() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|now| {
            now.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "2026-01-01T00:00:00Z".to_string())
}
