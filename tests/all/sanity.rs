//! The sanity step through `ember-ci run` on real Podman, with a stand-in
//! for csi-sanity (tests/data/fake-csi-sanity: csi-sanity's flags, exit
//! codes, Ginkgo-like output and a Ginkgo v2 JUnit report) against the demo
//! plugin; statuses go to the fake GitHub. One config dir and state dir for
//! every case, so the PR image is built once and the cases stay seconds.

use ember_ci_test_kit::demo_setup::DemoSetup;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ember_ci::logs::JobRecord;
use ember_ci_test_kit::ci_env::ember_ci_bin;
use ember_ci_test_kit::fake_github::FakeGitHub;

const FAKE_SANITY: &str = "/config/fake-csi-sanity --csi.endpoint=127.0.0.1:50051";

struct SanityCase {
    setup: DemoSetup,
    base_config: String,
}

/// What one `ember-ci run` came to.
struct Ran {
    code: i32,
    output: String,
    /// The last status the fake GitHub got for the PR's head.
    state: String,
    description: String,
    logs: PathBuf,
    took: Duration,
}

impl Ran {
    fn record(&self) -> JobRecord {
        JobRecord::read(&self.logs).expect("job.json")
    }

    /// The sanity step's log file.
    fn sanity_log(&self) -> String {
        let record = self.record();
        let step = record
            .steps
            .iter()
            .find(|s| s.step == ember_ci::model::Step::Sanity)
            .expect("a sanity step");
        std::fs::read_to_string(self.logs.join(&step.file)).expect("sanity log")
    }

    fn context(&self) -> String {
        format!(
            "exit {}, {} {:?}\n{}",
            self.code,
            self.state,
            self.description,
            tail(&self.output, 6000)
        )
    }
}

fn tail(text: &str, max: usize) -> &str {
    let mut at = text.len().saturating_sub(max);
    while !text.is_char_boundary(at) {
        at += 1;
    }
    &text[at..]
}

impl SanityCase {
    async fn new() -> Self {
        let setup = DemoSetup::new("").await;
        let fake = ember_ci_test_kit::ci_env::project_dir().join("tests/data/fake-csi-sanity");
        std::fs::copy(&fake, setup.config.join("fake-csi-sanity")).expect("copy fake csi-sanity");
        let base_config =
            std::fs::read_to_string(setup.config.join("config")).expect("read config");
        Self { setup, base_config }
    }

    fn github(&self) -> &FakeGitHub {
        &self.setup.github
    }

    /// `ember-ci run --pr 129` with `keys` appended to the config.
    async fn run(&self, keys: &str) -> Ran {
        std::fs::write(
            self.setup.config.join("config"),
            format!("{}\n{keys}\n", self.base_config),
        )
        .expect("write config");
        let config = self.setup.config.clone();
        let started = Instant::now();
        let output = tokio::task::spawn_blocking(move || {
            Command::new(ember_ci_bin())
                .args(["run", "--config"])
                .arg(&config)
                .args(["--pr", "129"])
                .output()
                .expect("running ember-ci run")
        })
        .await
        .expect("run task");
        let took = started.elapsed();
        let text = format!(
            "{}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let logs = text
            .lines()
            .find_map(|l| l.strip_prefix("== logs: "))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("no logs line in:\n{}", tail(&text, 6000)));
        let status = self
            .github()
            .statuses_for(&self.setup.repo.ok_sha)
            .pop()
            .expect("a status");
        Ran {
            code: output.status.code().unwrap_or(-1),
            output: text,
            state: status.state,
            description: status.description.unwrap_or_default(),
            logs,
            took,
        }
    }
}

fn command(mode: &str) -> String {
    format!("SANITY_COMMAND_1='FAKE_SANITY_MODE={mode} {FAKE_SANITY} --csi.junitfile=$ARTIFACTS_DIR/junit.xml'")
}

