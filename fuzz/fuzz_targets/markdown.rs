//! libFuzzer entry point of the `markdown` target; the body and its properties are
//! `herald_fuzz::markdown::run`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_fuzz::markdown::run(data));
