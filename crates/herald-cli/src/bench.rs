//! `herald bench`: the benchmark suite of issue 11. herald (`herald serve`, a release
//! build on a fresh SQLite file with `synchronous=FULL`, or `--nodes` of them on a fresh
//! PostgreSQL schema with `--database`), the load client (`herald bench
//! load`) and the sink (`herald bench sink`) run as three processes on loopback, so the
//! CPU time and peak RSS read from `/proc` are herald's alone; every scenario also
//! measures the raw baseline (the same load client straight to the same sink) in the
//! same run, because these machines are shared and only same-run ratios mean much.
//!
//! `bench::suite` orchestrates the scenarios, `bench::load` and `bench::sink` are the two
//! helper processes (hidden subcommands of this binary, so one build serves all three),
//! `bench::report` writes the terminal table, the JSON and the HTML report, and
//! `bench::inproc` is the earlier single-process benchmark (`herald bench in-process`).
//! Nothing here asserts a figure: the suite measures and reports.

pub mod inproc;
pub mod load;
pub mod procfs;
pub mod report;
pub mod sink;
pub mod suite;
#[cfg(test)]
mod tests;

use std::io::Write;
use std::time::Duration;

/// `herald bench`: the suite, or one of its helper processes.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    /// A helper process or the earlier benchmark instead of the suite.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The suite's settings.
    #[command(flatten)]
    pub suite: suite::Options,
}

/// What `herald bench <command>` runs.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// The earlier benchmark: herald, sink and client in this one process (flatters
    /// herald; has the PostgreSQL `--nodes` mode).
    InProcess(inproc::Options),
    /// The suite's sink process: receives webhooks, timestamps them, answers as told.
    #[command(hide = true)]
    Sink(sink::Options),
    /// The suite's load client process: submits broadcasts to herald, or requests
    /// straight to the sink for the raw baseline.
    #[command(hide = true)]
    Load(load::Options),
}

/// Runs `herald bench` with `args`, printing to `out`.
///
/// # Errors
/// When a process cannot start, a scenario fails outright, or a report cannot be written.
pub async fn run(args: Args, out: &mut impl Write) -> anyhow::Result<()> {
    match args.command {
        None => suite::run(&args.suite, out).await,
        Some(Command::InProcess(options)) => inproc::run(options, out).await,
        Some(Command::Sink(options)) => sink::run(&options, out).await,
        Some(Command::Load(options)) => load::run(&options, out).await,
    }
}

/// Nanoseconds since the Unix epoch (CLOCK_REALTIME): the one clock the load client and
/// the sink, two processes on one machine, both read, so a submit and a receipt compare.
#[allow(clippy::disallowed_methods)] // Measuring real time across processes is the point.
pub fn wall_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

/// Percentile `p` (0..=100) of sorted `values`, in milliseconds; NaN when empty.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// The median of `values` (NaN ones left out); NaN when none is left.
pub fn median(values: &[f64]) -> f64 {
    let mut finite: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if finite.is_empty() {
        return f64::NAN;
    }
    finite.sort_by(f64::total_cmp);
    let mid = finite.len() / 2;
    if finite.len() % 2 == 1 { finite[mid] } else { (finite[mid - 1] + finite[mid]) / 2.0 }
}
