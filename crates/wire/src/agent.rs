//! Agent messages: what the host says to a proc's agent and what the agent
//! answers.
//!
//! Every proc built on `hostmux-proc` runs an agent that listens on the
//! reserved port [`AGENT_PORT`]. Requests and responses are `Data` frames on
//! that port whose payload is an rkyv archive of [`AgentRequest`] or
//! [`AgentResponse`]; a response carries the request's message id. The types
//! are fixed-size (no strings, no vectors), so encoding writes straight into
//! a caller's buffer and decoding neither allocates nor copies.
//!
//! Decoding is validating: the payload must be exactly one archived value,
//! 16-byte aligned (ring records and frame payloads are), and pass bytecheck.

use rkyv::rancor::Failure;
use rkyv::ser::allocator::SubAllocator;
use rkyv::ser::writer::Buffer;
use rkyv::{Archive, Deserialize, Serialize};

use crate::frame::FRAME_ALIGN;
use crate::{Flags, FrameHeader, FrameKind, Limits, Sender, WireError};

/// The port of every proc's agent. Ports `0xFFFF_FFFE` (the agent) and
/// `0xFFFF_FFFF` (the host's hello) are reserved for hostmux; applications
/// use the others. (Port 0 is not used because it is the default port of a
/// data frame and the port of undeliverable notices.)
pub const AGENT_PORT: u32 = 0xFFFF_FFFE;

/// The longest archived agent message in bytes; a buffer of this size holds
/// any [`AgentRequest`] or [`AgentResponse`].
pub const AGENT_MESSAGE_MAX_LEN: usize = 64;

/// A request to a proc's agent.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum AgentRequest {
    /// Answer [`AgentResponse::Pong`] with the same nonce.
    Ping {
        /// Echoed in the pong.
        nonce: u64,
    },
    /// Stop gracefully: run the proc's stop hook, finish the frames already
    /// received, then exit (status 0 for an OS process).
    Stop,
    /// Answer [`AgentResponse::Stats`] with the proc's counters.
    Stats,
}

/// The proc's traffic counters as its agent reports them. Only application
/// frames count: agent requests and responses are left out.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub struct AgentStats {
    /// Frames handed to the application.
    pub frames_in: u64,
    /// Payload bytes of those frames.
    pub bytes_in: u64,
    /// Frames the application sent.
    pub frames_out: u64,
    /// Payload bytes of those frames.
    pub bytes_out: u64,
    /// Agent requests answered (including refused ones).
    pub agent_requests: u64,
}

/// Why an agent refused a request.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum AgentRefusal {
    /// The request did not come from the host's service proc.
    NotFromHost,
    /// The payload is not a valid archived [`AgentRequest`].
    Malformed,
}

/// An agent's answer.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum AgentResponse {
    /// Answer to [`AgentRequest::Ping`].
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// Answer to [`AgentRequest::Stop`]: the stop hook has run and the proc
    /// is draining the frames it already received.
    Stopping,
    /// Answer to [`AgentRequest::Stats`].
    Stats(AgentStats),
    /// The request was not carried out.
    Refused(AgentRefusal),
}

fn invalid(what: &'static str, reason: impl Into<String>) -> WireError {
    WireError::InvalidPayload {
        what,
        reason: reason.into(),
    }
}

