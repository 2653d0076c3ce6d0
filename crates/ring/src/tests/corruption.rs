//! One test per kind of corruption a hostile child can cause, on real memfd
//! rings: each expects `Corrupted` on the host's end, and the end stays poisoned.

use std::sync::Arc;

use crate::layout::{
    HEADER_LEN, OFF_CAPACITY, OFF_HEAD, OFF_MAGIC, OFF_TAIL, OFF_VERSION, PAD_FLAG,
};
use crate::ring::{Consumer, Producer, SharedRing};
use crate::shm::Region;
use crate::RingError;

const CAPACITY: usize = 64 * 1024;

fn ring() -> (Producer, Consumer, Arc<Region>) {
    let ring = SharedRing::create(CAPACITY).unwrap();
    let region = ring.region();
    let (producer, consumer) = ring.split().unwrap();
    (producer, consumer, region)
}

fn poke_u64(region: &Region, offset: usize, value: u64) {
    region.scribble(offset, &value.to_le_bytes());
}

fn record_header(region: &Region, data_offset: usize, value: u64) {
    poke_u64(region, HEADER_LEN + data_offset, value);
}

#[track_caller]
fn assert_corrupted<T: std::fmt::Debug>(result: Result<T, RingError>, expected: &str) {
    match result {
        Err(RingError::Corrupted { what }) => assert!(what.contains(expected), "got {what:?}"),
        other => panic!("expected Corrupted({expected}), got {other:?}"),
    }
}

/// Host as consumer: the child (producer) writes the producer index and records.
mod hostile_producer {
    use super::*;

    #[test]
    fn tail_more_than_one_capacity_ahead() {
        let (_p, mut consumer, region) = ring();
        poke_u64(&region, OFF_TAIL, CAPACITY as u64 + 16);
        assert_corrupted(consumer.peek(), "more than one capacity ahead");
        // Poisoned: stays corrupted even if the child "repairs" the index.
        poke_u64(&region, OFF_TAIL, 0);
        assert_corrupted(consumer.peek(), "more than one capacity ahead");
        assert!(consumer.corruption().is_some());
    }

    #[test]
    fn occupancy_refresh_validates_the_tail() {
        let (_p, mut consumer, region) = ring();
        poke_u64(&region, OFF_TAIL, CAPACITY as u64 + 16);
        assert_corrupted(consumer.refresh_used(), "more than one capacity ahead");
        assert_eq!(consumer.used(), 0, "the bad index was not taken");
        assert!(consumer.corruption().is_some());
    }

    #[test]
    fn tail_moved_backwards() {
        let (mut producer, mut consumer, region) = ring();
        producer.try_reserve(16).unwrap().commit();
        producer.try_reserve(16).unwrap().commit();
        producer.publish().unwrap();
        assert!(consumer.peek().unwrap().is_some()); // sees tail = 64
        poke_u64(&region, OFF_TAIL, 32);
        consumer.release().unwrap();
        consumer.release().unwrap();
        // The cursor still has one record cached; the backwards move shows on refresh.
        consumer.peek().unwrap();
        consumer.release().unwrap();
        assert_corrupted(consumer.peek(), "moved backwards");
    }

    #[test]
    fn tail_not_a_multiple_of_16() {
        let (_p, mut consumer, region) = ring();
        poke_u64(&region, OFF_TAIL, 24);
        assert_corrupted(consumer.is_readable(), "not a multiple of 16");
    }

    #[test]
    fn record_length_runs_past_the_producer_index() {
        let (_p, mut consumer, region) = ring();
        record_header(&region, 0, 100);
        poke_u64(&region, OFF_TAIL, 32);
        assert_corrupted(consumer.peek(), "past the producer index");
    }

    #[test]
    fn record_length_runs_past_the_end_of_the_data_region() {
        let (_p, mut consumer, region) = ring();
        record_header(&region, 0, 0xffff_fff0);
        poke_u64(&region, OFF_TAIL, CAPACITY as u64);
        assert_corrupted(consumer.peek(), "past the end of the data region");
    }

