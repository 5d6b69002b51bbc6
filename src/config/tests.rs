//! Unit tests of the config reader's pure parts: the bash-compatible
//! reader, single-value parsers and the credential rule. Loading whole
//! config dirs is tested in tests/all/config.rs.

use std::collections::HashMap;
use std::time::Duration;

use super::credentials::{credential_values, is_credential_key, mask_driver_config_json};
use super::shell::{parse_assignments, ShellError, ShellErrorKind};
use super::values;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The value bash would give `name` after sourcing `text` (last one wins).
fn value_of(text: &str, name: &str, environment: &HashMap<String, String>) -> Option<String> {
    let assignments = parse_assignments(text, environment)
        .unwrap_or_else(|errors| panic!("{text:?} failed to parse: {errors:?}"));
    assignments
        .into_iter()
        .rev()
        .find(|a| a.name == name)
        .map(|a| a.value)
}

fn first_error(text: &str) -> ShellError {
    match parse_assignments(text, &HashMap::new()) {
        Ok(assignments) => panic!("{text:?} parsed as {assignments:?}"),
        Err(errors) => errors[0].clone(),
    }
}

#[test]
fn values_are_read_as_bash_reads_them() {
    let environment = env(&[
        ("HOME", "/root"),
        ("FROM_ENV", "env value"),
        ("EMPTY_ENV", ""),
    ]);
    // (config text, key, expected value); expectations checked against bash 5.2.
    let cases: &[(&str, &str, &str)] = &[
        ("A=plain", "A", "plain"),
        ("A=", "A", ""),
        ("export A=exported", "A", "exported"),
        ("export  A=1 B=2", "B", "2"),
        ("A=1 B=2", "A", "1"),
        ("A=1; B=2", "B", "2"),
        ("A=1;B=$A", "B", "1"),
        ("  A=indented", "A", "indented"),
        (
            "A='single $quoted \"text\"'",
            "A",
            "single $quoted \"text\"",
        ),
        ("A=\"double $FROM_ENV\"", "A", "double env value"),
        (r#"A="esc \" \\ \$ \` \n""#, "A", r#"esc " \ $ ` \n"#),
        (r"A=un\ quoted\$", "A", "un quoted$"),
        (r#"A=a"b"'c'd"#, "A", "abcd"),
        ("A=x#not-a-comment", "A", "x#not-a-comment"),
        ("A=#starts-with-hash", "A", "#starts-with-hash"),
        ("A=value # a comment", "A", "value"),
        ("A='value' # it's a comment", "A", "value"),
        ("# A=commented\nA=real", "A", "real"),
        ("#!/bin/env bash\nA=1", "A", "1"),
        ("A='line one\nline two'", "A", "line one\nline two"),
        ("A=\"line one\n  $FROM_ENV\"", "A", "line one\n  env value"),
        ("A=first\\\nsecond", "A", "firstsecond"),
        ("A=\"joined \\\nline\"", "A", "joined line"),
        ("A=1\nB=$A", "B", "1"),
        ("A=1\nB=${A}x", "B", "1x"),
        ("B=$A", "B", ""),
        ("B=$FROM_ENV", "B", "env value"),
        ("FROM_ENV=file\nB=$FROM_ENV", "B", "file"),
        ("B=${UNSET:-default}", "B", "default"),
        ("B=${EMPTY_ENV:-default}", "B", "default"),
        ("B=${EMPTY_ENV-default}", "B", ""),
        ("B=${UNSET-default}", "B", "default"),
        ("B=${FROM_ENV:-default}", "B", "env value"),
        ("B=${FROM_ENV:+alternate}", "B", "alternate"),
        ("B=${EMPTY_ENV:+alternate}", "B", ""),
        ("B=${EMPTY_ENV+alternate}", "B", "alternate"),
        ("B=${UNSET+alternate}", "B", ""),
        ("B=${UNSET:-two words}", "B", "two words"),
        ("B=${UNSET:-$FROM_ENV}", "B", "env value"),
        ("B=${UNSET:-${ALSO_UNSET:-nested}}", "B", "nested"),
        ("B=\"${UNSET:-\"quoted default\"}\"", "B", "quoted default"),
        ("B=\"${UNSET:-'kept quotes'}\"", "B", "'kept quotes'"),
        ("B=${UNSET:-'single'}", "B", "single"),
        ("B=\"$FROM_ENV/${FROM_ENV}\"", "B", "env value/env value"),
        ("B=$", "B", "$"),
        ("B=\"cost: $ 5\"", "B", "cost: $ 5"),
        ("B=$'tab\\there\\nnew \\'q\\''", "B", "tab\there\nnew 'q'"),
        ("B=$\"translated\"", "B", "translated"),
        ("B=~/ci", "B", "/root/ci"),
        ("B=a~b", "B", "a~b"),
        ("B=*.sh", "B", "*.sh"),
        ("A=1\nA+=2", "A", "12"),
        ("A=one\nA=two", "A", "two"),
        ("A=crlf\r\nB=x", "A", "crlf"),
        ("export A\nA=1", "A", "1"),
        (
            "DRIVER_CONFIG_1='{\"name\": \"demo\", \"password\": \"pw\"}'",
            "DRIVER_CONFIG_1",
            "{\"name\": \"demo\", \"password\": \"pw\"}",
        ),
        (
            "POST_RUN_1='echo \"post-run: job result $1\"'",
            "POST_RUN_1",
            "echo \"post-run: job result $1\"",
        ),
    ];
    for (text, key, expected) in cases {
        assert_eq!(
            value_of(text, key, &environment).as_deref(),
            Some(*expected),
            "config text {text:?}"
        );
    }
}

#[test]
fn assignments_keep_file_order_and_line_numbers() {
    let text = "# comment\nA=1\n\nB='two\nlines'\nC=3 D=4\n";
    let assignments = parse_assignments(text, &HashMap::new()).expect("parses");
    let found: Vec<(&str, usize)> = assignments
        .iter()
        .map(|a| (a.name.as_str(), a.line))
        .collect();
    assert_eq!(found, [("A", 2), ("B", 4), ("C", 6), ("D", 6)]);
}

#[test]
fn non_assignments_are_errors_naming_their_line() {
    use ShellErrorKind::*;
    // (config text, line of the error, expected kind)
    let cases: Vec<(&str, usize, ShellErrorKind)> = vec![
        (
            "A=1\necho hello",
            2,
            NotAnAssignment {
                word: "echo".into(),
            },
        ),
        (
            "source other.sh",
            1,
            NotAnAssignment {
                word: "source".into(),
            },
        ),
        (
            "export",
            1,
            NotAnAssignment {
                word: "export".into(),
            },
        ),
        ("export -n A", 1, NotAnAssignment { word: "-n".into() }),
        (
            "GH-TOKEN=abc",
            1,
            InvalidName {
                name: "GH-TOKEN".into(),
            },
        ),
        ("1A=abc", 1, InvalidName { name: "1A".into() }),
        (
            "GH_TOKEN = abc",
            1,
            SpaceBeforeEquals {
                name: "GH_TOKEN".into(),
            },
        ),
        (
            "GH_TOKEN= abc",
            1,
            SpaceAfterEquals {
                name: "GH_TOKEN".into(),
            },
        ),
        (
            "GH_USER=John Smith",
            1,
            CommandAfterAssignment {
                name: "GH_USER".into(),
            },
        ),
        (
            "A=\"x\" cmd",
            1,
            CommandAfterAssignment { name: "A".into() },
        ),
        ("\n\nA='open\nB=1", 3, UnterminatedQuote { quote: '\'' }),
        ("A=\"open", 1, UnterminatedQuote { quote: '"' }),
        ("A=$'open", 1, UnterminatedQuote { quote: '\'' }),
        ("A=${B", 1, UnterminatedExpansion),
        ("A=${B:-x", 1, UnterminatedExpansion),
        ("A=${}", 1, BadSubstitution { text: "${}".into() }),
        ("A=${B%x}", 1, Unsupported { what: "" }),
        ("A=${#B}", 1, Unsupported { what: "" }),
        ("A=$(date)", 1, Unsupported { what: "" }),
        ("A=\"$(date)\"", 1, Unsupported { what: "" }),
        ("A=`date`", 1, Unsupported { what: "" }),
        ("A=\"`date`\"", 1, Unsupported { what: "" }),
        ("A=x | tee", 1, CommandAfterAssignment { name: "A".into() }),
        ("A=x|tee", 1, Unsupported { what: "" }),
        ("A=x>f", 1, Unsupported { what: "" }),
        ("A=x&&B=1", 1, Unsupported { what: "" }),
        ("A=(1 2)", 1, Unsupported { what: "" }),
        ("A=\"result $1\"", 1, SpecialParameter { param: '1' }),
        ("A=$$", 1, SpecialParameter { param: '$' }),
        ("A=${@}", 1, SpecialParameter { param: '@' }),
    ];
    for (text, line, expected) in cases {
        let error = first_error(text);
        assert_eq!(error.line, line, "line of the error in {text:?}: {error}");
        // Unsupported carries a description; compare the variant only.
        let same = match (&error.kind, &expected) {
            (Unsupported { .. }, Unsupported { .. }) => true,
            (actual, expected) => actual == expected,
        };
        assert!(
            same,
            "{text:?}: expected {expected:?}, got {:?}",
            error.kind
        );
    }
}

#[test]
fn every_bad_line_is_reported() {
    let text = "A=1\necho one\nB=2\nprintf two\nC='three\n";
    let errors = parse_assignments(text, &HashMap::new()).expect_err("three bad lines");
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [2, 4, 5]);
}

#[test]
fn shell_errors_never_echo_assigned_values() {
    for text in [
        "GH_TOKEN=ghp_s3cret extra",
        "GH_TOKEN= ghp_s3cret",
        "GH-TOKEN=ghp_s3cret",
        "GH_TOKEN=ghp_s3cret|x",
    ] {
        let message = first_error(text).to_string();
        assert!(!message.contains("s3cret"), "{text:?} gave {message:?}");
    }
}

#[test]
fn durations_accept_seconds_and_suffixes() {
    let cases = [
        ("90", Some(90)),
        ("90s", Some(90)),
        ("15m", Some(900)),
        ("2h", Some(7200)),
        (" 30 ", Some(30)),
        ("0", Some(0)),
        ("", None),
        ("h", None),
        ("1.5h", None),
        ("-5", None),
        ("10d", None),
        ("5 m", None),
        ("99999999999999999999h", None),
    ];
    for (text, expected) in cases {
        assert_eq!(
            values::parse_duration(text).ok(),
            expected.map(Duration::from_secs),
            "{text:?}"
        );
    }
}

#[test]
fn booleans_accept_shell_habits() {
    for (text, expected) in [
        ("1", Some(true)),
        ("yes", Some(true)),
        ("TRUE", Some(true)),
        ("0", Some(false)),
        ("no", Some(false)),
        ("False", Some(false)),
        ("2", None),
        ("on", None),
    ] {
        assert_eq!(values::parse_bool(text).ok(), expected, "{text:?}");
    }
}

#[test]
fn package_names_cannot_become_options() {
    for good in ["sg3-utils", "python3-rbd", "libfoo=1.2-3", "nvme-cli:amd64"] {
        assert!(values::check_debian_package(good).is_ok(), "{good:?}");
    }
    for bad in [
        "-oAPT::Get=x",
        "--allow-unauthenticated",
        "a;b",
        "a$b",
        "../x",
        "é",
    ] {
        assert!(values::check_debian_package(bad).is_err(), "{bad:?}");
    }
    for good in [
        "requests",
        "purestorage==1.19",
        "foo[bar]>=1.2,<2",
        "krest~=1.3",
    ] {
        assert!(values::check_pip_requirement(good).is_ok(), "{good:?}");
    }
    for bad in [
        "-e",
        "--index-url=http://evil",
        "git+https://x/y",
        "a b",
        "x;y",
    ] {
        assert!(values::check_pip_requirement(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn checkout_paths_stay_inside_the_checkout() {
    for good in ["Dockerfile", "./Dockerfile", "images/Dockerfile.ci"] {
        assert!(values::check_checkout_path(good).is_ok(), "{good:?}");
    }
    for bad in ["", "/etc/passwd", "../Dockerfile", "a/../../b", "-f", "a b"] {
        assert!(values::check_checkout_path(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn urls_must_be_http_and_lose_trailing_slash() {
    assert_eq!(
        values::parse_http_url("https://ghe.example.com/api/v3/"),
        Ok("https://ghe.example.com/api/v3".to_string())
    );
    assert_eq!(
        values::parse_http_url("http://127.0.0.1:8080"),
        Ok("http://127.0.0.1:8080".to_string())
    );
    for bad in ["ftp://x", "api.github.com", "file:///etc", "https://"] {
        assert!(values::parse_http_url(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn branch_names_follow_git_rules() {
    for good in ["gh-pages", "ci/logs", "logs_2024"] {
        assert!(values::check_branch_name(good).is_ok(), "{good:?}");
    }
    for bad in [
        "", "-x", "a..b", "a b", "x.lock", "/x", "x/", ".hidden", "a:b", "a~1",
    ] {
        assert!(values::check_branch_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn github_logins_are_checked() {
    for good in ["akrog", "ember-ci-bot", "dependabot[bot]", "A1"] {
        assert!(values::check_github_login(good).is_ok(), "{good:?}");
    }
    for bad in ["", "-x", "a b", "a_b", "x;y", &"a".repeat(40)] {
        assert!(values::check_github_login(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn lists_split_on_spaces_and_commas() {
    assert_eq!(
        values::split_list(" alice, bob\ncarol,,dave "),
        ["alice", "bob", "carol", "dave"]
    );
    assert!(values::split_list(" , ").is_empty());
}

#[test]
fn edit_distance_counts_single_character_edits() {
    assert_eq!(values::edit_distance("GH_TOKNE", "GH_TOKEN"), 2);
    assert_eq!(values::edit_distance("NUM_WORKER", "NUM_WORKERS"), 1);
    assert_eq!(values::edit_distance("", "ABC"), 3);
    assert_eq!(values::edit_distance("SAME", "SAME"), 0);
}

#[test]
fn credential_keys_match_by_fragment_ignoring_case() {
    for key in [
        "password",
        "san_password",
        "SAN_PASSWORD",
        "chap_secret",
        "api_token",
        "rbd_keyring_conf",
        "private_key",
        "credentials",
        "auth_header",
        "passwd",
    ] {
        assert!(is_credential_key(key), "{key:?}");
    }
    for key in [
        "name",
        "driver",
        "san_ip",
        "volume_group",
        "rbd_user",
        "target_helper",
    ] {
        assert!(!is_credential_key(key), "{key:?}");
    }
}

#[test]
fn driver_config_masking_is_recursive() {
    let text = r#"{"name":"x","san_password":"p1","nested":{"api_token":7,"list":[{"secret":"s2"}]},"auth":{"user":"u","pass":"p3"},"use_chap_auth":true}"#;
    assert_eq!(
        mask_driver_config_json(text),
        r#"{"name":"x","san_password":"***","nested":{"api_token":"***","list":[{"secret":"***"}]},"auth":"***","use_chap_auth":"***"}"#
    );
    assert_eq!(mask_driver_config_json("{not json"), "***");
    assert_eq!(credential_values(text), ["7", "p1", "p3", "s2", "u"]);
    assert!(credential_values("not json").is_empty());
}
