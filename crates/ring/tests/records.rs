//! Test records: size and content follow from (seed, sequence number), so the
//! receiver checks length, sequence number and a checksum independently.
//!
//! Layout: bytes 0..8 the sequence number (truncated for short records),
//! bytes 8..16 a Fletcher-style checksum of bytes 16.., then filler.

use std::time::Duration;

use hostmux_ring::{Producer, RingError, WaitOutcome};

/// splitmix64
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Payload length of record `seq`: 1..=max_len.
pub(crate) fn size(seed: u64, seq: u64, max_len: usize) -> usize {
    1 + (mix(seed ^ seq.wrapping_mul(0x1000_0000_01b3)) % max_len as u64) as usize
}

fn checksum(body: &[u8]) -> u64 {
    let (mut a, mut b) = (0u64, 0u64);
    let mut chunks = body.chunks_exact(8);
    for chunk in &mut chunks {
        a = a.wrapping_add(u64::from_le_bytes(chunk.try_into().unwrap()));
        b = b.wrapping_add(a);
    }
    for &byte in chunks.remainder() {
        a = a.wrapping_add(u64::from(byte));
        b = b.wrapping_add(a);
    }
    a ^ b.rotate_left(32)
}

/// Fill `bytes` as record `seq`.
pub(crate) fn write(seq: u64, bytes: &mut [u8]) {
    let seq_bytes = seq.to_le_bytes();
    let head = bytes.len().min(8);
    bytes[..head].copy_from_slice(&seq_bytes[..head]);
    if bytes.len() >= 16 {
        let filler = seq as u8;
        for (i, b) in bytes[16..].iter_mut().enumerate() {
            *b = filler.wrapping_add(i as u8);
        }
        let sum = checksum(&bytes[16..]);
        bytes[8..16].copy_from_slice(&sum.to_le_bytes());
    } else {
        for b in &mut bytes[head..] {
            *b = 0xa5;
        }
    }
}

/// Commit record `seq` of `seed` into `producer` (not published), waiting
/// up to `patience` for space whenever the ring is full. Returns how many
/// times it had to wait; `Err` describes why the record was not written.
pub(crate) fn produce(
    producer: &mut Producer,
    seed: u64,
    seq: u64,
    max_len: usize,
    patience: Duration,
) -> Result<u64, String> {
    let len = size(seed, seq, max_len);
    let mut waited = 0;
    loop {
        match producer.try_reserve(len) {
            Ok(mut slot) => {
                write(seq, &mut slot);
                slot.commit();
                return Ok(waited);
            }
            Err(RingError::Full) => {
                waited += 1;
                match producer.wait_writable(len, Some(patience)) {
                    Ok(WaitOutcome::Ready) => {}
                    other => return Err(format!("record {seq}: waiting for space: {other:?}")),
                }
            }
            Err(e) => return Err(format!("record {seq}: {e}")),
        }
    }
}

/// Check that `bytes` is record `seq` of `seed`; describe the first problem.
pub(crate) fn verify(seed: u64, seq: u64, max_len: usize, bytes: &[u8]) -> Result<(), String> {
    let expected_len = size(seed, seq, max_len);
    if bytes.len() != expected_len {
        return Err(format!(
            "record {seq}: length {} != {expected_len}",
            bytes.len()
        ));
    }
    let head = bytes.len().min(8);
    if bytes[..head] != seq.to_le_bytes()[..head] {
        return Err(format!(
            "record {seq}: sequence number bytes {:?}",
            &bytes[..head]
        ));
    }
    if bytes.len() >= 16 {
        let stored = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
        if stored != checksum(&bytes[16..]) {
            return Err(format!("record {seq}: checksum mismatch"));
        }
    } else if bytes[head..].iter().any(|&b| b != 0xa5) {
        return Err(format!("record {seq}: filler corrupted"));
    }
    Ok(())
}
