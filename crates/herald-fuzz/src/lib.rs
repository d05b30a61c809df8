//! herald's fuzz targets: what each one feeds the code under test and which properties
//! it checks, as plain functions of the input bytes.
//!
//! Two drivers call them. `fuzz/` (outside the workspace) wraps each in a libFuzzer
//! `fuzz_target!` for `cargo +nightly fuzz` (coverage-guided); the `herald-fuzz` binary
//! here runs the same functions under a stable-toolchain mutation fuzzer
//! ([`stable`]) where no nightly toolchain exists. The integration tests replay every
//! committed corpus input and every crash once found, so the normal test run keeps
//! them fixed. `docs/fuzzing.md` says how to run a target and add a regression.
//!
//! A target fails by panicking (an `assert!` naming the broken property); both drivers
//! catch that and keep the input.

pub mod api;
pub mod classify;
pub mod config;
pub mod input;
pub mod markdown;
pub mod message;
pub mod property;
pub mod render;
pub mod retry_after;
pub mod stable;

use std::path::{Path, PathBuf};

/// One fuzz target.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The name of its `fuzz/fuzz_targets/*.rs`, corpus and dictionary.
    pub name: &'static str,
    /// Runs one input; panics when a property does not hold.
    pub run: fn(&[u8]),
    /// The longest input worth trying (libFuzzer's `-max_len`).
    pub max_len: usize,
    /// Its share of a run's time, in multiples of the time per target: slow targets get
    /// more, so they try about as many inputs as it takes.
    pub share: u64,
}

/// Every target, in the order CI runs them.
pub static TARGETS: &[Target] = &[
    Target { name: "config", run: config::run, max_len: 8192, share: 1 },
    Target { name: "render", run: render::run, max_len: 4096, share: 2 },
    Target { name: "markdown", run: markdown::run, max_len: 4096, share: 1 },
    Target { name: "classify", run: classify::run, max_len: 2048, share: 1 },
    Target { name: "retry_after", run: retry_after::run, max_len: 64, share: 1 },
    Target { name: "api", run: api::run, max_len: 4096, share: 1 },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|target| target.name == name)
}

/// The repository's `fuzz/` directory (corpus, dictionaries, artifacts).
pub fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}
