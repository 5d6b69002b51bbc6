//! Who may trigger what: pure functions over GitHub's author association and
//! the vendor's TRUSTED_USERS. A job runs the PR's code privileged next to
//! the vendor's array, so code from unknown authors waits for a member's ok.

/// GitHub's author associations that mean "part of the project".
const TRUSTED_ASSOCIATIONS: [&str; 3] = ["OWNER", "MEMBER", "COLLABORATOR"];

/// Whether `login` (with GitHub's `author_association`) may have a PR run
/// automatically or give commands.
pub fn is_trusted(login: &str, author_association: &str, trusted_users: &[String]) -> bool {
    TRUSTED_ASSOCIATIONS
        .iter()
        .any(|a| a.eq_ignore_ascii_case(author_association))
        || trusted_users.iter().any(|u| u.eq_ignore_ascii_case(login))
}

/// Whether a comment was written by the bot itself (it must not answer
/// its own replies).
pub fn is_own_comment(comment_author: &str, bot_login: &str) -> bool {
    !bot_login.is_empty() && comment_author.eq_ignore_ascii_case(bot_login)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_owners_collaborators_and_listed_users_are_trusted() {
        let listed = vec!["Vendor-Bot".to_string()];
        assert!(is_trusted("a", "MEMBER", &[]));
        assert!(is_trusted("a", "OWNER", &[]));
        assert!(is_trusted("a", "COLLABORATOR", &[]));
        assert!(is_trusted("vendor-bot", "NONE", &listed));
        assert!(!is_trusted("stranger", "CONTRIBUTOR", &listed));
        assert!(!is_trusted("stranger", "FIRST_TIME_CONTRIBUTOR", &[]));
        assert!(!is_trusted("stranger", "NONE", &[]));
    }

    #[test]
    fn own_comments_are_recognised_case_insensitively() {
        assert!(is_own_comment("Ember-CI-Bot", "ember-ci-bot"));
        assert!(!is_own_comment("someone", "ember-ci-bot"));
        assert!(!is_own_comment("someone", ""));
    }
}
