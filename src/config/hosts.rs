//! PODMAN_HOSTS and DRIVER_HOST_n: the Podman hosts jobs may run on besides
//! this one (pure parsing; the executor connects, the scheduler places).
//!
//! Syntax, one entry per word:
//!
//! ```text
//! PODMAN_HOSTS="fc-lab=ssh://root@10.1.2.3:22/run/podman/podman.sock,identity=lab_key,slots=2
//!               iscsi-lab=iscsi-conn,slots=1"
//! DRIVER_HOST_1="fc-lab"            # pinned: runs on fc-lab only
//! DRIVER_HOST_2="iscsi-lab local"   # preferred host first, then fallbacks
//! ```
//!
//! `NAME=TARGET[,identity=FILE][,slots=N]`: TARGET is an `ssh://` URL
//! (user, host, optional port, the remote API socket's path) or the name of
//! a `podman system connection` (URL and identity come from Podman's own
//! list). FILE is relative to the config dir. `local` is this host, with
//! NUM_WORKERS slots; it needs no entry and cannot be redefined.

use std::fmt;
use std::path::PathBuf;

/// The name of this host in DRIVER_HOST_n.
pub const LOCAL_HOST: &str = "local";
const DEFAULT_SLOTS: usize = 1;
const MAX_HOST_SLOTS: usize = 64;
const DEFAULT_SSH_PORT: u16 = 22;

/// A host's name as PODMAN_HOSTS and DRIVER_HOST_n spell it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostName(String);

