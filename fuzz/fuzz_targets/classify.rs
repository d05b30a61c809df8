//! libFuzzer entry point of the `classify` target; the body and its properties are
//! `herald_fuzz::classify::run`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_fuzz::classify::run(data));
