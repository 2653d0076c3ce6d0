//! Test support: a host on loopback, in-process procs on real rings, and
//! the library's client with bounded waits.

use std::time::Duration;

use hostmux_host::{
    ClientReader, ClientWriter, ConnStats, FrontendKind, Host, HostConfig, HostError, LocalProc,
    ProcEndpoint, Received, ServeHandle,
};
use hostmux_lifecycle::LocalProcManager;
use hostmux_wire::{Addr, FrameHeader, FrameKind, Sender, Undeliverable};

/// Bounded wait for anything a test waits on.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// A TCP port on loopback that was free a moment ago (for a host that
/// must be named, as a peer, before it is bound).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `scenario` once per frontend (epoll, io_uring on tokio-uring, and
/// io_uring on the io-uring crate), each on its own multi-threaded runtime
/// (in-process procs block in ring waits).
macro_rules! every_frontend {
    ($name:ident) => {
        mod $name {
            #[test]
            fn epoll() {
                crate::support::run(hostmux_host::FrontendKind::Epoll, super::$name);
            }
            #[test]
            fn io_uring() {
                if !crate::support::io_uring_or_report() {
                    return;
                }
                crate::support::run(hostmux_host::FrontendKind::IoUring, super::$name);
            }
            #[test]
            fn io_uring_direct() {
                if !crate::support::io_uring_or_report() {
                    return;
                }
                crate::support::run(hostmux_host::FrontendKind::IoUringDirect, super::$name);
            }
        }
    };
}
pub(crate) use every_frontend;

/// Whether the kernel sets up an io_uring; if not, reports the missing
/// facility (a failure unless HOSTMUX_TEST_SKIP names io_uring) and the
/// caller's test returns.
pub(crate) fn io_uring_or_report() -> bool {
    let available = hostmux_host::io_uring_available();
    if !available {
        hostmux_testkit::facility::missing(
            hostmux_testkit::facility::Facility::IoUring,
            "the kernel refused to set up a ring",
        );
    }
    available
}

/// The tests' runtime (two workers, as on the target machine), with
/// tracing to the test output (`RUST_LOG` filters it).
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    quiet_runtime()
}

/// [`runtime`] without tracing, for a subprocess role whose standard
/// output is read by the test.
pub(crate) fn quiet_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .enable_all()
        .build()
        .unwrap()
}

pub(crate) fn run<F, Fut>(kind: FrontendKind, scenario: F)
where
    F: FnOnce(FrontendKind) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(60), scenario(kind))
            .await
            .expect("scenario finished within 60 s");
    });
}

pub(crate) type TestHost = Host<LocalProcManager>;

pub(crate) async fn serve(kind: FrontendKind, config: HostConfig) -> (TestHost, ServeHandle) {
    serve_at(kind, Addr::tcp("127.0.0.1", 0).unwrap(), config).await
}

/// [`serve`] on a chosen frontend address.
pub(crate) async fn serve_at(
    kind: FrontendKind,
    addr: Addr,
    config: HostConfig,
) -> (TestHost, ServeHandle) {
    // The suite's scenarios are written for one I/O thread (one lane per
    // proc: `ProcEndpoint` serves one), whatever the machine's default;
    // `threads.rs` serves with two on its own.
    let config = HostConfig {
        frontend: kind,
        io_threads: 1,
        ..config
    };
    let (host, handle) = Host::serve(LocalProcManager::new(), addr, config)
        .await
        .unwrap();
    assert_eq!(handle.frontend(), kind);
    (host, handle)
}

/// An in-process proc whose loop runs on a blocking thread over its real
/// rings; `step` gets each frame and the endpoint (to send) and returns
/// whether to keep going. The proc exits when `step` says stop or its
/// inbound ring closes.
pub(crate) fn ring_proc<S>(mut step: S) -> LocalProc
where
    S: FnMut(&mut ProcEndpoint, Frame) -> bool + Send + 'static,
{
    LocalProc::new(move |mut cx, rings| async move {
        let mut endpoint = rings.attach().map_err(|e| e.to_string())?;
        cx.report_ready();
        // A cooperative proc: a polite stop ends it at once (its blocked
        // reader thread returns when the host closes the inbound ring).
        let worker = tokio::task::spawn_blocking(move || loop {
            match endpoint.recv(Duration::from_secs(60), Frame::from_view) {
                Ok(Received::Frame(frame)) => {
                    if !step(&mut endpoint, frame) {
                        return;
                    }
                }
                Ok(Received::TimedOut) => {}
                Ok(Received::Closed) | Err(_) => return,
            }
        });
        tokio::select! {
            joined = worker => joined.map_err(|e| e.to_string()),
            () = cx.stopped() => Ok(()),
        }
    })
}

