//! The sandbox as the old worker VM was to the plugin: iscsid and
//! multipathd running (SANDBOX_DAEMONS_n), and an iSCSI initiator name of
//! its own per worker slot, made once and kept in the state dir (arrays
//! map hosts by initiator, so it must not change between jobs, and two
//! slots must not share one). The plugin reaches both through
//! `nsenter -t 1` into the sandbox's init (it shares the sandbox's PID
//! namespace). The name is written into the sandbox through the API, so
//! a sandbox on another host (DRIVER_HOST_n) gets its own slot's name the
//! same way. A privileged sandbox shares the host's kernel: a daemon the
//! kernel cannot serve is reported, with what it said, not hidden.

use std::path::{Path, PathBuf};

use super::sandbox_argv::InnerCommand;
use crate::config::{HostDaemon, HostName};

/// Where iscsid and os-brick read the initiator name, in the sandbox.
pub const SANDBOX_INITIATOR_FILE: &str = "/etc/iscsi/initiatorname.iscsi";
/// How long a daemon must stay up to count as running, in 0.2 s polls
/// (2 s); the wait ends early once every daemon has died.
const DAEMON_SETTLE_POLLS: u32 = 10;

/// Where a slot's initiator name is kept, in this host's state dir:
/// `<CI_DIR>/iscsi/slot-<n>.initiatorname`, `<host>-slot-<n>...` for a
/// slot on another host (a host of its own to the arrays).
pub fn initiator_file(state_dir: &Path, host: &HostName, slot: usize) -> PathBuf {
    let name = if host.is_local() {
        format!("slot-{slot}.initiatorname")
    } else {
        format!("{host}-slot-{slot}.initiatorname")
    };
    state_dir.join("iscsi").join(name)
}

/// The slot's initiator name, made on first use: Debian's `iscsi-iname`
/// form (`iqn.1993-08.org.debian:01:<hex>`) with the slot in it.
pub async fn slot_initiator(
    state_dir: &Path,
    host: &HostName,
    slot: usize,
) -> std::io::Result<String> {
    let path = initiator_file(state_dir, host, slot);
    if let Ok(text) = tokio::fs::read_to_string(&path).await {
        if let Some(name) = parse_initiator(&text) {
            return Ok(name);
        }
    }
    let hex = uuid::Uuid::new_v4().simple().to_string();
    let name = format!("iqn.1993-08.org.debian:01:ember-ci-s{slot}-{}", &hex[..12]);
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    // Written aside and renamed: a crash never leaves half a name.
    let partial = path.with_extension("partial");
    let text = format!(
        "## Made by ember-ci for worker slot {slot}; kept across jobs (arrays map hosts by it).\n\
         InitiatorName={name}\n"
    );
    tokio::fs::write(&partial, text).await?;
    tokio::fs::rename(&partial, &path).await?;
    Ok(name)
}

/// Writes `name` as the sandbox's initiator name (through the API, so a
/// sandbox on another host gets it too), before iscsid reads it.
pub fn install_initiator(name: &str) -> InnerCommand {
    InnerCommand {
        argv: vec![
            "bash".into(),
            "-c".into(),
            format!(
                r#"printf 'InitiatorName=%s\n' "$1" > {SANDBOX_INITIATOR_FILE} && echo "iSCSI initiator of this worker slot: $1""#
            ),
            "install-initiator".into(),
            name.to_string(),
        ],
        env: Vec::new(),
        workdir: None,
    }
}

/// The `InitiatorName=` of an initiatorname.iscsi file.
pub fn parse_initiator(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.trim().strip_prefix("InitiatorName="))
        .map(str::trim)
        .filter(|name| name.starts_with("iqn.") || name.starts_with("eui."))
        .map(str::to_string)
}

/// Starts `daemons` in the sandbox, in the foreground of their own
/// sessions with their output in /run/ember-ci/<name>.log, and prints
/// `<name>: running` or `<name>: not running: <what it said>` for each.
pub fn start_daemons(daemons: &[HostDaemon]) -> InnerCommand {
    let script = format!(
        r#"set -u
mkdir -p /run/ember-ci
for d in "$@"; do
  log=/run/ember-ci/$d.log
  case $d in
    iscsid) modprobe -q iscsi_tcp 2>/dev/null; setsid -f iscsid -f >"$log" 2>&1 </dev/null ;;
    multipathd) modprobe -q dm_multipath 2>/dev/null; setsid -f multipathd -d -s >"$log" 2>&1 </dev/null ;;
  esac
