//! libFuzzer entry point of the `config` target; the body and its properties are
//! `herald_fuzz::config::run`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_fuzz::config::run(data));
