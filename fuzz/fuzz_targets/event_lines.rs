#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| op25b_tests::fuzz::event_lines(data));
