//! A second Podman host on this machine, for the PODMAN_HOSTS tests: a
//! network namespace with its own address (`ip netns` + a veth pair), an
//! sshd listening only there, and a `podman system service` inside it with
//! its own graphroot, runroot and tmpdir, so its containers are its own
//! (the local Podman does not list them).
//!
//! Its image store is kept in `/var/tmp/ember-ci-second-host` between runs:
//! the images a job needs (the sandbox image, which ember-ci copies there
//! itself, and the Debian base, which a real host would pull) then cross
//! once per machine, not once per test. Everything else (namespace, sshd,
//! service, keys) is made per test and removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::executor_env::{run_ok, DEBIAN_IMAGE};

/// The host's image store, kept between runs (see the module docs).
const STORE_DIR: &str = "/var/tmp/ember-ci-second-host";
/// Its runroot and tmpdir: fixed too (Podman records them with the store),
/// on /run so that they go with a reboot, as Podman expects.
const RUN_DIR: &str = "/run/ember-ci-second-host";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct SecondHost {
    pub name: String,
    netns: String,
    /// The outer end of the veth pair.
    veth: String,
    /// The namespace's address on the veth pair.
    pub address: String,
    dir: tempfile::TempDir,
    sshd: Option<Child>,
    service: Child,
}

