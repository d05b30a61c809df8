//! A real Matrix homeserver for tests: Synapse (PyPI `matrix-synapse`, pinned to
//! [`SYNAPSE_VERSION`]) in a virtual environment cached at `target/synapse-venv` (or
//! `$HERALD_SYNAPSE_VENV`), installed on first use if `.ci/run` has not done it and
//! rebuilt if it holds another version, started per test on a free loopback port
//! with SQLite in a temporary directory, a user registered through the shared-secret
//! admin API and a room created. Dropping it stops the server; so does the test process
//! ending any other way, because a shell watchdog kills Synapse when its stdin closes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The Synapse version the tests run against: the one shared/DESTINATIONS.md §5 was
/// verified with. `.ci/run` reads this line to install the same.
pub(crate) const SYNAPSE_VERSION: &str = "1.163.2";

/// The user herald posts as, and its password.
pub(crate) const USER: &str = "herald";
/// The user's password.
pub(crate) const PASSWORD: &str = "herald-test-password";
/// The shared secret for the admin registration API (loopback, test-only).
const SHARED_SECRET: &str = "herald-test-registration-secret";

/// The venv holding Synapse: `$HERALD_SYNAPSE_VENV`, else the workspace's
/// `target/synapse-venv` (the path `.ci/run` installs to).
pub(crate) fn venv() -> PathBuf {
    match std::env::var_os("HERALD_SYNAPSE_VENV") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/synapse-venv"),
    }
}

fn python() -> PathBuf {
    venv().join("bin/python")
}

fn run(program: &Path, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{} {args:?} failed: {}{}",
            program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Installs Synapse [`SYNAPSE_VERSION`] into the venv unless it is there, then generates
/// one configuration (signing key, secrets) that every server of this test run starts
/// from. Once per process; the venv once per machine and version.
fn prepared() -> &'static Result<PathBuf, String> {
    static PREPARED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PREPARED.get_or_init(|| {
        let python = python();
        // The distribution's version: `synapse.__version__` appends git details of
        // whatever repository the venv sits in.
        let installed = run(
            &python,
            &["-c", "import importlib.metadata as m; print(m.version('matrix-synapse'))"],
        );
        if installed.as_deref().map(str::trim) != Ok(SYNAPSE_VERSION) {
            let started = Instant::now();
            run(Path::new("python3"), &["-m", "venv", "--clear", &venv().to_string_lossy()])?;
            let pinned = format!("matrix-synapse=={SYNAPSE_VERSION}");
            run(
                &python,
                &["-m", "pip", "install", "--quiet", "--disable-pip-version-check", &pinned],
            )?;
            eprintln!("installed {pinned} in {:.1?}", started.elapsed());
        }
        // Generated once per machine (a signing key, secrets); each server overrides
        // every path in it but the signing key's.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("synapse-config");
        let config = dir.join("homeserver.yaml");
        if !dir.join("localhost.signing.key").exists() || !config.exists() {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            run(
                &python,
                &[
                    "-m",
                    "synapse.app.homeserver",
                    "--server-name",
                    "localhost",
                    "--config-path",
                    &config.to_string_lossy(),
                    "--data-directory",
                    &dir.to_string_lossy(),
                    "--generate-config",
                    "--report-stats=no",
                ],
            )?;
        }
        Ok(config)
    })
}

/// How much the server lets a user send.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Limits {
    /// Far more than any test sends.
    Generous,
    /// Synapse's `rc_message`: `per_second` sustained after a burst of `burst`.
    Messages {
        /// Sustained rate.
        per_second: f64,
        /// Burst size.
        burst: u32,
    },
}

/// A running Synapse with a user and a room.
pub(crate) struct Synapse {
    /// The homeserver's base URL.
    pub(crate) url: String,
    /// The full user id herald posts as.
    pub(crate) user_id: String,
    /// The room's id.
    pub(crate) room_id: String,
    /// The room's alias (`#ops:localhost`).
    pub(crate) room_alias: String,
    /// A token of the same user on another device, for reading the room.
    pub(crate) reader_token: String,
    http: reqwest::Client,
    watchdog: Option<tokio::process::Child>,
    _dir: tempfile::TempDir,
}

