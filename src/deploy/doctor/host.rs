//! The host's side: Podman and its runtime, cgroups, open-file limit,
//! /dev/fuse, the kernel modules storage backends need, free disk.

use std::path::Path;
use std::process::Command;

use super::Finding;
use crate::config::Config;
use crate::deploy::quadlet::PodmanVersion;

/// Kernel modules, the backends that need them, and the module to load.
const MODULES: [(&str, &str); 3] = [
    ("iscsi_tcp", "iSCSI backends"),
    ("dm_multipath", "multipath backends"),
    ("dm_mod", "LVM backends"),
];
/// Inner Podman, git and the plugin open many files at once.
const MIN_OPEN_FILES: u64 = 4096;
/// Below this no image build fits.
const MIN_FREE_GB: u64 = 2;
const GB: u64 = 1_000_000_000;

pub(super) fn checks() -> Vec<Finding> {
    let mut findings = podman();
    findings.push(open_files());
    findings.push(fuse());
    findings.extend(
        MODULES
            .iter()
            .map(|(module, users)| kernel_module(module, users)),
    );
    findings
}

fn podman() -> Vec<Finding> {
    let Some(version) = command_output("podman", &["--version"]) else {
        return vec![Finding::block(
            "podman",
            "podman is not installed",
            "install podman and runc (apt-get install podman runc)",
        )];
    };
    let mut findings = vec![match PodmanVersion::parse(&version) {
        Some(v) if v.major >= 4 => Finding::ok("podman", version.trim()),
        _ => Finding::block(
            "podman",
            format!("{} is older than 4.0", version.trim()),
            "install Podman 4 or newer (Debian 12 or later)",
        ),
    }];
    let runtime = command_output("podman", &["info", "--format", "{{.Host.OCIRuntime.Name}}"])
        .map(|name| name.trim().to_string())
        .unwrap_or_default();
    findings.push(if runtime == "runc" {
        Finding::ok("runtime", "runc")
    } else {
        Finding::warn(
            "runtime",
            format!("Podman's OCI runtime is {runtime:?}, sandboxes are tested with runc"),
            "install runc and set runtime = \"runc\" under [engine] in /etc/containers/containers.conf",
        )
    });
    findings.push(cgroups(&runtime));
    findings
}

fn cgroups(runtime: &str) -> Finding {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        Finding::ok("cgroups", "v2 (unified)")
    } else if runtime == "runc" {
        Finding::ok("cgroups", "v1 or hybrid, with runc")
    } else {
        Finding::warn(
            "cgroups",
            "v1 or hybrid: crun fails here",
            "use runc (see runtime), or boot with systemd.unified_cgroup_hierarchy=1",
        )
    }
}

fn open_files() -> Finding {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    let soft = limit.rlim_cur;
    if read && soft >= MIN_OPEN_FILES {
        Finding::ok("ulimit nofile", soft.to_string())
    } else {
        Finding::warn(
            "ulimit nofile",
            format!("open-file limit {soft}, below {MIN_OPEN_FILES}"),
            "raise it (LimitNOFILE=65536 for the service, or ulimit -n 65536)",
        )
    }
}

fn fuse() -> Finding {
    if Path::new("/dev/fuse").exists() {
        Finding::ok("/dev/fuse", "present")
    } else {
        Finding::warn(
            "/dev/fuse",
            "missing: the sandbox's Podman falls back to slower storage",
            "modprobe fuse (and add fuse to /etc/modules)",
        )
    }
}

fn kernel_module(module: &str, users: &str) -> Finding {
    if Path::new("/sys/module").join(module).exists() {
        Finding::ok("kernel module", format!("{module} loaded"))
    } else {
        Finding::warn(
            "kernel module",
            format!("{module} not loaded: needed by {users}"),
            format!("modprobe {module} (and add it to /etc/modules-load.d/ember-ci.conf)"),
        )
    }
}

/// Free space where the state and the build cache live, against the
/// cache's budget.
pub(super) fn disk(config: &Config) -> Vec<Finding> {
    let budget = config.executor.image_store_max_gb;
    let state = &config.service.state_dir;
    let Some(free) = free_bytes(state) else {
        return vec![Finding::warn(
            "disk",
            format!("cannot read free space of {}", state.display()),
            "check that CI_DIR is on a mounted file system",
        )];
    };
    let free_gb = free / GB;
    let detail = format!(
        "{free_gb} GB free at {}, IMAGE_STORE_MAX_GB={budget}",
        state.display()
    );
    vec![if free_gb < MIN_FREE_GB {
        Finding::block("disk", detail, "free disk space where CI_DIR lives")
    } else if free_gb < budget {
        Finding::warn(
            "disk",
            detail,
            format!(
                "free space or lower IMAGE_STORE_MAX_GB to {}",
                free_gb.saturating_sub(1).max(1)
            ),
        )
    } else {
        Finding::ok("disk", detail)
    }]
}

/// Free bytes on the file system holding `path` or its nearest existing parent.
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let existing = path.ancestors().find(|p| p.exists())?;
    let c_path = std::ffi::CString::new(existing.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct we own from a valid C string.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Each PODMAN_HOSTS entry: reachable through ssh, its Podman version and
/// runtime, free disk where its images live.
pub(super) async fn podman_hosts(config: &Config) -> Vec<Finding> {
    let probed =
        crate::executor::probe_hosts(&config.executor.hosts, &config.service.state_dir).await;
    probed
        .into_iter()
        .map(|(name, facts)| match facts {
            Err(problem) => Finding::block(
                "host",
                format!("{name}: unreachable: {problem}"),
                format!(
                    "check that `ssh` with the entry's user, address and identity reaches {name} \
                     without a prompt and that its Podman socket is listening \
                     (systemctl enable --now podman.socket)"
                ),
            ),
            Ok(facts) => {
                let free_gb = facts.disk_free_bytes.map(|b| b / GB);
                let detail = format!(
                    "{name}: podman {}, runtime {}, {} free at {}",
                    facts.version,
                    facts.runtime,
                    free_gb.map_or("unknown".into(), |gb| format!("{gb} GB")),
                    facts.graph_root
                );
                if free_gb.is_some_and(|gb| gb < MIN_FREE_GB) {
                    Finding::block("host", detail, format!("free disk space on {name}"))
                } else {
                    Finding::ok("host", detail)
                }
            }
        })
        .collect()
}
