//! libFuzzer entry point of the `render` target; the body and its properties are
//! `herald_fuzz::render::run`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_fuzz::render::run(data));
