//! Clients of a host, written once: a sans-IO core ([`ClientEncoder`],
//! [`ClientDecoder`]) that encodes the hello and the frames and decodes
//! what the host sends, wrapped by the tokio [`Client`] (halves
//! [`ClientWriter`], [`ClientReader`]), the std [`BlockingClient`], and the
//! [`ControlClient`] for the control plane (spawn, terminate, kill, list,
//! stats, terminate-all) over a [`Client`].
//!
//! The CLI, the tests and the benchmarks all use these; nothing else in the
//! workspace speaks the client side of the hello.

mod blocking;
mod codec;
mod control;
mod tokio_client;

pub use blocking::BlockingClient;
pub use codec::{ClientDecoder, ClientEncoder};
pub use control::ControlClient;
pub use tokio_client::{Client, ClientReader, ClientWriter};

use hostmux_wire::{Addr, FrameKind, FrameView, Sender, Undeliverable};

use crate::HostError;

/// A frame received by a client, copied out of its stream buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedFrame {
    /// The frame kind (data, undeliverable, control response, ...).
    pub kind: FrameKind,
    /// The message id (a reply carries the request's).
    pub message_id: u64,
    /// The port it was sent to.
    pub port: u32,
    /// The sender's name ("" for anonymous).
    pub sender: String,
    /// The sender's address ("" for this host).
    pub sender_addr: String,
    /// The payload.
    pub payload: Vec<u8>,
}

impl ReceivedFrame {
    /// Copies a frame out of a decoder's buffer.
    pub fn from_view(view: &FrameView<'_>) -> Self {
        let (sender, sender_addr) = match view.sender() {
            Sender::Anonymous => (String::new(), String::new()),
            Sender::Client { name } => (name.to_owned(), String::new()),
            Sender::Proc { name, addr } => (name.to_owned(), addr.to_owned()),
        };
        Self {
            kind: view.kind(),
            message_id: view.message_id(),
            port: view.dest_port(),
            sender,
            sender_addr,
            payload: view.payload().to_vec(),
        }
    }

    /// The notice, if this is an `Undeliverable` frame.
    pub fn undeliverable(&self) -> Option<Undeliverable> {
        if self.kind != FrameKind::Undeliverable {
            return None;
        }
        let mut aligned = hostmux_wire::rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(&self.payload);
        Undeliverable::decode(&aligned).ok()
    }
}

/// The error for an abstract Unix address, which no client connects to.
fn abstract_unsupported(addr: &Addr) -> HostError {
    HostError::InvalidAddr {
        addr: addr.to_string(),
        reason: "abstract Unix addresses are not supported by this client".to_owned(),
    }
}
