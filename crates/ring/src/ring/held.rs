//! A reservation held across an await: [`Producer::hold`], for a writer
//! that fills a record from a socket over several reads (the host reads a
//! large frame's payload straight into the ring this way).

use std::sync::Arc;

use super::Producer;
use crate::error::RingError;
use crate::protocol::Slot;
use crate::shm::{HoldToken, Region};

/// Room for one record that does not borrow its [`Producer`]: it owns the
/// ring's mapping (an `Arc` of it), so the memory stays mapped for as long
/// as the record lives, even if the producer is dropped meanwhile (the
/// proc's ring closed). While it lives, the producer refuses every other
/// reservation (`Full`, see [`Producer::try_reserve`]), so records stay in
/// order. [`Producer::commit_held`] commits it (visible after the next
/// publish); dropping it abandons it, unpublished.
#[derive(Debug)]
pub struct HeldRecord {
    region: Arc<Region>,
    /// `None` once committed (the token went back to the region).
    token: Option<HoldToken>,
    slot: Slot,
}

impl HeldRecord {
    /// The reserved length in bytes.
    pub fn len(&self) -> usize {
        self.slot.len as usize
    }

    /// Whether the record is empty (a zero-length reservation).
    pub fn is_empty(&self) -> bool {
        self.slot.len == 0
    }

    /// The reserved bytes (16-byte aligned), to fill. Memory the consumer
    /// process may also write, like any [`Reservation`](super::Reservation):
    /// whatever is read back from it is untrusted.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let Some(token) = self.token.as_mut() else {
            return &mut [];
        };
        self.region
            .held_bytes_mut(token, self.slot.payload, self.slot.len)
            .unwrap_or(&mut [])
    }
}

impl Drop for HeldRecord {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            self.region.release_hold(token);
        }
    }
}

impl Producer {
    /// Reserve `len` payload bytes like [`try_reserve`](Producer::try_reserve),
    /// as a [`HeldRecord`] that borrows nothing, to be filled across awaits
    /// and then given to [`commit_held`](Producer::commit_held). One record
    /// at a time: `Full` while one is held.
    pub fn hold(&mut self, len: usize) -> Result<HeldRecord, RingError> {
        let slot = self.try_reserve(len)?.into_slot();
        let token = self
            .region
            .take_hold()
            .ok_or_else(|| RingError::corrupted("ring already holds a record"))?;
        let mut held = HeldRecord {
            region: Arc::clone(&self.region),
            token: Some(token),
            slot,
        };
        if held.bytes_mut().len() != len {
            return Err(RingError::corrupted("held record outside the data region"));
        }
        Ok(held)
    }

    /// Whether a [`HeldRecord`] of this ring is out.
    pub fn is_held(&self) -> bool {
        self.region.is_held()
    }

    /// Commits the whole held record (visible after the next
    /// [`publish`](Producer::publish)); the producer may reserve again.
    /// Gives the record back if it is not this ring's.
    pub fn commit_held(&mut self, mut held: HeldRecord) -> Result<(), HeldRecord> {
        if !Arc::ptr_eq(&self.region, &held.region) {
            return Err(held);
        }
        let Some(token) = held.token.take() else {
            return Err(held);
        };
        self.cursor.commit(&*self.region, &held.slot, held.slot.len);
        self.region.release_hold(token);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{RingError, SharedRing};

    #[test]
    fn a_held_record_blocks_other_reservations_until_committed_in_order() {
        let (mut producer, mut consumer) = SharedRing::create(65536).unwrap().split().unwrap();
        producer.try_reserve(16).unwrap().commit();
        let mut held = producer.hold(32).unwrap();
        assert!(producer.is_held());
        assert!(matches!(producer.try_reserve(16), Err(RingError::Full)));
        assert!(!producer.is_writable(16).unwrap());
        assert!(matches!(producer.hold(16), Err(RingError::Full)));
        held.bytes_mut().fill(7);
        producer.publish().unwrap();
        // Only the record before the held one is visible.
        assert_eq!(consumer.peek().unwrap().map(<[u8]>::len), Some(16));
        consumer.release().unwrap();
        assert!(consumer.peek().unwrap().is_none());
        producer.commit_held(held).unwrap();
        assert!(!producer.is_held());
        producer.try_reserve(16).unwrap().commit();
        producer.publish().unwrap();
        assert_eq!(consumer.peek().unwrap(), Some(&[7u8; 32][..]));
        consumer.release().unwrap();
        assert_eq!(consumer.peek().unwrap().map(<[u8]>::len), Some(16));
    }

    #[test]
    fn a_dropped_held_record_is_abandoned_unpublished() {
        let (mut producer, mut consumer) = SharedRing::create(65536).unwrap().split().unwrap();
        let mut held = producer.hold(64).unwrap();
        held.bytes_mut().fill(1);
        drop(held);
        assert!(!producer.is_held());
        producer.try_reserve(16).unwrap().commit();
        producer.publish().unwrap();
        assert_eq!(consumer.peek().unwrap().map(<[u8]>::len), Some(16));
    }

    #[test]
    fn a_held_record_outlives_its_producer_and_belongs_to_its_ring_only() {
        let (mut producer, consumer) = SharedRing::create(65536).unwrap().split().unwrap();
        let (mut other, _other_consumer) = SharedRing::create(65536).unwrap().split().unwrap();
        let held = producer.hold(64).unwrap();
        let mut held = other.commit_held(held).unwrap_err();
        drop(producer);
        drop(consumer);
        // The mapping is still there to write into.
        held.bytes_mut().fill(9);
        assert_eq!(held.len(), 64);
    }
}
