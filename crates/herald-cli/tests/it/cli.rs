//! The user-facing commands, run as a user runs them.

use std::time::Duration;

use herald_simulator::{FaultPlan, Simulator};
use serde_json::{Value, json};

use crate::ALLOW_LOOPBACK;
use crate::process::{Server, herald};

/// Runs the `herald` command with `args` and waits for it (bounded).
pub async fn run(args: &[&str]) -> std::process::Output {
    let child = tokio::process::Command::new(herald()).args(args).env("RUST_LOG", "error").output();
    tokio::time::timeout(Duration::from_secs(120), child).await.expect("command timed out").unwrap()
}

#[tokio::test]
async fn the_demo_runs_to_completion_and_proves_one_copy_each() {
    let output = run(&["demo"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("Converged: every destination holds exactly one copy"), "{stdout}");
    for name in
        ["healthy", "flaky", "rate-limited", "times-out", "resets", "slack", "teams", "jira"]
    {
        assert!(stdout.contains(name), "{name} missing from the demo output");
    }
    // The incident's thread, read from the destinations themselves.
    assert!(stdout.contains("slack: one message with 2 thread replies"), "{stdout}");
    assert!(stdout.contains("teams: one message with 2 replies"), "{stdout}");
    assert!(stdout.contains("with 2 comments, status Done"), "{stdout}");
}

#[tokio::test]
async fn check_config_reports_every_problem_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.toml");
    std::fs::write(
        &path,
        "[destinations.ops]\nkind = \"webhook\"\nurl = \"https://example.test/hook\"\nbackoff_base = \"1 sec\"\n\n\
         [destinations.other]\nkind = \"carrier-pigeon\"\n",
    )
    .unwrap();
    let output = run(&["check-config", "--config", path.to_str().unwrap()]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("herald.toml:4:"), "{stderr}");
    assert!(stderr.contains("backoff_base"), "{stderr}");
    assert!(stderr.contains("carrier-pigeon"), "{stderr}");
    assert!(stderr.contains("2 problems found"), "{stderr}");

    std::fs::write(
        &path,
        "[destinations.ops]\nkind = \"webhook\"\nurl = \"https://example.test/hook\"\n",
    )
    .unwrap();
    let output = run(&["check-config", "--config", path.to_str().unwrap()]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test]
async fn check_config_output_json_lists_problems_and_warnings_for_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.toml");
    let file = path.to_str().unwrap();
    std::fs::write(
        &path,
        "[destinations.ops]\nkind = \"webhook\"\nurl = \"https://example.test/hook\"\nbackoff_base = \"1 sec\"\n\n\
         [destinations.other]\nkind = \"carrier-pigeon\"\n",
    )
    .unwrap();
    let output = run(&["check-config", "--config", file, "--output", "json"]).await;
    assert!(!output.status.success());
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{report}");
    assert!(problems[0]["location"].as_str().unwrap().ends_with("herald.toml:4:16"), "{report}");
    assert_eq!(problems[0]["key"], "destinations.ops.backoff_base");
    assert!(problems[1]["message"].as_str().unwrap().contains("carrier-pigeon"), "{report}");

    // Valid, with a destination on loopback that [outbound] does not allow: a warning.
    std::fs::write(
        &path,
        "[destinations.ops]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n",
    )
    .unwrap();
    let output = run(&["check-config", "--config", file, "--output", "json"]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["destinations"], 1);
    assert_eq!(report["problems"], json!([]));
    let warnings = report["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{report}");
    let warning = warnings[0].as_str().unwrap();
    assert!(warning.starts_with("destinations.ops.url: "), "{warning}");
    assert!(warning.contains("allow_networks"), "{warning}");
}

#[tokio::test]
async fn send_wait_follows_until_converged_and_exits_non_zero_on_failure() {
    let sim = Simulator::start(vec![
        ("ok".into(), FaultPlan::healthy()),
        ("flaky".into(), FaultPlan::healthy().fail_first(1, 503)),
        ("gone".into(), FaultPlan::healthy().status_always(404)),
    ])
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.toml");
    let mut text = format!(
        "{ALLOW_LOOPBACK}[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\n\n",
        dir.path().join("herald.db").display()
    );
    for name in ["ok", "flaky", "gone"] {
        text.push_str(&format!(
            "[destinations.{name}]\nkind = \"webhook\"\nurl = \"{}\"\nbackoff_base = \"50ms\"\n\n",
            sim.url(name)
        ));
    }
    text.push_str("[groups]\ngood = [\"ok\", \"flaky\"]\n");
    std::fs::write(&path, text).unwrap();
    let server = Server::start(&path).await;

    let output = run(&[
        "--server",
        &server.base,
        "send",
        "--to",
        "good",
        "--title",
        "P2: disk 90 %",
        "--wait",
    ])
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("delivered: 2 delivered, 0 failed"), "{stdout}");
    let id = stdout.lines().next().unwrap().strip_prefix("accepted ").unwrap().to_string();
    let output = run(&["--server", &server.base, "status", &id]).await;
    let status = String::from_utf8_lossy(&output.stdout);
    let flaky = status.lines().find(|l| l.contains("flaky")).unwrap();
    assert!(flaky.contains("delivered") && flaky.contains("attempts 2/8"), "{status}");

    let output =
        run(&["--server", &server.base, "send", "--to", "ok,gone", "--title", "P3", "--wait"])
            .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("partially_failed"), "{stdout}");

    let output = run(&["--server", &server.base, "send", "--to", "nowhere", "--title", "x"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("nowhere"), "the unknown destination was not named: {stderr}");

    let output = run(&["--server", &server.base, "destinations"]).await;
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("gone"));
    server.kill().await;
    sim.shutdown().await;
}

/// SIGTERM: stop claiming, let the in-flight attempt finish and record it, exit 0; the
/// restarted server does not send it again.
#[tokio::test]
async fn sigterm_lets_in_flight_attempts_finish_before_exit() {
    let sim = Simulator::start(vec![(
        "slow".into(),
        FaultPlan::healthy().latency(Duration::from_millis(700)),
    )])
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.toml");
    std::fs::write(
        &path,
        format!(
            "{ALLOW_LOOPBACK}[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\nshutdown_grace = \"5s\"\n\n\
             [destinations.slow]\nkind = \"webhook\"\nurl = \"{}\"\n",
            dir.path().join("herald.db").display(),
            sim.url("slow")
        ),
    )
    .unwrap();
    let mut server = Server::start(&path).await;
    let (_, view) = server
        .post("/v1/broadcasts", serde_json::json!({"destinations": ["slow"], "message": {"title": "in flight at SIGTERM"}}))
        .await;
    let id = view["id"].as_str().unwrap().to_string();
    assert!(sim.wait_until(Duration::from_secs(10), |v| v.requests("slow") >= 1).await);

    let pid = server.child.id().unwrap().to_string();
    let kill = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
    assert!(kill.success());
    let status =
        tokio::time::timeout(Duration::from_secs(15), server.child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "herald exited with {status} on SIGTERM");

    let server = Server::start(&path).await;
    let view = server.get(&format!("/v1/broadcasts/{id}")).await;
    assert_eq!(view["deliveries"][0]["state"], "delivered", "{view:#}");
    assert_eq!(view["deliveries"][0]["attempts"], 1);
    assert_eq!(
        sim.stats("slow").requests,
        1,
        "the finished attempt was sent again after the restart"
    );
    server.kill().await;
    sim.shutdown().await;
}
