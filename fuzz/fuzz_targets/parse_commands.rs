//! `parse_commands` on any comment text: no panic, no duplicate commands,
//! backend names that are single non-empty words, and quoted text that is
//! never a command.
#![no_main]

use ember_ci_core::commands::{parse_commands, Command};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &str| {
    let commands = parse_commands(body);
    assert!(commands.len() <= body.lines().count());
    for (index, command) in commands.iter().enumerate() {
        assert!(
            !commands[..index].contains(command),
            "duplicate {command:?}"
        );
        if let Command::Recheck { backends } = command {
            for (n, name) in backends.iter().enumerate() {
                assert!(!name.is_empty());
                assert!(!name.contains(|c: char| c.is_whitespace() || c == ','));
                assert!(!backends[..n].iter().any(|b| b.eq_ignore_ascii_case(name)));
            }
        }
    }
    // Quoting someone (GitHub's "Quote reply") must not repeat their commands.
    let quoted: String = body.lines().map(|line| format!("> {line}\n")).collect();
    assert_eq!(parse_commands(&quoted), []);
});
