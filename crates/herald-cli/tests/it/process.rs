//! Starting and stopping `herald serve` as a child process.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The herald binary built for this test run.
pub fn herald() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_herald"))
}

/// A running `herald serve`.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    /// Starts `herald serve --config config` and waits for its "listening" line.
    pub async fn start(config: &Path) -> Server {
        Server::start_logging(config, "warn").await
    }

    /// [`Server::start`] with `RUST_LOG=log` (its log goes to the test's stderr).
    pub async fn start_logging(config: &Path, log: &str) -> Server {
        let mut child = Command::new(herald())
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", log)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("herald did not start within 30 s")
            .unwrap()
            .expect("herald exited before listening");
        let base =
            line.strip_prefix("herald listening on ").expect("unexpected first line").to_string();
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Server { child, base }
    }

    /// `GET path` on the server's API, as JSON.
    pub async fn get(&self, path: &str) -> serde_json::Value {
        let res = reqwest::get(format!("{}{path}", self.base)).await.unwrap();
        res.json().await.unwrap()
    }

    /// `POST path` with a JSON body; the status and the JSON answer.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let res = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json().await.unwrap())
    }

    /// Waits (bounded) until broadcast `id` is no longer in progress; its view.
    pub async fn wait_converged(&self, id: &str) -> serde_json::Value {
        for _ in 0..400 {
            let view = self.get(&format!("/v1/broadcasts/{id}")).await;
            if view["state"] != "in_progress" {
                return view;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("broadcast {id} did not converge");
    }

    /// SIGTERM, as a supervisor stops a service, and waits (bounded) for the graceful
    /// shutdown to end; panics unless herald exited successfully.
    pub async fn terminate(mut self) {
        let pid = self.child.id().expect("herald already exited").to_string();
        let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success(), "kill -TERM {pid} failed");
        let exit = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("herald did not stop within 30 s of SIGTERM")
            .unwrap();
        assert!(exit.success(), "herald exited with {exit} after SIGTERM");
    }

    /// SIGKILL: no shutdown code runs.
    pub async fn kill(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}