    #[test]
    fn record_header_with_reserved_bits() {
        let (_p, mut consumer, region) = ring();
        record_header(&region, 0, (1 << 40) | 8);
        poke_u64(&region, OFF_TAIL, 32);
        assert_corrupted(consumer.peek(), "reserved bits");
    }

    #[test]
    fn padding_header_with_stray_bits() {
        let (_p, mut consumer, region) = ring();
        record_header(&region, 0, PAD_FLAG | 5);
        poke_u64(&region, OFF_TAIL, CAPACITY as u64);
        assert_corrupted(consumer.peek(), "padding record header");
    }

    #[test]
    fn padding_runs_past_the_producer_index() {
        let (_p, mut consumer, region) = ring();
        record_header(&region, 0, PAD_FLAG);
        poke_u64(&region, OFF_TAIL, 64);
        assert_corrupted(consumer.peek(), "padding record runs past");
    }

    #[test]
    fn padding_forever_is_bounded() {
        // Padding at 0 spanning the whole ring, published twice over: an honest
        // producer never writes padding at offset 0.
        let (_p, mut consumer, region) = ring();
        record_header(&region, 0, PAD_FLAG);
        poke_u64(&region, OFF_TAIL, CAPACITY as u64);
        assert!(consumer.peek().unwrap().is_none()); // one skip, then empty
        poke_u64(&region, OFF_TAIL, 2 * CAPACITY as u64);
        // Still fine (one padding per peek); the point is that peek returns.
        assert!(consumer.peek().unwrap().is_none());
    }

    #[test]
    fn length_changed_after_read_is_not_reread() {
        let (mut producer, mut consumer, region) = ring();
        producer.try_reserve(16).unwrap().commit(); // record at 0, 32 bytes
        let mut second = producer.try_reserve(4).unwrap();
        second.copy_from_slice(b"next");
        second.commit(); // record at 32
        producer.publish().unwrap();
        assert_eq!(consumer.peek().unwrap().map(<[u8]>::len), Some(16));
        // The child rewrites the first record's length after the host read it.
        record_header(&region, 0, 4000);
        consumer.release().unwrap();
        // Release used the length read by peek: the next record is where it was.
        assert_eq!(consumer.peek().unwrap(), Some(&b"next"[..]));
        consumer.release().unwrap();
        // And a rewritten header that the host has not read yet is validated.
        record_header(&region, 64, 4000);
        poke_u64(&region, OFF_TAIL, 96);
        assert_corrupted(consumer.peek(), "past the producer index");
    }

    #[test]
    fn peeked_returns_what_peek_read_even_after_a_rewrite() {
        let (mut producer, mut consumer, region) = ring();
        assert_eq!(consumer.peeked(), None, "nothing peeked yet");
        let mut first = producer.try_reserve(4).unwrap();
        first.copy_from_slice(b"abcd");
        first.commit(); // record at 0, 32 bytes
        producer.publish().unwrap();
        assert_eq!(consumer.peek().unwrap(), Some(&b"abcd"[..]));
        // The child rewrites the length after the host read it: `peeked`
        // keeps to what `peek` validated.
        record_header(&region, 0, 12);
        assert_eq!(consumer.peeked(), Some(&b"abcd"[..]));
        consumer.release().unwrap();
        assert_eq!(consumer.peeked(), None, "released");
        // A poisoned end hands out nothing, not even the last peeked record.
        let mut second = producer.try_reserve(4).unwrap();
        second.copy_from_slice(b"next");
        second.commit();
        producer.publish().unwrap();
        assert_eq!(consumer.peek().unwrap(), Some(&b"next"[..]));
        record_header(&region, 32, 4000);
        assert_corrupted(consumer.peek(), "past");
        assert_eq!(consumer.peeked(), None);
    }
}

/// Host as producer: the child (consumer) writes the consumer index.
mod hostile_consumer {
    use super::*;

    fn fill_ring(producer: &mut Producer) {
        while producer.try_reserve(4000).map(|r| r.commit()).is_ok() {}
        producer.publish().unwrap();
    }