done
# The sandbox's init does not reap: a dead daemon lingers as a zombie.
running() {{ ps -o stat= -C "$1" 2>/dev/null | grep -q '^[^Z]'; }}
for _ in $(seq {DAEMON_SETTLE_POLLS}); do
  sleep 0.2
  alive=0
  for d in "$@"; do if running "$d"; then alive=1; fi; done
  [ "$alive" = 1 ] || break
done
for d in "$@"; do
  if running "$d"; then
    echo "$d: running"
  else
    log=/run/ember-ci/$d.log
    why=$(grep -m1 -iE "can ?not|fail|error|not loaded|no such" "$log" 2>/dev/null || tail -n1 "$log" 2>/dev/null)
    echo "$d: not running: ${{why:-it exited without a word}}"
  fi
done"#
    );
    let mut argv = vec![
        "bash".to_string(),
        "-c".into(),
        script,
        "sandbox-daemons".into(),
    ];
    argv.extend(daemons.iter().map(|d| d.name().to_string()));
    InnerCommand {
        argv,
        env: Vec::new(),
        workdir: None,
    }
}

/// How one daemon came up, from [`start_daemons`]'s output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonState {
    pub daemon: HostDaemon,
    /// None when running; else what it said before it died.
    pub failure: Option<String>,
}

impl DaemonState {
    /// For the versions block and the sandbox log.
    pub fn describe(&self) -> String {
        match &self.failure {
            None => "running".to_string(),
            Some(why) => format!("NOT running: {why}; {}", kernel_hint(self.daemon)),
        }
    }
}

fn kernel_hint(daemon: HostDaemon) -> &'static str {
    match daemon {
        HostDaemon::Iscsid => {
            "iSCSI needs the host kernel's iscsi_tcp (scsi_transport_iscsi): load it on the host, \
             or leave iscsid out of SANDBOX_DAEMONS_n"
        }
        HostDaemon::Multipathd => {
            "multipath needs the host kernel's device-mapper and dm_multipath: load them on the \
             host, or leave multipathd out of SANDBOX_DAEMONS_n"
        }
    }
}

/// Each requested daemon's state; one the output does not mention failed.
pub fn parse_daemon_report(daemons: &[HostDaemon], output: &str) -> Vec<DaemonState> {
    daemons
        .iter()
        .map(|&daemon| {
            let prefix = format!("{}: ", daemon.name());
            let line = output.lines().find_map(|l| l.strip_prefix(prefix.as_str()));
            let failure = match line {
                Some("running") => None,
                Some(rest) => Some(
                    rest.strip_prefix("not running: ")
                        .unwrap_or(rest)
                        .trim()
                        .to_string(),
                ),
                None => Some("no report from the start script".to_string()),
            };
            DaemonState { daemon, failure }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slot_keeps_its_initiator_name_and_slots_differ() {
        let dir = tempfile::tempdir().expect("temp dir");
        let local = HostName::local();
        let first = slot_initiator(dir.path(), &local, 0).await.expect("made");
        let path = initiator_file(dir.path(), &local, 0);
        assert!(path.ends_with("iscsi/slot-0.initiatorname"));
        assert!(first.starts_with("iqn.1993-08.org.debian:01:ember-ci-s0-"));
        let again = slot_initiator(dir.path(), &local, 0).await.expect("read");
        assert_eq!(first, again);
        let other = slot_initiator(dir.path(), &local, 1).await.expect("made");
        assert_ne!(first, other);
        let remote = HostName::new("array-lab").expect("host name");
        let elsewhere = slot_initiator(dir.path(), &remote, 0).await.expect("made");
        assert_ne!(first, elsewhere);
        assert!(initiator_file(dir.path(), &remote, 0)
            .ends_with("iscsi/array-lab-slot-0.initiatorname"));
        let text = std::fs::read_to_string(&path).expect("file");
        assert_eq!(parse_initiator(&text), Some(first));
    }

    #[test]
    fn daemon_reports_say_what_stopped_them() {
        let daemons = [HostDaemon::Iscsid, HostDaemon::Multipathd];
        let states = parse_daemon_report(
            &daemons,
            "iscsid: not running: iscsid: can not create NETLINK_ISCSI socket [Protocol not supported]\nmultipathd: running\n",
        );
        assert_eq!(
            states[0].failure.as_deref(),
            Some("iscsid: can not create NETLINK_ISCSI socket [Protocol not supported]")
        );
        assert!(states[0].describe().contains("iscsi_tcp"));
        assert_eq!(states[1].describe(), "running");
        let missing = parse_daemon_report(&daemons[..1], "");
        assert!(missing[0].failure.is_some());
        assert_eq!(start_daemons(&daemons).argv[4..], ["iscsid", "multipathd"]);
    }
}
