//! Host-side child processes (git, the podman CLI): spawned without a shell,
//! killed when the job abandons them, their stdout and stderr handed on as
//! they arrive.

use std::io;
use std::process::{ExitStatus, Stdio};

use tokio::io::AsyncReadExt;
use tokio::process::Command;

const READ_BUFFER_BYTES: usize = 16 * 1024;

/// Runs `command` to completion, passing stdout and stderr chunks to
/// `on_output` in arrival order. Dropping the future kills the child.
pub async fn run_streaming(
    mut command: Command,
    on_output: &mut (dyn FnMut(&[u8]) + Send),
) -> io::Result<ExitStatus> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let mut out_buffer = vec![0u8; READ_BUFFER_BYTES];
    let mut err_buffer = vec![0u8; READ_BUFFER_BYTES];
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        tokio::select! {
            read = stdout.read(&mut out_buffer), if out_open => match read? {
                0 => out_open = false,
                n => on_output(&out_buffer[..n]),
            },
            read = stderr.read(&mut err_buffer), if err_open => match read? {
                0 => err_open = false,
                n => on_output(&err_buffer[..n]),
            },
        }
    }
    child.wait().await
}

/// Runs `command` for its exit status; stdout is dropped and stderr kept
/// for the error message.
pub async fn run_quiet(mut command: Command) -> io::Result<QuietOutput> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = command.spawn()?.wait_with_output().await?;
    Ok(QuietOutput {
        status: output.status,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

#[derive(Debug)]
pub struct QuietOutput {
    pub status: ExitStatus,
    pub stderr: String,
}

/// A child's exit for messages: its code, or the signal that ended it.
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "unknown exit".to_string(),
    }
}
