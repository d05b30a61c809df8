//! `herald status --follow` and `--output json`, run as a user runs them against a real
//! `herald serve`: the follower reads the event stream, prints each change once and in
//! order (plain lines through a pipe, a table redrawn in place through a pseudo-terminal)
//! and exits with the documented code once the broadcast ends.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use herald_simulator::{FaultPlan, Simulator};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::ALLOW_LOOPBACK;
use crate::cli::run;
use crate::process::{Server, herald};

/// A configuration of webhook destinations at the simulator's endpoints of the same names.
fn config(dir: &Path, sim: &Simulator, names: &[&str]) -> std::path::PathBuf {
    let path = dir.join("herald.toml");
    let mut text = format!(
        "{ALLOW_LOOPBACK}[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\n\n",
        dir.join("herald.db").display()
    );
    for name in names {
        text.push_str(&format!(
            "[destinations.{name}]\nkind = \"webhook\"\nurl = \"{}\"\nbackoff_base = \"50ms\"\n\n",
            sim.url(name)
        ));
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// Pauses (or resumes) each of `names`, so a broadcast waits until the follower is there.
async fn set_paused(server: &Server, names: &[&str], paused: bool) {
    let action = if paused { "pause" } else { "resume" };
    for name in names {
        let (status, _) =
            server.post(&format!("/v1/destinations/{name}/{action}"), json!({})).await;
        assert_eq!(status, 200, "{action} {name}");
    }
}

/// A broadcast to `names`; its id.
async fn send(server: &Server, names: &[&str]) -> String {
    let (status, view) = server
        .post(
            "/v1/broadcasts",
            json!({"destinations": names, "message": {"title": "P2: disk 90 %"}}),
        )
        .await;
    assert_eq!(status, 202, "{view}");
    view["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn status_follow_prints_each_change_once_in_order_and_exits_when_it_ends() {
    // Each attempt at `flaky` takes 300 ms, so its stages are apart whatever the backoff's
    // jitter draws.
    let sim = Simulator::start(vec![
        ("ok".into(), FaultPlan::healthy()),
        (
            "flaky".into(),
            FaultPlan::healthy().fail_first(2, 503).latency(Duration::from_millis(300)),
        ),
        ("gone".into(), FaultPlan::healthy().status_always(404)),
    ])
    .await
    .unwrap();
    let names = ["ok", "flaky", "gone"];
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&config(dir.path(), &sim, &names)).await;
    set_paused(&server, &names, true).await;
    let id = send(&server, &names).await;

    let mut child = tokio::process::Command::new(herald())
        .args(["--server", &server.base, "status", &id, "--follow", "--timeout", "60s"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut lines = Vec::new();
    // The first table: every delivery pending while its destination is paused.
    while lines.len() < names.len() {
        let line = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
            .await
            .expect("no first lines within 30 s")
            .unwrap()
            .expect("the follower ended before showing the broadcast");
        lines.push(line);
    }
    set_paused(&server, &names, false).await;
    while let Some(line) =
        tokio::time::timeout(Duration::from_secs(60), stdout.next_line()).await.unwrap().unwrap()
    {
        lines.push(line);
    }
    let status =
        tokio::time::timeout(Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
    let text = lines.join("\n");
    assert_eq!(status.code(), Some(1), "a partially failed broadcast exits 1:\n{text}");

    let summary = lines.pop().unwrap();
    assert_eq!(summary, "partially_failed: 2 delivered, 1 failed, 0 pending, 0 cancelled (of 3)");
    // Each line: `HH:MM:SS.mmm destination what happened`, the times in order.
    let mut per_destination: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut last_time = String::new();
    for line in &lines {
        let mut parts = line.splitn(3, ' ');
        let (time, destination, change) =
            (parts.next().unwrap(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        assert!(time.len() == 12 && time.as_bytes()[8] == b'.', "no time of day in {line:?}");
        assert!(time >= last_time.as_str(), "lines out of order:\n{text}");
        last_time = time.to_string();
        per_destination.entry(destination.to_string()).or_default().push(change.to_string());
    }
    // What changed, without the details that vary from run to run (the next attempt's
    // relative time).
    let stages = |destination: &str| -> Vec<String> {
        per_destination[destination]
            .iter()
            .map(|change| change.split([':', ',', ';']).next().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(stages("ok"), ["pending", "delivered (attempt 1 of 8)"], "{text}");
    assert_eq!(
        stages("flaky"),
        [
            "pending",
            "retrying (attempt 1 of 8)",
            "retrying (attempt 2 of 8)",
            "delivered (attempt 3 of 8)"
        ],
        "{text}"
    );
    assert_eq!(stages("gone"), ["pending", "FAILED (permanent"], "{text}");
    assert_eq!(per_destination.len(), 3, "{text}");
    let retry = &per_destination["flaky"][1];
    assert!(retry.contains(": HTTP 503"), "{retry}");
    assert!(per_destination["gone"][1].contains("HTTP 404"), "{text}");

    // Every read command's JSON is the API's answer.
    let json = |args: &[&str]| {
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.splice(0..0, ["--server".to_string(), server.base.clone()]);
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let output = run(&args).await;
            assert!(output.status.success() || args.contains(&"--follow"), "{args:?}");
            let value: Value = serde_json::from_slice(&output.stdout)
                .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {output:?}"));
            (output.status.code(), value)
        }
    };
    let broadcast = server.get(&format!("/v1/broadcasts/{id}")).await;
    assert_eq!(json(&["status", &id, "--output", "json"]).await.1, broadcast);
    assert_eq!(
        json(&["status", &id, "--follow", "--output", "json"]).await,
        (Some(1), broadcast.clone()),
        "an ended broadcast is followed to its end at once"
    );
    assert_eq!(
        json(&["list", "--output", "json"]).await.1,
        server.get("/v1/broadcasts?limit=20").await
    );
    assert_eq!(
        json(&["list", "--state", "partially_failed", "--limit", "5", "--output", "json"]).await.1,
        server.get("/v1/broadcasts?limit=5&state=partially_failed").await
    );
    assert_eq!(
        json(&["destinations", "--output", "json"]).await.1,
        server.get("/v1/destinations").await
    );
    // Heartbeats move between two reads; everything else is the same.
    let without_heartbeats = |mut nodes: Value| {
        for node in nodes["nodes"].as_array_mut().into_iter().flatten() {
            node.as_object_mut().unwrap().remove("heartbeat_at");
        }
        nodes
    };
    let nodes = json(&["nodes", "--output", "json"]).await.1;
    assert!(nodes["nodes"].is_array(), "{nodes}");
    assert_eq!(without_heartbeats(nodes), without_heartbeats(server.get("/v1/nodes").await));
    let (code, accepted) = json(&["send", "--to", "ok", "--title", "x", "--output", "json"]).await;
    assert_eq!(code, Some(0));
    let sent = accepted["id"].as_str().unwrap();
    let (code, ended) =
        json(&["send", "--to", "ok", "--title", "x", "--wait", "--output", "json"]).await;
    assert_eq!(code, Some(0), "{ended}");
    assert_eq!(ended["state"], "delivered", "{ended}");
    assert_ne!(ended["id"], sent);

    let table = run(&["--server", &server.base, "destinations"]).await;
    let table = String::from_utf8_lossy(&table.stdout);
    let gone = table.lines().find(|l| l.starts_with("gone ")).unwrap_or_default();
    assert!(gone.contains("webhook") && gone.contains("healthy"), "{table}");
    assert!(gone.contains("HTTP 404"), "the last error is shown: {table}");
    server.kill().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn status_follow_on_a_terminal_redraws_the_table_in_place() {
    let sim = Simulator::start(vec![(
        "flaky".into(),
        FaultPlan::healthy().fail_first(1, 503).latency(Duration::from_millis(300)),
    )])
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&config(dir.path(), &sim, &["flaky"])).await;
    set_paused(&server, &["flaky"], true).await;
    let id = send(&server, &["flaky"]).await;

    // `script` runs the follower on a pseudo-terminal and copies what it draws.
    let command = format!(
        "{} --server {} status {id} --follow --timeout 60s",
        herald().display(),
        server.base
    );
    let mut child = tokio::process::Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("`script` (util-linux) runs the pseudo-terminal test; install util-linux");
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    // The first table, then let the destination go.
    while !String::from_utf8_lossy(&seen).contains("DESTINATION") {
        let n = tokio::time::timeout(Duration::from_secs(30), stdout.read(&mut buffer))
            .await
            .expect("no table within 30 s")
            .unwrap();
        assert!(n > 0, "the follower ended early: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buffer[..n]);
    }
    set_paused(&server, &["flaky"], false).await;
    tokio::time::timeout(Duration::from_secs(60), stdout.read_to_end(&mut seen))
        .await
        .unwrap()
        .unwrap();
    let status =
        tokio::time::timeout(Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&seen).replace("\r\n", "\n");
    assert_eq!(status.code(), Some(0), "{text:?}");
    // Redrawn in place: back up over the 3 lines (header, row, summary), each cleared.
    assert!(text.matches("\x1b[3A").count() >= 2, "no redraw in place: {text:?}");
    assert!(text.contains("\r\x1b[2K"), "{text:?}");
    // The retry was drawn (as retrying, or as sending again if the redraw caught the
    // next claim), with its error.
    assert!(
        text.lines().any(|l| l.contains("flaky") && l.contains("1 of 8") && l.contains("HTTP 503")),
        "the retry was not drawn: {text:?}"
    );
    // It ends with the final table and the summary.
    let last_table = text.rsplit("\x1b[3A").next().unwrap_or_default().replace("\r\x1b[2K", "");
    let lines: Vec<&str> = last_table.lines().collect();
    assert!(lines[0].starts_with("DESTINATION"), "{last_table:?}");
    assert!(
        lines[1].starts_with("flaky") && lines[1].contains("delivered  2 of 8"),
        "{last_table:?}"
    );
    assert_eq!(lines[2], "delivered: 1 delivered, 0 failed, 0 pending, 0 cancelled (of 1)");
    assert_eq!(lines[3..], ["\x1b[J"], "nothing after the final table: {last_table:?}");
    server.kill().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn status_follow_reconnects_after_the_server_restarts_and_resyncs_without_repeating() {
    let sim = Simulator::start(vec![("ops".into(), FaultPlan::healthy())]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &sim, &["ops"]);
    // A fixed port, so the restarted server is where the follower reconnects.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))).unwrap();
    let server = Server::start(&path).await;
    set_paused(&server, &["ops"], true).await;
    let id = send(&server, &["ops"]).await;

    let mut child = tokio::process::Command::new(herald())
        .args(["--server", &server.base, "status", &id, "--follow", "--timeout", "60s"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
        .await
        .expect("no first line within 30 s")
        .unwrap()
        .unwrap_or_default();
    assert!(first.ends_with(" ops pending"), "{first}");

    // The stream drops with the server; the follower retries until it is back.
    server.kill().await;
    let server = Server::start(&path).await;
    set_paused(&server, &["ops"], false).await;
    let mut lines = vec![first];
    while let Some(line) =
        tokio::time::timeout(Duration::from_secs(60), stdout.next_line()).await.unwrap().unwrap()
    {
        lines.push(line);
    }
    let status =
        tokio::time::timeout(Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
    let text = lines.join("\n");
    assert_eq!(status.code(), Some(0), "{text}");
    let summary = lines.pop().unwrap_or_default();
    assert_eq!(summary, "delivered: 1 delivered, 0 failed, 0 pending, 0 cancelled (of 1)");
    let changes: Vec<&str> = lines
        .iter()
        .map(|line| line.split_once(' ').map_or(line.as_str(), |(_, rest)| rest))
        .collect();
    assert_eq!(
        changes,
        ["ops pending", "ops delivered (attempt 1 of 8)"],
        "the resync's snapshot repeated nothing: {text}"
    );
    server.kill().await;
    sim.shutdown().await;
}
