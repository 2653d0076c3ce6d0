//! `GET /metrics`: the host's counters in the Prometheus text format
//! (version 0.0.4), for `serve --metrics ADDR`.
//!
//! Each scrape takes the same snapshot `hostmux stats` and `ps` read
//! ([`Host::stats`], with [`Host::list`] made from it: one command to the
//! I/O thread, answered between two batches), renders it with the
//! `prometheus-client` crate and closes the connection. Nothing here
//! touches the data plane's hot path: the counters it shows are the plain
//! integers the data plane keeps anyway, and the endpoint runs on the
//! caller's tokio runtime, not on the I/O thread.
//!
//! The HTTP side is deliberately tiny: one request per connection, at most
//! [`MAX_REQUEST_BYTES`] of request head read within [`REQUEST_TIMEOUT`],
//! `GET` or `HEAD` of `/metrics` only (anything else gets a 4xx and the
//! connection is closed), at most [`MAX_SCRAPES_IN_FLIGHT`] connections
//! served at once (more are closed at accept). It has no authentication:
//! bind it to loopback or a private address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hostmux_lifecycle::ProcManager;
use hostmux_wire::ProcInfo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::host::WeakHost;
use crate::stats::HostStats;
use crate::{Host, HostError};

mod render;

pub use render::render;

/// The longest request head (request line and headers) read; a longer one
/// is answered `431` and closed.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// How long a client may take to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Scrape connections served at once; more are closed at accept.
pub const MAX_SCRAPES_IN_FLIGHT: usize = 8;
/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Everything one scrape shows: the host's counters and its proc list.
#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot {
    /// Counters of procs, connections, links, limits and lifecycle.
    pub stats: HostStats,
    /// What `ps` lists: live procs and the most recent gone ones.
    pub procs: Vec<ProcInfo>,
}

impl<M: ProcManager + 'static> Host<M> {
    /// The counters a scrape of `/metrics` shows (the same snapshot
    /// `hostmux stats` and `ps` read).
    pub async fn metrics_snapshot(&self) -> Result<MetricsSnapshot, HostError> {
        let stats = self.stats().await?;
        let procs = self.list_with(&stats);
        Ok(MetricsSnapshot { stats, procs })
    }

    /// Binds `addr` and serves `GET /metrics` on it from a task on the
    /// current tokio runtime. The task holds the host only while it answers
    /// a scrape: the first connection after the host is dropped ends it and
    /// closes the listener. Returns the bound address (with the port the
    /// kernel chose for port 0).
    pub async fn serve_metrics(&self, addr: SocketAddr) -> Result<SocketAddr, HostError> {
        let bind_error = |source| HostError::MetricsBind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let bound = listener.local_addr().map_err(bind_error)?;
        tokio::spawn(accept_scrapes(WeakHost::new(self), listener));
        tracing::info!(%bound, "serving metrics on http://{bound}/metrics");
        Ok(bound)
    }
}

async fn accept_scrapes<M: ProcManager + 'static>(host: WeakHost<M>, listener: TcpListener) {
    let in_flight = Arc::new(Semaphore::new(MAX_SCRAPES_IN_FLIGHT));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                // Out of fds and the like: do not spin on the error.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some(live) = host.upgrade() else { return };
        // Over the limit: dropping the stream closes it.
        let Ok(place) = in_flight.clone().try_acquire_owned() else {
            continue;
        };
        tokio::spawn(async move {
            answer(live, stream).await;
            drop(place);
        });
    }
}

/// Reads one request head and answers it; the connection then closes.
async fn answer<M: ProcManager + 'static>(host: Host<M>, mut stream: TcpStream) {
    let mut head = [0u8; MAX_REQUEST_BYTES];
    let read = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream, &mut head)).await;
    let response = match read {
        Err(_) => return,
        Ok(Err(_)) => return,
        Ok(Ok(None)) => Response::error(431, "Request Header Fields Too Large"),
        Ok(Ok(Some(len))) => match parse_request(&head[..len]) {
            Ok(Request { head_only }) => match host.metrics_snapshot().await {
                Ok(snapshot) => match render(&snapshot) {
                    Ok(body) => Response::metrics(body, head_only),
                    Err(_) => Response::error(500, "Internal Server Error"),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: no snapshot");
                    Response::error(503, "Service Unavailable")
                }
            },
            Err(refusal) => refusal,
        },
    };
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, response.write(&mut stream)).await;
    let _ = stream.shutdown().await;
}

