//! Planted secrets: a real `herald serve` with a secret in every secret setting of every
//! kind, its destinations answering with every error they can (echoing the credentials
//! back in bodies, redirects to URLs that carry them, stalls past the timeout, a refused
//! SMTP login that quotes the password), plus configuration errors and a database that
//! cannot be reached. Nothing herald writes — stdout, stderr at `debug`, every API
//! answer, the database files — may contain any of them.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;

use crate::ALLOW_LOOPBACK;
use crate::process::herald;

/// Each secret, long and unmistakable, as it is configured.
const SLACK_TOKEN: &str = "xoxb-planted-slack-token-5f1c2a";
const WEBHOOK_AUTH: &str = "Bearer planted-webhook-bearer-77aa01";
const SLACK_HOOK_TOKEN: &str = "plantedSlackHookTok3n24c";
const TEAMS_SIG: &str = "plantedTeamsSignature0123456789abcdefghijk";
const DISCORD_TOKEN: &str = "plantedDiscordToken-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJK";
const JIRA_TOKEN: &str = "planted-jira-api-token-9c0ffee";
const PD_KEY: &str = "plantedpagerdutyroutingkey0001";
const OG_KEY: &str = "planted-opsgenie-key-1234-abcd";
const MM_TOKEN: &str = "plantedmattermosttoken0000001";
const MX_TOKEN: &str = "syt_planted_matrix_access_token_42";
const SMTP_PASSWORD: &str = "planted-smtp-password-!x9";
const PG_PASSWORD: &str = "planted-postgres-password-33";

/// What a signing secret decodes to is a secret too; the configured `whsec_` text is.
fn webhook_secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode("planted-signing-key-material-01")
    )
}

fn planted() -> Vec<String> {
    let mut all: Vec<String> = [
        SLACK_TOKEN,
        "planted-webhook-bearer-77aa01",
        SLACK_HOOK_TOKEN,
        TEAMS_SIG,
        DISCORD_TOKEN,
        JIRA_TOKEN,
        PD_KEY,
        OG_KEY,
        MM_TOKEN,
        MX_TOKEN,
        SMTP_PASSWORD,
        PG_PASSWORD,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    all.push(webhook_secret());
    all.push("planted-signing-key-material-01".to_owned());
    // Jira's `Authorization: Basic base64(email:token)` gives the token away as well.
    all.push(
        base64::engine::general_purpose::STANDARD
            .encode(format!("herald@example.com:{JIRA_TOKEN}")),
    );
    all
}

/// Every planted secret found in `text`, for the failure message.
fn leaks(text: &str) -> Vec<String> {
    planted().into_iter().filter(|secret| text.contains(secret.as_str())).collect()
}

/// The environment that holds the secrets; the configuration only names the variables.
fn secret_env(base: &str, smtp_port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("P_SLACK_TOKEN", SLACK_TOKEN.to_owned()),
        ("P_WEBHOOK_SECRET", webhook_secret()),
        ("P_WEBHOOK_AUTH", WEBHOOK_AUTH.to_owned()),
        ("P_SLACK_HOOK", format!("{base}/services/T0PLANT/B0PLANT/{SLACK_HOOK_TOKEN}")),
        (
            "P_TEAMS_URL",
            format!(
                "{base}/workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01&sig={TEAMS_SIG}"
            ),
        ),
        ("P_DISCORD_URL", format!("{base}/api/webhooks/123456789/{DISCORD_TOKEN}")),
        ("P_JIRA_TOKEN", JIRA_TOKEN.to_owned()),
        ("P_PD_KEY", PD_KEY.to_owned()),
        ("P_OG_KEY", OG_KEY.to_owned()),
        ("P_MM_TOKEN", MM_TOKEN.to_owned()),
        ("P_MX_TOKEN", MX_TOKEN.to_owned()),
        ("P_SMTP_PASSWORD", SMTP_PASSWORD.to_owned()),
        ("P_SMTP_PORT", smtp_port.to_string()),
    ]
}

/// Short timeouts and few attempts, so every error path is taken within seconds and
/// every delivery ends.
const POLICY: &str = "timeout = \"1s\"\nmax_attempts = 2\nbackoff_base = \"100ms\"\n\
                      backoff_max = \"200ms\"\nmax_age = \"6s\"\n";