/// Writes the archive of `value` at the start of `out`; returns its length.
fn encode<T>(value: &T, out: &mut [u8], what: &'static str) -> Result<usize, WireError>
where
    T: for<'a, 'b> Serialize<
        rkyv::rancor::Strategy<rkyv::ser::Serializer<Buffer<'b>, SubAllocator<'a>, ()>, Failure>,
    >,
{
    let needed = std::mem::size_of::<T::Archived>();
    if out.len() < needed {
        return Err(WireError::BufferTooSmall {
            needed,
            available: out.len(),
        });
    }
    let mut no_scratch: [std::mem::MaybeUninit<u8>; 0] = [];
    let written = rkyv::api::low::to_bytes_in_with_alloc::<_, _, Failure>(
        value,
        Buffer::from(&mut out[..needed]),
        SubAllocator::new(&mut no_scratch),
    )
    .map_err(|_| invalid(what, "archive does not fit its fixed size"))?
    .len();
    Ok(written)
}

/// Checks that `payload` is exactly one aligned archive of `T` and returns it.
fn access<'a, T>(payload: &'a [u8], what: &'static str) -> Result<&'a T::Archived, WireError>
where
    T: Archive,
    T::Archived: for<'v> rkyv::bytecheck::CheckBytes<
        rkyv::rancor::Strategy<
            rkyv::validation::Validator<rkyv::validation::archive::ArchiveValidator<'v>, ()>,
            Failure,
        >,
    >,
{
    let needed = std::mem::size_of::<T::Archived>();
    if payload.len() != needed {
        return Err(invalid(
            what,
            format!(
                "payload is {} bytes, the archive is {needed}",
                payload.len()
            ),
        ));
    }
    if payload.as_ptr() as usize % FRAME_ALIGN != 0 {
        return Err(WireError::Misaligned {
            what: "agent payload address",
            value: payload.as_ptr() as usize,
            align: FRAME_ALIGN,
        });
    }
    rkyv::api::low::access::<T::Archived, Failure>(payload)
        .map_err(|_| invalid(what, "bytecheck failed"))
}

/// A payload is canonical if it re-encodes to the same bytes, i.e. its
/// padding and unused variant bytes are zero (bytecheck does not look at them).
fn check_canonical<T>(value: &T, payload: &[u8], what: &'static str) -> Result<(), WireError>
where
    T: for<'a, 'b> Serialize<
        rkyv::rancor::Strategy<rkyv::ser::Serializer<Buffer<'b>, SubAllocator<'a>, ()>, Failure>,
    >,
{
    let mut again = [0u8; AGENT_MESSAGE_MAX_LEN];
    let len = encode(value, &mut again, what)?;
    if again[..len] != *payload {
        return Err(invalid(what, "padding or unused bytes are not zero"));
    }
    Ok(())
}

impl AgentRequest {
    /// The header of this request as the host sends it: a data frame from
    /// the service proc `service_name` (this host) to proc `proc_name` on
    /// [`AGENT_PORT`].
    pub fn frame_header<'a>(
        proc_name: &'a str,
        service_name: &'a str,
        message_id: u64,
    ) -> FrameHeader<'a> {
        FrameHeader {
            kind: FrameKind::Data,
            flags: Flags::NONE,
            message_id,
            dest_name: proc_name,
            dest_port: AGENT_PORT,
            dest_addr: "",
            sender: Sender::Proc {
                addr: "",
                name: service_name,
            },
        }
    }

    /// The length of the whole frame [`encode_frame`](Self::encode_frame)
    /// writes (e.g. to reserve a ring record for it).
    pub fn frame_len(proc_name: &str, service_name: &str) -> usize {
        let header = Self::frame_header(proc_name, service_name, 0);
        crate::encoded_len(&header, std::mem::size_of::<ArchivedAgentRequest>())
    }

    /// Encodes the whole frame carrying this request from the host's
    /// service proc to proc `proc_name` into `out` (e.g. a ring slot of
    /// [`frame_len`](Self::frame_len) bytes); returns its length. Allocates
    /// nothing.
    pub fn encode_frame(
        &self,
        out: &mut [u8],
        proc_name: &str,
        service_name: &str,
        message_id: u64,
        limits: &Limits,
    ) -> Result<usize, WireError> {
        #[repr(C, align(16))]
        struct Scratch([u8; AGENT_MESSAGE_MAX_LEN]);
        let mut scratch = Scratch([0; AGENT_MESSAGE_MAX_LEN]);
        let len = self.encode(&mut scratch.0)?;
        let header = Self::frame_header(proc_name, service_name, message_id);
        crate::encode_frame(out, &header, &scratch.0[..len], limits)
    }

    /// Archives the request into `out` (at least
    /// [`AGENT_MESSAGE_MAX_LEN`] bytes is always enough); returns its length.
    /// Allocates nothing.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, WireError> {
        encode(self, out, "agent request")
    }

    /// Validates and decodes a request payload (16-byte aligned, exactly one
    /// archive). Allocates nothing unless it fails.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let request = match access::<AgentRequest>(payload, "agent request")? {
            ArchivedAgentRequest::Ping { nonce } => AgentRequest::Ping {
                nonce: nonce.to_native(),
            },
            ArchivedAgentRequest::Stop => AgentRequest::Stop,
            ArchivedAgentRequest::Stats => AgentRequest::Stats,
        };
        check_canonical(&request, payload, "agent request")?;
        Ok(request)
    }
}

