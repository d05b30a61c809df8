//! libFuzzer entry point of the `api` target; the body and its properties are
//! `herald_fuzz::api::run`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_fuzz::api::run(data));
