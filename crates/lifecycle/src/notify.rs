//! systemd's `sd_notify` protocol on the manager's side: one `SOCK_DGRAM`
//! Unix socket per proc, announced to it in `NOTIFY_SOCKET`.
//!
//! A proc spawned with [`Readiness::Notify`](crate::Readiness::Notify) or a
//! [watchdog](crate::ProcessConfig::watchdog) gets a socket at
//! `<notify dir>/<16 hex digits>.sock` (the name is fresh and random),
//! mode 0600 and owned by the user the proc runs as, in a directory of mode
//! 0711 that only the host can list. The notify dir is the manager's
//! ([`ProcessProcManagerBuilder::notify_dir`](crate::ProcessProcManagerBuilder::notify_dir)),
//! unless the proc runs as another user who could not reach it (a parent
//! directory of mode 0700) or its paths would not fit `sun_path`: then it
//! is the system's temporary directory. Each datagram is newline-separated
//! `KEY=VALUE` assignments, as `sd_notify(3)` sends them:
//!
//! - `READY=1`: the proc is ready (for [`Readiness::Notify`](crate::Readiness::Notify)).
//! - `STATUS=text`: a free-form status, kept (at most [`MAX_STATUS_LEN`]
//!   bytes) and shown by [`ProcHandle::status_text`](crate::ProcHandle::status_text).
//! - `WATCHDOG=1`: a keep-alive ping; `WATCHDOG=trigger`: the proc asks to
//!   be treated as hung now.
//! - anything else (`STOPPING=1`, `MAINPID=`, `ERRNO=`, ...) is ignored.
//!
//! # Who may send
//!
//! The socket has `SO_PASSCRED` set, so every datagram carries the sender's
//! kernel-checked pid and uid (`SCM_CREDENTIALS`). A datagram counts only if
//! its uid is the proc's uid, and its pid is the proc's own or one of its
//! descendants (checked through `/proc/<pid>/stat`'s parent chain). A sender
//! that has already exited when the datagram is read cannot be traced; it
//! is accepted on its uid alone (a shell's `python3 -c ...` helper that
//! sends and exits at once is the common case). Everything else is dropped
//! with a DEBUG log line.

use std::ffi::OsString;
use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags};
use tokio::io::Interest;
use tokio::net::UnixDatagram;

/// The environment variable that names the notify socket.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";
/// The watchdog interval in microseconds, set when a watchdog is on.
pub const WATCHDOG_USEC_ENV: &str = "WATCHDOG_USEC";
/// The pid the watchdog applies to (the proc's own, as its PID namespace
/// sees it), set when a watchdog is on.
pub const WATCHDOG_PID_ENV: &str = "WATCHDOG_PID";

/// How long a proc whose watchdog expired gets between SIGTERM and SIGKILL.
pub const WATCHDOG_STOP_GRACE: Duration = Duration::from_secs(5);

/// Longest `STATUS=` text kept; longer ones are cut at a character boundary.
pub const MAX_STATUS_LEN: usize = 256;

/// Largest datagram read; longer ones are dropped (systemd's
/// `NOTIFY_BUFFER_MAX` is the same, `PIPE_BUF`).
const MAX_DATAGRAM: usize = 4096;

/// Longest path a Unix socket can have (`sun_path` less its NUL).
const MAX_SOCKET_PATH_LEN: usize = 107;
/// Length of a socket's file name: 16 hex digits and `.sock`.
const SOCKET_NAME_LEN: usize = 21;

/// How deep a sender's parent chain is followed to find the proc.
const MAX_ANCESTRY_DEPTH: usize = 64;

/// What one accepted datagram said.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Notification {
    /// `READY=1`.
    pub(crate) ready: bool,
    /// The last `STATUS=` in it.
    pub(crate) status: Option<String>,
    /// `WATCHDOG=1`.
    pub(crate) watchdog_ping: bool,
    /// `WATCHDOG=trigger`.
    pub(crate) watchdog_trigger: bool,
}

