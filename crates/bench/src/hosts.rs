//! The receiving side of the cross-host mode: two `hostmux serve`
//! processes on loopback, A and B, each configured as the other's peer with
//! a shared peer token, as an operator would run them on two machines.
//!
//! The load generator is a client of A. For [`System::SameHost`] the sink
//! or echo proc runs on A (the frame never leaves A); for
//! [`System::CrossHost`] it runs on B and every frame crosses the link from
//! A to B, its answer the link from B to A. Both systems start both hosts,
//! so the two differ only in where the proc is.
//!
//! [`System::SameHost`]: super::System::SameHost
//! [`System::CrossHost`]: super::System::CrossHost

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use hostmux_host::ControlClient;
use hostmux_wire::SpawnRequest;
use rustix::process::{kill_process, Pid, Signal};

use crate::procs::ProcMode;

/// How long a `serve` may take to bind its frontend and say so.
const SERVE_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a proc may take to report ready.
const PROC_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a `serve` may take to stop its procs and exit after SIGTERM.
const SERVE_EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Grace the hosts give their procs at shutdown.
const SHUTDOWN_GRACE: &str = "2s";
/// The first line `hostmux serve` prints once its frontend is bound.
const SERVING_LINE: &str = "hostmux serving on ";

/// Which of the two hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The host the load generator is a client of.
    A,
    /// The other host.
    B,
}

/// Two `hostmux serve` processes that are each other's peers. Dropping it
/// kills both (and so, by their death signal, their procs) and removes the
/// files it made; [`stop`](Self::stop) shuts them down politely first.
pub(crate) struct HostPair {
    hosts: Vec<ServeProcess>,
    dir: PathBuf,
}

struct ServeProcess {
    child: Child,
    addr: String,
    control_socket: PathBuf,
}

