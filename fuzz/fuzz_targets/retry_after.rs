//! libFuzzer entry point of the `retry_after` target; the body and its properties are
//! `herald_fuzz::retry_after::run`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_fuzz::retry_after::run(data));
