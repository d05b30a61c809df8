//! API tokens end to end: `herald token create` output pasted into a configuration, a
//! real `herald serve` with it, the client commands with `HERALD_TOKEN` and
//! `--token-file`, and the refusal of a network-facing listen address without tokens.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use herald_simulator::{FaultPlan, Simulator};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::ALLOW_LOOPBACK;
use crate::process::{Server, herald};

/// Runs `herald args` with `HERALD_TOKEN` set to `token` (or unset), bounded.
async fn run(args: &[&str], token: Option<&str>) -> Output {
    let mut command = Command::new(herald());
    command.args(args).env("RUST_LOG", "error").env_remove("HERALD_TOKEN");
    if let Some(token) = token {
        command.env("HERALD_TOKEN", token);
    }
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("herald did not finish within 60 s")
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `herald token create`: the token (its own line) and the `[[tokens]]` entry.
async fn create_token(name: &str, scopes: &[&str]) -> (String, String) {
    let mut args = vec!["token", "create", "--name", name];
    for scope in scopes {
        args.extend(["--scope", scope]);
    }
    let output = run(&args, None).await;
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let token = stdout.lines().find(|line| line.starts_with("hrld_")).unwrap().to_string();
    let start = stdout.find("[[tokens]]").unwrap();
    let end = start + stdout[start..].find("]\n\n").unwrap() + 2;
    (token, stdout[start..end].to_string())
}

#[tokio::test]
async fn created_tokens_pasted_into_the_config_let_the_cli_in_by_scope() {
    let sim = Simulator::start(vec![("ops".into(), FaultPlan::healthy())]).await.unwrap();
    let (admin, admin_entry) = create_token("oncall", &["admin"]).await;
    let (sender, sender_entry) = create_token("alertmanager", &["send"]).await;
    assert!(admin_entry.contains("scopes = [\"admin\"]"), "{admin_entry}");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        format!(
            "{ALLOW_LOOPBACK}[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\n\n\
             [destinations.ops]\nkind = \"webhook\"\nurl = \"{}\"\n\n{admin_entry}\n{sender_entry}",
            dir.path().join("herald.db").display(),
            sim.url("ops")
        ),
    )
    .unwrap();
    let server = Server::start(&config).await;
    let base = server.base.as_str();

    // No token: refused, and the message says where the CLI looks for one.
    let output = run(&["--server", base, "destinations"], None).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("HTTP 401"), "{stderr}");
    assert!(stderr.contains("HERALD_TOKEN") && stderr.contains("--token-file"), "{stderr}");

    // HERALD_TOKEN with admin reads.
    let output = run(&["--server", base, "destinations"], Some(&admin)).await;
    assert!(output.status.success(), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("ops"), "{}", text(&output));

    // --token-file with the send-only token submits ...
    let sender_file = dir.path().join("sender.token");
    std::fs::write(&sender_file, format!("{sender}\n")).unwrap();
    let sender_flag = sender_file.to_str().unwrap();
    let send =
        ["--server", base, "--token-file", sender_flag, "send", "--to", "ops", "--title", "t"];
    let output = run(&send, None).await;
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let id = stdout.trim().strip_prefix("accepted ").unwrap().to_string();

    // ... but may not read it back: 403 naming the token and the scope it lacks.
    let output = run(&["--server", base, "--token-file", sender_flag, "status", &id], None).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("HTTP 403"), "{stderr}");
    assert!(stderr.contains("token `alertmanager` has scope `send`"), "{stderr}");
    assert!(stderr.contains("needs `read`"), "{stderr}");
    assert!(stderr.contains(&format!("--token-file {sender_flag}")), "{stderr}");
    assert!(!stderr.contains(&sender), "the token was printed: {stderr}");

    // The file wins over the environment; admin waits for the delivery.
    let admin_file = dir.path().join("admin.token");
    std::fs::write(&admin_file, &admin).unwrap();
    let status = ["--server", base, "--token-file", admin_file.to_str().unwrap(), "status", &id];
    let output = run(&status, Some("hrld_not-a-real-token")).await;
    assert!(output.status.success(), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains(&id), "{}", text(&output));
    // `send --wait` follows the deliveries with the token too.
    let output =
        run(&["--server", base, "send", "--to", "ops", "--title", "w", "--wait"], Some(&admin))
            .await;
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("delivered: 1 delivered"),
        "{}",
        text(&output)
    );

    // An unknown token: 401 naming where it came from.
    let output = run(&["--server", base, "nodes"], Some("hrld_not-a-real-token")).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("HTTP 401") && stderr.contains("the token from HERALD_TOKEN"),
        "{stderr}"
    );

    // A hash where the token belongs, or an empty file, is caught before any request.
    let hash_file = dir.path().join("hash.token");
    let hash = admin_entry.lines().find_map(|l| l.strip_prefix("hash = ")).unwrap();
    std::fs::write(&hash_file, hash.trim_matches('"')).unwrap();
    let output =
        run(&["--server", base, "--token-file", hash_file.to_str().unwrap(), "nodes"], None).await;
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("holds a token's hash"),
        "{}",
        text(&output)
    );
    std::fs::write(&hash_file, "\n").unwrap();
    let output =
        run(&["--server", base, "--token-file", hash_file.to_str().unwrap(), "nodes"], None).await;
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("the file is empty"),
        "{}",
        text(&output)
    );

    // The probes and the document stay open; metrics need `read`.
    let client = reqwest::Client::new();
    for (path, status) in
        [("/healthz", 200), ("/readyz", 200), ("/openapi.json", 200), ("/metrics", 401)]
    {
        let res = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{path}");
    }
    let res = client.get(format!("{base}/metrics")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);

    server.terminate().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_network_facing_listen_address_without_tokens_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    let database = dir.path().join("herald.db");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"0.0.0.0:8443\"\ndatabase = \"sqlite://{}\"\n",
            database.display()
        ),
    )
    .unwrap();
    let path = config.to_str().unwrap();
    for command in ["check-config", "serve"] {
        let output = run(&[command, "--config", path], None).await;
        assert_eq!(output.status.code(), Some(1), "{command}: {}", text(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!(
                "{path}:2:10: server.listen: 0.0.0.0:8443 can be reached from other machines"
            )),
            "{command}: {stderr}"
        );
        assert!(stderr.contains("herald token create"), "{command}: {stderr}");
    }
    assert!(!database.exists(), "serve opened the database before refusing");

    // With a token the same address passes the check.
    let (_, entry) = create_token("ops", &["admin"]).await;
    let mut text_with_token = std::fs::read_to_string(&config).unwrap();
    text_with_token.push_str(&format!("\n{entry}"));
    std::fs::write(&config, text_with_token).unwrap();
    let output = run(&["check-config", "--config", path], None).await;
    assert!(output.status.success(), "{}", text(&output));
}

/// Starts `herald serve` with its log in a file; the log once it listens.
async fn serve_and_read_log(config: &Path, log: &Path) -> String {
    let mut child = Command::new(herald())
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first =
        tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.unwrap().unwrap();
    assert!(first.is_some_and(|line| line.starts_with("herald listening on")));
    // The warning is written before the "listening" line; no need to wait for more.
    child.kill().await.unwrap();
    std::fs::read_to_string(log).unwrap()
}

#[tokio::test]
async fn an_open_api_on_loopback_is_logged_once_as_unauthenticated() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    let server = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\n",
        dir.path().join("herald.db").display()
    );
    std::fs::write(&config, &server).unwrap();
    let log = serve_and_read_log(&config, &dir.path().join("open.log")).await;
    assert_eq!(log.matches("The API is unauthenticated").count(), 1, "{log}");

    let (_, entry) = create_token("ops", &["admin"]).await;
    std::fs::write(&config, format!("{server}\n{entry}")).unwrap();
    let log = serve_and_read_log(&config, &dir.path().join("tokens.log")).await;
    assert!(!log.contains("unauthenticated"), "{log}");
}
