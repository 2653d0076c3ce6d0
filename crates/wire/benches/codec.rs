//! Frame codec benchmark: hostmux-wire against a serde envelope with the same
//! fields serialised with bincode 1.x, the way conventional actor runtimes
//! frame their messages.
//!
//! For each payload size (64 B and 4 KiB) it measures
//! * decode: validate the frame and its routing header and read the
//!   destination name (ours: `decode_frame`, in place; bincode: deserialise
//!   the envelope, owned as is conventional, and borrowed as the best case);
//! * encode: write the frame into a reused buffer.
//!
//! Criterion reports the statistics; at the end a side-by-side table of
//! median ns/frame and ratios, measured in the same run, is printed.
//! Run: `cargo bench -p hostmux-wire --bench codec`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use hostmux_wire::rkyv::util::AlignedVec;
use hostmux_wire::{decode_frame, encode_frame, encoded_len, Flags, FrameHeader, Limits, Sender};
use serde::{Deserialize, Serialize};

/// The conventional envelope: the routing header's fields plus the payload.
#[derive(Serialize, Deserialize)]
struct Envelope {
    message_id: u64,
    dest_port: u32,
    flags: u16,
    kind: u8,
    sender_kind: u8,
    dest_name: String,
    dest_addr: String,
    sender_name: String,
    sender_addr: String,
    payload: Vec<u8>,
}

/// The same envelope deserialised without copying (bincode's best case).
#[derive(Deserialize)]
struct BorrowedEnvelope<'a> {
    _message_id: u64,
    _dest_port: u32,
    _flags: u16,
    _kind: u8,
    _sender_kind: u8,
    dest_name: &'a str,
    _dest_addr: &'a str,
    _sender_name: &'a str,
    _sender_addr: &'a str,
    payload: &'a [u8],
}

fn header() -> FrameHeader<'static> {
    FrameHeader {
        flags: Flags::RETURN_UNDELIVERABLE,
        dest_port: 1,
        sender: Sender::Client { name: "client-1" },
        ..FrameHeader::data("echo-service", 7)
    }
}

fn envelope(payload: &[u8]) -> Envelope {
    Envelope {
        message_id: 7,
        dest_port: 1,
        flags: 1,
        kind: 0,
        sender_kind: 1,
        dest_name: "echo-service".into(),
        dest_addr: String::new(),
        sender_name: "client-1".into(),
        sender_addr: String::new(),
        payload: payload.to_vec(),
    }
}

struct Case {
    label: &'static str,
    payload: Vec<u8>,
    frame: AlignedVec<16>,
    envelope: Envelope,
    envelope_bytes: Vec<u8>,
}

fn cases() -> Vec<Case> {
    let limits = Limits::default();
    [("64B", 64), ("4KiB", 4096)]
        .into_iter()
        .map(|(label, len)| {
            let payload = vec![0x5A; len];
            let mut frame = AlignedVec::<16>::new();
            frame.resize(encoded_len(&header(), len), 0);
            encode_frame(&mut frame, &header(), &payload, &limits).unwrap();
            let envelope = envelope(&payload);
            let envelope_bytes = bincode::serialize(&envelope).unwrap();
            Case {
                label,
                payload,
                frame,
                envelope,
                envelope_bytes,
            }
        })
        .collect()
}

fn decode_ours(frame: &[u8], limits: &Limits) -> usize {
    let view = decode_frame(frame, limits).unwrap();
    view.dest_name().len() + view.payload().len()
}

fn decode_bincode_owned(bytes: &[u8]) -> usize {
    let envelope: Envelope = bincode::deserialize(bytes).unwrap();
    envelope.dest_name.len() + envelope.payload.len()
}

fn decode_bincode_borrowed(bytes: &[u8]) -> usize {
    let envelope: BorrowedEnvelope<'_> = bincode::deserialize(bytes).unwrap();
    envelope.dest_name.len() + envelope.payload.len()
}

