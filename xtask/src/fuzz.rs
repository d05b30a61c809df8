//! `cargo xtask fuzz`: every fuzz target for a bounded time, failing on any crash.
//!
//! With a nightly toolchain it runs libFuzzer through cargo-fuzz (installing cargo-fuzz
//! if missing), coverage-guided, each target seeded with `fuzz/corpus/TARGET` and its
//! dictionary, and prints per target the executions, coverage and failures. The build
//! uses `--sanitizer none`: herald is safe Rust (`unsafe_code = "forbid"`), so
//! AddressSanitizer would mostly watch the standard library and dependencies, at the
//! cost of a longer build and slower runs; a panic (every property check) is caught
//! either way. Without nightly it says so and runs the same target functions under the
//! stable mutation fuzzer of `crates/herald-fuzz` (`herald-fuzz run`). Either way a
//! failing input is kept under `fuzz/artifacts/TARGET/`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::root;

/// The targets, in `crates/herald-fuzz`'s order, with libFuzzer's `-max_len` and the
/// share of time for each (a render input builds payloads of up to hundreds of KB,
/// several times over to fit the limits: some hundred times slower than the others).
const TARGETS: &[(&str, usize, u64)] = &[
    ("config", 8192, 1),
    ("render", 4096, 2),
    ("markdown", 4096, 1),
    ("classify", 2048, 1),
    ("retry_after", 64, 1),
    ("api", 4096, 1),
];

/// Seconds per share of time when not given: 105 s in all.
const DEFAULT_SECONDS: u64 = 15;

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut seconds = DEFAULT_SECONDS;
    let mut force_stable = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = args.next().ok_or("--seconds needs a number")?;
                seconds = value.parse().map_err(|_| format!("--seconds {value}: not a number"))?;
            }
            "--stable" => force_stable = true,
            other => return Err(format!("unknown argument {other}; use --seconds N, --stable")),
        }
    }
    let nightly = if force_stable { Err("--stable given".to_owned()) } else { nightly() };
    match nightly {
        Ok(version) => libfuzzer(&version, seconds),
        Err(why) => {
            println!("fuzz mode: stable mutation fuzzer (no libFuzzer: {why})");
            let seconds = seconds.to_string();
            crate::run(
                "cargo",
                &[
                    "run",
                    "--quiet",
                    "--locked",
                    "-p",
                    "herald-fuzz",
                    "--",
                    "run",
                    "--seconds",
                    &seconds,
                ],
            )
        }
    }
}

/// The nightly toolchain's version, or why there is none.
fn nightly() -> Result<String, String> {
    let out = Command::new("cargo")
        .args(["+nightly", "--version"])
        .output()
        .map_err(|error| format!("cannot run cargo: {error}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err("no nightly toolchain (`rustup toolchain install nightly` provides one)".to_owned())
    }
}

fn libfuzzer(version: &str, seconds: u64) -> Result<(), String> {
    println!("fuzz mode: libFuzzer via cargo-fuzz, coverage-guided ({version})");
    let installed = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !installed {
        crate::run("cargo", &["install", "cargo-fuzz", "--locked"])?;
    }
    let started = Instant::now();
    crate::run("cargo", &["+nightly", "fuzz", "build", "-O", "--sanitizer", "none"])?;
    println!("fuzz build: {:.0} s", started.elapsed().as_secs_f64());
    let triple = host_triple()?;
    let dir = root().join("fuzz");
    let mut failed = Vec::new();
    for (name, max_len, share) in TARGETS {
        let binary = dir.join("target").join(&triple).join("release").join(name);
        match run_target(&dir, &binary, name, *max_len, seconds * share)? {
            None => {}
            Some(artifact) => {
                println!("fuzz {name}: FAILED; the input is in {artifact}");
                failed.push(*name);
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "fuzzing found failures in {}; replay one with `cargo run -p herald-fuzz -- replay \
             TARGET FILE` and make it a test in crates/herald-fuzz/tests/it/regressions.rs",
            failed.join(", ")
        ))
    }
}

/// This machine's target triple (where cargo-fuzz puts the binaries).
fn host_triple() -> Result<String, String> {
    let out = Command::new("rustc")
        .args(["+nightly", "-vV"])
        .output()
        .map_err(|error| format!("cannot run rustc: {error}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .ok_or_else(|| "rustc -vV names no host".to_owned())
}

/// Runs one target for `seconds`; `Some(artifact)` when it failed.
fn run_target(
    dir: &Path,
    binary: &Path,
    name: &str,
    max_len: usize,
    seconds: u64,
) -> Result<Option<String>, String> {
    // New inputs go to run-corpus/ (not committed), emptied first: each run starts from
    // the seeds in corpus/ (only read), so its time goes to fuzzing, not to replaying
    // what earlier runs on this machine found.
    let work = dir.join("run-corpus").join(name);
    let artifacts = dir.join("artifacts").join(name);
    if work.exists() {
        std::fs::remove_dir_all(&work)
            .map_err(|e| format!("cannot empty {}: {e}", work.display()))?;
    }
    for path in [&work, &artifacts] {
        std::fs::create_dir_all(path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    }
    let seeds = dir.join("corpus").join(name);
    let dict = dir.join("dict").join(format!("{name}.dict"));
    let out = Command::new(binary)
        .arg(&work)
        .arg(&seeds)
        .arg(format!("-dict={}", dict.display()))
        .arg(format!("-max_len={max_len}"))
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .args(["-print_final_stats=1", "-timeout=10", "-rss_limit_mb=2048"])
        .current_dir(dir)
        // The config target may read `file:` secrets; nothing may wait on a terminal.
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("cannot run {}: {error}", binary.display()))?;
    let log = String::from_utf8_lossy(&out.stderr);
    let stat = |key: &str| {
        log.lines()
            .find_map(|line| line.strip_prefix(key))
            .map(|value| value.trim_start_matches(':').trim().to_owned())
            .unwrap_or_else(|| "?".to_owned())
    };
    let last = log.lines().rev().find(|line| line.contains(" cov: ")).unwrap_or_default();
    let field = |key: &str| {
        last.split_whitespace().skip_while(|word| *word != key).nth(1).unwrap_or("?").to_owned()
    };
    if out.status.success() {
        println!(
            "fuzz {name}: {} executions in {seconds} s ({}/s), cov {}, corpus {}, 0 failures",
            stat("stat::number_of_executed_units"),
            stat("stat::average_exec_per_sec"),
            field("cov:"),
            field("corp:"),
        );
        return Ok(None);
    }
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    for line in tail.iter().rev() {
        eprintln!("  | {line}");
    }
    let artifact = log
        .lines()
        .find_map(|line| line.split("Test unit written to ").nth(1))
        .map_or_else(|| artifacts.display().to_string(), str::to_owned);
    Ok(Some(artifact))
}
