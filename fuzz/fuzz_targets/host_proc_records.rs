#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hostmux_host::fuzzing::proc_records(data));
