//! The sans-IO core every client wraps: [`ClientEncoder`] turns a client's
//! frames (its hello included) into bytes for one write, [`ClientDecoder`]
//! turns the bytes a host sends back into frames read in place. Neither
//! touches a socket: the blocking and the tokio clients only move bytes
//! between these and their streams.

use hostmux_wire::{
    encode_frame_to_vec, encode_hello, is_hello_ack, ControlErrorKind, ControlResponse, Flags,
    FrameDecoder, FrameHeader, FrameKind, FrameView, Limits, Sender, HELLO_PORT,
};

use crate::HostError;

/// Encodes one client's frames into a batch that is written in one call.
///
/// Every frame carries the client's name as its sender. Frames accumulate in
/// the batch ([`queue`](Self::queue), [`queue_frame`](Self::queue_frame));
/// the I/O wrapper writes [`batch`](Self::batch) and then
/// [`clear`](Self::clear)s it. The batch keeps its capacity, so a steady
/// sender allocates nothing per frame.
#[derive(Debug)]
pub struct ClientEncoder {
    name: String,
    limits: Limits,
    batch: Vec<u8>,
}

impl ClientEncoder {
    /// An encoder for the client named `name`.
    pub fn new(name: &str, limits: Limits) -> Self {
        Self {
            name: name.to_owned(),
            limits,
            batch: Vec::with_capacity(64 * 1024),
        }
    }

    /// The client's name (the sender of every frame).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Queues the connection's hello to the host's service proc
    /// `service_name`, presenting `token` (empty when the host has none).
    pub fn queue_hello(&mut self, service_name: &str, token: &[u8]) -> Result<(), HostError> {
        let start = self.batch.len();
        // The hello is small: its header plus the token, padded.
        self.batch.resize(start + 1024 + token.len(), 0);
        match encode_hello(
            &mut self.batch[start..],
            service_name,
            &self.name,
            token,
            &self.limits,
        ) {
            Ok(len) => {
                self.batch.truncate(start + len);
                Ok(())
            }
            Err(error) => {
                self.batch.truncate(start);
                Err(error.into())
            }
        }
    }

    /// Queues a data frame to proc `dest` on `port`.
    pub fn queue(
        &mut self,
        dest: &str,
        port: u32,
        message_id: u64,
        payload: &[u8],
    ) -> Result<(), HostError> {
        let header = client_header(&self.name, FrameKind::Data, dest, port, message_id);
        encode_frame_to_vec(&mut self.batch, &header, payload, &self.limits)?;
        Ok(())
    }

    /// Queues a data frame to another client of the host, by its hello
    /// name, on `port` ([`Flags::TO_CLIENT`]: client names are not proc
    /// names; see `docs/wire.md`, "Flags").
    pub fn queue_to_client(
        &mut self,
        client: &str,
        port: u32,
        message_id: u64,
        payload: &[u8],
    ) -> Result<(), HostError> {
        let header = FrameHeader {
            flags: Flags::TO_CLIENT,
            ..client_header(&self.name, FrameKind::Data, client, port, message_id)
        };
        encode_frame_to_vec(&mut self.batch, &header, payload, &self.limits)?;
        Ok(())
    }

    /// Queues a frame with any header (kind, flags, destination address).
    pub fn queue_frame(
        &mut self,
        header: &FrameHeader<'_>,
        payload: &[u8],
    ) -> Result<(), HostError> {
        encode_frame_to_vec(&mut self.batch, header, payload, &self.limits)?;
        Ok(())
    }

    /// Appends a data frame from this client to `out` instead of the batch:
    /// how a load generator prepares a buffer it writes many times.
    pub fn encode_to(
        &self,
        out: &mut Vec<u8>,
        dest: &str,
        port: u32,
        message_id: u64,
        payload: &[u8],
    ) -> Result<(), HostError> {
        self.encode_kind_to(out, FrameKind::Data, dest, port, message_id, payload)
    }

    /// [`encode_to`](Self::encode_to) for a frame of any kind (the host
    /// decides what a client may send; see `docs/architecture.md`).
    pub fn encode_kind_to(
        &self,
        out: &mut Vec<u8>,
        kind: FrameKind,
        dest: &str,
        port: u32,
        message_id: u64,
        payload: &[u8],
    ) -> Result<(), HostError> {
        let header = client_header(&self.name, kind, dest, port, message_id);
        encode_frame_to_vec(out, &header, payload, &self.limits)?;
        Ok(())
    }

    /// The frames queued and not yet written.
    pub fn batch(&self) -> &[u8] {
        &self.batch
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.batch.len()
    }

    /// Forgets the batch once it was written (its capacity stays).
    pub fn clear(&mut self) {
        self.batch.clear();
    }
}

/// A header from client `name` to proc `dest` on this host.
fn client_header<'a>(
    name: &'a str,
    kind: FrameKind,
    dest: &'a str,
    port: u32,
    message_id: u64,
) -> FrameHeader<'a> {
    FrameHeader {
        kind,
        dest_port: port,
        sender: Sender::Client { name },
        ..FrameHeader::data(dest, message_id)
    }
}

