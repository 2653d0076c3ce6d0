//! Fuzz entry points (used by `fuzz/fuzz_targets/ring_hostile.rs` and by a unit test).

use std::time::Duration;

use crate::layout::{HEADER_LEN, OFF_HEAD, OFF_TAIL};
use crate::ring::SharedRing;
use crate::RingError;

/// Reads fuzz input a byte at a time, yielding zeros once it runs out.
struct Input<'a> {
    bytes: &'a [u8],
}

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&b, rest)) => {
                self.bytes = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        b.iter_mut().for_each(|x| *x = self.u8());
        u64::from_le_bytes(b)
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let (head, rest) = self.bytes.split_at(n.min(self.bytes.len()));
        self.bytes = rest;
        head
    }
}

fn touch(bytes: &[u8]) -> u64 {
    bytes.iter().map(|&b| u64::from(b)).sum()
}

/// A host-side producer and consumer share one small heap ring while the
/// input plays the hostile child: it first overwrites the whole header and
/// data region, then interleaves raw writes with ring operations. Every
/// operation must return (possibly `Corrupted`) without panicking or touching
/// memory outside the region.
pub fn ring_hostile(data: &[u8]) {
    let mut input = Input { bytes: data };
    let capacity = 32usize << (input.u8() % 8);
    let Ok((mut producer, mut consumer, region)) = SharedRing::heap_pair(capacity) else {
        return;
    };
    let region_len = HEADER_LEN + capacity;
    let fill_len = usize::from(input.u16()) % (region_len + 1);
    region.scribble(0, input.take(fill_len));

    let mut sink = 0u64;
    for _ in 0..256 {
        if input.bytes.is_empty() {
            break;
        }
        let op = input.u8();
        match op % 8 {
            0 => {
                let len = usize::from(input.u16()) % (capacity + 32);
                let how = input.u8();
                match producer.try_reserve(len) {
                    Ok(mut slot) => {
                        slot.iter_mut().for_each(|b| *b = how);
                        match how % 3 {
                            0 => slot.commit(),
                            1 => slot.commit_len(len / 2),
                            _ => {} // abandoned: dropped uncommitted
                        }
                    }
                    Err(RingError::TooLarge { len: l, max, .. }) => assert!(l > max),
                    Err(_) => {}
                }
            }
            1 => sink += u64::from(producer.publish().is_ok()),
            2 => {
                if let Ok(Some(record)) = consumer.peek() {
                    sink += touch(record);
                }
                if op & 0x80 != 0 {
                    sink += u64::from(consumer.release().is_ok());
                }
            }
            3 => {
                for record in consumer.batch().take(usize::from(op >> 3)).flatten() {
                    sink += touch(record);
                }
            }
            4 => sink += u64::from(consumer.publish_released().is_ok()),
            5 => {
                let offset = usize::from(input.u16()) % region_len;
                let n = usize::from(input.u8() % 32);
                region.scribble(offset, input.take(n));
            }
            6 => {
                let offset = if op & 0x80 != 0 { OFF_TAIL } else { OFF_HEAD };
                region.scribble(offset, &input.u64().to_le_bytes());
            }
            _ => match op >> 3 {
                0 => sink += u64::from(matches!(consumer.arm_doorbell(), Ok(true))),
                1 => consumer.disarm(),
                2 => sink += u64::from(consumer.take_pending()),
                3 => sink += u64::from(matches!(producer.arm_doorbell(64), Ok(true))),
                4 => producer.disarm(),
                5 => sink += u64::from(producer.take_pending()),
                6 => sink += u64::from(consumer.wait_readable(Some(Duration::ZERO)).is_ok()),
                7 => sink += u64::from(producer.wait_writable(16, Some(Duration::ZERO)).is_ok()),
                8 => sink += u64::from(consumer.is_readable().is_ok()),
                _ => sink += u64::from(producer.is_writable(usize::from(op)).is_ok()),
            },
        }
    }
    std::hint::black_box(sink);
}
