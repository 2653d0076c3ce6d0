//! Spreading frontend connections across I/O threads.
//!
//! With several I/O threads, thread 0 accepts every frontend connection
//! (through tokio's reactor: accepts are rare) and hands each, as a plain
//! `std` socket, to the threads in turn (round robin, itself included);
//! the thread it lands on adopts it into its own runtime
//! ([`Frontend::adopt`]), admits it under its connection cap and serves it
//! from the hello on: the token check, the client-name binding and every
//! frame run there. Why one acceptor and not `SO_REUSEPORT`: Unix sockets
//! have no `SO_REUSEPORT`, and one acceptor spreads connections evenly
//! whatever the kernel's hash does with few peers.
//!
//! Each thread keeps its own connection budget (cells, not atomics: it is
//! charged on every read) and reply memory, holding an equal share of
//! [`HostConfig::conn_memory`], [`HostConfig::max_connections`] and
//! [`HostConfig::reply_memory`] ([`thread_share`]); round robin keeps the
//! shares evenly used.

use std::io;
use std::time::{Duration, Instant};

use super::accept::{Door, Serving};
use super::{Command, Control};
use crate::config::HostConfig;
use crate::frontend::{Frontend, StdListener};

/// A frontend connection accepted by one I/O thread for another.
#[derive(Debug)]
pub(crate) enum Accepted {
    /// A TCP connection and its peer.
    Tcp(std::net::TcpStream, std::net::SocketAddr),
    /// A Unix-socket connection.
    Unix(std::os::unix::net::UnixStream),
}

impl Accepted {
    /// The peer, for logs and the connection cap.
    fn peer(&self) -> String {
        match self {
            Accepted::Tcp(_, peer) => peer.to_string(),
            Accepted::Unix(_) => "unix".to_owned(),
        }
    }
}

/// Thread 0's frontend listener and the other threads.
pub(crate) struct Acceptor {
    listener: Listener,
    /// Threads 1.. (thread 0 serves its own turn).
    threads: Vec<Control>,
}

enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Acceptor {
    /// Adopts the bound listener into tokio's reactor (call inside the
    /// thread's runtime).
    pub(crate) fn new(listener: StdListener, threads: Vec<Control>) -> io::Result<Self> {
        let listener = match listener {
            StdListener::Tcp(l) => Listener::Tcp(tokio::net::TcpListener::from_std(l)?),
            StdListener::Unix(l) => Listener::Unix(tokio::net::UnixListener::from_std(l)?),
        };
        Ok(Self { listener, threads })
    }

    async fn accept(&self) -> io::Result<Accepted> {
        match &self.listener {
            Listener::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                Ok(Accepted::Tcp(stream.into_std()?, peer))
            }
            Listener::Unix(l) => {
                let (stream, _) = l.accept().await?;
                Ok(Accepted::Unix(stream.into_std()?))
            }
        }
    }
}

/// Thread 0's accept loop: every connection goes to the next thread in turn.
pub(super) async fn hand_off_loop<F: Frontend>(acceptor: Acceptor, serving: Serving) {
    let mut next = 0usize;
    loop {
        let accepted = match acceptor.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                // Out of fds and the like: do not spin on the error.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let thread = next;
        next = (next + 1) % (acceptor.threads.len() + 1);
        if thread == 0 {
            adopt::<F>(accepted, &serving);
            continue;
        }
        if acceptor.threads[thread - 1]
            .send(Command::Adopt(accepted))
            .is_err()
        {
            // That thread is gone (the host is stopping): the connection
            // was dropped with the command, which closes it.
            tracing::warn!(thread, "I/O thread gone; connection closed");
        }
    }
}

/// Serves a connection accepted for this thread: admitted under this
/// thread's cap (dropped, hence closed, over it) and adopted into its
/// runtime.
pub(super) fn adopt<F: Frontend>(accepted: Accepted, serving: &Serving) {
    let peer = accepted.peer();
    let Some(place) = serving.budget.admit(&peer, Instant::now()) else {
        return;
    };
    let (reader, writer) = match F::adopt(accepted, serving.cfg.tls.as_ref()) {
        Ok(halves) => halves,
        Err(e) => {
            tracing::warn!(error = %e, peer, "cannot adopt an accepted connection");
            return;
        }
    };
    let span = tracing::info_span!("connection", peer = %peer, frontend = F::NAME);
    serving.spawn::<F>((reader, writer), Door::Frontend { place, peer }, span);
}

/// One thread's share of the host-wide limits: the connections' memory
/// budget, the connection cap and the reply memory, each divided by the
/// thread count (rounded up).
pub(crate) fn thread_share(cfg: &HostConfig, threads: usize) -> HostConfig {
    let threads = threads.max(1);
    HostConfig {
        conn_memory: cfg.conn_memory.div_ceil(threads),
        max_connections: cfg.max_connections.div_ceil(threads),
        reply_memory: cfg.reply_memory.div_ceil(threads),
        ..cfg.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_thread_gets_an_equal_share_of_the_limits_rounded_up() {
        let cfg = HostConfig {
            conn_memory: 1000,
            max_connections: 5,
            ..HostConfig::default()
        };
        let one = thread_share(&cfg, 1);
        assert_eq!((one.conn_memory, one.max_connections), (1000, 5));
        let two = thread_share(&cfg, 2);
        assert_eq!((two.conn_memory, two.max_connections), (500, 3));
    }
}
