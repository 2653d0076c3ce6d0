//! Three hosts in network namespaces: the namespaces, the bridge between
//! them, and one `hostmux serve` per namespace, all removed when the
//! [`Cluster`] is dropped (also when a test fails half-way).
//!
//! Layout, per cluster (names unique per test process and cluster):
//!
//! ```text
//!   ns hm-PID-N-a  eth0 10.201.0.1/24 --veth--+
//!   ns hm-PID-N-b  eth0 10.201.0.2/24 --veth--+-- br0 in ns hm-PID-N-br
//!   ns hm-PID-N-c  eth0 10.201.0.3/24 --veth--+
//! ```
//!
//! The addresses exist only inside these namespaces, so clusters of tests
//! running at once never see each other. Every host listens on
//! [`HOST_PORT`]; its control socket, logs and token files live in the
//! cluster's temporary directory.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::client::NsClient;

/// The port every host's frontend listens on (each host has its own
/// namespace, so they never collide).
pub(crate) const HOST_PORT: u16 = 7000;
/// How long a host may take to start serving, a CLI command to finish, a
/// host to exit after SIGTERM.
pub(crate) const STEP_DEADLINE: Duration = Duration::from_secs(20);
/// The clients' token (every host has the same one).
pub(crate) const CLIENT_TOKEN: &str = "three-hosts-client-token";
/// The secret the peers share for links.
const PEER_TOKEN: &str = "three-hosts-peer-token";
/// A peer secret that is not the others' (the wrong-token scenario).
const WRONG_PEER_TOKEN: &str = "not-the-peers-token";

/// One of the three hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Name {
    A,
    B,
    C,
}

impl Name {
    pub(crate) const ALL: [Name; 3] = [Name::A, Name::B, Name::C];

    fn index(self) -> usize {
        self as usize
    }

    fn letter(self) -> &'static str {
        ["a", "b", "c"][self.index()]
    }

    /// The host's interface address inside its namespace.
    pub(crate) fn ip(self) -> &'static str {
        ["10.201.0.1", "10.201.0.2", "10.201.0.3"][self.index()]
    }

    /// The host's frontend address as peers and frames name it.
    pub(crate) fn addr(self) -> String {
        format!("tcp:{}:{HOST_PORT}", self.ip())
    }
}

/// How one host is started (all defaults: bound to its interface address,
/// the three hosts as peers, the shared peer token).
#[derive(Debug, Clone, Default)]
pub(crate) struct HostOptions {
    /// Bind `tcp:0.0.0.0:PORT` instead of the interface address.
    pub(crate) bind_unspecified: bool,
    /// Present and expect a peer token the other hosts do not share.
    pub(crate) wrong_peer_token: bool,
    /// Peers besides the three hosts.
    pub(crate) extra_peers: Vec<String>,
    /// Further `serve` flags.
    pub(crate) extra_flags: Vec<String>,
}

/// A running `hostmux serve` (started as `ip netns exec NS hostmux serve`,
/// which execs, so the child is the host itself).
struct Served {
    child: Child,
    /// Its stdout lines, read by a thread.
    lines: mpsc::Receiver<String>,
}

/// The namespaces, their bridge and the hosts in them.
pub(crate) struct Cluster {
    /// Namespace name prefix, `hm-PID-N`.
    run: String,
    /// Namespaces created so far (removed on drop, in reverse).
    namespaces: Vec<String>,
    dir: tempfile::TempDir,
    hosts: [Option<Served>; 3],
    options: [HostOptions; 3],
}

static CLUSTERS: AtomicU32 = AtomicU32::new(0);

/// Runs `program args` and panics (naming the command and its stderr) if
/// it fails.
#[track_caller]
pub(crate) fn must(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} {args:?}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

