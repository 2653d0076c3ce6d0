//! The hot path allocates nothing per message: a global allocator that counts
//! allocations per thread (other tests run on other threads meanwhile).

use std::time::Duration;

use hostmux_ring::{Doorbell, SharedRing, WaitOutcome};

#[test]
fn reserve_commit_publish_peek_release_waits_and_occupancy_allocate_nothing() {
    let ring = SharedRing::create(64 * 1024).unwrap();
    let (mut producer, mut consumer) = ring.split().unwrap();
    let doorbell = Doorbell::new().unwrap();
    producer.set_consumer_doorbell(Some(doorbell.try_clone().unwrap()));
    consumer.set_producer_doorbell(Some(doorbell.try_clone().unwrap()));

    let counting = hostmux_testkit::start_counting();
    let mut checksum = 0u64;
    for round in 0..20_000u64 {
        let len = (round % 3000) as usize;
        let mut slot = match producer.try_reserve(len) {
            Ok(slot) => slot,
            Err(hostmux_ring::RingError::Full) => {
                while consumer.peek().unwrap().is_some() {
                    consumer.release().unwrap();
                }
                producer.try_reserve(len).unwrap()
            }
            Err(e) => panic!("{e}"),
        };
        slot.fill(round as u8);
        slot.commit();
        if round % 4 == 0 {
            producer.publish().unwrap();
        }
        if round % 7 == 0 {
            for record in consumer.batch() {
                checksum += record.unwrap().len() as u64;
            }
            assert!(consumer.arm_doorbell().is_ok());
            consumer.disarm();
            let _ = consumer.take_pending();
            let _ = doorbell.drain().unwrap();
            let _ = consumer.wait_readable(Some(Duration::ZERO)).unwrap();
            let _ = producer.wait_writable(16, Some(Duration::ZERO)).unwrap();
            checksum += (producer.used() + producer.refresh_used().unwrap()) as u64;
            checksum += (consumer.used() + consumer.refresh_used().unwrap()) as u64;
        } else if let Some(record) = consumer.peek().unwrap() {
            checksum += record.len() as u64;
            checksum += consumer.peeked().map_or(0, <[u8]>::len) as u64;
            consumer.release().unwrap();
        }
    }
    producer.publish().unwrap();
    assert_eq!(
        consumer.wait_readable(Some(Duration::ZERO)).unwrap(),
        WaitOutcome::Ready
    );
    let allocated = counting.stop().allocations;
    assert!(checksum > 0);
    assert_eq!(
        allocated, 0,
        "the per-message path allocated {allocated} times"
    );
}
