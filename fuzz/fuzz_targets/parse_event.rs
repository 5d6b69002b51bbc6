//! `Event::parse` on any bytes, as any event name: it may refuse, never
//! panic, and what it accepts holds only valid values (the newtypes that
//! later reach git and Podman).
#![no_main]

use ember_ci_core::event::Event;
use libfuzzer_sys::fuzz_target;

/// The events ember-ci reads, plus ones it only checks to be JSON.
const EVENT_NAMES: [&str; 5] = ["pull_request", "issue_comment", "ping", "push", "check_run"];

fuzz_target!(|data: &[u8]| {
    // The first byte picks the event name, the rest is the body.
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let name = EVENT_NAMES[usize::from(selector) % EVENT_NAMES.len()];
    let Ok(event) = Event::parse(name, body) else {
        return;
    };
    match &event {
        Event::PullRequest(pr) => {
            let sha = pr.head_sha.as_str();
            assert!(sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(pr.pr.get() >= 1 && pr.pr.get() <= u64::from(u32::MAX));
            assert!(!pr.repo.owner().starts_with('-') && !pr.repo.name().starts_with('-'));
        }
        Event::IssueComment(comment) => assert!(comment.issue_number.get() >= 1),
        Event::Ping { .. } | Event::Other { .. } => {}
    }
    // Parsing is a pure function of the bytes: the re-dispatch of a
    // journaled delivery after a restart must see the same event.
    assert_eq!(Event::parse(name, body).ok(), Some(event));
});
