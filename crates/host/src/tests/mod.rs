//! Unit tests of the sans-IO core.

mod agent_stop;
mod alloc_free;
mod drain_repeats;
mod fuzzing;
mod per_frame;
mod repeats;
mod simulation;
mod toctou;
mod zero_copy;

/// `count` data frames to `sink` of `payload` bytes each, message ids
/// 0.., back to back (a frontend's reads are tested with them).
pub(crate) fn sink_frames(count: u64, payload: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for id in 0..count {
        let header = hostmux_wire::FrameHeader::data("sink", id);
        hostmux_wire::encode_frame_to_vec(
            &mut out,
            &header,
            &vec![7; payload],
            &hostmux_wire::Limits::default(),
        )
        .expect("a valid frame");
    }
    out
}
