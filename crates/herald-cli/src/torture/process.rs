//! `herald serve` as a child process that can be SIGKILLed and started again.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a starting server may take to print its "listening" line.
const START_WITHIN: Duration = Duration::from_secs(30);

/// One running `herald serve`.
#[derive(Debug)]
pub struct HeraldProcess {
    child: Child,
    /// The API's base URL (`http://127.0.0.1:PORT`).
    pub base: String,
}

impl HeraldProcess {
    /// Starts `exe serve --config config`, its log appended to `log`, and waits until it
    /// listens.
    ///
    /// # Errors
    /// When the binary cannot be started or exits or stays silent instead of listening.
    pub async fn start(exe: &Path, config: &Path, log: &Path) -> anyhow::Result<HeraldProcess> {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open the server log {}", log.display()))?;
        let mut child = Command::new(exe)
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let stdout = child.stdout.take().context("the server's stdout was not captured")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = match tokio::time::timeout(START_WITHIN, lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(_) => {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(10).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!("herald serve exited before listening:\n{}", tail.join("\n"))
            }
            Err(_) => bail!("herald serve did not listen within {START_WITHIN:?}"),
        };
        let Some(base) = line.strip_prefix("herald listening on ") else {
            bail!("unexpected first line from herald serve: {line:?}");
        };
        let base = base.trim().to_string();
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(HeraldProcess { child, base })
    }

    /// The process id, for reading its CPU time and memory in `/proc`; `None` once it
    /// has been waited for.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL: no shutdown code runs; waits until the process is gone.
    ///
    /// # Errors
    /// When the signal cannot be sent or the process cannot be waited for.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.start_kill().context("cannot SIGKILL herald serve")?;
        self.child.wait().await.context("waiting for the killed herald serve")?;
        Ok(())
    }
}

/// The `herald` binary to start as the server: this very executable.
///
/// # Errors
/// When the OS cannot tell the path of the running executable.
pub fn current_herald() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot find the path of the herald binary")
}