/// A proc that answers every data frame to its sender with the same id and
/// payload, for up to `limit` frames, then exits.
pub(crate) fn echo_proc(limit: usize) -> LocalProc {
    let mut seen = 0;
    ring_proc(move |endpoint, frame| {
        if frame.kind == FrameKind::Data {
            reply(endpoint, &frame, &frame.payload);
        }
        seen += 1;
        seen < limit
    })
}

/// Sends `payload` back to `frame`'s sender.
pub(crate) fn reply(endpoint: &mut ProcEndpoint, frame: &Frame, payload: &[u8]) {
    let me = endpoint.name.clone();
    // A client is answered in the client namespace (`TO_CLIENT`).
    let flags = if frame.sender_is_client {
        hostmux_wire::Flags::TO_CLIENT
    } else {
        hostmux_wire::Flags::NONE
    };
    let header = FrameHeader {
        dest_port: frame.dest_port,
        dest_addr: &frame.sender_addr,
        flags,
        sender: Sender::Proc {
            addr: "",
            name: me.as_str(),
        },
        ..FrameHeader::data(&frame.sender, frame.message_id)
    };
    endpoint.send(&header, payload, WAIT).unwrap();
}

/// A frame copied out of a ring or a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) kind: FrameKind,
    pub(crate) message_id: u64,
    pub(crate) dest_name: String,
    pub(crate) dest_port: u32,
    pub(crate) sender: String,
    pub(crate) sender_addr: String,
    /// The sender is a client (answers to it carry `TO_CLIENT`).
    pub(crate) sender_is_client: bool,
    /// The frame is addressed to a client (`TO_CLIENT`).
    pub(crate) to_client: bool,
    pub(crate) payload: Vec<u8>,
}

impl Frame {
    pub(crate) fn from_view(view: hostmux_wire::FrameView<'_>) -> Frame {
        let (sender, sender_addr) = match view.sender() {
            Sender::Anonymous => (String::new(), String::new()),
            Sender::Client { name } => (name.to_owned(), String::new()),
            Sender::Proc { name, addr } => (name.to_owned(), addr.to_owned()),
        };
        Frame {
            kind: view.kind(),
            message_id: view.message_id(),
            dest_name: view.dest_name().to_owned(),
            dest_port: view.dest_port(),
            sender,
            sender_addr,
            sender_is_client: view.fields().reply_target().to_client,
            to_client: view.flags().contains(hostmux_wire::Flags::TO_CLIENT),
            payload: view.payload().to_vec(),
        }
    }

    pub(crate) fn undeliverable(&self) -> Undeliverable {
        assert_eq!(self.kind, FrameKind::Undeliverable, "{self:?}");
        Undeliverable::decode(&aligned(&self.payload)).unwrap()
    }
}

fn aligned(bytes: &[u8]) -> hostmux_wire::rkyv::util::AlignedVec<16> {
    let mut v = hostmux_wire::rkyv::util::AlignedVec::<16>::new();
    v.extend_from_slice(bytes);
    v
}

/// A client connection that said hello: the library's
/// [`hostmux_host::Client`], split into its halves, with the tests'
/// conveniences (bounded waits, panics instead of errors, [`Frame`]s).
pub(crate) struct Client {
    writer: ClientWriter,
    reader: ClientReader,
}

impl Client {
    /// Connects with the host's own token (if it has one) and says hello.
    pub(crate) async fn connect(host: &TestHost, name: &str) -> Client {
        let token = host.config().token.clone().unwrap_or_default();
        Self::connect_with_token(host, name, token.as_bytes())
            .await
            .expect("hello accepted")
    }

