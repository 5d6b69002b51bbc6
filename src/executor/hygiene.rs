//! Host hygiene: a privileged sandbox shares the host's kernel, so what a
//! job's scripts attach (loop devices, device-mapper devices, LVM volume
//! groups, iSCSI sessions, LIO targets, block-device mounts) outlives the
//! sandbox. The old CI threw its VM away; we record that kernel-wide state
//! before and after each job and remove what the job added, newest layer
//! first (unmount, deactivate, log out, detach).
//!
//! State is read from /sys and /proc; only removal runs tools (umount,
//! vgchange, dmsetup, iscsiadm, losetup). What cannot be removed is
//! returned so the executor can mark the host unhealthy rather than let
//! the next PR fail on it. Must not touch anything present before the job.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use tokio::process::Command;

/// Mount points of Podman's own (per-container) mounts: not a job's doing.
const IGNORED_MOUNT_PREFIXES: [&str; 3] =
    ["/var/lib/containers/", "/run/containers/", "/run/netns/"];

/// One kernel object a job can leave behind, in removal order (mounts
/// first, loop devices last: each may hold the next one busy).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum HostItem {
    /// Mount point, with the block device mounted there.
    Mount { target: String, source: String },
    /// A volume group (needs `vgs`; listed when LVM is installed).
    VolumeGroup(String),
    /// A device-mapper device by name (LVM volumes, multipath maps).
    DeviceMapper(String),
    /// An iSCSI session: its sysfs number and target name.
    IscsiSession { id: String, target: String },
    /// An LIO iSCSI target (configfs); reported, never removed here.
    LioTarget(String),
    /// /dev/loopN with its backing file.
    Loop { device: String, backing: String },
}

impl fmt::Display for HostItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostItem::Mount { target, source } => write!(f, "mount {source} on {target}"),
            HostItem::VolumeGroup(name) => write!(f, "LVM volume group {name}"),
            HostItem::DeviceMapper(name) => write!(f, "device-mapper device {name}"),
            HostItem::IscsiSession { id, target } => write!(f, "iSCSI session {id} to {target}"),
            HostItem::LioTarget(name) => write!(f, "LIO target {name}"),
            HostItem::Loop { device, backing } => write!(f, "loop device {device} ({backing})"),
        }
    }
}

/// The kernel-wide state at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostState(BTreeSet<HostItem>);

impl HostState {
    /// Reads the state of this host.
    pub async fn read() -> Self {
        let mut items = BTreeSet::new();
        items.extend(loop_devices(Path::new("/sys/block")));
        items.extend(device_mapper(Path::new("/sys/block")));
        items.extend(iscsi_sessions(Path::new("/sys/class/iscsi_session")));
        items.extend(lio_targets(Path::new("/sys/kernel/config/target/iscsi")));
        if let Ok(mountinfo) = tokio::fs::read_to_string("/proc/self/mountinfo").await {
            items.extend(block_mounts(&mountinfo));
        }
        items.extend(volume_groups().await);
        Self(items)
    }

    /// What `self` has that `before` had not, in removal order.
    pub fn added_since(&self, before: &HostState) -> Vec<HostItem> {
        self.0.difference(&before.0).cloned().collect()
    }
}

/// The outcome of one job's hygiene step.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HygieneReport {
    pub removed: Vec<HostItem>,
    /// Left behind, with why it could not be removed.
    pub left: Vec<(HostItem, String)>,
}

impl HygieneReport {
    /// The "host hygiene" section of the job's log.
    pub fn render(&self) -> String {
        let mut out = String::from("== host hygiene ==\n");
        if self.removed.is_empty() && self.left.is_empty() {
            out.push_str("the job left nothing on the host\n");
        }
        for item in &self.removed {
            out.push_str(&format!("removed {item} (left by the job)\n"));
        }
        for (item, why) in &self.left {
            out.push_str(&format!("CANNOT REMOVE {item}: {why}\n"));
        }
        out
    }
}

/// Removes `items` (from [`HostState::added_since`]), in order. Removing
/// one can take others with it (a deactivated volume group its volumes'
/// dm devices), so each is looked up again first.
pub async fn remove(items: Vec<HostItem>) -> HygieneReport {
    let mut report = HygieneReport::default();
    for item in items {
        if !HostState::read().await.0.contains(&item) {
            report.removed.push(item);
            continue;
        }
        match remove_one(&item).await {
            Ok(()) => report.removed.push(item),
            Err(why) => report.left.push((item, why)),
        }
    }
    report
}

async fn remove_one(item: &HostItem) -> Result<(), String> {
    match item {
        HostItem::Mount { target, .. } => run("umount", &["--lazy", target]).await,
        HostItem::VolumeGroup(name) => run("vgchange", &["--activate", "n", name]).await,
        HostItem::DeviceMapper(name) => run("dmsetup", &["remove", "--force", name]).await,
        HostItem::IscsiSession { id, .. } => {
            run("iscsiadm", &["--mode", "session", "-r", id, "--logout"]).await
        }
        HostItem::LioTarget(_) => Err("LIO targets are not removed automatically".to_string()),
        HostItem::Loop { device, .. } => run("losetup", &["--detach", device]).await,
    }
}

async fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(format!(
        "{program} {} failed: {}",
        args.join(" "),
        stderr.trim()
    ))
}

/// Attached loop devices: /sys/block/loopN/loop/backing_file exists.
fn loop_devices(sys_block: &Path) -> Vec<HostItem> {
    entries(sys_block, "loop")
        .into_iter()
        .filter_map(|name| {
            let backing = read_trimmed(&sys_block.join(&name).join("loop/backing_file"))?;
            Some(HostItem::Loop {
                device: format!("/dev/{name}"),
                backing,
            })
        })
        .collect()
}

fn device_mapper(sys_block: &Path) -> Vec<HostItem> {
    entries(sys_block, "dm-")
        .into_iter()
        .filter_map(|name| read_trimmed(&sys_block.join(name).join("dm/name")))
        .map(HostItem::DeviceMapper)
        .collect()
}

fn iscsi_sessions(class_dir: &Path) -> Vec<HostItem> {
    entries(class_dir, "session")
        .into_iter()
        .filter_map(|name| {
            let target = read_trimmed(&class_dir.join(&name).join("targetname"))?;
            Some(HostItem::IscsiSession {
                id: name.trim_start_matches("session").to_string(),
                target,
            })
        })
        .collect()
}

fn lio_targets(configfs_dir: &Path) -> Vec<HostItem> {
    entries(configfs_dir, "iqn.")
        .into_iter()
        .map(HostItem::LioTarget)
        .collect()
}

/// Mounts of block devices (source under /dev/), Podman's own excepted.
fn block_mounts(mountinfo: &str) -> Vec<HostItem> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (fields, rest) = line.split_once(" - ")?;
            let target = fields.split(' ').nth(4)?;
            let source = rest.split(' ').nth(1)?;
            let is_podmans = IGNORED_MOUNT_PREFIXES
                .iter()
                .any(|prefix| target.starts_with(prefix));
            (source.starts_with("/dev/") && !is_podmans).then(|| HostItem::Mount {
                target: unescape_mount_path(target),
                source: source.to_string(),
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape_mount_path(path: &str) -> String {
    path.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Volume groups, when LVM is installed on this host (else none are seen;
/// their loop or dm devices still are).
async fn volume_groups() -> Vec<HostItem> {
    let Ok(output) = Command::new("vgs")
        .args(["--noheadings", "-o", "vg_name"])
        .output()
        .await
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| HostItem::VolumeGroup(name.to_string()))
        .collect()
}

fn entries(dir: &Path, prefix: &str) -> Vec<String> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    read.flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.starts_with(prefix))
        .collect()
}

fn read_trimmed(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_mounts_skip_podmans_own_and_unescape_paths() {
        let mountinfo = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
90 22 0:50 / /var/lib/containers/storage/overlay/x/merged rw - overlay overlay rw
91 22 7:0 / /mnt/ember\\040vol rw - ext4 /dev/loop0 rw
92 22 7:1 / /var/lib/containers/storage/x rw - ext4 /dev/loop1 rw
";
        assert_eq!(
            block_mounts(mountinfo),
            [
                HostItem::Mount {
                    target: "/".into(),
                    source: "/dev/vda1".into()
                },
                HostItem::Mount {
                    target: "/mnt/ember vol".into(),
                    source: "/dev/loop0".into()
                },
            ]
        );
    }

    #[test]
    fn added_items_come_out_mounts_first_loops_last() {
        let before = HostState(BTreeSet::from([HostItem::Loop {
            device: "/dev/loop0".into(),
            backing: "/old".into(),
        }]));
        let mut after = before.clone();
        after.0.insert(HostItem::Loop {
            device: "/dev/loop1".into(),
            backing: "/job/scratch/lvm.img".into(),
        });
        after.0.insert(HostItem::VolumeGroup("ember-vg".into()));
        after.0.insert(HostItem::Mount {
            target: "/mnt/x".into(),
            source: "/dev/mapper/ember--vg-vol".into(),
        });
        let added = after.added_since(&before);
        assert!(matches!(added[0], HostItem::Mount { .. }));
        assert_eq!(added[1], HostItem::VolumeGroup("ember-vg".into()));
        assert!(matches!(&added[2], HostItem::Loop { device, .. } if device == "/dev/loop1"));
        assert_eq!(added.len(), 3);
    }

    #[test]
    fn sysfs_loop_devices_need_a_backing_file() {
        let sys = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(sys.path().join("loop0/loop")).expect("dirs");
        std::fs::write(sys.path().join("loop0/loop/backing_file"), "/tmp/a.img\n").expect("w");
        std::fs::create_dir_all(sys.path().join("loop1")).expect("dirs");
        assert_eq!(
            loop_devices(sys.path()),
            [HostItem::Loop {
                device: "/dev/loop0".into(),
                backing: "/tmp/a.img".into()
            }]
        );
    }
}