impl SecondHost {
    /// Makes the namespace, starts the Podman service and sshd in it, and
    /// puts the Debian image into its store when missing. `config_dir`
    /// receives the client key as `<name>_key`.
    pub fn start(name: &str, config_dir: &Path) -> Self {
        static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let nth = STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let tag = format!("{}x{nth}", std::process::id() % 100_000);
        let netns = format!("ember-ci-{name}-{tag}");
        // A /30 per host: 10.231.X.0, X from the pid and the count.
        let subnet = ((std::process::id() + nth * 37) % 250) + 1;
        let address = format!("10.231.{subnet}.2");
        let outer = format!("10.231.{subnet}.1");
        let veth = format!("ecv{tag}");
        let dir = tempfile::Builder::new()
            .prefix("ember-ci-host-")
            .tempdir()
            .expect("temp dir for the second host");
        let ip = |args: &[&str]| run_ok(Command::new("ip").args(args));
        let _ = Command::new("ip").args(["netns", "del", &netns]).output();
        ip(&["netns", "add", &netns]);
        ip(&[
            "link",
            "add",
            &veth,
            "type",
            "veth",
            "peer",
            "name",
            &format!("{veth}p"),
        ]);
        ip(&["link", "set", &format!("{veth}p"), "netns", &netns]);
        ip(&["addr", "add", &format!("{outer}/30"), "dev", &veth]);
        ip(&["link", "set", &veth, "up"]);
        let in_ns = |args: &[&str]| {
            run_ok(
                Command::new("ip")
                    .args(["netns", "exec", &netns])
                    .args(args),
            )
        };
        in_ns(&["ip", "link", "set", "lo", "up"]);
        in_ns(&[
            "ip",
            "addr",
            "add",
            &format!("{address}/30"),
            "dev",
            &format!("{veth}p"),
        ]);
        in_ns(&["ip", "link", "set", &format!("{veth}p"), "up"]);
        in_ns(&["ip", "route", "add", "default", "via", &outer]);

        let root = Path::new(STORE_DIR);
        let socket = dir.path().join("podman.sock");
        let service_log = std::fs::File::create(dir.path().join("podman.log")).expect("log");
        // nsenter enters the network namespace only: `ip netns exec` would
        // also remount /sys, hiding the cgroup mounts runc needs.
        // Bounded exec-session conmons, as for ember-ci's own service.
        let conf = dir.path().join("containers.conf");
        ember_ci::executor::write_service_conf(&conf).expect("writing containers.conf");
        let service = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .arg("podman")
            .arg("--root")
            .arg(root.join("root"))
            .arg("--runroot")
            .arg(Path::new(RUN_DIR).join("runroot"))
            .arg("--tmpdir")
            .arg(Path::new(RUN_DIR).join("tmp"))
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .env(ember_ci::executor::CONTAINERS_CONF, &conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(service_log)
            .spawn()
            .expect("starting the second host's podman system service");

        let client_key = config_dir.join(format!("{name}_key"));
        let host_key = dir.path().join("host_key");
        for key in [&client_key, &host_key] {
            run_ok(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                    .arg(key),
            );
        }
        std::fs::copy(
            client_key.with_extension("pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("authorized_keys");
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let sshd_config = dir.path().join("sshd_config");
        std::fs::write(
            &sshd_config,
            format!(
                "ListenAddress {address}\nPort 22\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 StrictModes no\nUsePAM no\nAllowStreamLocalForwarding yes\n\
                 PidFile {}\n",
                host_key.display(),
                dir.path().join("authorized_keys").display(),
                dir.path().join("sshd.pid").display(),
            ),
        )
        .expect("sshd_config");
        let mut host = Self {
            name: name.to_string(),
            netns,
            veth,
            address,
            dir,
            sshd: None,
            service,
        };
        host.start_sshd();
        host.wait_for_service();
        host.load_image(DEBIAN_IMAGE);
        host
    }

    /// The PODMAN_HOSTS entry for this host.
    pub fn podman_hosts_entry(&self, slots: usize) -> String {
        format!(
            "{}=ssh://root@{}:22{},identity={}_key,slots={slots}",
            self.name,
            self.address,
            self.socket().display(),
            self.name
        )
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("podman.sock")
    }

    /// Starts sshd (again, after [`SecondHost::kill_sshd`]).
    pub fn start_sshd(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("sshd.log")).expect("sshd log");
        let sshd = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
                "/usr/sbin/sshd",
                "-D",
                "-e",
                "-f",
            ])
            .arg(self.dir.path().join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting sshd (apt-get install openssh-server; see scripts/setup-host.sh)");
        self.sshd = Some(sshd);
        let deadline = Instant::now() + READY_TIMEOUT;
        let target = format!("{}:22", self.address);
        while std::net::TcpStream::connect_timeout(
            &target.parse().expect("socket address"),
            Duration::from_millis(200),
        )
        .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "sshd on {target} does not answer; log:\n{}",
                std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_for_service(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while !self.podman(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "the second host's podman service does not answer; log:\n{}",
                std::fs::read_to_string(self.dir.path().join("podman.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Copies `image` from the local store when this host lacks it.
    fn load_image(&self, image: &str) {
        if self.podman(&["image", "exists", image]).status.success() {
            return;
        }
        run_ok(Command::new("bash").args([
            "-c",
            "set -o pipefail; podman save \"$1\" | podman --url \"unix://$2\" load",
            "load-image",
            image,
            &self.socket().display().to_string(),
        ]));
    }

    /// `podman` against this host's service.
    pub fn podman(&self, args: &[&str]) -> std::process::Output {
        Command::new("podman")
            .arg("--url")
            .arg(format!("unix://{}", self.socket().display()))
            .args(args)
            .output()
            .expect("running podman --url")
    }

    /// Names of this host's containers carrying `label` (key=value).
    pub fn containers_labelled(&self, label: &str) -> Vec<String> {
        let output = self.podman(&[
            "ps",
            "-a",
            "--filter",
            &format!("label={label}"),
            "--format",
            "{{.Names}}",
        ]);
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Kills sshd and every session it serves (the host drops off the
    /// network for ssh; its Podman keeps running).
    pub fn kill_sshd(&mut self) {
        let Some(mut sshd) = self.sshd.take() else {
            return;
        };
        // nsenter execs sshd, so the child's pid is sshd's.
        let daemon = sshd.id();
        let sessions: Vec<String> = descendants(daemon).iter().map(u32::to_string).collect();
        if !sessions.is_empty() {
            let _ = Command::new("kill").arg("-KILL").args(&sessions).output();
        }
        let _ = sshd.kill();
        let _ = sshd.wait();
    }
}

/// Every process below `pid` (children first found, then theirs).
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut parents = vec![pid];
    while let Some(parent) = parents.pop() {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            break;
        };
        for entry in entries.flatten() {
            let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // The ppid is the second field after the parenthesised name.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(parent) {
                found.push(child);
                parents.push(child);
            }
        }
    }
    found
}

impl Drop for SecondHost {
    fn drop(&mut self) {
        // Whatever a lost host kept (ember-ci could not reach it) goes with it.
        let _ = self.podman(&["rm", "-af", "-t", "0"]);
        self.kill_sshd();
        let _ = self.service.kill();
        let _ = self.service.wait();
        // Deleting one end deletes the pair, even while processes keep
        // the namespace alive a little longer.
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
    }
}
