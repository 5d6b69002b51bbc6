//! The hosts jobs run on: this one (`local`, its own Podman socket) and
//! each PODMAN_HOSTS entry (its Podman through an [`SshLink`]). Each knows
//! whether it answers; a lost host is reopened in the background until it
//! answers again, and the scheduler skips it meanwhile.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Deserialize;

use super::podman::{HostFacts, PodmanClient, PodmanError};
use super::ssh_link::{LinkError, LinkSpec, SshLink};
use crate::config::{HostName, HostTarget, PodmanHost, SshTarget};

/// How long a host's first answer may take through ssh.
const LINK_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a lost host is tried again.
const RECHECK_INTERVAL: Duration = Duration::from_secs(3);

/// One host's Podman.
pub struct JobHost {
    pub name: HostName,
    pub podman: PodmanClient,
    /// None for this host.
    link: Option<tokio::sync::Mutex<RemoteLink>>,
    /// The local end of a remote host's forward.
    forwarded_socket: Option<PathBuf>,
    is_reachable: AtomicBool,
    /// Lost with jobs on it: their containers there wait for a sweep.
    needs_sweep: AtomicBool,
    /// Why it is unreachable (ssh's own words), or empty.
    problem: std::sync::Mutex<String>,
    /// The host's root image store, bind-mounted read-only in sandboxes.
    graph_root: std::sync::Mutex<String>,
}

struct RemoteLink {
    spec: LinkSpec,
    link: Option<SshLink>,
}

impl JobHost {
    pub fn local(podman: PodmanClient) -> Self {
        Self {
            name: HostName::local(),
            podman,
            link: None,
            forwarded_socket: None,
            is_reachable: AtomicBool::new(true),
            needs_sweep: AtomicBool::new(false),
            problem: std::sync::Mutex::default(),
            graph_root: std::sync::Mutex::new(super::job::HOST_IMAGE_STORE.to_string()),
        }
    }

    /// A remote host; not connected until [`JobHost::reconnect`].
    fn remote(
        host: &PodmanHost,
        target: SshTarget,
        identity: Option<PathBuf>,
        state_dir: &Path,
    ) -> Self {
        let local_socket = state_dir
            .join("run")
            .join("hosts")
            .join(format!("{}.sock", host.name));
        let spec = LinkSpec {
            host: host.name.clone(),
            target,
            identity,
            local_socket: local_socket.clone(),
            known_hosts: state_dir.join("ssh").join("known_hosts"),
        };
        Self {
            name: host.name.clone(),
            podman: PodmanClient::unix(&local_socket),
            link: Some(tokio::sync::Mutex::new(RemoteLink { spec, link: None })),
            forwarded_socket: Some(local_socket),
            is_reachable: AtomicBool::new(false),
            // An earlier run may have lost it with jobs on it.
            needs_sweep: AtomicBool::new(true),
            problem: std::sync::Mutex::new("not connected yet".into()),
            graph_root: std::sync::Mutex::new(super::job::HOST_IMAGE_STORE.to_string()),
        }
    }

    pub fn is_remote(&self) -> bool {
        self.link.is_some()
    }

    pub fn is_reachable(&self) -> bool {
        self.is_reachable.load(Ordering::SeqCst)
    }

    pub fn graph_root(&self) -> String {
        self.graph_root.lock().expect("graph-root lock").clone()
    }

    /// Why the host is unreachable, from ssh's own words.
    pub fn problem(&self) -> String {
        self.problem.lock().expect("host-problem lock").clone()
    }

    fn set_problem(&self, text: &str) -> bool {
        let mut problem = self.problem.lock().expect("host-problem lock");
        let changed = *problem != text;
        *problem = text.to_string();
        changed
    }

    /// Pings the host; a remote one whose ssh died is reopened once.
    /// Records and returns whether it answers.
    pub async fn check(&self) -> bool {
        let answers = if self.podman.ping().await.is_ok() {
            true
        } else {
            self.reconnect().await.is_ok()
        };
        self.is_reachable.store(answers, Ordering::SeqCst);
        answers
    }

    /// Marks the host lost (a job saw it fail and a ping confirmed it).
    pub fn mark_unreachable(&self) {
        self.is_reachable.store(false, Ordering::SeqCst);
        self.needs_sweep.store(true, Ordering::SeqCst);
    }

    /// Whether the host was lost with jobs on it since the last call.
    pub fn take_sweep(&self) -> bool {
        self.needs_sweep.swap(false, Ordering::SeqCst)
    }