    #[test]
    fn head_ahead_of_the_published_tail() {
        let (mut producer, _c, region) = ring();
        fill_ring(&mut producer);
        poke_u64(&region, OFF_HEAD, CAPACITY as u64 * 4);
        assert_corrupted(
            producer.try_reserve(4000),
            "outside the range the producer published",
        );
        assert_corrupted(producer.try_reserve(1), "outside the range");
    }

    #[test]
    fn head_moved_backwards() {
        let (mut producer, mut consumer, region) = ring();
        fill_ring(&mut producer);
        for _ in 0..8 {
            consumer.peek().unwrap().unwrap();
            consumer.release().unwrap();
        }
        consumer.publish_released().unwrap();
        fill_ring(&mut producer); // producer sees the released head
        poke_u64(&region, OFF_HEAD, 0);
        assert_corrupted(producer.is_writable(4000), "outside the range");
    }

    #[test]
    fn occupancy_refresh_validates_the_head_and_keeps_the_last_good_value() {
        let (mut producer, _c, region) = ring();
        fill_ring(&mut producer);
        let used = producer.used();
        poke_u64(&region, OFF_HEAD, CAPACITY as u64 * 4);
        assert_corrupted(producer.refresh_used(), "outside the range");
        assert_eq!(producer.used(), used, "the bad index was not taken");
        assert_corrupted(producer.refresh_used(), "outside the range");
    }

    #[test]
    fn head_not_a_multiple_of_16() {
        let (mut producer, _c, region) = ring();
        fill_ring(&mut producer);
        poke_u64(&region, OFF_HEAD, 8);
        assert_corrupted(producer.try_reserve(4000), "not a multiple of 16");
    }
}

/// A child (or anyone) attaching checks the header it maps.
mod attach {
    use super::*;

    fn attach_after(offset: usize, value: u64) -> Result<SharedRing, RingError> {
        let ring = SharedRing::create(CAPACITY).unwrap();
        ring.region().scribble(
            offset,
            &value.to_le_bytes()[..if offset == OFF_VERSION { 4 } else { 8 }],
        );
        SharedRing::attach(ring.inheritable_fd().unwrap())
    }

    #[test]
    fn an_intact_ring_attaches_and_shares_records() {
        let ring = SharedRing::create(CAPACITY).unwrap();
        let mut consumer = SharedRing::attach(ring.inheritable_fd().unwrap())
            .unwrap()
            .into_consumer()
            .unwrap();
        let mut producer = ring.into_producer().unwrap();
        producer.try_reserve(3).unwrap().copy_from_slice(b"abc");
        producer.publish().unwrap(); // nothing committed yet
        assert!(consumer.peek().unwrap().is_none());
        let mut slot = producer.try_reserve(3).unwrap();
        slot.copy_from_slice(b"xyz");
        slot.commit();
        producer.publish().unwrap();
        assert_eq!(consumer.peek().unwrap(), Some(&b"xyz"[..]));
    }

    #[test]
    fn bad_magic() {
        assert_corrupted(attach_after(OFF_MAGIC, 0x1234), "magic");
    }

    #[test]
    fn bad_version() {
        assert_corrupted(attach_after(OFF_VERSION, 99), "version");
    }

    #[test]
    fn capacity_disagrees_with_the_memfd_size() {
        assert_corrupted(attach_after(OFF_CAPACITY, 2 * CAPACITY as u64), "capacity");
    }

    #[test]
    fn inconsistent_indices() {
        let ring = SharedRing::create(CAPACITY).unwrap();
        ring.region()
            .scribble(OFF_TAIL, &(3 * CAPACITY as u64).to_le_bytes());
        let attached = SharedRing::attach(ring.inheritable_fd().unwrap()).unwrap();
        assert_corrupted(attached.into_consumer(), "indices inconsistent");
    }

    #[test]
    fn unsealed_memfd() {
        let fd = rustix::fs::memfd_create("not-a-ring", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, (HEADER_LEN + CAPACITY) as u64).unwrap();
        assert_corrupted(SharedRing::attach(fd), "not sealed");
    }
}
