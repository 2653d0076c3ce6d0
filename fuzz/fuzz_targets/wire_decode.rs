#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hostmux_wire::fuzzing::wire_decode(data));
