//! The text of every comment the bot writes on a pull request. Kept apart
//! from the logic so the wording can be read (and reviewed) in one place.
//!
//! No reply may itself hold a command: even with GH_USER unset the bot must
//! not be able to trigger itself. Commands are therefore only ever quoted in
//! inline code, mid-sentence or after a list marker, never alone on a line.

use crate::config::BackendConfig;
use crate::model::{truncate_chars, CommitSha};

/// Longest backend name echoed back from a comment, so a pasted essay is
/// not repeated in full.
const ECHOED_NAME_MAX_CHARS: usize = 40;

/// `/help`: the commands and the backends this CI runs.
pub fn help(backends: &[BackendConfig]) -> String {
    format!(
        "Commands this CI understands, each alone on its own line of a comment:\n\n\
         - `recheck`: run every backend again on the pull request's current head\n\
         - `/recheck <backend>...`: run only the named backends again\n\
         - `/ok-to-test`: (project members) run the current head of a pull request whose author the CI does not trust yet\n\
         - `/help`: this message\n\n\
         Backends: {}.",
        backend_list(backends)
    )
}

/// A `/recheck` naming backends this CI does not have.
pub fn unknown_backends(unknown: &[String], backends: &[BackendConfig]) -> String {
    let names: Vec<String> = unknown
        .iter()
        // A backtick in the name would end the code span and let the rest
        // render: a mention that pings someone, a link.
        .map(|name| name.replace('`', ""))
        .map(|name| format!("`{}`", truncate_chars(&name, ECHOED_NAME_MAX_CHARS)))
        .collect();
    let noun = if names.len() == 1 {
        "Unknown backend"
    } else {
        "Unknown backends"
    };
    format!(
        "{noun} {}. This CI runs: {}.",
        names.join(", "),
        backend_list(backends)
    )
}

/// A command that would run code, from someone the CI does not trust.
pub fn refused(author: &str) -> String {
    format!(
        "@{author} thanks! Only project members (or users this CI's operator trusts) can start jobs here; \
         a member can comment `/ok-to-test` to run this pull request."
    )
}

/// A command that would run something on a closed pull request.
pub fn pull_request_closed() -> String {
    "This pull request is closed; there is nothing to run.".to_string()
}

/// A `recheck` of a head that still waits for a member's ok.
pub fn needs_ok_to_test(head: &CommitSha) -> String {
    format!(
        "The head {} is from an author this CI does not trust yet, so it has not run; \
         a project member can comment `/ok-to-test` to run it.",
        head.short()
    )
}

/// An ok that cannot cover the head: it changed after the ok was written.
pub fn ok_to_test_outdated(head: &CommitSha) -> String {
    format!(
        "The pull request changed after this `/ok-to-test` was written (its head is now {}), \
         so nothing was run; please review the new commits and comment `/ok-to-test` again.",
        head.short()
    )
}

/// An ok for a head whose push ember-ci never saw (it restarted, or the PR
/// predates it): the ok may be older than the head, so it needs a new one.
pub fn ok_to_test_again(head: &CommitSha) -> String {
    format!(
        "This CI has no record of when the head {} was pushed, so it cannot tell whether this \
         `/ok-to-test` was written after it; nothing was run. Please review the current head and \
         comment `/ok-to-test` again.",
        head.short()
    )
}

fn backend_list(backends: &[BackendConfig]) -> String {
    backends
        .iter()
        .map(|b| format!("`{}`", b.name))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::parse_commands;
    use crate::config::DriverConfig;
    use crate::model::BackendName;

    fn backends(names: &[&str]) -> Vec<BackendConfig> {
        names
            .iter()
            .enumerate()
            .map(|(i, name)| BackendConfig {
                index: i + 1,
                name: BackendName::new(name).expect("valid backend name"),
                driver_config: DriverConfig::Json("{}".into()),
                pre_run: None,
                post_run: None,
                sanity_command: "true".into(),
                sanity_timeout: std::time::Duration::from_secs(60),
                extra_packages: Vec::new(),
                extra_pip: Vec::new(),
                extra_containerfile: None,
                plugin: Default::default(),
                csi_sanity: None,
                hosts: vec![crate::config::HostName::local()],
            })
            .collect()
    }

    fn every_reply() -> Vec<String> {
        let configured = backends(&["lvm", "ceph"]);
        let head = CommitSha::new(&"ab".repeat(20)).expect("valid SHA");
        vec![
            help(&configured),
            unknown_backends(&["recheck".into(), "/help".into()], &configured),
            refused("someone"),
            pull_request_closed(),
            needs_ok_to_test(&head),
            ok_to_test_outdated(&head),
        ]
    }

    #[test]
    fn no_reply_holds_a_command_the_bot_would_obey() {
        for reply in every_reply() {
            assert_eq!(parse_commands(&reply), vec![], "{reply}");
        }
    }

    #[test]
    fn help_lists_every_command_and_backend() {
        let text = help(&backends(&["lvm", "ceph"]));
        for expected in [
            "`recheck`",
            "`/recheck <backend>...`",
            "`/ok-to-test`",
            "`/help`",
            "Backends: `lvm`, `ceph`.",
        ] {
            assert!(text.contains(expected), "{expected} missing from {text}");
        }
    }

    #[test]
    fn unknown_backends_reply_names_them_and_the_real_ones() {
        let configured = backends(&["lvm", "ceph"]);
        assert_eq!(
            unknown_backends(&["nfs".into()], &configured),
            "Unknown backend `nfs`. This CI runs: `lvm`, `ceph`."
        );
        let long = "x".repeat(100);
        let text = unknown_backends(&["a".into(), long], &configured);
        assert!(text.starts_with("Unknown backends `a`, `xxx"), "{text}");
        assert!(text.len() < 120, "an echoed name is cut: {text}");
        assert_eq!(
            unknown_backends(&["x`@admin`".into()], &configured),
            "Unknown backend `x@admin`. This CI runs: `lvm`, `ceph`."
        );
    }
}