impl HostPair {
    /// Starts host A and host B on free loopback ports and waits until both
    /// have bound their frontends.
    pub(crate) fn start(hostmux: &Path) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("hostmux-bench-hosts-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the benchmark folder {}", dir.display()))?;
        let mut pair = Self {
            hosts: Vec::new(),
            dir,
        };
        let peer_token = pair.dir.join("peer-token");
        std::fs::write(&peer_token, "hostmux-bench-peers\n")
            .with_context(|| format!("writing {}", peer_token.display()))?;
        let addrs = [free_loopback_addr()?, free_loopback_addr()?];
        for (index, name) in ["a", "b"].into_iter().enumerate() {
            let control_socket = pair.dir.join(format!("{name}.sock"));
            let peer = &addrs[1 - index];
            let mut child = Command::new(hostmux)
                .arg("serve")
                .args(["--frontend", &addrs[index]])
                .arg("--control-socket")
                .arg(&control_socket)
                .args(["--peer", peer])
                .arg("--peer-token-file")
                .arg(&peer_token)
                .args(["--shutdown-grace", SHUTDOWN_GRACE])
                // Warnings and errors only: a benchmark's stderr is its progress.
                .env("HOSTMUX_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .with_context(|| format!("starting host {name} (hostmux serve)"))?;
            let stdout = child.stdout.take().context("the host's stdout")?;
            pair.hosts.push(ServeProcess {
                child,
                addr: addrs[index].clone(),
                control_socket,
            });
            wait_until_serving(stdout, &addrs[index])
                .with_context(|| format!("host {name} did not start"))?;
        }
        Ok(pair)
    }

    fn host(&self, side: Side) -> &ServeProcess {
        &self.hosts[side as usize]
    }

    /// The frontend address of host `side` (`tcp:127.0.0.1:PORT`).
    pub(crate) fn addr(&self, side: Side) -> &str {
        &self.host(side).addr
    }

    /// The pids of both hosts, for their CPU time.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.hosts.iter().map(|h| h.child.id()).collect()
    }

    /// Spawns this binary as proc `name` in `mode` on host `side` through
    /// its control socket; returns the proc's pid once it is ready.
    pub(crate) async fn spawn(
        &self,
        side: Side,
        name: &str,
        mode: ProcMode,
        ring_bytes: usize,
    ) -> anyhow::Result<u32> {
        let host = self.host(side);
        let mut control = ControlClient::connect_unix(&host.control_socket)
            .await
            .with_context(|| {
                format!(
                    "connecting to the control socket {}",
                    host.control_socket.display()
                )
            })?;
        // The proc is this benchmark binary in its hidden proc mode.
        let exe = std::env::current_exe().context("finding the hostmux-bench binary")?;
        let request = SpawnRequest {
            name: name.to_owned(),
            program: exe.to_string_lossy().into_owned(),
            args: vec!["__proc".to_owned(), mode.as_arg().to_owned()],
            env: Vec::new(),
            inbound_ring_bytes: u32::try_from(ring_bytes).context("ring size")?,
            outbound_ring_bytes: u32::try_from(ring_bytes).context("ring size")?,
            ready_timeout_ms: PROC_READY_TIMEOUT.as_millis() as u64,
            user: None,
            group: None,
            restart: Default::default(),
            ready: String::new(),
            watchdog_ms: 0,
        };
        control
            .spawn(request)
            .await
            .with_context(|| format!("spawning proc {name:?} on host {side:?}"))
    }

    /// SIGTERM to both hosts (each terminates its procs), then waits for
    /// them to exit; a host still running after the timeout is killed and
    /// reported.
    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
        let mut failures = Vec::new();
        let deadline = Instant::now() + SERVE_EXIT_TIMEOUT;
        for mut host in std::mem::take(&mut self.hosts) {
            // The child is not reaped until its waiter below returns, so
            // its pid cannot name another process. An error (it exited
            // already) shows in its status.
            let pid = Pid::from_raw(host.child.id() as i32).context("a host's pid")?;
            let _ = kill_process(pid, Signal::TERM);
            let (tx, rx) = mpsc::channel();
            let addr = host.addr.clone();
            let waiter = std::thread::spawn(move || {
                let status = host.child.wait();
                let _ = tx.send(());
                status
            });
            if rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .is_err()
            {
                let _ = kill_process(pid, Signal::KILL);
                failures.push(format!(
                    "host {addr} did not exit within {SERVE_EXIT_TIMEOUT:?} of SIGTERM"
                ));
            }
            match waiter.join() {
                Ok(Ok(status)) if status.success() => {}
                Ok(Ok(status)) => failures.push(format!("host {addr} exited {status}")),
                Ok(Err(e)) => failures.push(format!("waiting for host {addr}: {e}")),
                Err(_) => failures.push(format!("the waiter of host {addr} panicked")),
            }
        }
        if !failures.is_empty() {
            bail!("stopping the benchmark hosts: {}", failures.join("; "));
        }
        Ok(())
    }
}

impl Drop for HostPair {
    fn drop(&mut self) {
        for host in &mut self.hosts {
            if matches!(host.child.try_wait(), Ok(None)) {
                let _ = host.child.kill();
                let _ = host.child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback address nobody listened on a moment ago. (The port is named
/// as a peer before its host binds it, so it cannot be port 0; a clash with
/// another program in between fails the host's start, loudly.)
fn free_loopback_addr() -> anyhow::Result<String> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(format!("tcp:{}", listener.local_addr()?))
}

/// Waits until a `serve` whose stdout is `stdout` prints that it serves on
/// `addr`, then keeps draining its stdout (what it prints at shutdown) on a
/// thread until it exits.
fn wait_until_serving(stdout: std::process::ChildStdout, addr: &str) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next();
        let _ = tx.send(first);
        for _ in lines {}
    });
    match rx.recv_timeout(SERVE_READY_TIMEOUT) {
        Ok(Some(Ok(line))) if line.starts_with(SERVING_LINE) && line.contains(addr) => Ok(()),
        Ok(Some(Ok(line))) => bail!("expected {SERVING_LINE:?}{addr}, it printed {line:?}"),
        Ok(Some(Err(e))) => Err(e).context("reading the host's stdout"),
        Ok(None) => bail!("it exited before serving (its stderr says why)"),
        Err(_) => bail!("it did not report serving on {addr} within {SERVE_READY_TIMEOUT:?}"),
    }
}
