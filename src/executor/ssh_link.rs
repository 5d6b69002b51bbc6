//! The transport to another host's Podman: OpenSSH forwarding the remote
//! API socket to a local unix socket (`ssh -N -L local.sock:remote.sock`),
//! one `ssh` child per host. podman-api then talks to the local socket as
//! to any other, so the job code is the same on every host.
//!
//! Why `ssh -L` and not an ssh library: podman-api has no ssh transport,
//! and OpenSSH is what `podman system connection` itself uses; it honours
//! the vendor's ssh config, agent, ProxyJump and known hosts, and every
//! byte (secrets in exec environments, uploaded config files) crosses the
//! network inside the ssh session, never in a remote command line.
//! Host keys: BatchMode (never a prompt) and `accept-new` into
//! `CI_DIR/ssh/known_hosts`: pinned on first contact, a changed key refused.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::podman::PodmanClient;
use crate::config::{HostName, SshTarget};

const READY_POLL: Duration = Duration::from_millis(100);
/// ssh gives up on a silent server after ALIVE_INTERVAL x ALIVE_COUNT.
const SERVER_ALIVE_INTERVAL_SECS: u32 = 2;
const SERVER_ALIVE_COUNT: u32 = 3;
const CONNECT_TIMEOUT_SECS: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("host {host}: cannot start ssh: {source}")]
    Spawn {
        host: HostName,
        #[source]
        source: std::io::Error,
    },
    #[error("host {host}: ssh exited ({status}) before forwarding Podman's socket: {stderr}")]
    Exited {
        host: HostName,
        status: String,
        stderr: String,
    },
    #[error("host {host}: Podman did not answer through ssh within {secs} s")]
    NotReady { host: HostName, secs: u64 },
}

/// Where and how to reach one host.
#[derive(Debug, Clone)]
pub struct LinkSpec {
    pub host: HostName,
    pub target: SshTarget,
    pub identity: Option<PathBuf>,
    /// The local end of the forward.
    pub local_socket: PathBuf,
    pub known_hosts: PathBuf,
}

/// A running forward; dropping it ends the ssh child.
#[derive(Debug)]
pub struct SshLink {
    _child: Child,
}

impl SshLink {
    /// Starts the forward and waits until the remote Podman answers a ping
    /// through it.
    pub async fn open(spec: &LinkSpec, ready_timeout: Duration) -> Result<Self, LinkError> {
        let spawn_error = |source| LinkError::Spawn {
            host: spec.host.clone(),
            source,
        };
        for file in [&spec.local_socket, &spec.known_hosts] {
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir).map_err(spawn_error)?;
            }
        }
        // A stale socket file would look ready before ssh is.
        match std::fs::remove_file(&spec.local_socket) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(spawn_error(e)),
            _ => {}
        }
        let stderr_path = spec.local_socket.with_extension("ssh.log");
        let stderr = std::fs::File::create(&stderr_path).map_err(spawn_error)?;
        let mut command = Command::new("ssh");
        command
            .args(ssh_args(spec))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true);
        super::podman_service::end_with_us(&mut command);
        let mut child = command.spawn().map_err(spawn_error)?;
        let client = PodmanClient::unix(&spec.local_socket);
        let deadline = tokio::time::Instant::now() + ready_timeout;
        loop {
            if let Some(status) = child.try_wait().map_err(spawn_error)? {
                return Err(LinkError::Exited {
                    host: spec.host.clone(),
                    status: status.to_string(),
                    stderr: read_tail(&stderr_path),
                });
            }
            if spec.local_socket.exists() && client.ping().await.is_ok() {
                return Ok(Self { _child: child });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(LinkError::NotReady {
                    host: spec.host.clone(),
                    secs: ready_timeout.as_secs(),
                });
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }
}

/// The ssh command line: forwarding only (-N), no prompts, bounded waits.
fn ssh_args(spec: &LinkSpec) -> Vec<String> {
    let option = |text: String| ["-o".to_string(), text];
    let mut args: Vec<String> = vec!["-N".into(), "-T".into()];
    for text in [
        "BatchMode=yes".to_string(),
        "ExitOnForwardFailure=yes".to_string(),
        "StreamLocalBindUnlink=yes".to_string(),
        "StrictHostKeyChecking=accept-new".to_string(),
        format!("UserKnownHostsFile={}", spec.known_hosts.display()),
        format!("ConnectTimeout={CONNECT_TIMEOUT_SECS}"),
        format!("ServerAliveInterval={SERVER_ALIVE_INTERVAL_SECS}"),
        format!("ServerAliveCountMax={SERVER_ALIVE_COUNT}"),
    ] {
        args.extend(option(text));
    }
    if let Some(identity) = &spec.identity {
        args.extend(option("IdentitiesOnly=yes".into()));
        args.extend(["-i".into(), identity.display().to_string()]);
    }
    args.extend([
        "-p".into(),
        spec.target.port.to_string(),
        "-L".into(),
        format!("{}:{}", spec.local_socket.display(), spec.target.socket),
        format!("{}@{}", spec.target.user, spec.target.host),
    ]);
    args
}

fn read_tail(path: &Path) -> String {
    const TAIL_CHARS: usize = 400;
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let text = text.trim();
    let start = text
        .char_indices()
        .rev()
        .nth(TAIL_CHARS)
        .map_or(0, |(i, _)| i);
    text[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_forwards_the_remote_socket_without_prompts() {
        let spec = LinkSpec {
            host: HostName::new("lab").unwrap(),
            target: SshTarget::parse("ssh://root@10.0.0.2:2222/run/podman/podman.sock").unwrap(),
            identity: Some("/config/id".into()),
            local_socket: "/ci/run/hosts/lab.sock".into(),
            known_hosts: "/ci/ssh/known_hosts".into(),
        };
        let args = ssh_args(&spec).join(" ");
        assert!(args.starts_with("-N -T -o BatchMode=yes"), "{args}");
        assert!(
            args.ends_with(
                "-i /config/id -p 2222 -L /ci/run/hosts/lab.sock:/run/podman/podman.sock root@10.0.0.2"
            ),
            "{args}"
        );
    }
}