/// Splits the bytes a host sends a client into frames, read in place.
///
/// The I/O wrapper reads into [`read_buf`](Self::read_buf), reports the
/// count with [`commit`](Self::commit) and takes frames out with
/// [`next_frame`](Self::next_frame) until it returns `Ok(None)`. Errors name
/// the host's address.
#[derive(Debug)]
pub struct ClientDecoder {
    peer: String,
    frames: FrameDecoder,
}

impl ClientDecoder {
    /// A decoder for the stream from the host at `peer` (its address, as
    /// shown in errors).
    pub fn new(peer: &str, limits: Limits) -> Self {
        Self {
            peer: peer.to_owned(),
            frames: FrameDecoder::new(limits),
        }
    }

    /// The host's address, as shown in errors.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The next whole frame, borrowed from the buffer, or `Ok(None)` if more
    /// bytes are needed. A malformed stream fails with
    /// [`HostError::MalformedFromHost`] (and keeps failing).
    pub fn next_frame(&mut self) -> Result<Option<FrameView<'_>>, HostError> {
        self.frames
            .next_frame()
            .map_err(|source| HostError::MalformedFromHost {
                addr: self.peer.clone(),
                source,
            })
    }

    /// Where to read the next bytes into; follow with [`commit`](Self::commit).
    pub fn read_buf(&mut self) -> &mut [u8] {
        self.frames.spare_capacity_mut()
    }

    /// Marks `n` bytes read into [`read_buf`](Self::read_buf) as received.
    pub fn commit(&mut self, n: usize) {
        self.frames.commit(n);
    }
}

/// What the first frame after a hello is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HelloAnswer {
    /// The host's ack.
    Ack,
    /// The host refused the connection and said why (a control-socket peer
    /// running as another user): a `ControlResponse` error on the hello
    /// port.
    Refused {
        kind: ControlErrorKind,
        message: String,
    },
    /// The host refused the hello's token (an `Undeliverable` on the
    /// hello port, `hostmux_wire::hello_refusal`).
    WrongToken,
    /// Anything else.
    Other,
}

/// Classifies the first frame a host sends after a hello.
pub(super) fn hello_answer(frame: &FrameView<'_>) -> HelloAnswer {
    if is_hello_ack(frame) {
        return HelloAnswer::Ack;
    }
    if hostmux_wire::hello_refusal(frame).is_some() {
        return HelloAnswer::WrongToken;
    }
    if frame.kind() == FrameKind::ControlResponse && frame.dest_port() == HELLO_PORT {
        if let Ok(ControlResponse::Error { kind, message }) =
            ControlResponse::decode(frame.payload())
        {
            return HelloAnswer::Refused { kind, message };
        }
    }
    HelloAnswer::Other
}

