//! A destination removed from the configuration: its unfinished deliveries are held,
//! counted and logged at start-up, listed by `herald list --state held`, and resume when
//! the destination is configured again.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use herald_simulator::{FaultPlan, Simulator};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::ALLOW_LOOPBACK;
use crate::process::herald;

/// `herald serve` with its log lines (stderr) collected.
struct Logged {
    child: Child,
    base: String,
    log: mpsc::UnboundedReceiver<String>,
}

impl Logged {
    async fn start(config: &Path) -> Logged {
        let mut child = Command::new(herald())
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let (tx, log) = mpsc::unbounded_channel();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                let _ = tx.send(plain(&line));
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
            .await
            .expect("herald did not start within 30 s")
            .unwrap()
            .expect("herald exited before listening");
        let base =
            line.strip_prefix("herald listening on ").expect("unexpected first line").to_string();
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        Logged { child, base, log }
    }

    async fn get(&self, path: &str) -> Value {
        reqwest::get(format!("{}{path}", self.base)).await.unwrap().json().await.unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let res = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
    }

    /// Every log line written so far. The start-up lines come before the "listening"
    /// line, which `start` has already read, so they are all here.
    fn lines(&mut self) -> Vec<String> {
        let mut res = Vec::new();
        while let Ok(line) = self.log.try_recv() {
            res.push(line);
        }
        res
    }

    /// Polls the broadcast until `done` holds (30 s at most) and returns it.
    async fn wait(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let view = self.get(&format!("/v1/broadcasts/{id}")).await;
            if done(&view) || tokio::time::Instant::now() >= deadline {
                return view;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn kill(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

/// `line` without ANSI colour sequences.
fn plain(line: &str) -> String {
    let mut res = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip to the end of the sequence (a letter).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            res.push(c);
        }
    }
    res
}

fn config(sim: &Simulator, db: &Path, with_gone: bool) -> String {
    let mut text = format!(
        "{ALLOW_LOOPBACK}[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\n\n\
         [destinations.keep]\nkind = \"webhook\"\nurl = \"{}\"\n\n",
        db.display(),
        sim.url("keep")
    );
    if with_gone {
        text.push_str(&format!(
            "[destinations.gone]\nkind = \"webhook\"\nurl = \"{}\"\n\n",
            sim.url("gone")
        ));
    }
    text
}

fn delivery_to<'a>(view: &'a Value, destination: &str) -> &'a Value {
    view["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["destination"] == destination)
        .unwrap_or_else(|| panic!("no delivery to {destination} in {view}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_destination_holds_its_deliveries_until_it_is_configured_again() {
    let sim = Simulator::start(vec![
        ("keep".into(), FaultPlan::healthy()),
        ("gone".into(), FaultPlan::healthy()),
    ])
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.toml");
    let db = dir.path().join("herald.db");

    // 1. With both destinations; `gone` is paused, so its delivery stays pending.
    std::fs::write(&path, config(&sim, &db, true)).unwrap();
    let server = Logged::start(&path).await;
    let (status, _) = server.post("/v1/destinations/gone/pause", json!({})).await;
    assert_eq!(status, 200);
    let (status, view) = server
        .post(
            "/v1/broadcasts",
            json!({"destinations": ["keep", "gone"], "message": {"title": "P1"}}),
        )
        .await;
    assert_eq!(status, 202, "{view}");
    let id = view["id"].as_str().unwrap().to_string();
    // Recorded as delivered before the kill, so `keep` is never sent it again.
    let view = server.wait(&id, |v| delivery_to(v, "keep")["state"] == "delivered").await;
    assert_eq!(delivery_to(&view, "keep")["state"], "delivered", "{view}");
    server.kill().await;

    // 2. Without `gone`: held, counted and logged once, listed as held.
    std::fs::write(&path, config(&sim, &db, false)).unwrap();
    let mut server = Logged::start(&path).await;
    let lines = server.lines();
    let held: Vec<&String> = lines.iter().filter(|l| l.contains("Deliveries held")).collect();
    assert_eq!(held.len(), 1, "{lines:#?}");
    assert!(held[0].contains("destination=gone") && held[0].contains("held=1"), "{}", held[0]);
    let view = server.get(&format!("/v1/broadcasts/{id}")).await;
    let gone = delivery_to(&view, "gone");
    assert_eq!(gone["state"], "held", "{view}");
    assert_eq!(gone["hold_reason"], "destination_removed");
    assert!(gone["last_error"].as_str().unwrap().contains("`gone`"), "{gone}");
    assert_eq!(view["state"], "in_progress");
    let output = tokio::process::Command::new(herald())
        .args(["--server", &server.base, "list", "--state", "held"])
        .env("RUST_LOG", "error")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout.lines().filter(|l| l.contains(&id)).count(), 1, "{stdout}");
    assert_eq!(sim.view().requests("gone"), 0);
    server.kill().await;

    // 3. With `gone` again: resumed and delivered, nothing lost, nothing twice.
    std::fs::write(&path, config(&sim, &db, true)).unwrap();
    let server = Logged::start(&path).await;
    assert!(
        sim.wait_until(Duration::from_secs(30), |v| v.stored("gone") == 1).await,
        "the held delivery was never resumed"
    );
    let view = server.wait(&id, |v| v["state"] == "delivered").await;
    assert_eq!(view["state"], "delivered", "{view}");
    assert_eq!(delivery_to(&view, "gone")["hold_reason"], Value::Null);
    assert_eq!((sim.view().requests("keep"), sim.view().requests("gone")), (1, 1));
    server.kill().await;
}
