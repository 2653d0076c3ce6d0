#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hostmux_ring::fuzzing::ring_hostile(data));
