//! A mutation fuzzer on the stable toolchain, for machines without nightly (which
//! cargo-fuzz's libFuzzer needs). It runs the same target functions as the libFuzzer
//! targets, seeded with the same corpus and dictionaries, but blind: without coverage
//! feedback it cannot steer toward new code, so it complements and never replaces a
//! libFuzzer run. Reproducible: the same seed gives the same inputs.
//!
//! Each input is random bytes (one in eight) or a corpus entry, or one of its own recent
//! inputs, changed by one to eight mutations: bit flips, byte sets, insertions and
//! deletions, duplicated ranges, dictionary tokens (inserted, overwritten or repeated)
//! and splices of two entries.

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::Target;

/// When a run stops: after `time` or `runs` executions, whichever comes first.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// The longest the run may take.
    pub time: Duration,
    /// The most executions, corpus replay included.
    pub runs: u64,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Executions, corpus replay included.
    pub runs: u64,
    /// Corpus entries replayed first.
    pub corpus: usize,
}

/// An input on which the target panicked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The input.
    pub input: Vec<u8>,
    /// The panic's message.
    pub message: String,
    /// Executions before it, for the report.
    pub runs: u64,
}

/// Bytes mutations like to set: boundaries, line ends and the delimiters of the
/// targets' formats (NUL, TOML, JSON, Markdown, HTML).
const INTERESTING: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, b'\n', b'\r', b'\t', b' ', b'"', b'\\', b'[', b']', b'<', b'>', b'=',
    b'{',
];

/// How many of its own inputs the fuzzer keeps as bases for further mutation.
const POOL: usize = 256;

/// Runs `target` on every corpus entry, then on mutated inputs until `budget` is spent.
///
/// # Errors
/// The first input on which the target panicked.
pub fn fuzz(
    target: &Target,
    corpus: &[Vec<u8>],
    dictionary: &[Vec<u8>],
    seed: u64,
    budget: Budget,
) -> Result<Stats, Failure> {
    let started = Instant::now();
    let mut runs = 0;
    for input in corpus {
        execute(target, input, runs)?;
        runs += 1;
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut pool: Vec<Vec<u8>> = Vec::new();
    while runs < budget.runs && started.elapsed() < budget.time {
        let input = next_input(&mut rng, target.max_len, corpus, &pool, dictionary);
        execute(target, &input, runs)?;
        runs += 1;
        if rng.u8(..) < 16 {
            if pool.len() < POOL {
                pool.push(input);
            } else {
                let slot = rng.usize(..POOL);
                pool[slot] = input;
            }
        }
    }
    Ok(Stats { runs, corpus: corpus.len() })
}

/// Runs one input, turning a panic into a [`Failure`].
fn execute(target: &Target, input: &[u8], runs: u64) -> Result<(), Failure> {
    panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input))).map_err(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic without a message".to_owned());
        Failure { input: input.to_vec(), message, runs }
    })
}

fn next_input(
    rng: &mut fastrand::Rng,
    max_len: usize,
    corpus: &[Vec<u8>],
    pool: &[Vec<u8>],
    dictionary: &[Vec<u8>],
) -> Vec<u8> {
    let pick = |rng: &mut fastrand::Rng| -> Vec<u8> {
        match (corpus.is_empty(), pool.is_empty()) {
            (true, true) => Vec::new(),
            (false, true) => corpus[rng.usize(..corpus.len())].clone(),
            (true, false) => pool[rng.usize(..pool.len())].clone(),
            (false, false) if rng.bool() => corpus[rng.usize(..corpus.len())].clone(),
            (false, false) => pool[rng.usize(..pool.len())].clone(),
        }
    };
    if rng.u8(..) < 32 {
        let len = rng.usize(..=max_len.min(256));
        return std::iter::repeat_with(|| rng.u8(..)).take(len).collect();
    }
    let mut input = pick(rng);
    for _ in 0..rng.usize(1..=8) {
        let other = pick(rng);
        mutate(rng, &mut input, &other, dictionary);
    }
    input.truncate(max_len);
    input
}

/// Applies one random mutation to `input`; `other` is a second entry to splice from.
fn mutate(rng: &mut fastrand::Rng, input: &mut Vec<u8>, other: &[u8], dictionary: &[Vec<u8>]) {
    let at = |rng: &mut fastrand::Rng, input: &Vec<u8>| rng.usize(..=input.len());
    let token = |rng: &mut fastrand::Rng| -> Vec<u8> {
        if dictionary.is_empty() {
            vec![INTERESTING[rng.usize(..INTERESTING.len())]]
        } else {
            dictionary[rng.usize(..dictionary.len())].clone()
        }
    };
    match rng.u8(..10) {
        0 if !input.is_empty() => {
            let i = rng.usize(..input.len());
            input[i] ^= 1 << rng.u8(..8);
        }
        1 if !input.is_empty() => {
            let i = rng.usize(..input.len());
            input[i] =
                if rng.bool() { INTERESTING[rng.usize(..INTERESTING.len())] } else { rng.u8(..) };
        }
        2 => {
            let i = at(rng, input);
            let n = rng.usize(1..=8);
            let bytes: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(n).collect();
            input.splice(i..i, bytes);
        }
        3 if !input.is_empty() => {
            let start = rng.usize(..input.len());
            let end = (start + rng.usize(1..=16)).min(input.len());
            input.drain(start..end);
        }
        4 if !input.is_empty() => {
            let start = rng.usize(..input.len());
            let end = (start + rng.usize(1..=32)).min(input.len());
            let copy = input[start..end].to_vec();
            let i = at(rng, input);
            input.splice(i..i, copy);
        }
        5 | 6 => {
            let token = token(rng);
            let i = at(rng, input);
            input.splice(i..i, token);
        }
        7 if !input.is_empty() => {
            let token = token(rng);
            let i = rng.usize(..input.len());
            let end = (i + token.len()).min(input.len());
            input.splice(i..end, token);
        }
        8 => {
            let token = token(rng).repeat(rng.usize(2..=16));
            let i = at(rng, input);
            input.splice(i..i, token);
        }
        _ => {
            let keep = at(rng, input);
            let from = rng.usize(..=other.len());
            input.truncate(keep);
            input.extend_from_slice(&other[from..]);
        }
    }
}

/// The files of a corpus directory, in name order; none if it does not exist.
///
/// # Errors
/// A directory or file that exists but cannot be read.
pub fn read_corpus(dir: &Path) -> Result<Vec<Vec<u8>>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(format!("cannot read corpus {}: {error}", dir.display())),
    };
    let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))
        })
        .collect()
}

/// The tokens of a libFuzzer dictionary (`name="value"` or `"value"` lines, `#`
/// comments, `\\`, `\"` and `\xNN` escapes); none if the file does not exist.
///
/// # Errors
/// A file that exists but cannot be read, or a line that is not a quoted token.
pub fn read_dictionary(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(format!("cannot read dictionary {}: {error}", path.display())),
    };
    let mut tokens = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || format!("{}:{}: not a quoted token: {line}", path.display(), i + 1);
        let quoted = line.find('"').map(|start| &line[start..]).ok_or_else(bad)?;
        let inner = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')).ok_or_else(bad)?;
        tokens.push(unescape(inner).ok_or_else(bad)?);
    }
    Ok(tokens)
}

fn unescape(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match bytes.get(i + 1)? {
            b'x' => {
                let hex = std::str::from_utf8(bytes.get(i + 2..i + 4)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 4;
            }
            &escaped => {
                out.push(escaped);
                i += 2;
            }
        }
    }
    Some(out)
}