/// What the first answer to a hello means: `answer` is `Some` for a frame,
/// `None` if the host closed the connection instead (a reset while waiting
/// counts as closing: the host may close with the hello unread). A refusal
/// with a reason becomes [`HostError::Control`] with the host's message.
pub(super) fn hello_outcome(
    peer: &str,
    client: &str,
    answer: Result<Option<HelloAnswer>, HostError>,
) -> Result<(), HostError> {
    let refused = || HostError::HelloRefused {
        addr: peer.to_owned(),
        client: client.to_owned(),
    };
    match answer {
        Ok(Some(HelloAnswer::Ack)) => Ok(()),
        Ok(Some(HelloAnswer::Refused { kind, message })) => Err(HostError::Control {
            kind,
            message: format!("the host at {peer} refused the connection: {message}"),
        }),
        Ok(Some(HelloAnswer::Other)) => Err(HostError::HelloNotAcknowledged {
            addr: peer.to_owned(),
            client: client.to_owned(),
        }),
        Ok(Some(HelloAnswer::WrongToken)) | Ok(None) => Err(refused()),
        Err(HostError::Receive { source, .. })
            if source.kind() == std::io::ErrorKind::ConnectionReset =>
        {
            Err(refused())
        }
        Err(other) => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use hostmux_wire::{check_hello, encode_hello_ack, is_hello_ack};

    use super::*;

    /// Feeds `bytes` to `decoder` in chunks of `chunk`, as a socket would.
    fn feed(decoder: &mut ClientDecoder, bytes: &[u8], chunk: usize) -> Vec<(FrameKind, u64)> {
        let mut seen = Vec::new();
        for piece in bytes.chunks(chunk) {
            let spare = decoder.read_buf();
            spare[..piece.len()].copy_from_slice(piece);
            decoder.commit(piece.len());
            while let Some(frame) = decoder.next_frame().unwrap() {
                seen.push((frame.kind(), frame.message_id()));
            }
        }
        seen
    }

    #[test]
    fn the_hello_and_frames_come_out_as_the_host_decodes_them() {
        let limits = Limits::default();
        let mut encoder = ClientEncoder::new("cli", limits);
        encoder.queue_hello("service", b"tok").unwrap();
        encoder.queue("echo", 3, 7, b"ping").unwrap();
        let mut host_side = FrameDecoder::new(limits);
        host_side.feed(encoder.batch());
        let hello = host_side.next_frame().unwrap().unwrap();
        assert_eq!(check_hello(&hello, "service", Some(b"tok")), Ok("cli"));
        let data = host_side.next_frame().unwrap().unwrap();
        assert_eq!(
            (
                data.dest_name(),
                data.dest_port(),
                data.message_id(),
                data.payload()
            ),
            ("echo", 3, 7, &b"ping"[..])
        );
        assert_eq!(data.sender(), Sender::Client { name: "cli" });
        assert!(host_side.next_frame().unwrap().is_none());
        encoder.clear();
        assert_eq!(encoder.queued(), 0);
    }

    #[test]
    fn a_prepared_frame_leaves_the_batch_alone_and_names_the_client() {
        let encoder = ClientEncoder::new("load", Limits::default());
        let mut out = Vec::new();
        encoder
            .encode_to(&mut out, "sink", 0, 0, &[0xA5; 64])
            .unwrap();
        assert_eq!(encoder.queued(), 0, "the batch is untouched");
        let mut host_side = FrameDecoder::new(Limits::default());
        host_side.feed(&out);
        let frame = host_side.next_frame().unwrap().unwrap();
        assert_eq!(frame.sender(), Sender::Client { name: "load" });
    }

    #[test]
    fn a_hello_that_does_not_fit_the_limits_leaves_the_batch_as_it_was() {
        let mut encoder = ClientEncoder::new(&"x".repeat(100_000), Limits::default());
        assert!(matches!(
            encoder.queue_hello("service", b""),
            Err(HostError::Wire(_))
        ));
        assert_eq!(encoder.queued(), 0);
    }

    #[test]
    fn frames_split_across_reads_decode_whole_and_in_order() {
        let limits = Limits::default();
        let mut stream = vec![0; 512];
        let len = encode_hello_ack(&mut stream, "service", "cli", &limits).unwrap();
        stream.truncate(len);
        let encoder = ClientEncoder::new("peer", limits);
        for id in 0..20 {
            encoder
                .encode_to(&mut stream, "cli", 0, id, &[1; 100])
                .unwrap();
        }
        for chunk in [1, 7, 64, 4096] {
            let mut decoder = ClientDecoder::new("tcp:h:1", limits);
            let seen = feed(&mut decoder, &stream, chunk);
            assert_eq!(seen.len(), 21, "chunk {chunk}");
            assert!(seen[1..].iter().map(|s| s.1).eq(0..20), "chunk {chunk}");
        }
        let mut decoder = ClientDecoder::new("tcp:h:1", limits);
        let spare = decoder.read_buf();
        spare[..len].copy_from_slice(&stream[..len]);
        decoder.commit(len);
        let ack = decoder.next_frame().unwrap().unwrap();
        assert!(is_hello_ack(&ack));
    }

    #[test]
    fn a_malformed_stream_is_an_error_naming_the_host() {
        let mut decoder = ClientDecoder::new("tcp:10.0.0.1:4000", Limits::default());
        let spare = decoder.read_buf();
        spare[..32].fill(0xff);
        decoder.commit(32);
        let error = decoder.next_frame().unwrap_err();
        assert!(
            matches!(error, HostError::MalformedFromHost { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("tcp:10.0.0.1:4000"), "{error}");
    }

    #[test]
    fn the_first_answer_to_a_hello_decides_the_connection() {
        assert!(hello_outcome("h", "c", Ok(Some(HelloAnswer::Ack))).is_ok());
        assert!(matches!(
            hello_outcome("h", "c", Ok(Some(HelloAnswer::Other))),
            Err(HostError::HelloNotAcknowledged { .. })
        ));
        let told = hello_outcome(
            "h",
            "c",
            Ok(Some(HelloAnswer::Refused {
                kind: ControlErrorKind::Unauthorized,
                message: "uid 65534 is not allowed to control this host".to_owned(),
            })),
        )
        .unwrap_err();
        assert!(
            matches!(
                &told,
                HostError::Control { kind: ControlErrorKind::Unauthorized, message }
                    if message.ends_with("uid 65534 is not allowed to control this host")
            ),
            "{told}"
        );
        let refused = hello_outcome("h", "c", Ok(None)).unwrap_err();
        assert!(matches!(refused, HostError::HelloRefused { .. }));
        assert!(refused.to_string().contains("acknowledging the hello"));
        let reset = HostError::Receive {
            addr: "h".to_owned(),
            source: std::io::ErrorKind::ConnectionReset.into(),
        };
        assert!(matches!(
            hello_outcome("h", "c", Err(reset)),
            Err(HostError::HelloRefused { .. })
        ));
        let timeout = HostError::ReceiveTimeout {
            addr: "h".to_owned(),
            waited: std::time::Duration::from_secs(5),
        };
        assert!(matches!(
            hello_outcome("h", "c", Err(timeout)),
            Err(HostError::ReceiveTimeout { .. })
        ));
    }
}
