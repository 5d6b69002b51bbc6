//! Our own Podman API service, for hosts where no PODMAN_SOCKET is given:
//! `podman system service --time=0` on a socket under the state dir, as a
//! child that dies with the executor. Its log goes to a file beside the
//! socket (a pipe nobody reads would eventually block it), and it reads the
//! host's containers.conf with the exit-command delay bounded (podman_conf).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::podman::PodmanClient;
use super::podman_conf;

const READY_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot start `podman system service` (log {log}): {source}")]
    Spawn {
        log: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the Podman service's containers.conf: {0}")]
    Conf(#[from] podman_conf::ConfError),
    #[error("`podman system service` exited ({status}) before serving; see {log}")]
    Exited { status: String, log: String },
    #[error("`podman system service` did not answer on {socket} within {secs} s; see {log}")]
    NotReady {
        socket: String,
        secs: u64,
        log: String,
    },
}

/// The running service; dropping it kills the child.
#[derive(Debug)]
pub struct PodmanService {
    _child: Child,
    socket: PathBuf,
}

impl PodmanService {
    /// Starts the service on `socket` and waits until it answers a ping.
    pub async fn start(socket: &Path, ready_timeout: Duration) -> Result<Self, ServiceError> {
        let log_path = socket.with_extension("log");
        let log = log_path.display().to_string();
        let spawn_error = |source| ServiceError::Spawn {
            log: log.clone(),
            source,
        };
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir).map_err(spawn_error)?;
        }
        // A socket file left by an earlier run would look ready before we are.
        match std::fs::remove_file(socket) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(spawn_error(e)),
            _ => {}
        }
        let conf = socket.with_extension("conf");
        podman_conf::write(&conf)?;
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(spawn_error)?;
        let mut command = Command::new("podman");
        command
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .env(podman_conf::CONTAINERS_CONF, &conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true);
        end_with_us(&mut command);
        let mut child = command.spawn().map_err(spawn_error)?;

        let client = PodmanClient::unix(socket);
        let deadline = tokio::time::Instant::now() + ready_timeout;
        loop {
            if let Some(status) = child.try_wait().map_err(spawn_error)? {
                return Err(ServiceError::Exited {
                    status: status.to_string(),
                    log,
                });
            }
            if socket.exists() && client.ping().await.is_ok() {
                return Ok(Self {
                    _child: child,
                    socket: socket.to_path_buf(),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ServiceError::NotReady {
                    socket: socket.display().to_string(),
                    secs: ready_timeout.as_secs(),
                    log,
                });
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

/// Asks the kernel to SIGTERM the child when ember-ci ends: kill_on_drop does
/// not run when ember-ci itself is SIGKILLed.
pub(super) fn end_with_us(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches only this process.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