impl Notification {
    /// Parses one datagram (invalid UTF-8 lines are skipped).
    pub(crate) fn parse(datagram: &[u8]) -> Self {
        let mut notification = Self::default();
        for line in datagram.split(|b| *b == b'\n') {
            let Ok(line) = std::str::from_utf8(line) else {
                continue;
            };
            match line.split_once('=') {
                Some(("READY", "1")) => notification.ready = true,
                Some(("STATUS", text)) => notification.status = Some(bounded(text)),
                Some(("WATCHDOG", "1")) => notification.watchdog_ping = true,
                Some(("WATCHDOG", "trigger")) => notification.watchdog_trigger = true,
                _ => {}
            }
        }
        notification
    }
}

fn bounded(text: &str) -> String {
    if text.len() <= MAX_STATUS_LEN {
        return text.to_owned();
    }
    let mut end = MAX_STATUS_LEN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// A proc's sd_notify watchdog: armed when the proc becomes ready (as
/// systemd arms it when a service has started), pushed back by every
/// `WATCHDOG=1`, expired when a whole interval passes without one.
#[derive(Debug)]
pub(crate) struct Watchdog {
    interval: Duration,
    deadline: Option<Instant>,
}

impl Watchdog {
    /// A watchdog with this interval; zero never arms.
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            deadline: None,
        }
    }

    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    /// The proc is ready: the first interval starts now.
    pub(crate) fn arm(&mut self, now: Instant) {
        if !self.interval.is_zero() {
            self.deadline = Some(now + self.interval);
        }
    }

    /// A `WATCHDOG=1`: a new interval starts now (ignored before arming).
    pub(crate) fn ping(&mut self, now: Instant) {
        if self.deadline.is_some() {
            self.deadline = Some(now + self.interval);
        }
    }

    pub(crate) fn disarm(&mut self) {
        self.deadline = None;
    }

    /// When the driver must wake up to check it.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// True once, when `now` is at or past the deadline (it is then
    /// disarmed).
    pub(crate) fn expired(&mut self, now: Instant) -> bool {
        if self.deadline.is_some_and(|at| now >= at) {
            self.deadline = None;
            return true;
        }
        false
    }
}

/// A manager's directories for notify sockets: one under the configured
/// base, created (mode 0711) on first use; and, for procs running as
/// another user when that base is not searchable by others (systemd's
/// `RuntimeDirectoryMode=0700`), one under the system's temporary
/// directory. Both are removed when the manager is dropped.
#[derive(Debug)]
pub(crate) struct NotifyDir {
    base: PathBuf,
    /// Under `base`, then under the temporary directory.
    made: Mutex<[Option<PathBuf>; 2]>,
}

impl NotifyDir {
    pub(crate) fn new(base: PathBuf) -> Self {
        Self {
            base,
            made: Mutex::new([None, None]),
        }
    }

    /// The directory for a socket a proc running as `uid` can reach,
    /// created on first call.
    fn path_for(&self, uid: u32) -> io::Result<PathBuf> {
        let name = format!(
            "hostmux-notify-{}-{}",
            std::process::id(),
            &crate::readiness::new_nonce()[..8]
        );
        let under_base = self.base.join(&name);
        // A socket path must fit `sun_path`, and another user must be able
        // to reach it; otherwise the temporary directory serves.
        // (`+ 1`: the `/` before the socket's name.)
        let path_len = under_base.as_os_str().len() + 1 + SOCKET_NAME_LEN;
        let fits = path_len <= MAX_SOCKET_PATH_LEN;
        let reachable =
            uid == rustix::process::geteuid().as_raw() || searchable_by_others(&self.base);
        let (slot, dir) = if fits && reachable {
            (0, under_base)
        } else {
            (1, std::env::temp_dir().join(&name))
        };
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dir) = &made[slot] {
            return Ok(dir.clone());
        }
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::create_dir(&dir)?;
        // Others may pass through to a socket they know the name of (a proc
        // running as another user) but not list the directory.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))?;
        made[slot] = Some(dir.clone());
        Ok(dir)
    }
}

