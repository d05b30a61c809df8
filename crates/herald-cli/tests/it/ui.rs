//! The dashboard in a real browser: a real `herald serve` (tokens on) in front of
//! simulator destinations, and `ui-tests/dashboard.test.mjs` driving Debian's headless
//! Chromium through `playwright-core` (npm). The scenarios (token prompt, a broadcast
//! converging live over the stream, releasing a held delivery, pausing and resuming a
//! destination, screenshots of every page) live in the script; this test sets the stage,
//! runs it, and checks from the simulator's side that the browser's actions happened.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use herald_api::TokenHash;
use herald_simulator::{FaultPlan, Simulator};

use crate::ALLOW_LOOPBACK;
use crate::process::Server;

/// Debian's Chromium (`apt-get install chromium`), which `.ci/run` installs.
const CHROMIUM: &str = "/usr/bin/chromium";

fn workspace() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// `npm ci` in `ui-tests/` unless its `playwright-core` is already installed.
fn install_playwright(dir: &Path) {
    if dir.join("node_modules/playwright-core/package.json").exists() {
        return;
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .expect("npm is needed for the dashboard tests (Debian: apt-get install nodejs npm)");
    assert!(status.success(), "npm ci in {} failed", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_broadcast_converge_live_and_its_actions_work_in_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: `apt-get install -y chromium chromium-driver` (.ci/run does it)"
    );
    let tests = workspace().join("ui-tests");
    install_playwright(&tests);

    let sim = Simulator::start(vec![
        ("alpha".into(), FaultPlan::healthy()),
        ("beta".into(), FaultPlan::healthy().fail_first(2, 503)),
        ("gamma".into(), FaultPlan::healthy().fail_first(1000, 400)),
        // Answers after 5 s: the page is open before this delivery lands.
        ("slow".into(), FaultPlan::healthy().latency(Duration::from_secs(5))),
        // 429 for the first 12 s: throttle pauses on the timeline.
        ("paced".into(), FaultPlan::healthy().outage(Duration::ZERO, Duration::from_secs(12), 429)),
        // Stores the first try and never answers: ambiguous, held (no dedupe).
        ("fragile".into(), FaultPlan::healthy().dedupe(false).hang_first(1)),
        ("delta".into(), FaultPlan::healthy()),
    ])
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = "hrld_dashboard-test-admin-token";
    let reader = "hrld_dashboard-test-read-token";
    let hook = |name: &str| {
        format!("[destinations.{name}]\nkind = \"webhook\"\nurl = \"{}\"\n", sim.url(name))
    };
    let config = format!(
        "{ALLOW_LOOPBACK}[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{db}\"\n\n\
         [[tokens]]\nname = \"admin\"\nhash = \"{admin}\"\nscopes = [\"admin\"]\n\n\
         [[tokens]]\nname = \"viewer\"\nhash = \"{viewer}\"\nscopes = [\"read\"]\n\n\
         {alpha}\n{beta}backoff_base = \"2s\"\n\n{gamma}\n{slow}timeout = \"20s\"\n\n{paced}\n\
         {fragile}dedupe = false\non_unknown = \"hold\"\ntimeout = \"1s\"\n\n{delta}",
        db = dir.path().join("herald.db").display(),
        admin = TokenHash::of(token),
        viewer = TokenHash::of(reader),
        alpha = hook("alpha"),
        beta = hook("beta"),
        gamma = hook("gamma"),
        slow = hook("slow"),
        paced = hook("paced"),
        fragile = hook("fragile"),
        delta = hook("delta"),
    );
    let path = dir.path().join("herald.toml");
    std::fs::write(&path, config).unwrap();
    let server = Server::start(&path).await;

    let shots = workspace().join("target/ui-screenshots");
    let run = tokio::process::Command::new("node")
        .arg("dashboard.test.mjs")
        .current_dir(&tests)
        .env("HERALD_URL", &server.base)
        .env("HERALD_TOKEN", token)
        .env("HERALD_READ_TOKEN", reader)
        .env("HERALD_SCREENSHOTS", &shots)
        .env("CHROMIUM", CHROMIUM)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the browser test did not finish within 240 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(output.status.success(), "the browser test failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("screenshots in {}", shots.display())), "{stdout}");
    for shot in ["list.png", "broadcast.png", "destinations.png", "phone-broadcast.png"] {
        let size = std::fs::metadata(shots.join(shot)).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{shot} is missing or empty ({size} bytes)");
    }

    // What the browser did reached the destinations: of the two held messages only the
    // one the operator released went out again (the other's cancel, refused to the
    // read-only token, was made by the test itself), and the message sent while delta
    // was paused arrived after the resume.
    let view = sim.view();
    assert_eq!(view.requests("fragile"), 3, "fragile: two hung tries and one release");
    assert_eq!(view.requests("delta"), 1, "delta: the one message sent while paused");
    server.kill().await;
    sim.shutdown().await;
}