impl HostName {
    pub fn new(name: &str) -> Result<Self, String> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if valid {
            Ok(Self(name.to_string()))
        } else {
            Err(format!(
                "{name:?} is not a host name (letters, digits, '.', '_', '-')"
            ))
        }
    }

    pub fn local() -> Self {
        Self(LOCAL_HOST.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_local(&self) -> bool {
        self.0 == LOCAL_HOST
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `ssh://user@host[:port]/path/to/podman.sock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub user: String,
    pub host: String,
    pub port: u16,
    /// The Podman API socket on the remote host.
    pub socket: String,
}

impl SshTarget {
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("ssh://")
            .ok_or_else(|| format!("{url:?} is not an ssh:// URL"))?;
        let (authority, path) = rest.split_once('/').ok_or_else(|| {
            format!("{url:?} names no socket path (ssh://user@host/run/podman/podman.sock)")
        })?;
        let (user, host_port) = authority
            .split_once('@')
            .ok_or_else(|| format!("{url:?} names no user (ssh://user@host/...)"))?;
        let (host, port) = match host_port.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .map_err(|_| format!("{port:?} in {url:?} is not a port number"))?,
            ),
            None => (host_port, DEFAULT_SSH_PORT),
        };
        let plain = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        };
        if !plain(user) || !plain(host) {
            return Err(format!(
                "{url:?}: user and host must be plain names or addresses"
            ));
        }
        Ok(Self {
            user: user.to_string(),
            host: host.to_string(),
            port,
            socket: format!("/{path}"),
        })
    }
}

impl fmt::Display for SshTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ssh://{}@{}:{}{}",
            self.user, self.host, self.port, self.socket
        )
    }
}

/// How to reach a host's Podman.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostTarget {
    Ssh {
        target: SshTarget,
        /// Private key (absolute, resolved in the config dir); None uses
        /// ssh's own defaults (agent, ~/.ssh).
        identity: Option<PathBuf>,
    },
    /// A `podman system connection` name, resolved when connecting.
    Connection(String),
}

/// One PODMAN_HOSTS entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodmanHost {
    pub name: HostName,
    pub target: HostTarget,
    /// Jobs this host runs at once.
    pub slots: usize,
}

/// Parses PODMAN_HOSTS; `identity` resolves a FILE in the config dir (an
/// error names the problem).
pub fn parse_podman_hosts(
    text: &str,
    identity: impl Fn(&str) -> Result<PathBuf, String>,
) -> Result<Vec<PodmanHost>, String> {
    let mut hosts: Vec<PodmanHost> = Vec::new();
    for entry in text.split_whitespace() {
        let host = parse_entry(entry, &identity)?;
        if hosts.iter().any(|h| h.name == host.name) {
            return Err(format!("host {} is listed twice", host.name));
        }
        hosts.push(host);
    }
    Ok(hosts)
}

fn parse_entry(
    entry: &str,
    identity: &impl Fn(&str) -> Result<PathBuf, String>,
) -> Result<PodmanHost, String> {
    let (name, spec) = entry
        .split_once('=')
        .ok_or_else(|| format!("{entry:?} is not NAME=TARGET[,identity=FILE][,slots=N]"))?;
    let name = HostName::new(name)?;
    if name.is_local() {
        return Err(format!(
            "{LOCAL_HOST:?} is this host (NUM_WORKERS slots); give remote hosts other names"
        ));
    }
    let mut parts = spec.split(',');
    let target_text = parts.next().unwrap_or_default();
    let mut identity_file = None;
    let mut slots = DEFAULT_SLOTS;
    for option in parts {
        match option.split_once('=') {
            Some(("identity", file)) => identity_file = Some(identity(file)?),
            Some(("slots", n)) => {
                slots = n
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_HOST_SLOTS).contains(n))
                    .ok_or_else(|| {
                        format!("host {name}: slots={n} is not a number from 1 to {MAX_HOST_SLOTS}")
                    })?;
            }
            _ => {
                return Err(format!(
                    "host {name}: {option:?} is neither identity=FILE nor slots=N"
                ))
            }
        }
    }
    let target = if target_text.starts_with("ssh://") {
        HostTarget::Ssh {
            target: SshTarget::parse(target_text).map_err(|e| format!("host {name}: {e}"))?,
            identity: identity_file,
        }
    } else {
        HostName::new(target_text)
            .map_err(|_| format!("host {name}: {target_text:?} is neither an ssh:// URL nor a podman system connection name"))?;
        if identity_file.is_some() {
            return Err(format!(
                "host {name}: a podman system connection carries its own identity; drop identity="
            ));
        }
        HostTarget::Connection(target_text.to_string())
    };
    Ok(PodmanHost {
        name,
        target,
        slots,
    })
}

/// Parses DRIVER_HOST_n against the known hosts: names in preference order.
pub fn parse_driver_hosts(text: &str, hosts: &[PodmanHost]) -> Result<Vec<HostName>, String> {
    let mut names: Vec<HostName> = Vec::new();
    for word in text.split_whitespace() {
        let name = HostName::new(word)?;
        if !name.is_local() && !hosts.iter().any(|h| h.name == name) {
            let known: Vec<&str> = std::iter::once(LOCAL_HOST)
                .chain(hosts.iter().map(|h| h.name.as_str()))
                .collect();
            return Err(format!(
                "{name} is not in PODMAN_HOSTS (known: {})",
                known.join(", ")
            ));
        }
        if names.contains(&name) {
            return Err(format!("{name} is listed twice"));
        }
        names.push(name);
    }
    if names.is_empty() {
        names.push(HostName::local());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_files(file: &str) -> Result<PathBuf, String> {
        Ok(PathBuf::from("/config").join(file))
    }

    #[test]
    fn ssh_and_connection_entries_parse_with_their_slots_and_identity() {
        let hosts = parse_podman_hosts(
            "fc=ssh://root@10.1.2.3:2222/run/podman/podman.sock,identity=id_fc,slots=2 \
             lab=lab-conn",
            no_files,
        )
        .expect("valid");
        assert_eq!(
            hosts,
            vec![
                PodmanHost {
                    name: HostName::new("fc").unwrap(),
                    target: HostTarget::Ssh {
                        target: SshTarget {
                            user: "root".into(),
                            host: "10.1.2.3".into(),
                            port: 2222,
                            socket: "/run/podman/podman.sock".into(),
                        },
                        identity: Some("/config/id_fc".into()),
                    },
                    slots: 2,
                },
                PodmanHost {
                    name: HostName::new("lab").unwrap(),
                    target: HostTarget::Connection("lab-conn".into()),
                    slots: 1,
                },
            ]
        );
    }

    #[test]
    fn bad_entries_name_their_problem() {
        for (text, problem) in [
            ("fc", "is not NAME=TARGET"),
            ("local=ssh://a@b/s", "is this host"),
            ("fc=ssh://b/s", "names no user"),
            ("fc=ssh://a@b", "names no socket path"),
            ("fc=ssh://a@b:x/s", "is not a port number"),
            ("fc=ssh://a@b/s,slots=0", "slots=0 is not a number"),
            (
                "fc=ssh://a@b/s,color=red",
                "neither identity=FILE nor slots=N",
            ),
            ("fc=conn,identity=k", "carries its own identity"),
            ("fc=ssh://a@b/s fc=conn", "listed twice"),
        ] {
            let error = parse_podman_hosts(text, no_files).expect_err(text);
            assert!(error.contains(problem), "{text}: {error}");
        }
    }

    #[test]
    fn driver_hosts_default_to_local_and_must_be_known() {
        let hosts = parse_podman_hosts("fc=conn", no_files).unwrap();
        assert_eq!(
            parse_driver_hosts("", &hosts).unwrap(),
            vec![HostName::local()]
        );
        assert_eq!(
            parse_driver_hosts("fc local", &hosts).unwrap(),
            vec![HostName::new("fc").unwrap(), HostName::local()]
        );
        let error = parse_driver_hosts("lab", &hosts).unwrap_err();
        assert!(
            error.contains("not in PODMAN_HOSTS (known: local, fc)"),
            "{error}"
        );
    }
}