impl Drop for Synapse {
    fn drop(&mut self) {
        // Closing the watchdog's stdin makes it kill Synapse and wait for it.
        if let Some(mut child) = self.watchdog.take() {
            drop(child.stdin.take());
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => return,
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Synapse {
    /// Starts a server with `limits`, registers [`USER`] and creates a room.
    pub(crate) async fn start(limits: Limits) -> Synapse {
        let base = match prepared() {
            Ok(base) => base.clone(),
            Err(problem) => panic!("Synapse is not available: {problem}"),
        };
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let (per_second, burst) = match limits {
            Limits::Generous => (1000.0, 1000),
            Limits::Messages { per_second, burst } => (per_second, burst),
        };
        let d = dir.path().display();
        let log = dir.path().join("log.yaml");
        std::fs::write(
            &log,
            format!(
                "version: 1\nformatters:\n  p:\n    format: '%(asctime)s %(name)s %(levelname)s \
                 %(message)s'\nhandlers:\n  file:\n    class: logging.FileHandler\n    \
                 formatter: p\n    filename: {d}/homeserver.log\nroot:\n  level: INFO\n  \
                 handlers: [file]\ndisable_existing_loggers: false\n"
            ),
        )
        .unwrap();
        let over = dir.path().join("test.yaml");
        let generous = "{per_second: 1000, burst_count: 1000}";
        std::fs::write(
            &over,
            format!(
                "listeners:\n  - port: {port}\n    bind_addresses: ['127.0.0.1']\n    type: \
                 http\n    tls: false\n    x_forwarded: false\n    resources:\n      - names: \
                 [client]\n        compress: false\n\
                 database:\n  name: sqlite3\n  args:\n    database: {d}/homeserver.db\n\
                 media_store_path: {d}/media\npid_file: {d}/homeserver.pid\nlog_config: {}\n\
                 registration_shared_secret: {SHARED_SECRET}\n\
                 trusted_key_servers: []\nsuppress_key_server_warning: true\n\
                 rc_message: {{per_second: {per_second}, burst_count: {burst}}}\n\
                 rc_login:\n  address: {generous}\n  account: {generous}\n  failed_attempts: \
                 {generous}\nrc_registration: {generous}\nrc_joins:\n  local: {generous}\n\
                 rc_room_creation: {generous}\n",
                log.display()
            ),
        )
        .unwrap();
        let started = Instant::now();
        let watchdog = tokio::process::Command::new("sh")
            .args([
                "-c",
                "\"$0\" -m synapse.app.homeserver -c \"$1\" -c \"$2\" >\"$3\" 2>&1 & pid=$!; \
                 read _; kill $pid; wait $pid",
            ])
            .arg(python())
            .arg(&base)
            .arg(&over)
            .arg(dir.path().join("stdout.log"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let mut synapse = Synapse {
            url: url.clone(),
            user_id: format!("@{USER}:localhost"),
            room_id: String::new(),
            room_alias: "#ops:localhost".to_owned(),
            reader_token: String::new(),
            http,
            watchdog: Some(watchdog),
            _dir: dir,
        };
        synapse.wait_healthy(started).await;
        eprintln!("Synapse ready in {:.1?}", started.elapsed());
        let out = tokio::process::Command::new(python())
            .args(["-m", "synapse._scripts.register_new_matrix_user", "-u", USER, "-p"])
            .args([PASSWORD, "--no-admin", "-k", SHARED_SECRET, &url])
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "registration failed: {out:?}");
        synapse.reader_token = synapse.log_in("READER").await;
        let room = synapse
            .post(
                "createRoom",
                &json!({"room_alias_name": "ops", "name": "ops", "preset": "private_chat"}),
            )
            .await;
        synapse.room_id = room["room_id"].as_str().unwrap().to_owned();
        synapse
    }

    async fn wait_healthy(&mut self, started: Instant) {
        let health = format!("{}/health", self.url);
        loop {
            if let Ok(answer) = self.http.get(&health).send().await
                && answer.status().is_success()
            {
                return;
            }
            let exited = self.watchdog.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || started.elapsed() > Duration::from_secs(60) {
                let log = std::fs::read_to_string(self._dir.path().join("stdout.log"));
                panic!("Synapse did not start: {log:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Logs [`USER`] in on `device` and returns the access token.
    pub(crate) async fn log_in(&self, device: &str) -> String {
        let body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": USER},
            "password": PASSWORD,
            "device_id": device,
        });
        let answer: Value = self
            .http
            .post(format!("{}/_matrix/client/v3/login", self.url))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["access_token"].as_str().unwrap().to_owned()
    }

    async fn post(&self, path: &str, body: &Value) -> Value {
        let answer = self
            .http
            .post(format!("{}/_matrix/client/v3/{path}", self.url))
            .bearer_auth(&self.reader_token)
            .json(body)
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{path}: {answer:?}");
        answer.json().await.unwrap()
    }

    /// Invalidates every access token of [`USER`] except the reader's new one, as an
    /// administrator revoking sessions would.
    pub(crate) async fn log_out_everywhere(&mut self) {
        self.post("logout/all", &json!({})).await;
        self.reader_token = self.log_in("READER").await;
    }

    /// Sends `n` plain messages as [`USER`] from the reader's device, all at once: newer
    /// traffic of herald's own user that a look-up must read past.
    pub(crate) async fn chatter(&self, n: usize) {
        let mut sends = tokio::task::JoinSet::new();
        for i in 0..n {
            let mut url = reqwest::Url::parse(&self.url).unwrap();
            url.path_segments_mut().unwrap().extend([
                "_matrix",
                "client",
                "v3",
                "rooms",
                &self.room_id,
                "send",
                "m.room.message",
                &format!("chatter-{i}"),
            ]);
            let request = self
                .http
                .put(url)
                .bearer_auth(&self.reader_token)
                .json(&json!({"msgtype": "m.text", "body": format!("chatter {i}")}));
            sends.spawn(async move { request.send().await.unwrap().error_for_status().unwrap() });
        }
        while let Some(sent) = sends.join_next().await {
            sent.unwrap();
        }
    }

    /// The room's `m.room.message` events, oldest first.
    pub(crate) async fn messages(&self) -> Vec<Value> {
        let mut url = reqwest::Url::parse(&self.url).unwrap();
        url.path_segments_mut().unwrap().extend([
            "_matrix",
            "client",
            "v3",
            "rooms",
            &self.room_id,
            "messages",
        ]);
        let answer: Value = self
            .http
            .get(url)
            .query(&[("dir", "f"), ("limit", "1000")])
            .bearer_auth(&self.reader_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "m.room.message")
            .cloned()
            .collect()
    }
}
