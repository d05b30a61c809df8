//! `herald`: parse the command line and run one command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use herald_api::Scope;
use herald_cli::board::{self, Display};
use herald_cli::client::{Bearer, Client};
use herald_cli::config::Config;
use herald_cli::progress::Followed;
use herald_cli::{
    bench, database, demo, destinations, logging, outbound, progress, serve, telemetry, token,
    torture,
};
use serde_json::{Value, json};

/// herald allocates many small, short-lived buffers per delivery (HTTP, JSON, SQL
/// rows) across threads; mimalloc handles that pattern with less contention and
/// fragmentation than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// herald: a durable broadcast engine for operational messages.
#[derive(Debug, Parser)]
#[command(name = "herald", version, about, long_about = None)]
struct Cli {
    /// The herald server the client commands talk to.
    #[arg(long, global = true, env = "HERALD_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// A PEM file of CA certificates to trust besides the public roots, for an
    /// https:// server whose certificate a private CA issued.
    #[arg(long, global = true, env = "HERALD_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// A file holding the API token the client commands send (instead of HERALD_TOKEN,
    /// which keeps it out of the process list and shell history too).
    #[arg(long, global = true, value_name = "PATH")]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// The message of `send` and `update`.
#[derive(Debug, clap::Args)]
struct MessageArgs {
    /// One-line summary.
    #[arg(long)]
    title: String,
    /// Markdown body.
    #[arg(long, default_value = "")]
    body: String,
    /// info, warning, error, critical or resolved.
    #[arg(long, default_value = "info")]
    severity: String,
}

impl MessageArgs {
    fn json(&self) -> Value {
        json!({"title": self.title, "body": self.body, "severity": self.severity})
    }
}

/// How a read command prints what the server answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
enum Output {
    /// For people: aligned columns, plain words.
    #[default]
    Table,
    /// The API's JSON, pretty-printed, for scripts (`jq`).
    Json,
}

/// Exit codes of following a broadcast (`send --wait`, `status --follow`, `update --wait`):
/// 0 when every delivery was delivered, 1 when it ended otherwise (failed, partially
/// failed, cancelled) or on an error, 3 when `--timeout` ran out before it ended.
const FOLLOW_CODES: &str = "Exit code: 0 when every delivery was delivered, 1 when the \
    broadcast ended otherwise (failed, partially failed, cancelled) or on an error, 3 when \
    --timeout ran out first.";

/// The exit code when `--timeout` runs out before the broadcast ends.
const TIMED_OUT: u8 = 3;

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: HTTP API plus delivery engine.
    Serve {
        /// The configuration file.
        #[arg(long, short, default_value = "herald.toml")]
        config: PathBuf,
    },
    /// Broadcast a message to destinations or groups.
    #[command(after_help = FOLLOW_CODES)]
    Send {
        /// Destination or group names (repeat or comma-separate).
        #[arg(long, required = true, value_delimiter = ',')]
        to: Vec<String>,
        #[command(flatten)]
        message: MessageArgs,
        /// Idempotency key: sending twice with the same key creates one broadcast.
        #[arg(long)]
        key: Option<String>,
        /// Give up on deliveries not done after this long (e.g. 2h).
        #[arg(long)]
        expires_in: Option<String>,
        /// Follow the deliveries live until the broadcast ends (see the exit codes below).
        #[arg(long)]
        wait: bool,
        /// How long --wait follows at most.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// table: progress, then a summary; json: the accepted broadcast (with --wait,
        /// the final one) as the API answers it.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Post a follow-up (update) to a broadcast's thread.
    #[command(after_help = FOLLOW_CODES)]
    Update {
        /// The broadcast id.
        id: String,
        #[command(flatten)]
        message: MessageArgs,
        /// Follow the deliveries until they converge.
        #[arg(long)]
        wait: bool,
    },
    /// Show a broadcast and each delivery's state.
    #[command(after_help = FOLLOW_CODES)]
    Status {
        /// The broadcast id.
        id: String,
        /// Follow the deliveries live until the broadcast ends (see the exit codes below).
        #[arg(long)]
        follow: bool,
        /// How long --follow follows at most.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// table (default) or json (the API's answer; with --follow, the final one).
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// List broadcasts, newest first.
    List {
        /// Only in this state (in_progress, delivered, partially_failed, failed, cancelled),
        /// or `held`: broadcasts with a delivery held for an operator.
        #[arg(long)]
        state: Option<String>,
        /// Only with a delivery to this destination.
        #[arg(long)]
        destination: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// table (default) or json (the API's answer).
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Retry a held, failed or pending delivery now.
    Retry {
        /// The delivery id (d_...).
        delivery: String,
    },
    /// Cancel a delivery that has not ended.
    Cancel {
        /// The delivery id (d_...).
        delivery: String,
    },
    /// Show each destination's health and counts.
    Destinations {
        /// table (default) or json (the API's answer).
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Apply the database migrations this version knows (also done by `serve`).
    Migrate {
        /// The configuration file.
        #[arg(long, short, default_value = "herald.toml")]
        config: PathBuf,
    },
    /// Show the herald nodes sharing the database and the lanes each one drives.
    Nodes {
        /// table (default) or json (the API's answer).
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Validate a configuration file and report every problem.
    CheckConfig {
        /// The configuration file.
        #[arg(long, short, default_value = "herald.toml")]
        config: PathBuf,
        /// table (default: lines for people) or json (`ok`, `problems` with location,
        /// key and message, `warnings`, counts) for CI jobs and editors.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Run a server with simulated destinations and watch a broadcast converge.
    Demo,
    /// Measure herald against a local sink: throughput, latency, backlog, outage and
    /// retries, each beside the raw HTTP baseline of the same run (herald, the load
    /// client and the sink as separate processes); writes a JSON and an HTML report.
    Bench(Box<bench::Args>),
    /// Kill and restart a real server under random faults, then check every promise.
    Torture(torture::Options),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a new random token; print it once, and the [[tokens]] entry (its hash and
    /// scopes) to add to herald.toml.
    Create {
        /// Who will hold the token (e.g. alertmanager); shown in 403 answers.
        #[arg(long)]
        name: String,
        /// What it may do: send, read, operate or admin (all); repeat for several.
        #[arg(long = "scope", required = true, value_parser = token::parse_scope)]
        scopes: Vec<Scope>,
    },
}

impl Command {
    /// Whether the command calls the API (and so needs the token, if any).
    fn calls_the_api(&self) -> bool {
        matches!(
            self,
            Command::Send { .. }
                | Command::Update { .. }
                | Command::Status { .. }
                | Command::List { .. }
                | Command::Retry { .. }
                | Command::Cancel { .. }
                | Command::Destinations { .. }
                | Command::Nodes { .. }
        )
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` starts logging once its configuration is read: `[telemetry]` adds a layer.
    if !matches!(cli.command, Command::Serve { .. }) {
        logging::init("warn", None);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", logging::redact(&format!("{error:#}")));
            ExitCode::FAILURE
        }
    }
}

/// `1 group`, `2 groups`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let bearer =
        if cli.command.calls_the_api() { Bearer::load(cli.token_file.as_deref())? } else { None };
    // Built on first use: a broken CA file concerns the client commands only.
    let client = || {
        let client = match &cli.ca_file {
            Some(ca_file) => Client::trusting(&cli.server, ca_file)?,
            None => Client::new(&cli.server),
        };
        anyhow::Ok(client.with_bearer(bearer.clone()))
    };
    let mut out = std::io::stdout();
    match cli.command {
        Command::Serve { config } => {
            let config = Config::load(&config).map_err(|errors| anyhow::anyhow!("{errors}"))?;
            let telemetry = match &config.telemetry {
                Some(telemetry) => Some(telemetry::start(
                    telemetry,
                    &config.server.node_id(),
                    config.redactor.clone(),
                    tokio::runtime::Handle::current(),
                )?),
                None => None,
            };
            let (telemetry, traces) = telemetry.unzip();
            logging::init("info", traces);
            if let Some(telemetry) = &telemetry {
                tracing::info!(endpoint = %telemetry.traces_url(), "Exporting traces over OTLP/HTTP.");
            }
            serve::run(&config).await?;
            if let Some(telemetry) = telemetry {
                telemetry.shutdown().await;
            }
        }
        Command::Migrate { config } => {
            let config = Config::load(&config).map_err(|errors| anyhow::anyhow!("{errors}"))?;
            logging::set_secrets(config.redactor.clone());
            println!("{}", database::migrate(&config).await?);
        }
        Command::CheckConfig { config: path, output } => {
            match Config::load(&path) {
                Ok(config) => {
                    let findings = outbound::check(&config).await;
                    if output == Output::Json {
                        let mut warnings = config.warnings();
                        let mut notes = Vec::new();
                        for finding in &findings {
                            match finding {
                                outbound::Finding::Refused { .. } => warnings.push(finding.text()),
                                outbound::Finding::Unresolved { .. } => notes.push(finding.text()),
                            }
                        }
                        print_json(&json!({
                            "file": path.display().to_string(),
                            "ok": true,
                            "destinations": config.destinations.len(),
                            "groups": config.groups.len(),
                            "warnings": warnings,
                            "notes": notes,
                            "problems": [],
                        }))?;
                        return Ok(ExitCode::SUCCESS);
                    }
                    for warning in config.warnings() {
                        println!("warning: {warning}");
                    }
                    for finding in findings {
                        println!("{finding}");
                    }
                    println!(
                        "{}: ok ({}, {})",
                        path.display(),
                        count(config.destinations.len(), "destination"),
                        count(config.groups.len(), "group")
                    );
                }
                Err(errors) => {
                    if output == Output::Json {
                        let problems: Vec<Value> = errors
                        .0
                        .iter()
                        .map(|e| json!({"location": e.location, "key": e.key, "message": e.message}))
                        .collect();
                        print_json(&json!({
                            "file": path.display().to_string(),
                            "ok": false,
                            "warnings": [],
                            "notes": [],
                            "problems": problems,
                        }))?;
                        return Ok(ExitCode::FAILURE);
                    }
                    eprintln!("{errors}");
                    eprintln!("{} found", count(errors.0.len(), "problem"));
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Command::Send { to, message, key, expires_in, wait, timeout, output } => {
            let mut request = json!({"destinations": to, "message": message.json()});
            if let Some(key) = key {
                request["idempotency_key"] = json!(key);
            }
            if let Some(expires_in) = expires_in {
                request["expires_in"] = json!(expires_in);
            }
            let client = client()?;
            let (status, view) = client.post("/v1/broadcasts", &request).await?;
            let id =
                view.get("id").and_then(Value::as_str).context("the server's answer has no id")?;
            if output == Output::Json {
                if !wait {
                    print_json(&view)?;
                    return Ok(ExitCode::SUCCESS);
                }
                let followed = progress::follow(&client, id, timeout, Display::Silent, &mut out);
                let followed = followed.await?;
                print_json(&followed.view)?;
                return Ok(follow_code(&followed));
            }
            let replay = if status == 200 { " (already accepted with this key)" } else { "" };
            println!("accepted {id}{replay}");
            if wait {
                return follow(&client, id, timeout).await;
            }
        }
        Command::Update { id, message, wait } => {
            let request = json!({"message": message.json()});
            let client = client()?;
            let (_, view) = client.post(&format!("/v1/broadcasts/{id}/updates"), &request).await?;
            let seq = view.get("update_seq").and_then(Value::as_u64).unwrap_or(0);
            println!("update {seq} accepted for {id}");
            if wait {
                return follow(&client, &id, Duration::from_secs(600)).await;
            }
        }
        Command::Status { id, follow: true, timeout, output } => {
            let client = client()?;
            if output == Output::Json {
                let followed = progress::follow(&client, &id, timeout, Display::Silent, &mut out);
                let followed = followed.await?;
                print_json(&followed.view)?;
                return Ok(follow_code(&followed));
            }
            return follow(&client, &id, timeout).await;
        }
        Command::Status { id, follow: false, output, .. } => {
            let view = client()?.get(&format!("/v1/broadcasts/{id}")).await?;
            match output {
                Output::Json => print_json(&view)?,
                Output::Table => print_broadcast(&view),
            }
        }
        Command::List { state, destination, limit, output } => {
            let mut query = format!("/v1/broadcasts?limit={limit}");
            if let Some(state) = state {
                query.push_str(&format!("&state={state}"));
            }
            if let Some(destination) = destination {
                query.push_str(&format!("&destination={destination}"));
            }
            let page = client()?.get(&query).await?;
            if output == Output::Json {
                print_json(&page)?;
                return Ok(ExitCode::SUCCESS);
            }
            for item in page.get("items").and_then(Value::as_array).into_iter().flatten() {
                let text =
                    |key: &str| item.get(key).and_then(Value::as_str).unwrap_or("").to_string();
                let title = item.pointer("/message/title").and_then(Value::as_str).unwrap_or("");
                println!("{}  {}  {:<16}  {title}", text("id"), text("created_at"), text("state"));
            }
        }
        Command::Retry { delivery } => {
            client()?.post(&format!("/v1/deliveries/{delivery}/retry"), &json!({})).await?;
            println!("{delivery}: retry scheduled now");
        }
        Command::Cancel { delivery } => {
            client()?.post(&format!("/v1/deliveries/{delivery}/cancel"), &json!({})).await?;
            println!("{delivery}: cancelled");
        }
        Command::Destinations { output } => {
            let view = client()?.get("/v1/destinations").await?;
            match output {
                Output::Json => print_json(&view)?,
                Output::Table => print!("{}", destinations::table(&view)),
            }
        }
        Command::Nodes { output } => {
            let view = client()?.get("/v1/nodes").await?;
            if output == Output::Json {
                print_json(&view)?;
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<24} {:<6} {:<22} {:<24} LANES",
                "NODE", "ALIVE", "ADDRESS", "LAST HEARTBEAT"
            );
            for node in view.get("nodes").and_then(Value::as_array).into_iter().flatten() {
                let text =
                    |key: &str| node.get(key).and_then(Value::as_str).unwrap_or("").to_string();
                let flag = |key: &str| node.get(key).and_then(Value::as_bool).unwrap_or(false);
                let lanes: Vec<&str> = node
                    .get("lanes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let mut id = text("id");
                if flag("this") {
                    id.push_str(" (this)");
                }
                println!(
                    "{:<24} {:<6} {:<22} {:<24} {}",
                    id,
                    if flag("alive") { "yes" } else { "NO" },
                    text("address"),
                    text("heartbeat_at"),
                    if lanes.is_empty() { "-".to_string() } else { lanes.join(", ") }
                );
            }
        }
        Command::Token(TokenCommand::Create { name, scopes }) => {
            print!("{}", token::create(&name, &scopes)?.text(&name));
        }
        Command::Demo => return demo::run(&mut out).await,
        Command::Bench(args) => bench::run(*args, &mut out).await?,
        Command::Torture(options) => {
            let herald = torture::current_herald()?;
            let passed = torture::run(&options, &herald, &mut out).await?;
            return Ok(if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Follows broadcast `id` live on stdout, then prints its summary.
async fn follow(client: &Client, id: &str, timeout: Duration) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout();
    let display = Display::detect();
    let followed = progress::follow(client, id, timeout, display, &mut out).await?;
    // The terminal's table ends with the summary already.
    if display != Display::Terminal {
        println!("{}", board::summary(&followed.view));
    }
    if followed.timed_out {
        eprintln!(
            "gave up waiting after {}; the broadcast goes on (`herald status {id} --follow`)",
            humantime::format_duration(timeout)
        );
    }
    Ok(follow_code(&followed))
}

/// See [`FOLLOW_CODES`].
fn follow_code(followed: &Followed) -> ExitCode {
    if followed.timed_out {
        ExitCode::from(TIMED_OUT)
    } else if followed.delivered() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The API's answer as it came, pretty-printed.
fn print_json(view: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(view).context("printing the answer as JSON")?);
    Ok(())
}

fn print_broadcast(view: &Value) {
    let text = |key: &str| view.get(key).and_then(Value::as_str).unwrap_or("").to_string();
    println!(
        "{}  {}  {}",
        text("id"),
        text("state"),
        view.pointer("/message/title").and_then(Value::as_str).unwrap_or("")
    );
    println!("created {}", text("created_at"));
    for d in view.get("deliveries").and_then(Value::as_array).into_iter().flatten() {
        let dt = |key: &str| d.get(key).and_then(Value::as_str).unwrap_or("-").to_string();
        let n = |key: &str| d.get(key).and_then(Value::as_u64).unwrap_or(0);
        let seq = n("seq");
        let which = if seq == 0 { "original".to_string() } else { format!("update {seq}") };
        // A delivered message is described by where it is; anything else by what went
        // wrong last.
        let note = if dt("state") == "delivered" {
            let unconfirmed = d.get("unconfirmed").and_then(Value::as_bool) == Some(true);
            match (d.get("remote_ref").and_then(Value::as_str), unconfirmed) {
                (_, true) => "unconfirmed: the destination accepted the request but does not \
                              confirm the post"
                    .to_string(),
                (Some(remote_ref), false) => format!("ref {remote_ref}"),
                (None, false) => String::new(),
            }
        } else {
            d.get("last_error").and_then(Value::as_str).unwrap_or("").to_string()
        };
        println!(
            "  {}  {:<16} {:<9} {:<10} attempts {}/{}  {note}",
            dt("id"),
            dt("destination"),
            which,
            dt("state"),
            n("attempts"),
            n("max_attempts"),
        );
    }
}