/// Reads until the blank line that ends a request head. `Ok(Some(len))`:
/// the head is `buf[..len]`; `Ok(None)`: it does not fit in `buf`.
async fn read_head(stream: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
    let mut filled = 0;
    loop {
        if let Some(end) = find_head_end(&buf[..filled]) {
            return Ok(Some(end));
        }
        if filled == buf.len() {
            return Ok(None);
        }
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            // Closed before the head ended: answer what came, if anything
            // (the parser refuses a partial head as a bad request).
            return if filled == 0 {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            } else {
                Ok(Some(filled))
            };
        }
        filled += n;
    }
}

fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// A request this endpoint serves.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    /// `HEAD`: headers only.
    head_only: bool,
}

/// Checks a request head: `GET` or `HEAD` of `/metrics` (a query string
/// is ignored) over HTTP/1.x.
fn parse_request(head: &[u8]) -> Result<Request, Response> {
    let bad = || Response::error(400, "Bad Request");
    let text = std::str::from_utf8(head).map_err(|_| bad())?;
    if find_head_end(head).is_none() {
        return Err(bad());
    }
    let line = text.split("\r\n").next().ok_or_else(bad)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Err(bad());
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => {
            return Err(Response::error(405, "Method Not Allowed"));
        }
        _ => return Err(bad()),
    };
    let path = target.split('?').next().unwrap_or(target);
    if path != "/metrics" {
        return Err(Response::error(404, "Not Found"));
    }
    Ok(Request { head_only })
}

/// An HTTP response, written whole and followed by a close.
#[derive(Debug, PartialEq, Eq)]
struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
    head_only: bool,
}

impl Response {
    fn metrics(body: String, head_only: bool) -> Self {
        Response {
            status: 200,
            reason: "OK",
            content_type: CONTENT_TYPE,
            body,
            head_only,
        }
    }

    fn error(status: u16, reason: &'static str) -> Self {
        let hint = if status == 404 || status == 405 {
            "; this endpoint serves GET /metrics"
        } else {
            ""
        };
        Response {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: format!("{status} {reason}{hint}\n"),
            head_only: false,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let allow = if self.status == 405 {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        };
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }

    async fn write(&self, stream: &mut TcpStream) -> std::io::Result<()> {
        stream.write_all(&self.bytes()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_or_head_of_metrics_over_http_1_is_served() {
        let ok = |head: &str| parse_request(head.as_bytes());
        assert_eq!(
            ok("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(Request { head_only: false })
        );
        assert_eq!(
            ok("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Ok(Request { head_only: true })
        );
        let status = |head: &[u8]| parse_request(head).unwrap_err().status;
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 404);
        assert_eq!(status(b"POST /metrics HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(status(b"GET /metrics HTTP/2\r\n\r\n"), 400);
        assert_eq!(status(b"\x16\x03\x01\x02\x00\r\n\r\n"), 400, "a TLS hello");
        assert_eq!(status(b"GET /metrics\r\n\r\n"), 400);
        assert_eq!(status(b"GET /metrics HTTP/1.1\r\n"), 400, "no blank line");
        assert_eq!(status(b"get /metrics HTTP/1.1\r\n\r\n"), 400);
    }

    #[test]
    fn a_refusal_closes_and_says_what_is_served() {
        let text = String::from_utf8(Response::error(405, "Method Not Allowed").bytes()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{text}"
        );
        assert!(text.contains("Allow: GET, HEAD\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(text.ends_with("serves GET /metrics\n"), "{text}");
        let head = Response::metrics("x 1\n".into(), true).bytes();
        let head = String::from_utf8(head).unwrap();
        assert!(head.contains("Content-Length: 4\r\n") && head.ends_with("\r\n\r\n"));
    }
}
