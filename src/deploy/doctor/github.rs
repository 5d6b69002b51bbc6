//! The GitHub side: the token's scopes (GitHub lists a classic token's
//! scopes in `X-OAuth-Scopes`), access to GH_REPO and to the logs
//! repository, and the clock against GitHub's `Date` header.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, DATE};
use reqwest::StatusCode;
use serde::Deserialize;

use super::Finding;
use crate::config::Config;

/// The scopes statuses and log pushes need; `repo` covers both.
const NEEDED_SCOPES: [&str; 2] = ["repo:status", "public_repo"];
/// Beyond this, log timestamps and token expiry checks go wrong.
const MAX_SKEW: Duration = Duration::from_secs(30);
const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
struct Repository {
    #[serde(default)]
    permissions: Option<Permissions>,
}

#[derive(Deserialize)]
struct Permissions {
    #[serde(default)]
    push: bool,
}

pub(super) async fn checks(config: &Config) -> Vec<Finding> {
    let github = &config.github;
    if github.token.is_empty() {
        return vec![Finding::warn(
            "github",
            "GH_TOKEN is empty: statuses are printed, not posted",
            "set GH_TOKEN to the bot's token with repo:status and public_repo",
        )];
    }
    let client = match reqwest::Client::builder()
        .timeout(TIMEOUT)
        .user_agent(concat!("ember-ci/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(client) => client,
        Err(err) => {
            return vec![Finding::block(
                "github",
                err.to_string(),
                "report this as a bug",
            )]
        }
    };
    let get = |path: String| {
        client
            .get(format!("{}{path}", github.api_url))
            .header("authorization", format!("token {}", github.token.expose()))
            .header("accept", "application/vnd.github+json")
            .send()
    };
    let user = match get("/user".into()).await {
        Ok(response) => response,
        Err(err) => {
            return vec![Finding::block(
                "github",
                format!("{} does not answer: {err}", github.api_url),
                "check GH_API_URL and the host's network (proxy, DNS, firewall)",
            )]
        }
    };
    let mut findings = vec![clock(user.headers(), SystemTime::now())];
    if user.status() == StatusCode::UNAUTHORIZED {
        findings.push(Finding::block(
            "token",
            "GitHub rejects GH_TOKEN (401 Bad credentials)",
            "create a new token for the bot account and set GH_TOKEN",
        ));
        return findings;
    }
    findings.push(scopes(user.headers()));
    let repo = github.repo.to_string();
    findings.push(match get(format!("/repos/{repo}")).await {
        Ok(response) if response.status().is_success() => {
            Finding::ok("GH_REPO", format!("{repo} readable"))
        }
        Ok(response) => Finding::block(
            "GH_REPO",
            format!("{repo}: GitHub answers {}", response.status()),
            "check GH_REPO's spelling, and that the token's account can see it",
        ),
        Err(err) => Finding::block("GH_REPO", err.to_string(), "check the network"),
    });
    // The key that named the repository, so the fix points at it.
    let key = if config.logs.branch_per_backend {
        "EMBER_LOGS_REPO"
    } else {
        "LOGS_REPO"
    };
    findings.push(match config.logs.repo.as_deref() {
        None => Finding::ok(
            "LOGS_REPO",
            format!(
                "logs stay in CI_DIR/logs ({}); statuses say so, with no Details link",
                config.logs.reason
            ),
        ),
        Some(url) => match github_repo_of(url) {
            Some(logs_repo) => match get(format!("/repos/{logs_repo}")).await {
                Ok(response) if response.status().is_success() => {
                    let push = response
                        .json::<Repository>()
                        .await
                        .ok()
                        .and_then(|repo| repo.permissions)
                        .is_some_and(|p| p.push);
                    if push {
                        Finding::ok(key, format!("{logs_repo} writable ({})", config.logs.reason))
                    } else {
                        Finding::block(
                            key,
                            format!("the token cannot push to {logs_repo}"),
                            "give the bot account write access to the logs repository",
                        )
                    }
                }
                Ok(response) => Finding::block(
                    key,
                    format!("{logs_repo}: GitHub answers {}", response.status()),
                    if key == "LOGS_REPO" {
                        "create the logs repository, or fix LOGS_REPO, and give the bot write access"
                    } else {
                        "ask the Ember-CSI team for write access, or set LOGS_REPO (\"\" keeps logs local)"
                    },
                ),
                Err(err) => Finding::block(key, err.to_string(), "check the network"),
            },
            None => Finding::ok(
                key,
                format!("{url} (not on GitHub: not checked; {})", config.logs.reason),
            ),
        },
    });
    findings
}

fn scopes(headers: &HeaderMap) -> Finding {
    let Some(listed) = headers.get("x-oauth-scopes").and_then(|v| v.to_str().ok()) else {
        return Finding::warn(
            "token",
            "GitHub lists no scopes (a fine-grained token?)",
            "make sure the token may write commit statuses on GH_REPO and contents on LOGS_REPO",
        );
    };
    let granted: Vec<&str> = listed.split(',').map(str::trim).collect();
    let missing: Vec<&str> = NEEDED_SCOPES
        .into_iter()
        .filter(|scope| !granted.contains(scope) && !granted.contains(&"repo"))
        .collect();
    if missing.is_empty() {
        Finding::ok("token", format!("scopes: {listed}"))
    } else {
        Finding::block(
            "token",
            format!("GH_TOKEN lacks {} (has: {listed})", missing.join(", ")),
            "regenerate the token with repo:status and public_repo",
        )
    }
}

/// `owner/name` of a GitHub https or ssh URL.
fn github_repo_of(url: &str) -> Option<String> {
    let path = url
        .strip_prefix("https://github.com/")
        .or_else(|| url.strip_prefix("git@github.com:"))?;
    let path = path.trim_end_matches('/').trim_end_matches(".git");
    let (owner, name) = path.split_once('/')?;
    (!owner.is_empty() && !name.is_empty() && !name.contains('/')).then(|| path.to_string())
}

fn clock(headers: &HeaderMap, now: SystemTime) -> Finding {
    let date = headers
        .get(DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|text| httpdate::parse_http_date(text).ok());
    let Some(date) = date else {
        return Finding::warn("clock", "GitHub sent no Date header", "check GH_API_URL");
    };
    let skew = now
        .duration_since(date)
        .or_else(|_| date.duration_since(now).map_err(|_| ()))
        .unwrap_or_default();
    if skew <= MAX_SKEW {
        Finding::ok("clock", format!("{} s from GitHub", skew.as_secs()))
    } else {
        Finding::warn(
            "clock",
            format!("{} s off GitHub's clock", skew.as_secs()),
            "synchronise the clock (systemd-timesyncd or chrony)",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::doctor::Level;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.parse().expect("header value"));
        headers
    }

    #[test]
    fn repo_or_both_scopes_pass_one_missing_blocks() {
        assert_eq!(
            scopes(&headers("x-oauth-scopes", "repo, gist")).level,
            Level::Ok
        );
        assert_eq!(
            scopes(&headers("x-oauth-scopes", "public_repo, repo:status")).level,
            Level::Ok
        );
        let missing = scopes(&headers("x-oauth-scopes", "public_repo"));
        assert_eq!(missing.level, Level::Block);
        assert!(
            missing.detail.contains("lacks repo:status"),
            "{}",
            missing.detail
        );
        assert_eq!(scopes(&HeaderMap::new()).level, Level::Warn);
    }

    #[test]
    fn clock_skew_beyond_the_limit_warns() {
        let date = headers("date", "Sun, 06 Dec 2026 01:00:00 GMT");
        let at = httpdate::parse_http_date("Sun, 06 Dec 2026 01:00:10 GMT").expect("date");
        assert_eq!(clock(&date, at).level, Level::Ok);
        let later = at + Duration::from_secs(120);
        let finding = clock(&date, later);
        assert_eq!(finding.level, Level::Warn);
        assert!(
            finding.detail.starts_with("130 s off"),
            "{}",
            finding.detail
        );
    }

    #[test]
    fn github_urls_name_their_repository() {
        assert_eq!(
            github_repo_of("https://github.com/acme/ci-logs.git").as_deref(),
            Some("acme/ci-logs")
        );
        assert_eq!(
            github_repo_of("git@github.com:acme/ci-logs").as_deref(),
            Some("acme/ci-logs")
        );
        assert_eq!(github_repo_of("/srv/git/logs.git"), None);
    }
}