fn criterion_benches(c: &mut Criterion, cases: &[Case]) {
    let limits = Limits::default();
    let mut decode = c.benchmark_group("decode");
    for case in cases {
        decode.bench_with_input(BenchmarkId::new("hostmux", case.label), case, |b, case| {
            b.iter(|| decode_ours(black_box(&case.frame), &limits))
        });
        decode.bench_with_input(
            BenchmarkId::new("bincode_owned", case.label),
            case,
            |b, case| b.iter(|| decode_bincode_owned(black_box(&case.envelope_bytes))),
        );
        decode.bench_with_input(
            BenchmarkId::new("bincode_borrowed", case.label),
            case,
            |b, case| b.iter(|| decode_bincode_borrowed(black_box(&case.envelope_bytes))),
        );
    }
    decode.finish();
    let mut encode = c.benchmark_group("encode");
    for case in cases {
        let mut out = AlignedVec::<16>::new();
        out.resize(case.frame.len(), 0);
        encode.bench_with_input(BenchmarkId::new("hostmux", case.label), case, |b, case| {
            b.iter(|| encode_frame(&mut out, black_box(&header()), &case.payload, &limits).unwrap())
        });
        let mut out = Vec::with_capacity(case.envelope_bytes.len());
        encode.bench_with_input(BenchmarkId::new("bincode", case.label), case, |b, case| {
            b.iter(|| {
                out.clear();
                bincode::serialize_into(&mut out, black_box(&case.envelope)).unwrap();
                out.len()
            })
        });
    }
    encode.finish();
}

/// Median ns per call over `samples` batches of `batch` calls.
fn median_ns(mut f: impl FnMut() -> usize) -> f64 {
    const SAMPLES: usize = 51;
    const BATCH: u32 = 20_000;
    let mut results: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..BATCH {
                black_box(f());
            }
            start.elapsed().as_nanos() as f64 / f64::from(BATCH)
        })
        .collect();
    results.sort_by(f64::total_cmp);
    results[SAMPLES / 2]
}

fn ratio_table(cases: &[Case]) {
    let limits = Limits::default();
    println!("\nside by side, median ns/frame (same run):");
    println!(
        "{:<8} {:<7} {:>10} {:>15} {:>18} {:>10} {:>10}",
        "payload", "op", "hostmux", "bincode_owned", "bincode_borrowed", "x owned", "x borrowed"
    );
    for case in cases {
        let ours = median_ns(|| decode_ours(black_box(&case.frame), &limits));
        let owned = median_ns(|| decode_bincode_owned(black_box(&case.envelope_bytes)));
        let borrowed = median_ns(|| decode_bincode_borrowed(black_box(&case.envelope_bytes)));
        println!(
            "{:<8} {:<7} {:>10.1} {:>15.1} {:>18.1} {:>9.1}x {:>9.1}x",
            case.label,
            "decode",
            ours,
            owned,
            borrowed,
            owned / ours,
            borrowed / ours
        );
        let mut out = AlignedVec::<16>::new();
        out.resize(case.frame.len(), 0);
        let ours = median_ns(|| {
            encode_frame(&mut out, black_box(&header()), &case.payload, &limits).unwrap()
        });
        let mut out = Vec::with_capacity(case.envelope_bytes.len());
        let theirs = median_ns(|| {
            out.clear();
            bincode::serialize_into(&mut out, black_box(&case.envelope)).unwrap();
            out.len()
        });
        println!(
            "{:<8} {:<7} {:>10.1} {:>15.1} {:>18} {:>9.1}x {:>10}",
            case.label,
            "encode",
            ours,
            theirs,
            "-",
            theirs / ours,
            "-"
        );
    }
}

fn main() {
    let cases = cases();
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    criterion_benches(&mut criterion, &cases);
    criterion.final_summary();
    ratio_table(&cases);
}
