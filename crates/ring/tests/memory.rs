//! [`RingMemory`]: an on-demand ring holds only the pages written so far,
//! and the side that attaches does not populate it; a populated ring holds
//! every page from creation. Memory is read from the memfd's `st_blocks`
//! (what the machine holds, however many processes map the pages).

use hostmux_ring::{RingMemory, SharedRing};

const CAPACITY: usize = 1 << 20;
const PAGE: u64 = 4096;

/// Writes records of `len` bytes until `total` payload bytes went through
/// `producer` to `consumer`, checking every record's bytes on the way.
fn pass_records(
    producer: &mut hostmux_ring::Producer,
    consumer: &mut hostmux_ring::Consumer,
    len: usize,
    total: usize,
) {
    for round in 0..total / len {
        let mut slot = producer
            .try_reserve(len)
            .expect("room: the consumer keeps up");
        slot.fill(round as u8);
        slot.commit();
        producer.publish().unwrap();
        let record = consumer.peek().unwrap().expect("published");
        assert_eq!(record.len(), len);
        assert!(record.iter().all(|&b| b == round as u8));
        consumer.release().unwrap();
    }
}

#[test]
fn on_demand_ring_holds_its_header_page_until_written_and_attaching_does_not_populate_it() {
    let host = SharedRing::create_with(CAPACITY, RingMemory::OnDemand).unwrap();
    assert!(
        host.resident_bytes().unwrap() <= PAGE,
        "a fresh on-demand ring holds {} bytes",
        host.resident_bytes().unwrap()
    );
    let peer = SharedRing::attach(host.inheritable_fd().unwrap()).unwrap();
    assert!(
        peer.resident_bytes().unwrap() <= PAGE,
        "attaching populated an on-demand ring: {} bytes",
        peer.resident_bytes().unwrap()
    );

    let watch = SharedRing::attach(host.inheritable_fd().unwrap()).unwrap();
    let mut producer = host.into_producer().unwrap();
    let mut consumer = peer.into_consumer().unwrap();
    // A quarter of the ring: about a quarter of its pages appear.
    pass_records(&mut producer, &mut consumer, 1000, CAPACITY / 4);
    let quarter = watch.resident_bytes().unwrap();
    assert!(
        quarter > (CAPACITY / 4) as u64 && quarter < (CAPACITY / 2) as u64,
        "after a quarter of the ring: {quarter} bytes"
    );
    // Past one wrap every page exists.
    pass_records(&mut producer, &mut consumer, 1000, CAPACITY);
    assert!(
        watch.resident_bytes().unwrap() >= (CAPACITY as u64) + PAGE,
        "after a wrap: {} bytes",
        watch.resident_bytes().unwrap()
    );
}

#[test]
fn populated_ring_holds_every_page_from_creation_and_works() {
    let ring = SharedRing::create_with(CAPACITY, RingMemory::Populated).unwrap();
    // The data region and the header's page.
    assert!(
        ring.resident_bytes().unwrap() >= CAPACITY as u64 + PAGE,
        "a populated ring holds {} bytes",
        ring.resident_bytes().unwrap()
    );
    let (mut producer, mut consumer) = ring.split().unwrap();
    pass_records(&mut producer, &mut consumer, 4000, 2 * CAPACITY);
}

#[test]
fn ring_memory_names_parse_back_and_unknown_names_are_refused() {
    for memory in [RingMemory::Populated, RingMemory::OnDemand] {
        assert_eq!(memory.name().parse::<RingMemory>().unwrap(), memory);
        assert_eq!(memory.to_string(), memory.name());
    }
    let error = "lazy".parse::<RingMemory>().unwrap_err();
    assert!(error.to_string().contains("\"lazy\""), "{error}");
}
