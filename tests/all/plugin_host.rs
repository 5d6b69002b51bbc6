//! The plugin's host and settings through `ember-ci run` on real Podman,
//! with a test plugin of ours (tests/data/host-check-plugin) that looks at
//! the sandbox the way Ember-CSI's `nsenter -t 1 -m -u -n -i` wrappers do:
//! iscsiadm and multipath answer in the sandbox's init namespace, the
//! initiator name is the worker slot's and the same in the next job, the
//! X_CSI_* settings are the backend's, and the csi-sanity that ran is the
//! one its CSI spec version picked (named in the versions block).
//!
//! This machine's kernel may lack iSCSI or device-mapper multipath (no
//! modules at all on some): then the daemons cannot run, and the test
//! checks that the job says so with the daemon's own words instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use ember_ci::logs::JobRecord;
use ember_ci_test_kit::ci_env::{ember_ci_bin, project_dir};
use ember_ci_test_kit::demo_setup::DemoSetup;
use ember_ci_test_kit::git_server::{csi_sanity_standin, OLD_STANDIN_VERSION, STANDIN_VERSION};

const PR: u64 = 131;

/// One `ember-ci run` of the host-check PR.
struct Ran {
    output: String,
    logs: PathBuf,
}

impl Ran {
    /// Every `host-check: key=value` the plugin printed, by key.
    fn seen(&self, key: &str) -> String {
        let prefix = format!("host-check: {key}=");
        self.all_logs()
            .lines()
            .find_map(|line| line.split_once(&prefix).map(|(_, v)| v.trim().to_string()))
            .unwrap_or_else(|| panic!("the plugin printed no {key}:\n{}", self.output))
    }

    fn all_logs(&self) -> String {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.logs)
            .expect("logs dir")
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "txt"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap_or_default())
            .collect()
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.logs.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn record(&self) -> JobRecord {
        JobRecord::read(&self.logs).expect("job.json")
    }
}

async fn run_job(config: &Path) -> Ran {
    let config = config.to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(ember_ci_bin())
            .args(["run", "--config"])
            .arg(&config)
            .args(["--pr", &PR.to_string()])
            .output()
            .expect("running ember-ci run")
    })
    .await
    .expect("run task");
    let output = format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the job failed:\n{output}");
    let logs = output
        .lines()
        .find_map(|l| l.strip_prefix("== logs: "))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no logs line in:\n{output}"));
    Ran { output, logs }
}

/// Whether this machine's kernel serves iSCSI and device-mapper multipath.
fn kernel_has_iscsi() -> bool {
    Path::new("/sys/class/iscsi_transport").exists()
}

