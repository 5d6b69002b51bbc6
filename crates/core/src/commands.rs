//! The comment-command parser: a PR comment's text -> the commands it holds.
//! Pure: no I/O, no knowledge of backends or users (the dispatcher checks
//! those). Text inside code blocks, inline code, quotes and HTML comments
//! (GitHub hides those, and templates are full of them) is never a command.
//!
//! Commands, each alone on its line (case-insensitive):
//! - `recheck`: run every backend again on the PR's current head.
//! - `/recheck <backend>...`: run the named backends again (`/recheck` alone
//!   means every backend).
//! - `/help`: reply with the commands and the backends.
//! - `/ok-to-test`: a trusted user lets an untrusted author's head run.

/// One command found in a comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run these backends again; empty means every backend.
    Recheck {
        backends: Vec<String>,
    },
    Help,
    OkToTest,
}

const HTML_COMMENT_START: &str = "<!--";
const HTML_COMMENT_END: &str = "-->";

/// Every command in `body`, in order, duplicates removed.
pub fn parse_commands(body: &str) -> Vec<Command> {
    let mut commands = Vec::new();
    let mut fence: Option<Fence> = None;
    let mut is_in_html_comment = false;
    for line in body.lines() {
        let trimmed = line.trim();
        if let Some(open) = fence {
            if Fence::of(trimmed).is_some_and(|close| close.closes(open, trimmed)) {
                fence = None;
            }
            continue;
        }
        if is_in_html_comment {
            is_in_html_comment = !trimmed.contains(HTML_COMMENT_END);
            continue;
        }
        if let Some(open) = Fence::of(trimmed) {
            fence = Some(open);
            continue;
        }
        if let Some(start) = trimmed.find(HTML_COMMENT_START) {
            let after = &trimmed[start + HTML_COMMENT_START.len()..];
            is_in_html_comment = !after.contains(HTML_COMMENT_END);
            continue;
        }
        // Quotes and indented code blocks are someone else's words or an example.
        if trimmed.starts_with('>') || line.starts_with("    ") || line.starts_with('\t') {
            continue;
        }
        if let Some(command) = parse_line(trimmed) {
            if !commands.contains(&command) {
                commands.push(command);
            }
        }
    }
    commands
}

/// A code fence line's marker: three or more backticks or tildes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fence {
    marker: char,
    len: usize,
}

impl Fence {
    fn of(line: &str) -> Option<Fence> {
        let marker = line.chars().next().filter(|c| matches!(c, '`' | '~'))?;
        let len = line.chars().take_while(|&c| c == marker).count();
        (len >= 3).then_some(Fence { marker, len })
    }

    /// Whether this fence (found on `line`) ends the block `open` started:
    /// as in CommonMark, the same character, at least as long, and nothing
    /// after it (an info string only opens).
    fn closes(self, open: Fence, line: &str) -> bool {
        self.marker == open.marker && self.len >= open.len && line.chars().all(|c| c == self.marker)
    }
}

fn parse_line(line: &str) -> Option<Command> {
    let mut words = line.split_whitespace();
    let first = words.next()?.to_ascii_lowercase();
    let rest: Vec<&str> = words.collect();
    match first.as_str() {
        "recheck" if rest.is_empty() => Some(Command::Recheck {
            backends: Vec::new(),
        }),
        "/recheck" => {
            let mut backends: Vec<String> = Vec::new();
            for name in rest
                .iter()
                .flat_map(|w| w.split(','))
                .filter(|w| !w.is_empty())
            {
                if !backends.iter().any(|b| b.eq_ignore_ascii_case(name)) {
                    backends.push(name.to_string());
                }
            }
            Some(Command::Recheck { backends })
        }
        "/help" if rest.is_empty() => Some(Command::Help),
        "/ok-to-test" if rest.is_empty() => Some(Command::OkToTest),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recheck(backends: &[&str]) -> Command {
        Command::Recheck {
            backends: backends.iter().map(|b| b.to_string()).collect(),
        }
    }

    #[test]
    fn parses_each_command_form() {
        let cases: &[(&str, Vec<Command>)] = &[
            ("recheck", vec![recheck(&[])]),
            ("  Recheck  ", vec![recheck(&[])]),
            ("RECHECK\n", vec![recheck(&[])]),
            ("/recheck lvm", vec![recheck(&["lvm"])]),
            ("/recheck LVM ceph", vec![recheck(&["LVM", "ceph"])]),
            ("/recheck lvm,ceph lvm", vec![recheck(&["lvm", "ceph"])]),
            ("/recheck", vec![recheck(&[])]),
            ("/help", vec![Command::Help]),
            ("/HELP", vec![Command::Help]),
            ("/ok-to-test", vec![Command::OkToTest]),
            ("/Ok-To-Test", vec![Command::OkToTest]),
            // The parser does not know the backends: the dispatcher answers unknown names.
            (
                "/recheck no-such-backend",
                vec![recheck(&["no-such-backend"])],
            ),
            ("/ReCheck Demo2", vec![recheck(&["Demo2"])]),
            ("/recheck\tlvm\t", vec![recheck(&["lvm"])]),
        ];
        for (body, expected) in cases {
            assert_eq!(&parse_commands(body), expected, "body {body:?}");
        }
    }

    #[test]
    fn ignores_prose_code_and_quotes() {
        let ignored = [
            "please recheck this",
            "recheck please",
            "I ran /help already",
            "`recheck`",
            "> recheck",
            ">recheck",
            "```\nrecheck\n/help\n```",
            "~~~sh\n/recheck lvm\n~~~",
            "    recheck",
            "\trecheck",
            "/helpme",
            "/ok-to-test now",
            "<!-- recheck -->",
            "<!--\nrecheck\n/help\n-->",
            "````\n```\nrecheck\n````",
            "```\n```sh\nrecheck\n```",
            "> ```\n> recheck\n> ```",
            "**recheck**",
            "recheck.",
            "",
        ];
        for body in ignored {
            assert_eq!(parse_commands(body), vec![], "body {body:?}");
        }
    }

    #[test]
    fn finds_several_commands_in_one_comment_in_order() {
        let body =
            "Thanks!\n\n/help\n```\nrecheck\n```\n> /ok-to-test\n/recheck ceph\nrecheck\n/help";
        assert_eq!(
            parse_commands(body),
            vec![Command::Help, recheck(&["ceph"]), recheck(&[])]
        );
    }

    #[test]
    fn text_after_an_html_comment_still_counts() {
        assert_eq!(
            parse_commands("<!-- template:\nrecheck\n-->\n/help\n<!-- a --> \n/ok-to-test"),
            vec![Command::Help, Command::OkToTest]
        );
    }

    #[test]
    fn unclosed_fence_hides_the_rest() {
        assert_eq!(parse_commands("```\nrecheck"), vec![]);
    }

    #[test]
    fn windows_line_endings_work() {
        assert_eq!(parse_commands("hi\r\nrecheck\r\n"), vec![recheck(&[])]);
    }
}
