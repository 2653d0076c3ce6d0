//! A link that could not be set up, returned with a reason of its own.
//!
//! A stand-in (from the TLS work) until the acknowledged links replace how
//! a link's frames come back: today every frame queued on a link that
//! closes is returned `NoSuchProc` (`Dataplane::remove_conn`); a dial that
//! the peer refused (TLS handshake, hello refusal) returns them with
//! `PeerRefused` through [`Dataplane::fail_link`].

use hostmux_wire::{FrameDecoder, FrameHeader, UndeliverableReason};

use super::{ConnKey, Dataplane};

impl Dataplane {
    /// The link `key` failed for `reason`: every frame still queued on it
    /// is returned to its sender with `reason`, and the link is forgotten.
    pub(crate) fn fail_link(&mut self, key: ConnKey, reason: UndeliverableReason) {
        let Some(conn) = self.conn_mut(key) else {
            return;
        };
        let queued = std::mem::take(&mut conn.outbox);
        // Cold path: re-read the queued frames, each from an aligned buffer.
        let mut decoder = FrameDecoder::new(self.limits);
        decoder.feed(&queued);
        let mut originals: Vec<Vec<u8>> = Vec::new();
        while let Ok(Some(frame)) = decoder.next_frame() {
            originals.push(frame.as_bytes().to_vec());
        }
        let mut aligned = FrameDecoder::new(self.limits);
        for bytes in originals {
            aligned.feed(&bytes);
            if let Ok(Some(frame)) = aligned.next_frame() {
                let fields: FrameHeader<'_> = frame.fields();
                self.notify_sender(&fields, reason);
            }
        }
        // Nothing is left queued: removing it returns nothing more.
        self.remove_conn(key);
    }
}
