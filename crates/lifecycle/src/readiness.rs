//! The readiness protocol shared by the manager and the child, defined in
//! `hostmux-boot` and re-exported here.
//!
//! At spawn the manager creates a pipe, places its write end in the child at
//! the fd number in [`READY_FD_ENV`], and puts a fresh 128-bit nonce (32
//! lowercase hex digits) in [`READY_NONCE_ENV`] and the proc's name in
//! [`PROC_NAME_ENV`]. When ready, the child writes exactly one record:
//!
//! ```text
//! hostmux-ready <nonce>\n        (47 bytes, one write(2), < PIPE_BUF so atomic)
//! ```
//!
//! and closes the fd. The manager reads the pipe: the exact record → ready;
//! EOF before it → the proc died (or gave up its pipe) before ready, which
//! fails at once; anything else → protocol violation, the proc is killed.
//! The format and its check are [`hostmux_boot::readiness`]; the child side
//! is [`hostmux_boot::report_ready`] (also [`crate::child::report_ready`]).
//!
//! That is [`Readiness::Protocol`](crate::Readiness::Protocol). Programs
//! that do not speak it choose another [`Readiness`](crate::Readiness):
//! `OnSpawn` (ready once exec succeeded), `Notify` (systemd's `READY=1`,
//! see [`crate::notify`]) or `Tcp(addr)` (ready once a TCP connect to
//! `addr` succeeds, tried every 10 ms doubling to 250 ms, each attempt
//! bounded by 1 s). All of them are bounded by the spawn-ready timeout.

use std::net::SocketAddr;
use std::time::Duration;

pub use hostmux_boot::env::{PROC_NAME_ENV, READY_FD_ENV, READY_NONCE_ENV};
pub use hostmux_boot::readiness::{NONCE_HEX_LEN, READY_RECORD_LEN, READY_RECORD_PREFIX};

pub(crate) use hostmux_boot::readiness::{check_record, new_nonce, RecordCheck};

/// First pause between TCP probes; it doubles up to [`TCP_PROBE_MAX_BACKOFF`].
const TCP_PROBE_FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// Longest pause between TCP probes.
const TCP_PROBE_MAX_BACKOFF: Duration = Duration::from_millis(250);
/// Longest one connect attempt may take (a filtered port never answers).
const TCP_CONNECT_LIMIT: Duration = Duration::from_secs(1);

/// Resolves once a TCP connection to `addr` succeeded (and closes it).
/// Never gives up: the spawn-ready timeout bounds it.
pub(crate) async fn probe_tcp(addr: SocketAddr) {
    let mut backoff = TCP_PROBE_FIRST_BACKOFF;
    loop {
        let attempt = tokio::time::timeout(TCP_CONNECT_LIMIT, tokio::net::TcpStream::connect(addr));
        if let Ok(Ok(_connected)) = attempt.await {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(TCP_PROBE_MAX_BACKOFF);
    }
}