fn assert_file_contains(path: &Path, expected: &str) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(
        text.contains(expected),
        "{} lacks {expected:?}",
        path.display()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sanity_results_blame_and_bounds_through_ember_ci_run() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let case = SanityCase::new().await;

    // Failing specs: failure, counts and names in the status, the report
    // kept and parsed into job.json and the index page.
    let ran = case.run(&command("report")).await;
    let context = ran.context();
    assert_eq!((ran.code, ran.state.as_str()), (1, "failure"), "{context}");
    assert!(
        ran.description.starts_with(
            "csi-sanity: 4 passed, 2 failed: CreateVolume should fail when no name is provided; "
        ),
        "{context}"
    );
    assert!(ran.description.chars().count() <= 140, "{context}");
    let results = ran.record().sanity.expect("results in job.json");
    assert_eq!((results.passed, results.failed, results.skipped), (4, 2, 1));
    assert_eq!(
        results.failures[1].message, "rpc error: code = Unknown",
        "{context}"
    );
    assert_file_contains(&ran.logs.join("artifact-junit.xml"), "<testsuites");
    assert_file_contains(
        &ran.logs.join("index.html"),
        "NodePublishVolume should fail when no volume id is provided",
    );
    eprintln!(
        "MEASURE report run: {:.1}s; {}",
        ran.took.as_secs_f32(),
        ran.sanity_log()
            .lines()
            .find(|l| l.contains("verdict"))
            .unwrap_or("no verdict line")
    );

    // A command that cannot run is our error, with the reason.
    let ran = case
        .run("SANITY_COMMAND_1='/config/no-such-csi-sanity --csi.endpoint=127.0.0.1:50051'")
        .await;
    let context = ran.context();
    assert_eq!((ran.code, ran.state.as_str()), (2, "error"), "{context}");
    assert!(
        ran.description
            .contains("sanity command not found (exit 127)"),
        "{context}"
    );

    // The old worker's flags, which csi-sanity v5 rejects: error, not failure.
    let ran = case
        .run(&format!(
            "SANITY_COMMAND_1='{FAKE_SANITY} --test.v --test.timeout 0 --ginkgo.progress'"
        ))
        .await;
    let context = ran.context();
    assert_eq!((ran.code, ran.state.as_str()), (2, "error"), "{context}");
    assert!(
        ran.description.contains("could not run (exit 2")
            && ran
                .description
                .contains("flag provided but not defined: -test.v"),
        "{context}"
    );

    // A hung spec: SIGINT at SANITY_TIMEOUT, the spec named; the progress
    // dot printed without a newline reached the log before the interrupt.
    let ran = case
        .run(&format!("{}\nSANITY_TIMEOUT_1=3", command("hang")))
        .await;
    let context = ran.context();
    assert_eq!((ran.code, ran.state.as_str()), (1, "failure"), "{context}");
    assert!(
        ran.description
            .contains("csi-sanity hung in: Node Service NodeStageVolume should stage the volume")
            && ran.description.contains("SANITY_TIMEOUT 3s"),
        "{context}"
    );
    let log = ran.sanity_log();
    let stamp_of = |needle: &str| -> String {
        log.lines()
            .find(|l| l.ends_with(needle) || l.contains(needle))
            .and_then(|l| l.split(" | ").next())
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{log}"))
            .to_string()
    };
    assert!(
        stamp_of("| •") < stamp_of("[INTERRUPTED]"),
        "the dot waited for the newline:\n{log}"
    );

    // A plugin that dies during the suite: failure naming it.
    let ran = case.run(&command("crash")).await;
    let context = ran.context();
    assert_eq!((ran.code, ran.state.as_str()), (1, "failure"), "{context}");
    assert!(
        ran.description
            .starts_with("plugin died during csi-sanity (exit 137)"),
        "{context}"
    );

    // Over the log cap: the middle is cut, the head and the summary kept.
    let ran = case.run(&command("flood")).await;
    let context = ran.context();
    assert_eq!((ran.code, ran.state.as_str()), (0, "success"), "{context}");
    assert_eq!(ran.description, "csi-sanity: 2 passed", "{context}");
    let log = ran.sanity_log();
    assert!(log.contains("Running Suite"), "head lost");
    assert!(log.contains("bytes cut from the middle"), "no cut marker");
    assert!(log.contains("SUCCESS! -- 2 Passed"), "summary lost");
    let size: u64 = std::fs::read_dir(&ran.logs)
        .expect("logs dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    eprintln!(
        "MEASURE flood run: {:.1}s, sanity log {} bytes, job folder {size} bytes",
        ran.took.as_secs_f32(),
        log.len()
    );
    assert!(log.len() as u64 <= ember_ci::logs::MAX_STEP_LOG_BYTES + 4096);
}