/// Whether every directory from `/` down to `dir` lets others search it.
fn searchable_by_others(dir: &Path) -> bool {
    let Ok(dir) = std::path::absolute(dir) else {
        return false;
    };
    dir.ancestors().all(|step| {
        std::fs::metadata(step).is_ok_and(|meta| meta.permissions().mode() & 0o001 != 0)
    })
}

impl Drop for NotifyDir {
    fn drop(&mut self) {
        let made = self.made.get_mut().unwrap_or_else(|e| e.into_inner());
        for dir in made.iter().flatten() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// One proc's notify socket; its file is removed when this is dropped.
#[derive(Debug)]
pub(crate) struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    uid: u32,
}

impl NotifySocket {
    /// Binds a fresh socket in `dir` for a proc that runs as `uid` (chowned
    /// to it if that is not this process's user). Must be called inside a
    /// tokio runtime.
    pub(crate) fn bind(dir: &NotifyDir, uid: u32) -> io::Result<Self> {
        let path = dir
            .path_for(uid)?
            .join(format!("{}.sock", &crate::readiness::new_nonce()[..16]));
        let socket = std::os::unix::net::UnixDatagram::bind(&path)?;
        let socket = Self::configure(socket, &path, uid).inspect_err(|_| {
            let _ = std::fs::remove_file(&path);
        })?;
        Ok(Self {
            socket: UnixDatagram::from_std(socket)?,
            path,
            uid,
        })
    }