    /// Connects and says hello; `None` if the host closed the connection
    /// instead of acknowledging.
    pub(crate) async fn connect_with_token(
        host: &TestHost,
        name: &str,
        token: &[u8],
    ) -> Option<Client> {
        let addr = format!("127.0.0.1:{}", host.addr().port().unwrap());
        let token = std::str::from_utf8(token).expect("test tokens are text");
        let connected = hostmux_host::Client::connect_tcp(
            &addr,
            name,
            (!token.is_empty()).then_some(token),
            host.service_name().as_str(),
        );
        match tokio::time::timeout(WAIT, connected)
            .await
            .expect("the host answers the hello within the wait")
        {
            Ok(client) => {
                let (writer, reader) = client.into_split();
                Some(Client { writer, reader })
            }
            Err(HostError::HelloRefused { .. }) => None,
            Err(e) => panic!("client {name} could not connect: {e}"),
        }
    }

    /// Appends a data frame from this client to `out`.
    pub(crate) fn encode(&self, dest: &str, message_id: u64, payload: &[u8], out: &mut Vec<u8>) {
        self.encode_kind(FrameKind::Data, dest, message_id, payload, out);
    }

    /// Appends a frame of `kind` from this client to `out`.
    pub(crate) fn encode_kind(
        &self,
        kind: FrameKind,
        dest: &str,
        message_id: u64,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) {
        self.writer
            .encoder()
            .encode_kind_to(out, kind, dest, 0, message_id, payload)
            .unwrap();
    }

    /// Sends a data frame to proc `dest` at host `dest_addr`.
    pub(crate) async fn send_to(
        &mut self,
        dest: &str,
        dest_addr: &str,
        message_id: u64,
        payload: &[u8],
    ) {
        let name = self.writer.name().to_owned();
        let header = FrameHeader {
            dest_addr,
            sender: Sender::Client { name: &name },
            ..FrameHeader::data(dest, message_id)
        };
        self.writer.send_frame(&header, payload).await.unwrap();
    }

    /// Sends a data frame to proc `dest` (port 0).
    pub(crate) async fn send(&mut self, dest: &str, message_id: u64, payload: &[u8]) {
        self.writer
            .send(dest, 0, message_id, payload)
            .await
            .unwrap();
    }

    /// Writes bytes as they are (prepared frames, or garbage).
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) {
        self.writer.write_raw(bytes).await.unwrap();
    }

    /// The library client's halves, for a test that writes and reads at
    /// once.
    pub(crate) fn into_split(self) -> (ClientWriter, ClientReader) {
        (self.writer, self.reader)
    }

    /// The next frame, or `None` at end of stream; panics after [`WAIT`].
    pub(crate) async fn recv_raw(&mut self) -> Option<Frame> {
        next_frame(&mut self.reader).await
    }

    pub(crate) async fn recv(&mut self) -> Frame {
        let frame = self.recv_raw().await.expect("a frame, not end of stream");
        assert!(!is_hello_ack_frame(&frame));
        frame
    }
}

/// The next frame from `reader`, or `None` at end of stream (a reset counts
/// as the end: the host may close with unread bytes); panics after [`WAIT`]
/// or on a malformed stream.
pub(crate) async fn next_frame(reader: &mut ClientReader) -> Option<Frame> {
    let next = reader.recv_with(|view| Frame::from_view(*view));
    match tokio::time::timeout(WAIT, next)
        .await
        .expect("a frame or end of stream within the wait")
    {
        Ok(frame) => frame,
        Err(HostError::Receive { .. }) => None,
        Err(e) => panic!("receiving: {e}"),
    }
}

fn is_hello_ack_frame(frame: &Frame) -> bool {
    frame.kind == FrameKind::Data && frame.dest_port == hostmux_host::HELLO_PORT
}

/// `accepted == delivered + returned + dropped` for a connection.
pub(crate) fn assert_conn_adds_up(stats: &ConnStats) {
    assert_eq!(
        stats.accepted,
        stats.delivered + stats.returned.total() + stats.dropped.total(),
        "connection counters must add up: {stats:?}"
    );
}