fn config(base: &str, smtp_port: u16, database: &str) -> String {
    format!(
        "{ALLOW_LOOPBACK}[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"{database}\"\n\n\
         [destinations.hook]\nkind = \"webhook\"\nurl = \"{base}/hook\"\n\
         secret = \"${{P_WEBHOOK_SECRET}}\"\nheaders = {{ Authorization = \"${{P_WEBHOOK_AUTH}}\" }}\n{POLICY}\n\
         [destinations.slack]\nkind = \"slack\"\ntoken = \"${{P_SLACK_TOKEN}}\"\nchannel = \"C0PLANT\"\n\
         base_url = \"{base}/api\"\n{POLICY}\n\
         [destinations.slack-hook]\nkind = \"slack-webhook\"\nurl = \"${{P_SLACK_HOOK}}\"\n{POLICY}\n\
         [destinations.teams]\nkind = \"teams-workflow\"\nurl = \"${{P_TEAMS_URL}}\"\n{POLICY}\n\
         [destinations.discord]\nkind = \"discord\"\nurl = \"${{P_DISCORD_URL}}\"\n{POLICY}\n\
         [destinations.jira]\nkind = \"jira\"\nurl = \"{base}/jira\"\nemail = \"herald@example.com\"\n\
         token = \"${{P_JIRA_TOKEN}}\"\nproject = \"OPS\"\nissue_type = \"Incident\"\n{POLICY}\n\
         [destinations.pager]\nkind = \"pagerduty\"\nrouting_key = \"${{P_PD_KEY}}\"\n\
         base_url = \"{base}/pd\"\n{POLICY}\n\
         [destinations.genie]\nkind = \"opsgenie\"\napi_key = \"${{P_OG_KEY}}\"\nbase_url = \"{base}/og\"\n{POLICY}\n\
         [destinations.mm]\nkind = \"mattermost\"\nurl = \"{base}/mm\"\ntoken = \"${{P_MM_TOKEN}}\"\n\
         channel_id = \"4xp9fdt77pncbef59f4k1qe83o\"\n{POLICY}\n\
         [destinations.matrix]\nkind = \"matrix\"\nhomeserver = \"{base}/mx\"\n\
         access_token = \"${{P_MX_TOKEN}}\"\nroom = \"!planted:example.org\"\n{POLICY}\n\
         [destinations.mail]\nkind = \"email\"\nsmtp = \"smtp://127.0.0.1:{smtp_port}\"\ntls = \"none\"\n\
         username = \"herald\"\npassword = \"${{P_SMTP_PASSWORD}}\"\nfrom = \"herald@example.com\"\n\
         to = [\"oncall@example.com\"]\n{POLICY}\n"
    )
}

