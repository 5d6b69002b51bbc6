//! `ember-ci doctor` against the fake GitHub: a good config passes (on a
//! host set up by scripts/setup-host.sh), a token without the scopes, a
//! repository it cannot see, a logs repository it cannot reach and a
//! config that does not load each block, naming the fix.

use std::path::Path;
use std::process::Output;

use ember_ci_test_kit::ci_env::ember_ci_bin;
use ember_ci_test_kit::fake_github::FakeGitHub;
use ember_ci_test_kit::fake_smee::FakeSmee;

fn write_config(dir: &Path, github: &FakeGitHub, extra: &str) -> std::path::PathBuf {
    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("creating the config dir");
    std::fs::write(
        config.join("config"),
        format!(
            "GH_TOKEN={}\nGH_API_URL={}\nGH_EMBER_SECRET=doctor-secret\n\
             CI_DIR={}\nIMAGE_STORE_MAX_GB=1\nDRIVER_NAME_1=demo\n\
             DRIVER_CONFIG_1='{{\"name\": \"demo\", \"driver\": \"DemoDriver\"}}'\n{extra}\n",
            github.token(),
            github.url(),
            dir.join("state").display(),
        ),
    )
    .expect("writing the config");
    config
}

async fn doctor(config: &Path) -> (Option<i32>, String) {
    let output: Output = tokio::process::Command::new(ember_ci_bin())
        .arg("doctor")
        .arg(config)
        .output()
        .await
        .expect("running ember-ci doctor");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code(), text)
}

fn line_with<'a>(report: &'a str, start: &str) -> &'a str {
    report
        .lines()
        .find(|line| line.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?} in:\n{report}"))
}

#[tokio::test]
async fn a_good_config_on_a_set_up_host_is_ready() {
    let github = FakeGitHub::start().await;
    let smee = FakeSmee::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let extra = format!(
        "LOGS_REPO=https://github.com/{}.git\nSMEE_URL={}",
        github.repo(),
        smee.url()
    );
    let config = write_config(dir.path(), &github, &extra);
    let (code, report) = doctor(&config).await;
    assert_eq!(code, Some(0), "{report}");
    assert!(
        line_with(&report, "ok    token").contains("repo:status"),
        "{report}"
    );
    assert!(line_with(&report, "ok    GH_REPO").contains("readable"));
    assert!(line_with(&report, "ok    LOGS_REPO").contains("writable"));
    assert!(line_with(&report, "ok    clock").contains("s from GitHub"));
    assert!(line_with(&report, "ok    relay").contains("opens an event stream"));
    assert!(line_with(&report, "ok    podman").contains("podman version"));
    assert!(report.contains("\nready\n"), "{report}");
    assert_eq!(github.count_requests("GET", "/user"), 1);
}

#[tokio::test]
async fn missing_scopes_unreachable_repositories_and_a_bad_config_block_with_fixes() {
    let github = FakeGitHub::start().await;
    github.set_token_scopes("gist, read:org");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        &github,
        "GH_REPO=embercsi/not-there\nLOGS_REPO=git@github.com:acme/missing-logs.git\nNUM_WORKER=2\n\
         SMEE_URL=http://127.0.0.1:9/no-channel",
    );
    let (code, report) = doctor(&config).await;
    assert_eq!(code, Some(1), "{report}");
    let token = line_with(&report, "BLOCK token");
    assert!(token.contains("lacks repo:status, public_repo"), "{token}");
    assert!(line_with(&report, "BLOCK GH_REPO").contains("embercsi/not-there: GitHub answers 404"));
    assert!(line_with(&report, "BLOCK LOGS_REPO").contains("acme/missing-logs"));
    assert!(line_with(&report, "WARN  config").contains("did you mean NUM_WORKERS?"));
    // The channel is a secret: named, never shown.
    let relay = line_with(&report, "BLOCK relay");
    assert!(relay.contains("the smee channel"), "{relay}");
    assert!(!report.contains("no-channel"), "{report}");
    assert!(report.contains("fix: regenerate the token with repo:status and public_repo"));
    assert!(
        report.contains("not ready: fix the BLOCK lines"),
        "{report}"
    );

    let wrong_token = tempfile::tempdir().expect("temp dir");
    let config = write_config(wrong_token.path(), &github, "GH_TOKEN=ghp_revoked");
    let (code, report) = doctor(&config).await;
    assert_eq!(code, Some(1), "{report}");
    assert!(line_with(&report, "BLOCK token").contains("401 Bad credentials"));

    std::fs::write(config.join("config"), "DRIVER_NAME_1=demo\n").expect("breaking the config");
    let (code, report) = doctor(&config).await;
    assert_eq!(code, Some(1), "{report}");
    assert!(
        line_with(&report, "BLOCK config").contains("does not load"),
        "{report}"
    );
    assert!(report.contains("ember-ci check-config"), "{report}");
}

#[tokio::test]
async fn doctor_checks_each_podman_host_through_ssh() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let github = FakeGitHub::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config_dir = dir.path().join("config");
    std::fs::create_dir_all(&config_dir).expect("config dir");
    let lab = ember_ci_test_kit::second_host::SecondHost::start("lab", &config_dir);
    // A second entry for the same machine on a port where no sshd listens.
    let gone = lab
        .podman_hosts_entry(1)
        .replacen("lab=", "gone=", 1)
        .replace(":22/", ":2222/");
    let extra = format!("PODMAN_HOSTS=\"{} {gone}\"", lab.podman_hosts_entry(1));
    let config = write_config(dir.path(), &github, &extra);
    let (code, report) = doctor(&config).await;
    let lab_line = line_with(&report, "ok    host           lab: ");
    assert!(lab_line.contains("podman 4."), "{lab_line}");
    assert!(lab_line.contains("runtime runc"), "{lab_line}");
    assert!(
        lab_line.contains("GB free at /var/tmp/ember-ci-second-host"),
        "{lab_line}"
    );
    let gone_line = line_with(&report, "BLOCK host           gone: unreachable");
    assert!(gone_line.contains("ssh exited"), "{gone_line}");
    assert_eq!(code, Some(1), "{report}");
}
