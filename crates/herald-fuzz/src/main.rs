//! `herald-fuzz`: runs the fuzz targets on the stable toolchain (see `stable.rs`), or
//! replays inputs through them.
//!
//! ```text
//! herald-fuzz run [--seconds N] [--runs N] [--seed N] [TARGET...]   # N seconds per share
//! herald-fuzz replay TARGET FILE...
//! ```
//!
//! `run` prints one line per target (executions, failures) and keeps a failing input as
//! `fuzz/artifacts/TARGET/crash-HASH`, as libFuzzer does; it exits 1 on a failure.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use herald_fuzz::stable::{self, Budget};
use herald_fuzz::{TARGETS, Target, fuzz_dir};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("replay") => replay(&args[1..]),
        _ => Err(USAGE.to_owned()),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("herald-fuzz: {error}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: herald-fuzz run [--seconds N] [--runs N] [--seed N] [TARGET...]\n       \
                     herald-fuzz replay TARGET FILE...";

fn target(name: &str) -> Result<&'static Target, String> {
    herald_fuzz::target(name).ok_or_else(|| {
        let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
        format!("no target `{name}`; the targets are {}", names.join(", "))
    })
}

fn run(args: &[String]) -> Result<(), String> {
    let mut seconds = 10;
    let mut runs = u64::MAX;
    let mut seed = RandomState::new().build_hasher().finish();
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let value = args.next().ok_or_else(|| format!("{name} needs a number"))?;
            value.parse().map_err(|_| format!("{name} {value}: not a whole number"))
        };
        match arg.as_str() {
            "--seconds" => seconds = number("--seconds")?,
            "--runs" => runs = number("--runs")?,
            "--seed" => seed = number("--seed")?,
            name => targets.push(target(name)?),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().collect();
    }
    println!("fuzz mode: stable (mutation fuzzer, no coverage feedback), seed {seed}");
    let mut failed = Vec::new();
    for target in targets {
        let dir = fuzz_dir();
        let corpus = stable::read_corpus(&dir.join("corpus").join(target.name))?;
        let dictionary =
            stable::read_dictionary(&dir.join("dict").join(format!("{}.dict", target.name)))?;
        let budget = Budget { time: Duration::from_secs(seconds * target.share), runs };
        let started = Instant::now();
        match stable::fuzz(target, &corpus, &dictionary, seed, budget) {
            Ok(stats) => {
                let elapsed = started.elapsed().as_secs_f64();
                println!(
                    "fuzz {}: {} executions in {elapsed:.1} s ({:.0}/s, {} corpus inputs), 0 failures",
                    target.name,
                    stats.runs,
                    stats.runs as f64 / elapsed.max(1e-9),
                    stats.corpus
                );
            }
            Err(failure) => {
                let kept = keep(target.name, &failure.input)?;
                println!(
                    "fuzz {}: FAILED after {} executions: {}\n  input kept in {kept}",
                    target.name, failure.runs, failure.message
                );
                failed.push(target.name);
            }
        }
    }
    if failed.is_empty() { Ok(()) } else { Err(format!("failures in {}", failed.join(", "))) }
}

/// Writes a failing input where libFuzzer would, named by its hash.
fn keep(target: &str, input: &[u8]) -> Result<String, String> {
    let dir = fuzz_dir().join("artifacts").join(target);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // FNV-1a: a stable name for the same input.
    let hash = input
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let path = dir.join(format!("crash-{hash:016x}"));
    std::fs::write(&path, input).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path.display().to_string())
}

fn replay(args: &[String]) -> Result<(), String> {
    let [name, files @ ..] = args else { return Err(USAGE.to_owned()) };
    let target = target(name)?;
    for file in files {
        let input = std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}"))?;
        (target.run)(&input);
        println!("{file}: passes");
    }
    Ok(())
}
