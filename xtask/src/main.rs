//! Project automation, the one entry point for checks: `cargo xtask test` runs the
//! whole test suite (installing the Python verifier it needs), `cargo xtask
//! schemathesis` fuzzes the API from its OpenAPI document, `cargo xtask rules` checks and
//! unit-tests the Prometheus alert rules with `promtool`, `cargo xtask ci` adds
//! formatting, lints, tidy and rules checks to both, `cargo xtask fuzz` runs every fuzz
//! target for a bounded time (`fuzz.rs`). `.ci/run` calls `cargo xtask ci` and `cargo
//! xtask fuzz`; no check lives anywhere else.

mod fuzz;
mod schemathesis;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let res = match task.as_str() {
        "test" => test(),
        "ci" => ci(),
        "tidy" => tidy(),
        "schemathesis" => schemathesis::schemathesis(),
        "rules" => rules(),
        "fuzz" => fuzz::run(&std::env::args().skip(2).collect::<Vec<_>>()),
        _ => {
            eprintln!(
                "usage: cargo xtask <test|ci|tidy|rules|schemathesis|fuzz>\n  test          run every test (installs the Python signature verifier if missing)\n  ci            fmt --check, clippy -D warnings, tidy, rules, test, schemathesis\n  tidy          every Rust file opens with a //! doc line\n  rules         promtool check and unit-test ops/prometheus/alerts.yml (Debian package `prometheus`)\n  schemathesis  fuzz the API of a real herald serve from /openapi.json (installs Schemathesis in target/schemathesis-venv)\n  fuzz          every fuzz target for a bounded time: [--seconds N per target] [--stable]"
            );
            return ExitCode::from(2);
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask {task}: {error}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

pub(crate) fn run(program: &str, args: &[&str]) -> Result<(), String> {
    eprintln!("$ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(root())
        .status()
        .map_err(|error| format!("cannot run {program}: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed ({status})", args.join(" ")))
    }
}

/// Python packages the tests run against, installed when missing: the Standard Webhooks
/// project's own library (the webhook signature test verifies herald's signatures with
/// it), `aiosmtpd`, the real SMTP server of the e-mail tests, and `cryptography`, with
/// which those tests make a throwaway CA for TLS.
const PYTHON_PACKAGES: &[(&str, &str)] = &[
    ("standardwebhooks", "standardwebhooks"),
    ("aiosmtpd", "aiosmtpd"),
    ("cryptography", "cryptography"),
];

fn ensure_python_packages() -> Result<(), String> {
    for (module, package) in PYTHON_PACKAGES {
        let present = Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .status()
            .map(|status| status.success())
            .unwrap_or(false);
        if !present {
            run(
                "python3",
                &["-m", "pip", "install", "--quiet", "--disable-pip-version-check", package],
            )?;
        }
    }
    Ok(())
}

fn test() -> Result<(), String> {
    ensure_python_packages()?;
    run("cargo", &["test", "--workspace", "--all-targets", "--locked"])?;
    // The engine's invariant tests once more on PostgreSQL: one behaviour suite for both
    // stores (the store's own suite runs on both within the run above).
    eprintln!("$ HERALD_ENGINE_STORE=postgres cargo test -p herald-engine --test it");
    let status = Command::new("cargo")
        .args(["test", "-p", "herald-engine", "--test", "it", "--locked"])
        .env("HERALD_ENGINE_STORE", "postgres")
        .current_dir(root())
        .status()
        .map_err(|error| format!("cannot run cargo: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the engine tests on PostgreSQL failed ({status})"))
    }
}

fn ci() -> Result<(), String> {
    run("cargo", &["fmt", "--all", "--", "--check"])?;
    run("cargo", &["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"])?;
    tidy()?;
    rules()?;
    test()?;
    schemathesis::schemathesis()
}

/// The shipped alert rules: `promtool check rules` (syntax, PromQL) and `promtool test
/// rules` (each alert fires where it should, and not on its look-alikes). Without
/// promtool this is skipped with a note, except in CI (`CI=true`), where it fails: a
/// check that silently does not run is no check.
fn rules() -> Result<(), String> {
    let present =
        Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success());
    if !present {
        let hint = "promtool not found; install Debian's `prometheus` package (apt-get install -y prometheus)";
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            return Err(format!("{hint}: CI must check the alert rules"));
        }
        eprintln!("skipping the alert rules check: {hint}");
        return Ok(());
    }
    run("promtool", &["check", "rules", "ops/prometheus/alerts.yml"])?;
    run("promtool", &["test", "rules", "ops/prometheus/alerts_test.yml"])
}

fn tidy() -> Result<(), String> {
    let mut bad = Vec::new();
    for dir in ["crates", "xtask", "fuzz/fuzz_targets"] {
        visit(&root().join(dir), &mut bad);
    }
    if bad.is_empty() {
        return Ok(());
    }
    Err(format!(
        "these files do not open with a `//!` line saying what they are:\n  {}",
        bad.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join("\n  ")
    ))
}

fn visit(dir: &Path, bad: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name == "target") {
                continue;
            }
            visit(&path, bad);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if !text.trim_start().starts_with("//!") {
                bad.push(path);
            }
        }
    }
}