fn kernel_has_multipath() -> bool {
    let misc = std::fs::read_to_string("/proc/misc").unwrap_or_default();
    misc.contains("device-mapper") && Path::new("/sys/module/dm_multipath").exists()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_plugin_reaches_iscsi_and_multipath_through_nsenter_with_the_slots_initiator() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let setup = DemoSetup::new("").await;
    let plugin_dir = project_dir().join("tests/data/host-check-plugin");
    let read = |name: &str| std::fs::read_to_string(plugin_dir.join(name)).expect(name);
    let (dockerfile, host_check) = (read("Dockerfile"), read("host-check"));
    setup.repo.push_pull_request(
        PR,
        &setup.repo.ok_sha,
        &[("Dockerfile", &dockerfile), ("host-check", &host_check)],
        "A plugin that looks at its host",
    );
    let base = std::fs::read_to_string(setup.config.join("config")).expect("config");
    let standin = csi_sanity_standin();

    // Spec v0.3 with its own csi-sanity build (the stand-in under an old
    // tag: no JUnit flag), the old worker's --test.v translated.
    std::fs::write(
        setup.config.join("config"),
        format!(
            "{base}\nCSI_SPEC_VERSION_1=v0.3\nCSI_SANITY_VERSION_1={OLD_STANDIN_VERSION}\n\
             CSI_SANITY_COMMIT_1={}\nSANITY_ARGS_1='--test.v'\n",
            standin.commit
        ),
    )
    .expect("write config");
    let first = run_job(&setup.config).await;
    assert_eq!(first.seen("spec-version"), "v0.3");
    assert!(first
        .seen("ember-config")
        .contains(r#""request_multipath":true"#));
    let context = first.file("00-config.txt");
    assert!(
        context.contains(&format!(
            "csi-sanity       {OLD_STANDIN_VERSION} (commit {}), for CSI spec v0.3",
            standin.commit
        )),
        "the versions block does not name the csi-sanity that ran:\n{context}"
    );
    let sanity_trace = first.all_logs();
    assert!(
        sanity_trace.contains("csi-sanity --csi.endpoint=127.0.0.1:50051 --ginkgo.v'"),
        "no translated default command for csi-sanity v0.3.5:\n{}",
        first.output
    );

    // The default spec and csi-sanity on the same slot.
    std::fs::write(setup.config.join("config"), &base).expect("write config");
    let second = run_job(&setup.config).await;
    assert_eq!(second.seen("spec-version"), "v1.1");
    assert!(second.file("00-config.txt").contains(&format!(
        "csi-sanity       {STANDIN_VERSION} (commit {}), for CSI spec v1.1",
        standin.commit
    )));

    for ran in [&first, &second] {
        // nsenter -t 1 reaches the sandbox's init, not the plugin's own.
        assert_eq!(ran.seen("pid1"), "sleep", "{}", ran.output);
    }

    // The slot's initiator name, kept in the state dir, in both jobs.
    let kept = std::fs::read_to_string(setup.state.join("iscsi/slot-0.initiatorname"))
        .expect("the slot's initiator file");
    let name = kept
        .lines()
        .find_map(|l| l.strip_prefix("InitiatorName="))
        .expect("an InitiatorName line")
        .to_string();
    assert!(name.starts_with("iqn.1993-08.org.debian:01:ember-ci-s0-"));
    assert_eq!(first.seen("initiator"), name);
    assert_eq!(second.seen("initiator"), name);
    assert_eq!(
        second.record().facts.get("iscsi initiator"),
        Some(&name),
        "job.json"
    );

    // iscsiadm answers in the sandbox's namespaces either way (it reads
    // sysfs); iscsid runs only where the kernel has iSCSI.
    let sandbox_log = second.all_logs();
    let iscsiadm_rc = second.seen("iscsiadm-rc");
    assert!(
        iscsiadm_rc.starts_with("0 ")
            || iscsiadm_rc.starts_with("21 iscsiadm=iscsiadm: No active sessions"),
        "iscsiadm -m session through nsenter: {iscsiadm_rc}"
    );
    let daemons = second.seen("daemons");
    if kernel_has_iscsi() {
        assert!(daemons.contains("iscsid"), "iscsid not running: {daemons}");
    } else {
        assert!(!daemons.contains("iscsid"), "{daemons}");
        assert!(
            sandbox_log
                .contains("iscsid: NOT running: iscsid: can not create NETLINK_ISCSI socket"),
            "no word on iscsid:\n{sandbox_log}"
        );
    }
    let multipath = second.seen("multipath-rc");
    if kernel_has_multipath() {
        assert!(multipath.starts_with("0 "), "multipath -ll: {multipath}");
        assert!(daemons.contains("multipathd"), "multipathd: {daemons}");
    } else {
        assert!(
            multipath.starts_with("1 ") && multipath.contains("device-mapper"),
            "multipath -ll without device-mapper: {multipath}"
        );
        assert!(
            sandbox_log.contains("multipathd: NOT running: "),
            "no word on multipathd:\n{sandbox_log}"
        );
        assert!(second
            .file("00-config.txt")
            .contains("multipathd       NOT running: "));
    }
    eprintln!(
        "SEEN iscsiadm: {iscsiadm_rc}\nSEEN multipath: {multipath}\nSEEN daemons: [{daemons}]\nSEEN {}",
        sandbox_log
            .lines()
            .filter(|l| l.contains("NOT running") || l.contains(": running"))
            .collect::<Vec<_>>()
            .join("\nSEEN ")
    );
}