    fn configure(
        socket: std::os::unix::net::UnixDatagram,
        path: &Path,
        uid: u32,
    ) -> io::Result<std::os::unix::net::UnixDatagram> {
        socket.set_nonblocking(true)?;
        rustix::net::sockopt::set_socket_passcred(&socket, true)?;
        if uid != rustix::process::geteuid().as_raw() {
            std::os::unix::fs::chown(path, Some(uid), None)?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(socket)
    }

    /// The value of `NOTIFY_SOCKET` for the proc.
    pub(crate) fn env_value(&self) -> OsString {
        self.path.clone().into_os_string()
    }

    /// Waits for the next datagram from the proc (`proc_pid`) or its
    /// descendants; datagrams from anyone else are dropped.
    pub(crate) async fn recv(&self, proc_pid: u32) -> io::Result<Notification> {
        loop {
            let received = self
                .socket
                .async_io(Interest::READABLE, || self.recv_one())
                .await?;
            if let Some(notification) = self.accept(received, proc_pid) {
                return Ok(notification);
            }
        }
    }

    /// A datagram already queued, without waiting (`None`: none left).
    pub(crate) fn try_recv(&self, proc_pid: u32) -> Option<Notification> {
        loop {
            let received = self
                .socket
                .try_io(Interest::READABLE, || self.recv_one())
                .ok()?;
            if let Some(notification) = self.accept(received, proc_pid) {
                return Some(notification);
            }
        }
    }

    /// Reads one datagram with the sender's credentials.
    fn recv_one(&self) -> io::Result<Option<(Vec<u8>, rustix::net::UCred)>> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = rustix::net::recvmsg(
            self.socket.as_fd(),
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        let credentials = control.drain().find_map(|message| match message {
            RecvAncillaryMessage::ScmCredentials(credentials) => Some(credentials),
            _ => None,
        });
        if received.flags.contains(ReturnFlags::TRUNC) {
            tracing::debug!(path = %self.path.display(), "dropped an oversized notify datagram");
            return Ok(None);
        }
        buf.truncate(received.bytes);
        Ok(credentials.map(|credentials| (buf, credentials)))
    }

    fn accept(
        &self,
        received: Option<(Vec<u8>, rustix::net::UCred)>,
        proc_pid: u32,
    ) -> Option<Notification> {
        let (datagram, credentials) = received?;
        let pid = credentials.pid.as_raw_nonzero().get() as u32;
        let uid = credentials.uid.as_raw();
        if uid != self.uid || !descends_from(pid, proc_pid) {
            tracing::debug!(
                sender_pid = pid,
                sender_uid = uid,
                proc_pid,
                "dropped a notify datagram from a process that is not the proc's"
            );
            return None;
        }
        Some(Notification::parse(&datagram))
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether `pid` is `ancestor` or one of its descendants, as far as
/// `/proc` tells; a `pid` that is gone already counts (see the module docs).
fn descends_from(pid: u32, ancestor: u32) -> bool {
    let mut current = pid;
    for _ in 0..MAX_ANCESTRY_DEPTH {
        if current == ancestor {
            return true;
        }
        match parent_of(current) {
            Some(parent) if parent > 1 => current = parent,
            Some(_) => return false,
            // The sender exited before we looked (only the first lookup can
            // find nothing for a reason other than a race up the chain).
            None => return current == pid,
        }
    }
    false
}

/// The parent pid of `pid`, from `/proc/<pid>/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may contain spaces and parentheses.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Writes `value` in decimal and a NUL at the start of `out` (at least 11
/// bytes). Async-signal-safe (no allocation, no formatting machinery): the
/// spawned child writes its `WATCHDOG_PID` with it between clone and exec.
pub(crate) fn write_decimal(out: &mut [u8], mut value: u32) {
    let mut digits = [0u8; 10];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (value % 10) as u8;
        len += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for (slot, digit) in out.iter_mut().zip(digits[..len].iter().rev()) {
        *slot = *digit;
    }
    out[len] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_parse_into_ready_status_and_watchdog() {
        let n = Notification::parse(b"READY=1\nSTATUS=warming up: 3/4\nMAINPID=7");
        assert!(n.ready);
        assert_eq!(n.status.as_deref(), Some("warming up: 3/4"));
        assert!(!n.watchdog_ping && !n.watchdog_trigger);
        let n = Notification::parse(b"WATCHDOG=1");
        assert!(n.watchdog_ping && !n.ready);
        assert!(Notification::parse(b"WATCHDOG=trigger").watchdog_trigger);
        assert!(!Notification::parse(b"READY=0\nREADY").ready);
        let long = format!("STATUS={}", "é".repeat(MAX_STATUS_LEN));
        let status = Notification::parse(long.as_bytes()).status.unwrap();
        assert!(status.len() <= MAX_STATUS_LEN && status.len() >= MAX_STATUS_LEN - 1);
    }

    #[test]
    fn watchdog_arms_at_ready_is_pushed_back_by_pings_and_expires_once() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut watchdog = Watchdog::new(second);
        watchdog.ping(start);
        assert_eq!(
            watchdog.deadline(),
            None,
            "pings before ready do not arm it"
        );
        watchdog.arm(start);
        assert_eq!(watchdog.deadline(), Some(start + second));
        watchdog.ping(start + second / 2);
        assert!(!watchdog.expired(start + second));
        assert!(watchdog.expired(start + second * 3 / 2));
        assert!(!watchdog.expired(start + second * 10), "fires once");

        let mut off = Watchdog::new(Duration::ZERO);
        off.arm(start);
        assert_eq!(off.deadline(), None);
    }

    #[test]
    fn a_process_descends_from_itself_and_its_ancestors_but_not_others() {
        let me = std::process::id();
        let parent = parent_of(me).expect("this process has a parent");
        assert!(descends_from(me, me));
        assert!(descends_from(me, parent));
        assert!(!descends_from(parent, me));
        assert!(!descends_from(1, me));
    }

    #[test]
    fn decimal_pids_are_written_with_a_terminating_nul() {
        for (value, text) in [(0, &b"0\0"[..]), (7, b"7\0"), (4_194_304, b"4194304\0")] {
            let mut out = [0xffu8; 11];
            write_decimal(&mut out, value);
            assert_eq!(&out[..text.len()], text);
        }
        let mut out = [0xffu8; 11];
        write_decimal(&mut out, u32::MAX);
        assert_eq!(&out, b"4294967295\0");
    }
}
