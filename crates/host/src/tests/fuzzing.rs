//! Runs the fuzz entry points on generated inputs: valid frames, frames
//! with flipped bytes, and noise.

use hostmux_wire::{encode_frame_to_vec, FrameHeader, FrameKind, Limits, Sender};

use crate::fuzzing::{client_stream, client_streams, proc_records};

/// A small deterministic generator (xorshift).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn frames(noise: &mut Noise, count: usize, sender: Sender<'_>) -> Vec<u8> {
    let dests = ["echo", "service", "fuzz", "nobody", "peer"];
    let mut out = Vec::new();
    for id in 0..count {
        let payload = vec![id as u8; (noise.next() % 3000) as usize];
        let header = FrameHeader {
            kind: [FrameKind::Data, FrameKind::ControlRequest][(noise.next() % 2) as usize],
            sender,
            dest_addr: ["", "", "tcp:127.0.0.1:9", "unix:/x"][(noise.next() % 4) as usize],
            ..FrameHeader::data(dests[(noise.next() % 5) as usize], id as u64)
        };
        encode_frame_to_vec(&mut out, &header, &payload, &Limits::default()).unwrap();
    }
    out
}

#[test]
fn fuzz_entry_points_survive_generated_inputs() {
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    for round in 0..20 {
        let client = frames(&mut noise, 200, Sender::Client { name: "fuzz" });
        client_stream(&client);
        let mut flipped = client.clone();
        for _ in 0..=round {
            let at = (noise.next() as usize) % flipped.len();
            flipped[at] ^= 1 << (noise.next() % 8);
        }
        client_stream(&flipped);
        let mut records = Vec::new();
        for frame in [
            frames(
                &mut noise,
                1,
                Sender::Proc {
                    addr: "",
                    name: "echo",
                },
            ),
            (0..64).map(|_| noise.next() as u8).collect(),
        ] {
            records.extend_from_slice(&(frame.len() as u16).to_le_bytes());
            records.extend_from_slice(&frame);
        }
        proc_records(&records);
        // Runs of frames from the echo to its peer (the drain's fast lane),
        // one claiming another sender, then the same with flipped bytes.
        let mut run = Vec::new();
        for id in 0..12u64 {
            let name = if id == 7 { "peer" } else { "echo" };
            let header = FrameHeader {
                sender: Sender::Proc { addr: "", name },
                ..FrameHeader::data("peer", id)
            };
            let mut frame = Vec::new();
            let payload = vec![id as u8; (noise.next() % 200) as usize];
            encode_frame_to_vec(&mut frame, &header, &payload, &Limits::default()).unwrap();
            run.extend_from_slice(&(frame.len() as u16).to_le_bytes());
            run.extend_from_slice(&frame);
        }
        proc_records(&run);
        for _ in 0..=round {
            let at = (noise.next() as usize) % run.len();
            run[at] ^= 1 << (noise.next() % 8);
        }
        proc_records(&run);
        let noise_bytes: Vec<u8> = (0..4096).map(|_| noise.next() as u8).collect();
        client_stream(&noise_bytes);
        proc_records(&noise_bytes);
    }
}

#[test]
fn client_stream_fuzzing_reaches_every_branch_of_the_budget() {
    let mut noise = Noise(0x2545_f491_4f6c_dd1d);
    let (mut waits, mut over_budget, mut high_water) = (0, 0, 0);
    for _ in 0..10 {
        let limits = client_streams(&frames(&mut noise, 100, Sender::Client { name: "fuzz" }));
        assert!(limits.memory_high_water <= limits.memory_limit);
        waits += limits.budget_waits;
        over_budget += limits.closed_over_budget;
        high_water = high_water.max(limits.memory_high_water);
    }
    // Connections waited for budget, some frames could never fit, and the
    // budget was used up to its limit but never past it.
    assert!(
        waits > 0 && over_budget > 0,
        "{waits} waits, {over_budget} closed"
    );
    assert!(high_water > 4 * 256, "{high_water}");
}
