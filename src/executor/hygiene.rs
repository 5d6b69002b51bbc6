//! Host hygiene: a privileged sandbox shares the host's kernel, so what a
//! job's scripts attach (loop devices, device-mapper devices, LVM volume
//! groups, iSCSI sessions, LIO targets, block-device mounts) outlives the
//! sandbox. The old CI threw its VM away; we record that kernel-wide state
//! before and after each job and remove what the job added, newest layer
//! first (unmount, deactivate, log out, detach).
//!
//! State is read and removed through a [`HostView`]: this process for the
//! local host, an exec in the job's privileged sandbox for a remote one
//! (it shares that host's kernel, so its /sys is the host's). One shell
//! script reads /sys and /proc and one tool call removes each item, the
//! same on either view. What cannot be removed is returned so the
//! executor can mark the host unhealthy rather than let the next PR fail
//! on it. Must not touch anything present before the job.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use tokio::process::Command;

use super::podman::PodmanClient;
use super::sandbox_argv::InnerCommand;

/// Mount points of Podman's own (per-container) mounts: not a job's doing.
const IGNORED_MOUNT_PREFIXES: [&str; 3] =
    ["/var/lib/containers/", "/run/containers/", "/run/netns/"];

/// Longest one snapshot or removal may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Prints the kernel state, one tab-separated record a line (see [`parse`]).
const SNAPSHOT_SCRIPT: &str = r#"
for d in /sys/block/loop*; do
  [ -r "$d/loop/backing_file" ] && printf 'loop\t/dev/%s\t%s\n' "${d##*/}" "$(cat "$d/loop/backing_file")"
done
for d in /sys/block/dm-*; do
  [ -r "$d/dm/name" ] && printf 'dm\t%s\t%s\n' "$(cat "$d/dm/name")" "$(cat "$d/dm/uuid" 2>/dev/null)"
done
for d in /sys/class/iscsi_session/session*; do
  [ -r "$d/targetname" ] && printf 'iscsi\t%s\t%s\n' "${d##*/session}" "$(cat "$d/targetname")"
done
for d in /sys/kernel/config/target/iscsi/iqn.*; do
  [ -e "$d" ] && printf 'lio\t%s\n' "${d##*/}"
done
if command -v vgs >/dev/null 2>&1; then
  vgs --noheadings -o vg_name 2>/dev/null | while read -r vg; do printf 'vg\t%s\n' "$vg"; done
fi
sed 's/^/mnt\t/' /proc/self/mountinfo
"#;

/// One kernel object a job can leave behind, in removal order (mounts
/// first, loop devices last: each may hold the next one busy).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum HostItem {
    /// Mount point, with the block device mounted there.
    Mount { target: String, source: String },
    /// A volume group (needs `vgs`; listed when LVM is installed).
    VolumeGroup(String),
    /// A device-mapper device by name (LVM volumes and the like).
    DeviceMapper(String),
    /// A multipath map (dm uuid `mpath-...`), below LVM, above its paths.
    Multipath(String),
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
            HostItem::Multipath(name) => write!(f, "multipath map {name}"),
            HostItem::IscsiSession { id, target } => write!(f, "iSCSI session {id} to {target}"),
            HostItem::LioTarget(name) => write!(f, "LIO target {name}"),
            HostItem::Loop { device, backing } => write!(f, "loop device {device} ({backing})"),
        }
    }
}

/// Where a host's kernel state is read and changed from.
pub enum HostView<'a> {
    /// This process: the local host.
    Local,
    /// An exec in a privileged container on the host (the job's sandbox).
    Container {
        podman: &'a PodmanClient,
        container: &'a str,
    },
}

impl HostView<'_> {
    /// Runs `argv`, bounded by [`COMMAND_TIMEOUT`] (a hung tool or host
    /// must not hold the job's cleanup); its output on success, else why not.
    async fn run(&self, argv: &[&str]) -> Result<String, String> {
        tokio::time::timeout(COMMAND_TIMEOUT, self.run_unbounded(argv))
            .await
            .unwrap_or_else(|_elapsed| {
                Err(format!(
                    "{} timed out after {} s",
                    argv.join(" "),
                    COMMAND_TIMEOUT.as_secs()
                ))
            })
    }

    async fn run_unbounded(&self, argv: &[&str]) -> Result<String, String> {
        let program = argv.first().copied().unwrap_or_default();
        let (ok, output) = match self {
            HostView::Local => {
                let output = Command::new(program)
                    .args(&argv[1..])
                    .kill_on_drop(true)
                    .output()
                    .await
                    .map_err(|e| format!("cannot run {program}: {e}"))?;
                let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&output.stderr));
                (output.status.success(), text)
            }
            HostView::Container { podman, container } => {
                let command = InnerCommand {
                    argv: argv.iter().map(ToString::to_string).collect(),
                    env: Vec::new(),
                    workdir: None,
                };
                let (code, text) = podman
                    .exec_captured(container, &command)
                    .await
                    .map_err(|e| format!("cannot run {program} in {container}: {e}"))?;
                (code == 0, text)
            }
        };
        if ok {
            Ok(output)
        } else {
            Err(format!("{} failed: {}", argv.join(" "), output.trim()))
        }
    }
}

