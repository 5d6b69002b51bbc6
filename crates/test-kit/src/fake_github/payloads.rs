//! GitHub-shaped JSON for the fake's answers (octocrab refuses partial
//! objects). Pull requests, repositories and users start from a real
//! payload GitHub sent (tests/data/github/test-ok.json), retargeted at the
//! fake's URL, repository, author, number and head; statuses, comments and
//! reactions, which no delivery carries, are built in GitHub's documented
//! shape.

use serde_json::{json, Value};

use super::server::{iso_time, timestamp};
use super::state::{FakePull, RecordedComment, RecordedReaction, RecordedStatus};
use super::{Shared, BOT_LOGIN};

/// A stable fake numeric id for a login, so the same user keeps one id.
pub(super) fn user_id(login: &str) -> u64 {
    login.bytes().fold(1000u64, |id, b| {
        id.wrapping_mul(31).wrapping_add(u64::from(b))
    }) % 100_000_000
}

pub(super) fn user_json(shared: &Shared, login: &str) -> Value {
    let mut user = retarget(
        &real_pull_request()["user"],
        &[(REAL_API, &shared.base_url), (REAL_AUTHOR, login)],
    );
    let id = user_id(login);
    user["id"] = json!(id);
    user["node_id"] = json!(format!("MDQ6VXNlcj{id}"));
    user["avatar_url"] = json!(format!("https://avatars.githubusercontent.com/u/{id}?v=4"));
    user
}

/// A repository object, from the real delivery's base repository.
pub(super) fn repo_json(shared: &Shared, owner: &str, name: &str) -> Value {
    let full_name = format!("{owner}/{name}");
    let mut repo = retarget(
        &real_pull_request()["base"]["repo"],
        &[(REAL_API, &shared.base_url), (REAL_FULL_NAME, &full_name)],
    );
    repo["id"] = json!(user_id(&full_name));
    repo["name"] = json!(name);
    repo["owner"] = user_json(shared, owner);
    repo["fork"] = json!(owner != shared.owner);
    repo
}

pub(super) fn status_json(shared: &Shared, status: &RecordedStatus) -> Value {
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

pub(super) fn comment_json(shared: &Shared, comment: &RecordedComment) -> Value {
    let repo_api = format!("{}/repos/{}/{}", shared.base_url, shared.owner, shared.name);
    let now = iso_time(comment.created_at);
    json!({
        "id": comment.id,
        "node_id": format!("MDEyOklzc3VlQ29tbWVudA{}", comment.id),
        "url": format!("{repo_api}/issues/comments/{}", comment.id),
        "html_url": format!("https://github.com/{}/{}/pull/{}#issuecomment-{}", shared.owner, shared.name, comment.pr, comment.id),
        "issue_url": format!("{repo_api}/issues/{}", comment.pr),
        "body": comment.body,
        "user": user_json(shared, &comment.author),
        "created_at": now,
        "updated_at": now,
        "author_association": comment.author_association,
        "performed_via_github_app": null,
        "reactions": reactions_summary_json(&format!("{repo_api}/issues/comments/{}/reactions", comment.id)),
    })
}

pub(super) fn reactions_summary_json(url: &str) -> Value {
    json!({
        "url": url, "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "hooray": 0,
        "confused": 0, "heart": 0, "rocket": 0, "eyes": 0,
    })
}

pub(super) fn reaction_json(shared: &Shared, reaction: &RecordedReaction) -> Value {
    json!({
        "id": reaction.id,
        "node_id": format!("MDg6UmVhY3Rpb24{}", reaction.id),
        "user": user_json(shared, BOT_LOGIN),
        "content": reaction.content,
        "created_at": timestamp(),
    })
}

/// A full pull request object as GET /repos/{o}/{r}/pulls/{n} returns it,
/// from the real delivery's `pull_request`: the head is a branch on the
/// author's fork, the base is `master`.
pub(super) fn pull_json(shared: &Shared, pull: &FakePull) -> Value {
    let number = pull.number;
    let full_name = format!("{}/{}", shared.owner, shared.name);
    let replacements = [
        (REAL_API.to_string(), shared.base_url.clone()),
        (REAL_FULL_NAME.to_string(), full_name),
        (REAL_HEAD_SHA.to_string(), pull.head_sha.clone()),
        (format!("/pull/{REAL_NUMBER}"), format!("/pull/{number}")),
        (format!("/pulls/{REAL_NUMBER}"), format!("/pulls/{number}")),
        (
            format!("/issues/{REAL_NUMBER}"),
            format!("/issues/{number}"),
        ),
    ];
    let replacements: Vec<(&str, &str)> = replacements
        .iter()
        .map(|(from, to)| (from.as_str(), to.as_str()))
        .collect();
    let mut object = retarget(real_pull_request(), &replacements);
    let head_branch = format!("pr-{number}");
    object["id"] = json!(100_000 + number);
    object["node_id"] = json!(format!("MDExOlB1bGxSZXF1ZXN0{number}"));
    object["number"] = json!(number);
    object["state"] = json!(if pull.is_open { "open" } else { "closed" });
    object["title"] = json!(pull.title);
    object["user"] = user_json(shared, &pull.author);
    object["author_association"] = json!(pull.author_association);
    object["updated_at"] = json!(iso_time(pull.updated_at));
    object["closed_at"] = if pull.is_open {
        Value::Null
    } else {
        json!("2026-01-03T00:00:00Z")
    };
    object["head"] = json!({
        "label": format!("{}:{head_branch}", pull.author),
        "ref": head_branch,
        "sha": pull.head_sha,
        "user": user_json(shared, &pull.author),
        "repo": repo_json(shared, &pull.author, &shared.name),
    });
    object["base"]["user"] = user_json(shared, &shared.owner);
    object["base"]["repo"] = repo_json(shared, &shared.owner, &shared.name);
    object["base"]["label"] = json!(format!("{}:master", shared.owner));
    object
}

/// A real delivery GitHub sent (the Ember-CSI team's test-ok.json): its
/// `pull_request` is the template for pull requests, repositories and users.
const REAL_DELIVERY: &str = include_str!("../../../../tests/data/github/test-ok.json");
/// The real payload's own values, replaced when it is retargeted.
const REAL_API: &str = "https://api.github.com";
const REAL_FULL_NAME: &str = "embercsi/ember-csi";
const REAL_AUTHOR: &str = "Akrog";
const REAL_NUMBER: u64 = 129;
const REAL_HEAD_SHA: &str = "4155f91779c72125baee651f628640274794ca37";

fn real_pull_request() -> &'static Value {
    static PULL: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
        let delivery: Value =
            serde_json::from_str(REAL_DELIVERY).expect("tests/data/github/test-ok.json is JSON");
        delivery["body"]["pull_request"].clone()
    });
    &PULL
}

/// `value` with every occurrence of each `from` in its strings replaced by
/// its `to`, in order.
fn retarget(value: &Value, replacements: &[(&str, &str)]) -> Value {
    match value {
        Value::String(text) => Value::String(
            replacements
                .iter()
                .fold(text.clone(), |text, (from, to)| text.replace(from, to)),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| retarget(item, replacements))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, item)| (key.clone(), retarget(item, replacements)))
                .collect(),
        ),
        other => other.clone(),
    }
}
