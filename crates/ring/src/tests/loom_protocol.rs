//! Loom models of the index protocol and the sleep/wake handshake, over heap
//! storage with a tiny capacity. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p hostmux-ring --release --lib loom`.
//!
//! Payload bytes are not modelled (loom cannot see plain memory); they ride on
//! the same release/acquire edges as the record-header words, which are.

use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;

use crate::layout::{Word, SLEEP_FUTEX};
use crate::protocol::{
    announce_sleep_then_recheck, take_sleeper, ConsumerCursor, ProducerCursor, Recheck, Storage,
    WakeWords, READABLE, WRITABLE,
};
use crate::RingError;

const CAPACITY: u64 = 64;

struct LoomStorage {
    tail: AtomicU64,
    head: AtomicU64,
    words: [AtomicU32; 8],
    records: [AtomicU64; (CAPACITY / 16) as usize],
}

impl LoomStorage {
    fn new() -> Self {
        LoomStorage {
            tail: AtomicU64::new(0),
            head: AtomicU64::new(0),
            words: std::array::from_fn(|_| AtomicU32::new(0)),
            records: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Storage for LoomStorage {
    fn tail(&self) -> &AtomicU64 {
        &self.tail
    }
    fn head(&self) -> &AtomicU64 {
        &self.head
    }
    fn word(&self, word: Word) -> &AtomicU32 {
        let index = match word {
            Word::ProducerSleep => 0,
            Word::ConsumerSleep => 1,
            Word::ReadableSeq => 2,
            Word::WritableSeq => 3,
            Word::ReadablePending => 4,
            Word::WritablePending => 5,
            Word::ProducerClosed => 6,
            Word::ConsumerClosed => 7,
        };
        &self.words[index]
    }
    fn record_word(&self, pos: u64) -> &AtomicU64 {
        &self.records[((pos % CAPACITY) / 16) as usize]
    }
}

fn len_of(seq: u64) -> usize {
    [5, 16, 0][seq as usize % 3]
}

/// What a waiting end does once its spin is over (the ring's `wait_until`
/// minus the futex call loom cannot model): check, announce, re-check.
/// Returns the sequence value it would sleep on, `None` if it need not sleep.
fn sleep_announced(
    s: &LoomStorage,
    words: WakeWords,
    mut ready: impl FnMut() -> Result<bool, RingError>,
) -> Option<u32> {
    if ready().unwrap() {
        return None;
    }
    match announce_sleep_then_recheck(s, words, SLEEP_FUTEX, ready).unwrap() {
        Recheck::Sleep(seen) => Some(seen),
        Recheck::Ready => None,
        Recheck::WakerClosed => panic!("no end closes in these models"),
    }
}

/// A sleeper that announced and saw nothing must have been claimed by the
/// waker (`take_sleeper` returned its mode) and find the sequence word moved
/// on, so `futex_wait(seq, seen)` returns.
fn assert_woken(s: &LoomStorage, words: WakeWords, slept_on: Option<u32>, woke: Option<u32>) {
    if let Some(seen) = slept_on {
        assert_eq!(woke, Some(SLEEP_FUTEX));
        assert_ne!(s.word(words.seq).load(Ordering::Acquire), seen);
    }
}

/// Runs `peer` on a second thread over the same storage.
fn spawn_peer<T: Send + 'static>(
    storage: &Arc<LoomStorage>,
    peer: impl FnOnce(&LoomStorage) -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let storage = storage.clone();
    thread::spawn(move || peer(&storage))
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

#[test]
fn loom_records_arrive_in_order_across_the_wrap() {
    model(|| {
        let storage = Arc::new(LoomStorage::new());
        let producer = spawn_peer(&storage, |s| {
            let mut cursor = ProducerCursor::new(CAPACITY, 0, 0);
            for seq in 0..3 {
                loop {
                    match cursor.reserve(s, len_of(seq)) {
                        Ok(slot) => {
                            cursor.commit(s, &slot, slot.len);
                            cursor.publish(s);
                            break;
                        }
                        Err(RingError::Full) => {
                            cursor.publish(s);
                            thread::yield_now();
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        });
        let s = &*storage;
        let mut cursor = ConsumerCursor::new(CAPACITY, 0, 0);
        let mut seq = 0;
        while seq < 3 {
            match cursor.peek(s).unwrap() {
                Some(span) => {
                    assert_eq!(span.len as usize, len_of(seq), "record {seq}");
                    assert_eq!(span.payload % 16, 0);
                    cursor.release();
                    cursor.publish(s);
                    seq += 1;
                }
                None => thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert!(cursor.peek(s).unwrap().is_none());
    });
}

#[test]
fn loom_consumer_about_to_sleep_is_never_missed_by_a_publish() {
    model(|| {
        let storage = Arc::new(LoomStorage::new());
        let producer = spawn_peer(&storage, |s| {
            let mut cursor = ProducerCursor::new(CAPACITY, 0, 0);
            let slot = cursor.reserve(s, 8).unwrap();
            cursor.commit(s, &slot, 8);
            cursor.publish(s);
            take_sleeper(s, READABLE)
        });
        let s = &*storage;
        let mut cursor = ConsumerCursor::new(CAPACITY, 0, 0);
        let slept_on = sleep_announced(s, READABLE, || cursor.has_records(s));
        let woke = producer.join().unwrap();
        assert_woken(s, READABLE, slept_on, woke);
    });
}

#[test]
fn loom_producer_waiting_for_space_is_never_missed_by_a_release() {
    model(|| {
        let storage = Arc::new(LoomStorage::new());
        // Fill the ring before the threads start: one 48-byte record.
        let mut producer = ProducerCursor::new(CAPACITY, 0, 0);
        let slot = producer.reserve(&*storage, 32).unwrap();
        producer.commit(&*storage, &slot, 32);
        producer.publish(&*storage);

        let consumer = spawn_peer(&storage, |s| {
            let mut cursor = ConsumerCursor::new(CAPACITY, 0, 0);
            assert!(cursor.peek(s).unwrap().is_some());
            cursor.release();
            cursor.publish(s);
            take_sleeper(s, WRITABLE)
        });
        let s = &*storage;
        let slept_on = sleep_announced(s, WRITABLE, || producer.fits(s, 32));
        let woke = consumer.join().unwrap();
        assert_woken(s, WRITABLE, slept_on, woke);
    });
}