/// The request's headers as one JSON object: what a careless destination echoes.
fn echo_headers(headers: &HeaderMap) -> String {
    let map: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(name, value)| {
            (name.to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned().into())
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// One fake for every HTTP kind, each answering with an error that quotes the
/// credentials it was sent.
async fn destination(uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    let everything = format!(
        "{{\"uri\":\"{uri}\",\"headers\":{},\"body\":{:?}}}",
        echo_headers(&headers),
        String::from_utf8_lossy(&body)
    );
    let json = [(header::CONTENT_TYPE, "application/json")];
    if path.starts_with("/hook") || path.starts_with("/og") || path.starts_with("/mm") {
        (StatusCode::BAD_REQUEST, json, everything).into_response()
    } else if path.starts_with("/api/chat") {
        let body = serde_json::json!({"ok": false, "error": "invalid_auth", "echo": everything});
        (StatusCode::OK, json, body.to_string()).into_response()
    } else if path.starts_with("/services/") {
        (StatusCode::INTERNAL_SERVER_ERROR, format!("no_service {everything}")).into_response()
    } else if path.starts_with("/workflows/") {
        (StatusCode::FOUND, [(header::LOCATION, format!("http://127.0.0.1:1{uri}"))], everything)
            .into_response()
    } else if path.starts_with("/api/webhooks/") {
        (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], everything).into_response()
    } else if path.starts_with("/pd") {
        (
            StatusCode::BAD_REQUEST,
            json,
            format!("{{\"status\":\"invalid event\",\"errors\":[{everything:?}]}}"),
        )
            .into_response()
    } else if path.starts_with("/mx") {
        let body = serde_json::json!({"errcode": "M_UNKNOWN_TOKEN", "error": everything});
        (StatusCode::UNAUTHORIZED, json, body.to_string()).into_response()
    } else {
        // Jira: stall past the attempt's timeout (an ambiguous outcome, then look-ups).
        tokio::time::sleep(Duration::from_secs(3)).await;
        (StatusCode::INTERNAL_SERVER_ERROR, everything).into_response()
    }
}

/// A minimal SMTP server that refuses every login and quotes the password it got.
async fn smtp(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            let _ = write.write_all(b"220 fake ESMTP\r\n").await;
            while let Ok(Some(line)) = lines.next_line().await {
                let upper = line.to_ascii_uppercase();
                let answer = if upper.starts_with("EHLO") {
                    "250-fake\r\n250 AUTH PLAIN LOGIN\r\n".to_owned()
                } else if let Some(encoded) = line.strip_prefix("AUTH PLAIN ") {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(encoded.trim())
                        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
                        .unwrap_or_default();
                    format!("535 5.7.8 credentials {decoded} rejected\r\n")
                } else if upper.starts_with("QUIT") {
                    let _ = write.write_all(b"221 bye\r\n").await;
                    break;
                } else {
                    "502 5.5.1 not here\r\n".to_owned()
                };
                if write.write_all(answer.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// Runs `herald ARGS` to completion (bounded) with the secrets in its environment;
/// everything it printed.
async fn run_herald(args: &[&str], env: &[(&'static str, String)], dir: &Path) -> String {
    let output = Command::new(herald())
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "debug")
        .current_dir(dir)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("herald did not finish within 60 s")
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_planted_secret_appears_in_anything_herald_writes() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().fallback(destination)).await.unwrap();
    });
    let smtp_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let smtp_port = smtp_listener.local_addr().unwrap().port();
    tokio::spawn(smtp(smtp_listener));
    let env = secret_env(&base, smtp_port);
    let db = dir.path().join("herald.db");
    let config_path = dir.path().join("herald.toml");
    std::fs::write(&config_path, config(&base, smtp_port, &format!("sqlite://{}", db.display())))
        .unwrap();
    let mut written = String::new();

    // check-config resolves every secret and warns about nothing it could quote.
    let checked = run_herald(&["check-config", "--config", "herald.toml"], &env, dir.path()).await;
    assert!(checked.contains("ok (11 destinations"), "{checked}");
    written.push_str(&checked);

    // The server, every destination failing in its own way.
    let mut child = Command::new(herald())
        .args(["serve", "--config", "herald.toml"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "debug")
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut stderr = child.stderr.take().unwrap();
    let stderr_task = tokio::spawn(async move {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text).await;
        String::from_utf8_lossy(&text).into_owned()
    });
    let mut first = String::new();
    tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut first))
        .await
        .expect("herald did not start within 30 s")
        .unwrap();
    let api = first.trim().strip_prefix("herald listening on ").expect("listening line").to_owned();
    let client = reqwest::Client::new();
    let destinations = [
        "hook",
        "slack",
        "slack-hook",
        "teams",
        "discord",
        "jira",
        "pager",
        "genie",
        "mm",
        "matrix",
        "mail",
    ];
    let submitted: serde_json::Value = client
        .post(format!("{api}/v1/broadcasts"))
        .json(&serde_json::json!({
            "destinations": destinations,
            "message": {"title": "P1: checkout is down", "body": "the *payments* API fails", "severity": "critical"},
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = submitted["id"].as_str().expect("an id").to_owned();
    let update = client
        .post(format!("{api}/v1/broadcasts/{id}/updates"))
        .json(&serde_json::json!({"message": {"title": "resolved", "severity": "info"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(update.status().as_u16(), 202, "{:?}", update.text().await);

    // Every delivery ends: failed permanently, out of attempts, or past its age.
    let mut view = serde_json::Value::Null;
    for _ in 0..300 {
        view = client
            .get(format!("{api}/v1/broadcasts/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if view["state"] != "in_progress" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(view["state"], "in_progress", "{view:#}");
    let errors: Vec<String> = view["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| format!("{}: {}", d["destination"], d["last_error"]))
        .collect();
    // The destinations did echo the secrets, so the scrubbing was exercised.
    assert!(errors.iter().filter(|e| e.contains("[redacted]")).count() >= 5, "{errors:#?}");
    for path in [
        format!("/v1/broadcasts/{id}"),
        format!("/v1/broadcasts/{id}/attempts"),
        "/v1/broadcasts".to_owned(),
        "/v1/destinations".to_owned(),
        "/v1/nodes".to_owned(),
        "/metrics".to_owned(),
    ] {
        let answer = client.get(format!("{api}{path}")).send().await.unwrap().text().await.unwrap();
        written.push_str(&answer);
    }

    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    let mut rest = String::new();
    let _ = stdout.read_to_string(&mut rest).await;
    written.push_str(&first);
    written.push_str(&rest);
    let log = stderr_task.await.unwrap();
    assert!(log.contains("DEBUG"), "the log ran at debug level: {log}");
    written.push_str(&log);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|name| name.to_string_lossy().starts_with("herald.db")) {
            written.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }

    // Configuration errors next to resolved secrets, and a database that refuses.
    let broken = config(&base, smtp_port, "sqlite://herald.db")
        .replace("channel = \"C0PLANT\"", "channel = 42")
        .replace("${P_WEBHOOK_SECRET}", "whsec_!!planted-signing-key-material-01");
    std::fs::write(dir.path().join("broken.toml"), broken).unwrap();
    let refused = run_herald(&["check-config", "--config", "broken.toml"], &env, dir.path()).await;
    assert!(refused.contains("destinations.slack.channel"), "{refused}");
    written.push_str(&refused);
    let unreachable =
        config(&base, smtp_port, &format!("postgres://herald:{PG_PASSWORD}@127.0.0.1:1/herald"));
    std::fs::write(dir.path().join("pg.toml"), unreachable).unwrap();
    let failed = run_herald(&["serve", "--config", "pg.toml"], &env, dir.path()).await;
    assert!(failed.contains("error"), "{failed}");
    written.push_str(&failed);

    let found = leaks(&written);
    assert!(found.is_empty(), "secrets in herald's output: {found:?}");
    // The scan itself can see a secret where one is.
    assert_eq!(leaks(&format!("x{MM_TOKEN}x")), [MM_TOKEN]);
}
