//! Comment commands on pull requests: acknowledge with a reaction, answer
//! `/help`, refuse untrusted users, and turn `recheck`, `/recheck <names>`
//! and `/ok-to-test` into jobs on the PR's current head (read from GitHub:
//! a comment delivery does not say which commit the PR is at).
//!
//! A comment acts at most once, ever: its id is consumed in the journal
//! before anything runs, so a replayed delivery of it (a new delivery id,
//! none, the smee relay, a redelivery long after) does nothing.

use std::time::SystemTime;

use tracing::{error, info, warn};

use super::ledger::Approval;
use super::{replies, Dispatcher};
use crate::commands::{parse_commands, Command};
use crate::config::BackendConfig;
use crate::github::{retry, GitHub, GitHubError, PullRequestInfo};
use crate::model::PrNumber;
use crate::policy::{is_own_comment, is_trusted};
use crate::webhook::IssueCommentEvent;

/// Reaction acknowledging a command: "seen", whatever comes of it.
const ACK_REACTION: &str = "eyes";

/// One comment being handled: the PR is read from GitHub at most once.
struct CommentContext<'a> {
    github: &'a GitHub,
    comment: &'a IssueCommentEvent,
    pull: Option<PullRequestInfo>,
    told_closed: bool,
}

impl Dispatcher {
    pub(super) async fn on_comment(&self, comment: IssueCommentEvent) {
        if comment.action != "created"
            || !comment.is_pull_request
            || is_own_comment(&comment.author, &self.policy.bot_login)
        {
            return;
        }
        let commands = parse_commands(&comment.body);
        if commands.is_empty() {
            return;
        }
        let Some(github) = self.github.clone() else {
            warn!(pr = %comment.issue_number, "comment commands need GH_TOKEN to read the PR and reply; ignored");
            return;
        };
        match self
            .scheduler
            .journal()
            .consume_comment(comment.comment_id, SystemTime::now())
        {
            Ok(true) => {}
            Ok(false) => {
                warn!(pr = %comment.issue_number, comment = comment.comment_id, "comment already acted on; a replay, ignored");
                return;
            }
            Err(err) => {
                error!(pr = %comment.issue_number, error = %err, "cannot record the comment as acted on; ignored");
                return;
            }
        }
        let mut context = CommentContext {
            github: &github,
            comment: &comment,
            pull: None,
            told_closed: false,
        };
        if let Err(err) = self.run_commands(&mut context, &commands).await {
            warn!(pr = %comment.issue_number, error = %err, "handling a comment command failed");
        }
    }

    async fn run_commands(
        &self,
        context: &mut CommentContext<'_>,
        commands: &[Command],
    ) -> Result<(), GitHubError> {
        let comment = context.comment;
        let github = context.github;
        // The head is read before the acknowledgement: an author watching
        // for the reaction cannot slip a push in under the ok.
        if commands.iter().any(|c| !matches!(c, Command::Help)) {
            self.read_pull_request(context).await?;
        }
        // The acknowledgement is a courtesy: failing to react must not stop the command.
        let what = format!("reacting to comment {}", comment.comment_id);
        if let Err(err) = retry(&self.retry, &what, || {
            github.add_reaction(comment.comment_id, ACK_REACTION)
        })
        .await
        {
            warn!(error = %err, "could not acknowledge the command");
        }
        let is_commenter_trusted = is_trusted(
            &comment.author,
            comment.author_id,
            &comment.author_association,
            &self.policy.trusted_users,
        );
        self.policy
            .note_login_trust(&comment.author, comment.author_id);
        for command in commands {
            match command {
                Command::Help => {
                    self.reply(context, &replies::help(&self.policy.backends))
                        .await?
                }
                Command::Recheck { .. } | Command::OkToTest if !is_commenter_trusted => {
                    self.reply(context, &replies::refused(&comment.author))
                        .await?;
                    info!(pr = %comment.issue_number, author = %comment.author, "command from an untrusted user refused");
                    // One refusal per comment is enough.
                    return Ok(());
                }
                Command::Recheck { backends } => self.recheck(context, backends).await?,
                Command::OkToTest => self.ok_to_test(context).await?,
            }
        }
        Ok(())
    }