impl Cluster {
    /// Creates the four namespaces (three hosts and the bridge) and the
    /// links between them; starts no host yet.
    pub(crate) fn new() -> Cluster {
        let run = format!(
            "hm-{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        );
        let mut cluster = Cluster {
            run,
            namespaces: Vec::new(),
            dir: tempfile::tempdir().expect("tempdir"),
            hosts: [None, None, None],
            options: Default::default(),
        };
        std::fs::write(cluster.dir.path().join("token"), CLIENT_TOKEN).unwrap();
        std::fs::write(cluster.dir.path().join("peer-token"), PEER_TOKEN).unwrap();
        std::fs::write(
            cluster.dir.path().join("wrong-peer-token"),
            WRONG_PEER_TOKEN,
        )
        .unwrap();
        let bridge = cluster.add_namespace("br");
        must(
            "ip",
            &["-n", &bridge, "link", "add", "br0", "type", "bridge"],
        );
        must("ip", &["-n", &bridge, "link", "set", "br0", "up"]);
        for host in Name::ALL {
            let ns = cluster.add_namespace(host.letter());
            let port = format!("v{}", host.letter());
            must(
                "ip",
                &[
                    "-n", &bridge, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                    "netns", &ns,
                ],
            );
            must(
                "ip",
                &["-n", &bridge, "link", "set", &port, "master", "br0"],
            );
            must("ip", &["-n", &bridge, "link", "set", &port, "up"]);
            let cidr = format!("{}/24", host.ip());
            must("ip", &["-n", &ns, "addr", "add", &cidr, "dev", "eth0"]);
            must("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
            must("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        }
        cluster
    }

    fn add_namespace(&mut self, suffix: &str) -> String {
        let name = format!("{}-{suffix}", self.run);
        must("ip", &["netns", "add", &name]);
        self.namespaces.push(name.clone());
        name
    }

    /// The namespace host `host` runs in.
    pub(crate) fn namespace(&self, host: Name) -> String {
        format!("{}-{}", self.run, host.letter())
    }

    /// Host `host`'s control socket.
    pub(crate) fn control_socket(&self, host: Name) -> PathBuf {
        self.dir.path().join(format!("{}.sock", host.letter()))
    }

    fn log_path(&self, host: Name) -> PathBuf {
        self.dir.path().join(format!("{}.log", host.letter()))
    }

    /// The client token file.
    pub(crate) fn token_file(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    /// Starts all three hosts with default options, each with an echo proc
    /// named `echo`.
    pub(crate) fn start_all_with_echo(&mut self) {
        for host in Name::ALL {
            self.start(host, HostOptions::default());
            self.spawn_echo(host, "echo");
        }
    }

    /// Starts `hostmux serve` for `host` in its namespace with `options`
    /// (kept for [`restart`](Self::restart)) and waits until it serves.
    pub(crate) fn start(&mut self, host: Name, options: HostOptions) {
        assert!(
            self.hosts[host.index()].is_none(),
            "host {host:?} is already running"
        );
        let bind = if options.bind_unspecified {
            format!("tcp:0.0.0.0:{HOST_PORT}")
        } else {
            host.addr()
        };
        let peer_token = if options.wrong_peer_token {
            "wrong-peer-token"
        } else {
            "peer-token"
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(host))
            .expect("open the host's log");
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace(host)])
            .arg(env!("CARGO_BIN_EXE_hostmux"))
            .args(["serve", "--frontend", &bind, "--shutdown-grace", "1s"])
            .arg("--control-socket")
            .arg(self.control_socket(host))
            .arg("--token-file")
            .arg(self.token_file())
            .arg("--peer-token-file")
            .arg(self.dir.path().join(peer_token));
        for peer in Name::ALL
            .iter()
            .map(|p| p.addr())
            .chain(options.extra_peers.iter().cloned())
        {
            command.args(["--peer", &peer]);
        }
        if let Ok(kind) = std::env::var("HOSTMUX_TEST_FRONTEND_KIND") {
            command.args(["--frontend-kind", &kind]);
        }
        let mut child = command
            .args(&options.extra_flags)
            .env(
                "HOSTMUX_LOG",
                std::env::var("HOSTMUX_TEST_HOST_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start ip netns exec hostmux serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        self.hosts[host.index()] = Some(Served { child, lines });
        self.options[host.index()] = options;
        self.wait_for_line(host, "hostmux serving on");
    }

    /// Waits (bounded) for a stdout line of `host` containing `needle`.
    fn wait_for_line(&self, host: Name, needle: &str) -> String {
        let served = self.hosts[host.index()].as_ref().expect("host running");
        let deadline = Instant::now() + STEP_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match served.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "host {host:?} exited before printing {needle:?}; log:\n{}",
                    self.log_tail(host, 30)
                ),
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "host {host:?}: no line containing {needle:?} on stdout within {STEP_DEADLINE:?}; log:\n{}",
                    self.log_tail(host, 30)
                ),
            }
        }
    }

    /// Starts `host` again with the options it had.
    pub(crate) fn restart(&mut self, host: Name) {
        let options = self.options[host.index()].clone();
        self.start(host, options);
    }

    /// Runs a `hostmux` CLI command against `host`'s control socket.
    pub(crate) fn cli(&self, host: Name, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_hostmux"))
            .args(args)
            .env("HOSTMUX_CONTROL_SOCKET", self.control_socket(host))
            .output()
            .expect("run hostmux")
    }

    /// Spawns the built-in echo proc as `name` on `host`.
    pub(crate) fn spawn_echo(&self, host: Name, name: &str) {
        let exe = env!("CARGO_BIN_EXE_hostmux");
        let output = self.cli(host, &["spawn", name, "--", exe, "__proc", "echo"]);
        assert!(
            output.status.success() && String::from_utf8_lossy(&output.stdout).contains("spawned"),
            "spawn {name} on {host:?}: {output:?}"
        );
    }

    /// `hostmux ps --json` of `host`, parsed.
    pub(crate) fn ps(&self, host: Name) -> serde_json::Value {
        let output = self.cli(host, &["ps", "--json"]);
        assert!(output.status.success(), "ps on {host:?}: {output:?}");
        serde_json::from_slice(&output.stdout).expect("ps --json")
    }

    /// The host process's id.
    pub(crate) fn pid(&self, host: Name) -> u32 {
        self.hosts[host.index()]
            .as_ref()
            .expect("host running")
            .child
            .id()
    }

    /// SIGKILLs `host` (its procs die with it: PDEATHSIG) and reaps it.
    pub(crate) fn kill9(&mut self, host: Name) {
        let mut served = self.hosts[host.index()].take().expect("host running");
        served.child.kill().expect("SIGKILL the host");
        served.child.wait().expect("reap the host");
    }

    /// SIGTERMs `host` and waits (bounded) for it to exit; returns its
    /// exit status.
    pub(crate) fn stop(&mut self, host: Name) -> std::process::ExitStatus {
        let mut served = self.hosts[host.index()].take().expect("host running");
        let pid = rustix::process::Pid::from_raw(served.child.id() as i32).expect("a pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let deadline = Instant::now() + STEP_DEADLINE;
        loop {
            if let Some(status) = served.child.try_wait().expect("wait for the host") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = served.child.kill();
                let _ = served.child.wait();
                panic!("host {host:?} did not exit within {STEP_DEADLINE:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Takes `host`'s interface (its end of the veth pair) down or up.
    pub(crate) fn set_link(&self, host: Name, up: bool) {
        let state = if up { "up" } else { "down" };
        must(
            "ip",
            &["-n", &self.namespace(host), "link", "set", "eth0", state],
        );
    }

    /// A client of `host`, connected from inside `host`'s namespace to
    /// `frontend` (default: the host's address), saying hello as `name`.
    pub(crate) fn client(&self, host: Name, name: &str) -> NsClient {
        self.client_to(host, &format!("{}:{HOST_PORT}", host.ip()), name)
    }

    /// A client in `host`'s namespace connected to `target` (`IP:PORT`).
    pub(crate) fn client_to(&self, host: Name, target: &str, name: &str) -> NsClient {
        NsClient::connect(
            Path::new("/run/netns").join(self.namespace(host)),
            target,
            name,
        )
        .unwrap_or_else(|e| {
            panic!(
                "client {name} in {host:?} to {target}: {e}; log:\n{}",
                self.log_tail(host, 30)
            )
        })
    }

    /// The established TCP connections in `host`'s namespace, as `ss`
    /// lists them (`LOCAL PEER` per line).
    pub(crate) fn connections(&self, host: Name) -> Vec<(String, String)> {
        let output = must(
            "ip",
            &[
                "netns",
                "exec",
                &self.namespace(host),
                "ss",
                "-Htn",
                "state",
                "established",
            ],
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                // Recv-Q Send-Q Local Peer
                (fields.len() >= 4).then(|| (fields[2].to_owned(), fields[3].to_owned()))
            })
            .collect()
    }

    /// The CPU time (user + system, in clock ticks) `host`'s process has
    /// used so far.
    pub(crate) fn cpu_ticks(&self, host: Name) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid(host)))
            .expect("read the host's /proc stat");
        // Fields after the parenthesised command name; utime and stime are
        // fields 14 and 15 of the whole line.
        let after = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// The last `lines` lines of `host`'s log.
    pub(crate) fn log_tail(&self, host: Name, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(host)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Lines of `host`'s log containing `needle`.
    pub(crate) fn log_lines_with(&self, host: Name, needle: &str) -> usize {
        std::fs::read_to_string(self.log_path(host))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Ok(keep) = std::env::var("HOSTMUX_TEST_KEEP_LOGS") {
                for host in Name::ALL {
                    let _ = std::fs::copy(
                        self.log_path(host),
                        format!("{keep}/{}-{}.log", self.run, host.letter()),
                    );
                }
            }
            for host in Name::ALL {
                let _ = writeln!(
                    std::io::stderr(),
                    "--- {} host {host:?} log (last lines):\n{}",
                    self.run,
                    self.log_tail(host, 15)
                );
            }
        }
        for served in self.hosts.iter_mut().flatten() {
            let _ = served.child.kill();
            let _ = served.child.wait();
        }
        for ns in self.namespaces.iter().rev() {
            // Whatever still runs in the namespace (procs of a killed host
            // on their way out) is ours: SIGKILL it before the namespace
            // goes.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                let me = std::process::id().to_string();
                let listed = String::from_utf8_lossy(&out.stdout);
                for pid in listed.split_whitespace().filter(|pid| *pid != me) {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}