    /// (Re)opens the ssh forward and reads the host's facts.
    async fn reconnect(&self) -> Result<(), String> {
        let Some(link) = &self.link else {
            return Err("the local Podman does not answer".into());
        };
        let mut link = link.lock().await;
        link.link = None;
        match SshLink::open(&link.spec, LINK_READY_TIMEOUT).await {
            Ok(opened) => {
                link.link = Some(opened);
                drop(link);
                self.set_problem("");
                if let Ok(facts) = self.podman.facts().await {
                    *self.graph_root.lock().expect("graph-root lock") = facts.graph_root;
                }
                tracing::info!(host = %self.name, "host answers through ssh");
                Ok(())
            }
            Err(error) => {
                let text = error.to_string();
                if self.set_problem(&text) {
                    tracing::warn!(host = %self.name, error = %text, "host unreachable");
                }
                Err(text)
            }
        }
    }

    pub async fn facts(&self) -> Result<HostFacts, PodmanError> {
        self.podman.facts().await
    }

    /// The local end of the forward (the remote API as a local socket).
    pub fn forwarded_socket(&self) -> Option<&Path> {
        self.forwarded_socket.as_deref()
    }
}

/// Builds the remote hosts; `podman system connection` names are resolved
/// through Podman's own list.
pub fn remote_hosts(hosts: &[PodmanHost], state_dir: &Path) -> Result<Vec<JobHost>, LinkError> {
    let mut connections: Option<Vec<Connection>> = None;
    let mut built = Vec::new();
    for host in hosts {
        let (target, identity) = match &host.target {
            HostTarget::Ssh { target, identity } => (target.clone(), identity.clone()),
            HostTarget::Connection(name) => {
                if connections.is_none() {
                    connections = Some(list_connections().map_err(|e| unresolved(host, e))?);
                }
                let found = connections
                    .as_ref()
                    .and_then(|list| list.iter().find(|c| &c.name == name))
                    .ok_or_else(|| {
                        unresolved(host, format!("no podman system connection named {name}"))
                    })?;
                let target = SshTarget::parse(&found.uri).map_err(|e| unresolved(host, e))?;
                let identity = Some(&found.identity)
                    .filter(|i| !i.is_empty())
                    .map(PathBuf::from);
                (target, identity)
            }
        };
        built.push(JobHost::remote(host, target, identity, state_dir));
    }
    Ok(built)
}

fn unresolved(host: &PodmanHost, problem: String) -> LinkError {
    LinkError::Exited {
        host: host.name.clone(),
        status: "not started".into(),
        stderr: problem,
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Connection {
    name: String,
    #[serde(rename = "URI")]
    uri: String,
    #[serde(default)]
    identity: String,
}

fn list_connections() -> Result<Vec<Connection>, String> {
    let output = std::process::Command::new("podman")
        .args(["system", "connection", "list", "--format", "json"])
        .output()
        .map_err(|e| format!("cannot run podman system connection list: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "podman system connection list failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("cannot read podman system connection list: {e}"))
}

/// Tries every lost host again every [`RECHECK_INTERVAL`] until the hosts
/// are dropped (the executor is gone).
pub fn spawn_rechecks(hosts: Weak<Vec<JobHost>>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RECHECK_INTERVAL).await;
            let Some(hosts) = hosts.upgrade() else {
                return;
            };
            for host in hosts.iter().filter(|h| h.is_remote() && !h.is_reachable()) {
                host.check().await;
            }
        }
    });
}

/// Opens every remote host once at start (in parallel); a host that does
/// not answer is not fatal: it is skipped until it does.
pub async fn connect_all(hosts: &Arc<Vec<JobHost>>) {
    let checks = hosts
        .iter()
        .filter(|h| h.is_remote())
        .map(|host| host.check());
    futures_util::future::join_all(checks).await;
}

/// Opens each PODMAN_HOSTS entry once and reads its facts (for `doctor`);
/// the forwards close again when this returns.
pub async fn probe(
    hosts: &[PodmanHost],
    state_dir: &Path,
) -> Vec<(HostName, Result<HostFacts, String>)> {
    let built = match remote_hosts(hosts, state_dir) {
        Ok(built) => built,
        Err(error) => {
            return hosts
                .iter()
                .map(|h| (h.name.clone(), Err(error.to_string())))
                .collect()
        }
    };
    let mut results = Vec::new();
    for host in &built {
        let facts = if host.check().await {
            host.facts().await.map_err(|e| e.to_string())
        } else {
            Err(host.problem())
        };
        results.push((host.name.clone(), facts));
    }
    results
}
