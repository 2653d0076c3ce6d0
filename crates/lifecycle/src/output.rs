//! Where a proc's stdout and stderr go, and the bounded captured tail.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt as _;

/// Destination of one of a proc's output streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputMode {
    /// Share the host's stream.
    Inherit,
    /// `/dev/null`.
    Null,
    /// Append to this file (created if missing).
    File(PathBuf),
    /// Keep the last `max_bytes` bytes in memory; the terminal status
    /// carries the final tail ([`TerminalStatus::output`]), and
    /// [`ProcessHandle::output_tail`](crate::ProcessHandle::output_tail)
    /// shows it as it grows.
    ///
    /// [`TerminalStatus::output`]: crate::TerminalStatus::output
    Capture {
        /// The tail's bound, in bytes.
        max_bytes: usize,
    },
}

/// The captured ends of a proc's output streams.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct OutputTail {
    /// Last bytes of stdout (empty if stdout was not captured).
    pub stdout: Vec<u8>,
    /// Last bytes of stderr (empty if stderr was not captured).
    pub stderr: Vec<u8>,
    /// Bytes that were written but fell out of the bounded tails.
    pub dropped_bytes: u64,
    /// True if every captured stream was read to EOF. False in a live
    /// snapshot, and in a terminal status when a descendant that escaped
    /// the proc's process group and cgroup still held a stream open when
    /// the drain limit after the proc's death ran out.
    pub complete: bool,
}

#[derive(Debug, Default)]
struct Tail {
    bytes: VecDeque<u8>,
    max: usize,
    dropped: u64,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.bytes.extend(data);
        let excess = self.bytes.len().saturating_sub(self.max);
        self.bytes.drain(..excess);
        self.dropped += excess as u64;
    }
}

/// Both captured tails of one proc.
#[derive(Debug, Default)]
pub(crate) struct Tails {
    stdout: Mutex<Tail>,
    stderr: Mutex<Tail>,
}

/// Which stream a reader feeds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Tails {
    /// The tails as they are now; `complete` says whether every reader
    /// reached EOF.
    pub(crate) fn snapshot(&self, complete: bool) -> OutputTail {
        let out = self.stdout.lock().unwrap_or_else(|e| e.into_inner());
        let err = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        OutputTail {
            stdout: out.bytes.iter().copied().collect(),
            stderr: err.bytes.iter().copied().collect(),
            dropped_bytes: out.dropped + err.dropped,
            complete,
        }
    }

    fn tail(&self, stream: Stream) -> &Mutex<Tail> {
        match stream {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        }
    }

    /// Reads `pipe` to EOF into the tail of `stream`, bounded by `max`.
    pub(crate) async fn drain(
        self: Arc<Self>,
        stream: Stream,
        max: usize,
        mut pipe: tokio::net::unix::pipe::Receiver,
    ) {
        self.tail(stream)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .max = max;
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            self.tail(stream)
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(&buf[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_only_the_last_max_bytes_and_counts_the_rest() {
        let mut tail = Tail {
            max: 4,
            ..Tail::default()
        };
        tail.push(b"abc");
        tail.push(b"defg");
        assert_eq!(tail.bytes.iter().copied().collect::<Vec<_>>(), b"defg");
        assert_eq!(tail.dropped, 3);
    }
}
