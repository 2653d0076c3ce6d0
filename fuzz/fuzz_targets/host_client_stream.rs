#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hostmux_host::fuzzing::client_stream(data));