impl AgentResponse {
    /// Archives the response into `out` (at least
    /// [`AGENT_MESSAGE_MAX_LEN`] bytes is always enough); returns its length.
    /// Allocates nothing.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, WireError> {
        encode(self, out, "agent response")
    }

    /// Validates and decodes a response payload (16-byte aligned, exactly one
    /// archive). Allocates nothing unless it fails.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let response = match access::<AgentResponse>(payload, "agent response")? {
            ArchivedAgentResponse::Pong { nonce } => AgentResponse::Pong {
                nonce: nonce.to_native(),
            },
            ArchivedAgentResponse::Stopping => AgentResponse::Stopping,
            ArchivedAgentResponse::Stats(stats) => AgentResponse::Stats(AgentStats {
                frames_in: stats.frames_in.to_native(),
                bytes_in: stats.bytes_in.to_native(),
                frames_out: stats.frames_out.to_native(),
                bytes_out: stats.bytes_out.to_native(),
                agent_requests: stats.agent_requests.to_native(),
            }),
            ArchivedAgentResponse::Refused(ArchivedAgentRefusal::NotFromHost) => {
                AgentResponse::Refused(AgentRefusal::NotFromHost)
            }
            ArchivedAgentResponse::Refused(ArchivedAgentRefusal::Malformed) => {
                AgentResponse::Refused(AgentRefusal::Malformed)
            }
        };
        check_canonical(&response, payload, "agent response")?;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16-byte aligned scratch buffer, as a ring slot would be.
    #[repr(C, align(16))]
    struct Aligned([u8; AGENT_MESSAGE_MAX_LEN + 16]);

    #[test]
    fn every_request_round_trips_within_the_max_len() {
        for request in [
            AgentRequest::Ping { nonce: 0xfeed },
            AgentRequest::Stop,
            AgentRequest::Stats,
        ] {
            let mut buf = Aligned([0; AGENT_MESSAGE_MAX_LEN + 16]);
            let len = request.encode(&mut buf.0).unwrap();
            assert!(len <= AGENT_MESSAGE_MAX_LEN);
            assert_eq!(AgentRequest::decode(&buf.0[..len]).unwrap(), request);
        }
    }

    #[test]
    fn every_response_round_trips_within_the_max_len() {
        let stats = AgentStats {
            frames_in: 1,
            bytes_in: 2,
            frames_out: 3,
            bytes_out: 4,
            agent_requests: 5,
        };
        for response in [
            AgentResponse::Pong { nonce: 7 },
            AgentResponse::Stopping,
            AgentResponse::Stats(stats),
            AgentResponse::Refused(AgentRefusal::NotFromHost),
            AgentResponse::Refused(AgentRefusal::Malformed),
        ] {
            let mut buf = Aligned([0; AGENT_MESSAGE_MAX_LEN + 16]);
            let len = response.encode(&mut buf.0).unwrap();
            assert!(len <= AGENT_MESSAGE_MAX_LEN);
            assert_eq!(AgentResponse::decode(&buf.0[..len]).unwrap(), response);
        }
    }

    #[test]
    fn rejects_wrong_length_misalignment_bad_tags_and_small_buffers() {
        let mut buf = Aligned([0; AGENT_MESSAGE_MAX_LEN + 16]);
        let len = AgentRequest::Stop.encode(&mut buf.0).unwrap();
        assert!(AgentRequest::decode(&buf.0[..len + 1]).is_err());
        assert!(AgentRequest::decode(&buf.0[..len - 1]).is_err());
        assert!(matches!(
            AgentRequest::decode(&buf.0[8..8 + len]),
            Err(WireError::Misaligned { .. }) | Err(WireError::InvalidPayload { .. })
        ));
        buf.0[..len].fill(0xff);
        assert!(matches!(
            AgentRequest::decode(&buf.0[..len]),
            Err(WireError::InvalidPayload { .. })
        ));
        // A valid tag with a non-zero padding byte is not canonical.
        let len = AgentRequest::Stop.encode(&mut buf.0).unwrap();
        buf.0[3] = 1;
        assert!(matches!(
            AgentRequest::decode(&buf.0[..len]),
            Err(WireError::InvalidPayload { .. })
        ));
        let mut tiny = [0u8; 2];
        assert!(matches!(
            AgentResponse::Pong { nonce: 1 }.encode(&mut tiny),
            Err(WireError::BufferTooSmall { .. })
        ));
    }

    /// The byte layout `docs/wire.md` documents.
    #[test]
    fn layout_matches_the_documentation() {
        let mut buf = Aligned([0; AGENT_MESSAGE_MAX_LEN + 16]);
        let len = AgentRequest::Ping {
            nonce: 0x0102_0304_0506_0708,
        }
        .encode(&mut buf.0)
        .unwrap();
        assert_eq!(
            &buf.0[..len],
            &[0, 0, 0, 0, 0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]
        );
        for (request, tag) in [(AgentRequest::Stop, 1u8), (AgentRequest::Stats, 2)] {
            let len = request.encode(&mut buf.0).unwrap();
            let mut expected = [0u8; 16];
            expected[0] = tag;
            assert_eq!(&buf.0[..len], &expected);
        }
        let stats = AgentStats {
            frames_in: 1,
            bytes_in: 2,
            frames_out: 3,
            bytes_out: 4,
            agent_requests: 5,
        };
        let len = AgentResponse::Stats(stats).encode(&mut buf.0).unwrap();
        let mut expected = [0u8; 48];
        expected[0] = 2;
        for (i, value) in (1u8..=5).enumerate() {
            expected[8 + 8 * i] = value;
        }
        assert_eq!(&buf.0[..len], &expected);
        let len = AgentResponse::Refused(AgentRefusal::Malformed)
            .encode(&mut buf.0)
            .unwrap();
        let mut expected = [0u8; 48];
        expected[..2].copy_from_slice(&[3, 1]);
        assert_eq!(&buf.0[..len], &expected);
        let len = AgentResponse::Pong { nonce: 9 }.encode(&mut buf.0).unwrap();
        let mut expected = [0u8; 48];
        expected[8] = 9;
        assert_eq!(&buf.0[..len], &expected);
    }

    #[test]
    fn a_request_frame_decodes_as_the_host_sends_it() {
        #[repr(C, align(16))]
        struct FrameBuf([u8; 256]);
        let limits = Limits::default();
        let len = AgentRequest::frame_len("echo", "service");
        let mut buf = FrameBuf([0; 256]);
        let written = AgentRequest::Ping { nonce: 3 }
            .encode_frame(&mut buf.0, "echo", "service", 77, &limits)
            .unwrap();
        assert_eq!(written, len);
        let frame = crate::decode_frame(&buf.0[..written], &limits).unwrap();
        assert_eq!(frame.dest_name(), "echo");
        assert_eq!(frame.dest_port(), AGENT_PORT);
        assert_eq!(frame.message_id(), 77);
        assert_eq!(
            frame.sender(),
            Sender::Proc {
                addr: "",
                name: "service"
            }
        );
        assert_eq!(
            AgentRequest::decode(frame.payload()).unwrap(),
            AgentRequest::Ping { nonce: 3 }
        );
    }
}