/// The kernel-wide state at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostState(BTreeSet<HostItem>);

impl HostState {
    /// Reads the state as `view` sees it.
    pub async fn read(view: &HostView<'_>) -> Result<Self, String> {
        let output = view.run(&["sh", "-c", SNAPSHOT_SCRIPT]).await?;
        Ok(Self(parse(&output)))
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
pub async fn remove(view: &HostView<'_>, items: Vec<HostItem>) -> HygieneReport {
    let mut report = HygieneReport::default();
    for item in items {
        match HostState::read(view).await {
            Ok(now) if !now.0.contains(&item) => {
                report.removed.push(item);
                continue;
            }
            Ok(_) => {}
            Err(why) => {
                report.left.push((item, why));
                continue;
            }
        }
        match remove_one(view, &item).await {
            Ok(()) => report.removed.push(item),
            // Gone meanwhile (a device detached by its own user) is gone.
            Err(_)
                if HostState::read(view)
                    .await
                    .is_ok_and(|now| !now.0.contains(&item)) =>
            {
                report.removed.push(item)
            }
            Err(why) => report.left.push((item, why)),
        }
    }
    report
}

async fn remove_one(view: &HostView<'_>, item: &HostItem) -> Result<(), String> {
    let argv: &[&str] = match item {
        HostItem::Mount { target, .. } => &["umount", "--lazy", target],
        HostItem::VolumeGroup(name) => &["vgchange", "--activate", "n", name],
        HostItem::DeviceMapper(name) => &["dmsetup", "remove", "--force", name],
        HostItem::Multipath(name) => {
            // multipathd may be absent where the job ran it by hand.
            if view.run(&["multipath", "-f", name]).await.is_ok() {
                return Ok(());
            }
            &["dmsetup", "remove", "--force", name]
        }
        HostItem::IscsiSession { id, .. } => {
            &["iscsiadm", "--mode", "session", "-r", id, "--logout"]
        }
        HostItem::LioTarget(_) => {
            return Err("LIO targets are not removed automatically".to_string())
        }
        HostItem::Loop { device, .. } => &["losetup", "--detach", device],
    };
    view.run(argv).await.map(|_| ())
}

/// Reads [`SNAPSHOT_SCRIPT`]'s records; unknown or short lines are skipped.
fn parse(output: &str) -> BTreeSet<HostItem> {
    let mut items = BTreeSet::new();
    let mut mountinfo = String::new();
    for line in output.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let item = match fields.as_slice() {
            ["loop", device, backing] => HostItem::Loop {
                device: device.to_string(),
                backing: backing.to_string(),
            },
            ["dm", name, uuid] if uuid.starts_with("mpath-") => {
                HostItem::Multipath(name.to_string())
            }
            ["dm", name, ..] => HostItem::DeviceMapper(name.to_string()),
            ["iscsi", id, target] => HostItem::IscsiSession {
                id: id.to_string(),
                target: target.to_string(),
            },
            ["lio", name] => HostItem::LioTarget(name.to_string()),
            ["vg", name] if !name.trim().is_empty() => {
                HostItem::VolumeGroup(name.trim().to_string())
            }
            ["mnt", rest @ ..] => {
                mountinfo.push_str(&rest.join("\t"));
                mountinfo.push('\n');
                continue;
            }
            _ => continue,
        };
        items.insert(item);
    }
    items.extend(block_mounts(&mountinfo));
    items
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
    fn snapshot_records_parse_with_multipath_maps_apart() {
        let output = "loop\t/dev/loop3\t/scratch/lvm.img\n\
                      loop\t/dev/loop4\n\
                      dm\tember--vg-vol\tLVM-abc\n\
                      dm\tmpatha\tmpath-3600140512\n\
                      iscsi\t2\tiqn.2003-01.org:t\n\
                      vg\t  ember-vg\n\
                      mnt\t91 22 7:0 / /mnt/x rw - ext4 /dev/loop3 rw\n";
        let items: Vec<_> = parse(output).into_iter().collect();
        assert_eq!(
            items,
            [
                HostItem::Mount {
                    target: "/mnt/x".into(),
                    source: "/dev/loop3".into()
                },
                HostItem::VolumeGroup("ember-vg".into()),
                HostItem::DeviceMapper("ember--vg-vol".into()),
                HostItem::Multipath("mpatha".into()),
                HostItem::IscsiSession {
                    id: "2".into(),
                    target: "iqn.2003-01.org:t".into()
                },
                HostItem::Loop {
                    device: "/dev/loop3".into(),
                    backing: "/scratch/lvm.img".into()
                },
            ]
        );
    }

    #[tokio::test]
    async fn the_local_view_lists_every_attached_loop_device() {
        let state = HostState::read(&HostView::Local).await.expect("snapshot");
        let attached = std::fs::read_dir("/sys/block")
            .expect("/sys/block")
            .flatten()
            .filter(|entry| entry.path().join("loop/backing_file").exists())
            .map(|entry| format!("/dev/{}", entry.file_name().to_string_lossy()));
        for device in attached {
            assert!(
                state
                    .0
                    .iter()
                    .any(|item| matches!(item, HostItem::Loop { device: d, .. } if *d == device)),
                "{device} missing from {state:?}"
            );
        }
    }
}
