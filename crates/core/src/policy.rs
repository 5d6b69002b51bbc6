//! Who may trigger what: pure functions over GitHub's author association and
//! the vendor's TRUSTED_USERS. A job runs the PR's code privileged next to
//! the vendor's array, so code from unknown authors waits for a member's ok.

/// GitHub's author associations that mean "part of the project".
const TRUSTED_ASSOCIATIONS: [&str; 3] = ["OWNER", "MEMBER", "COLLABORATOR"];

/// Whether `login` (with GitHub's `author_association`) may have a PR run
/// automatically or give commands.
pub fn is_trusted(
    login: &str,
    id: Option<u64>,
    author_association: &str,
    trusted_users: &[String],
) -> bool {
    TRUSTED_ASSOCIATIONS
        .iter()
        .any(|a| a.eq_ignore_ascii_case(author_association))
        || is_listed(login, id, trusted_users)
}

/// Whether TRUSTED_USERS names the user: an all-digit entry is a numeric
/// user id (it survives renames, so nobody can take it over by taking a
/// freed login), any other entry a login.
pub fn is_listed(login: &str, id: Option<u64>, trusted_users: &[String]) -> bool {
    trusted_users
        .iter()
        .any(|entry| match entry.parse::<u64>() {
            Ok(listed) => id == Some(listed),
            Err(_) => entry.eq_ignore_ascii_case(login),
        })
}

/// Whether a push to a trusted author's PR may run without an ok. A
/// member's PR can come from a branch others push to (an outsider's fork):
/// the push runs by itself only when the pusher (`sender`) is the author or
/// a listed user, or the head's repository belongs to the author, a listed
/// user or the watched repository's owner (whose pushers have write access).
/// With no sender known the author's trust decides alone.
pub fn is_push_trusted(
    sender: Option<&str>,
    author: &str,
    head_owner: Option<&str>,
    base_owner: &str,
    trusted_users: &[String],
) -> bool {
    let is_listed = |login: &str| is_listed(login, None, trusted_users);
    let Some(sender) = sender else {
        return true;
    };
    sender.eq_ignore_ascii_case(author)
        || is_listed(sender)
        || head_owner.is_some_and(|owner| {
            owner.eq_ignore_ascii_case(author)
                || owner.eq_ignore_ascii_case(base_owner)
                || is_listed(owner)
        })
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
        assert!(is_trusted("a", None, "MEMBER", &[]));
        assert!(is_trusted("a", None, "OWNER", &[]));
        assert!(is_trusted("a", None, "COLLABORATOR", &[]));
        assert!(is_trusted("vendor-bot", None, "NONE", &listed));
        assert!(!is_trusted("stranger", None, "CONTRIBUTOR", &listed));
        assert!(!is_trusted("stranger", None, "FIRST_TIME_CONTRIBUTOR", &[]));
        assert!(!is_trusted("stranger", None, "NONE", &[]));
    }

    #[test]
    fn an_all_digit_entry_is_a_user_id_whatever_the_login() {
        let listed = vec!["583231".to_string()];
        assert!(is_trusted("renamed-bot", Some(583231), "NONE", &listed));
        assert!(!is_trusted("583231", Some(7), "NONE", &listed));
        assert!(!is_trusted("vendor-bot", None, "NONE", &listed));
    }

    #[test]
    fn a_push_by_an_outsider_to_an_outsiders_branch_is_not_trusted() {
        let listed = vec!["vendor-bot".to_string()];
        let trusted =
            |sender, head_owner| is_push_trusted(sender, "Member", head_owner, "embercsi", &listed);
        assert!(trusted(Some("member"), Some("outsider")));
        assert!(trusted(Some("Vendor-Bot"), Some("outsider")));
        assert!(trusted(Some("outsider"), Some("Member")));
        assert!(trusted(Some("outsider"), Some("EmberCSI")));
        assert!(trusted(None, Some("outsider")));
        assert!(!trusted(Some("outsider"), Some("outsider")));
        assert!(!trusted(Some("outsider"), None));
    }

    #[test]
    fn own_comments_are_recognised_case_insensitively() {
        assert!(is_own_comment("Ember-CI-Bot", "ember-ci-bot"));
        assert!(!is_own_comment("someone", "ember-ci-bot"));
        assert!(!is_own_comment("someone", ""));
    }
}