    /// Runs the named backends (all when none is named) again on the head.
    async fn recheck(
        &self,
        context: &mut CommentContext<'_>,
        names: &[String],
    ) -> Result<(), GitHubError> {
        let (known, unknown) = self.select_backends(names);
        if !unknown.is_empty() {
            let text = replies::unknown_backends(&unknown, &self.policy.backends);
            self.reply(context, &text).await?;
        }
        if known.is_empty() {
            return Ok(());
        }
        let Some(pull) = self.open_pull_request(context).await? else {
            return Ok(());
        };
        let is_runnable = is_trusted(
            &pull.author,
            pull.author_id,
            &pull.author_association,
            &self.policy.trusted_users,
        ) || self.ledger.is_approved(pull.number, &pull.head_sha);
        if !is_runnable {
            let text = replies::needs_ok_to_test(&pull.head_sha);
            return self.reply(context, &text).await;
        }
        info!(pr = %pull.number, sha = %pull.head_sha.short(), backends = known.len(), "recheck requested");
        self.enqueue_backends(pull.number, &pull.head_sha, &known, true);
        Ok(())
    }

    /// A trusted user lets the PR's current head run.
    async fn ok_to_test(&self, context: &mut CommentContext<'_>) -> Result<(), GitHubError> {
        let Some(pull) = self.open_pull_request(context).await? else {
            return Ok(());
        };
        let is_author_trusted = is_trusted(
            &pull.author,
            pull.author_id,
            &pull.author_association,
            &self.policy.trusted_users,
        );
        let approval = if is_author_trusted {
            // Nothing is held for a trusted author; the ok just runs what
            // has not run yet.
            Ok(Approval::Granted)
        } else {
            self.ledger
                .approve(pull.number, &pull.head_sha, context.comment.created_at)
        };
        let by = &context.comment.author;
        let approval = match approval {
            Ok(approval) => approval,
            Err(err) => {
                error!(pr = %pull.number, error = %err, "cannot read the ok ledger; ok not applied");
                return Ok(());
            }
        };
        match approval {
            Approval::Granted => {
                info!(pr = %pull.number, sha = %pull.head_sha.short(), %by, "ok-to-test given");
                self.enqueue_all(pull.number, &pull.head_sha, false);
                Ok(())
            }
            Approval::Unknown => {
                info!(pr = %pull.number, sha = %pull.head_sha.short(), %by, "ok-to-test for a head with no known push time; held, a new ok is needed");
                self.post_for_every_backend(
                    &pull.head_sha,
                    crate::model::StatusState::Pending,
                    super::WAITING_FOR_OK,
                );
                let text = replies::ok_to_test_again(&pull.head_sha);
                self.reply(context, &text).await
            }
            Approval::PushedAfterOk | Approval::HeadChanged { .. } | Approval::OkTimeUnknown => {
                info!(pr = %pull.number, sha = %pull.head_sha.short(), %by, ?approval, "ok-to-test is older than the head; not run");
                let text = replies::ok_to_test_outdated(&pull.head_sha);
                self.reply(context, &text).await
            }
        }
    }

    /// The PR as GitHub has it now, or None (after saying so, once) when it
    /// is closed.
    async fn open_pull_request(
        &self,
        context: &mut CommentContext<'_>,
    ) -> Result<Option<PullRequestInfo>, GitHubError> {
        let pull = self.read_pull_request(context).await?;
        if pull.is_open {
            return Ok(Some(pull));
        }
        if !context.told_closed {
            context.told_closed = true;
            info!(pr = %pull.number, "command on a closed pull request; nothing to run");
            self.reply(context, &replies::pull_request_closed()).await?;
        }
        Ok(None)
    }

    /// The PR as GitHub has it, read once per comment.
    async fn read_pull_request(
        &self,
        context: &mut CommentContext<'_>,
    ) -> Result<PullRequestInfo, GitHubError> {
        if let Some(pull) = &context.pull {
            return Ok(pull.clone());
        }
        let pr = context.comment.issue_number;
        let github = context.github;
        let what = format!("reading pull request #{pr}");
        let pull = retry(&self.retry, &what, || github.pull_request(pr)).await?;
        context.pull = Some(pull.clone());
        Ok(pull)
    }

    async fn reply(&self, context: &CommentContext<'_>, text: &str) -> Result<(), GitHubError> {
        let pr: PrNumber = context.comment.issue_number;
        let github = context.github;
        let what = format!("commenting on pull request #{pr}");
        retry(&self.retry, &what, || github.create_comment(pr, text)).await
    }

    /// The backends named in a recheck (all when none is named), and the
    /// names that match no backend.
    fn select_backends(&self, names: &[String]) -> (Vec<&BackendConfig>, Vec<String>) {
        if names.is_empty() {
            return (self.policy.backends.iter().collect(), Vec::new());
        }
        let mut known: Vec<&BackendConfig> = Vec::new();
        let mut unknown = Vec::new();
        for name in names {
            match self.policy.backend(name) {
                Some(backend) if known.iter().any(|k| k.index == backend.index) => {}
                Some(backend) => known.push(backend),
                None => unknown.push(name.clone()),
            }
        }
        (known, unknown)
    }
}
