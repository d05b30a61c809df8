//! Several `herald serve` processes on one PostgreSQL schema (issue 8): three nodes share
//! three simulated destinations while one is killed and another restarted, and a node
//! loses its database (a proxy cut, its backends terminated) while broadcasts flow.
//! Every accepted broadcast converges, deduplicating destinations hold one copy of each,
//! no delivery is attempted by two nodes at once, a `rate_limit = "5/s"` destination
//! gets at most 5 requests a second measured where they arrive, and a node cut off from
//! the database answers 503 (never a false 2xx) and recovers by itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_simulator::{FaultPlan, Simulator};
use serde_json::{Value, json};
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use crate::ALLOW_LOOPBACK;
use crate::cli;
use crate::database::{Schema, server_addr};
use crate::process::Server;
use crate::proxy::Proxy;

/// The destinations of the three-node test, sorted as `GET /v1/nodes` lists lanes.
const LANES: [&str; 3] = ["counting", "dedupe", "limited"];

/// The node ids; the nodes' configurations differ only in this.
const NODE_IDS: [&str; 3] = ["node-a", "node-b", "node-c"];

/// Broadcasts submitted in the three-node test, in three waves of a third each.
const BROADCASTS: usize = 90;

/// `limited`'s `rate_limit`: this many requests per second.
const LIMIT: usize = 5;

/// The window in which at most `LIMIT` arrivals at the simulator may fall. herald's pacer
/// allows at most 5 *starts* in any 1 s (a sliding window), on every node and across
/// handovers; the simulator stamps *arrivals*, which trail their starts by each request's
/// own loopback delay (a reused or a new connection, scheduling on a busy two-core
/// machine), so the requests of one burst arrive a few ms apart. When a burst's first
/// request arrives promptly and a later one late, the next burst (started exactly 1 s
/// after the first) lands less than 1 s after that late arrival: runs show 6 or 7
/// arrivals in some 1 s windows from this alone. Counting in 950 ms absorbs up to 50 ms of
/// such skew; a sixth start the pacer let through would have to fall within 50 ms of the
/// window's end to slip by.
const WINDOW: Duration = Duration::from_millis(950);

/// Prints a figure of the run to stderr even when the test passes (the harness captures
/// `eprintln!` of passing tests), so the CI log keeps the numbers.
macro_rules! figure {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// One webhook destination's table.
fn destination(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[destinations.{name}]\nkind = \"webhook\"\nurl = \"{url}\"\nconcurrency = 4\ntimeout = \"1s\"\n\
         backoff_base = \"100ms\"\nbackoff_max = \"500ms\"\n{extra}\n"
    )
}

fn config(sim: &Simulator, url: &str, node_id: &str, lanes: &[&str]) -> String {
    let mut text = format!(
        "{ALLOW_LOOPBACK}[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"{url}\"\nnode_id = \"{node_id}\"\n\n"
    );
    for name in lanes {
        // `dedupe` and `limited` deduplicate by webhook-id, as a Standard Webhooks
        // receiver should; `counting` stores every request and so shows what was resent.
        let extra = if *name == "limited" { "rate_limit = \"5/s\"" } else { "" };
        text.push_str(&destination(name, &sim.url(name), extra));
    }
    text
}

fn write_config(dir: &Path, node_id: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{node_id}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// One node as `GET /v1/nodes` shows it.
#[derive(Debug, Clone)]
struct NodeRow {
    id: String,
    alive: bool,
    lanes: Vec<String>,
}

async fn nodes(server: &Server) -> Vec<NodeRow> {
    let view = server.get("/v1/nodes").await;
    view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| NodeRow {
            id: node["id"].as_str().unwrap().to_string(),
            alive: node["alive"].as_bool().unwrap(),
            lanes: node["lanes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|lane| lane.as_str().unwrap().to_string())
                .collect(),
        })
        .collect()
}

/// The live node that drives `lane`, if any.
fn driver(rows: &[NodeRow], lane: &str) -> Option<String> {
    rows.iter()
        .find(|row| row.alive && row.lanes.iter().any(|l| l == lane))
        .map(|row| row.id.clone())
}

/// The lanes a node says it drives itself (`driven_here` in `GET /v1/destinations`).
async fn driven_here(server: &Server) -> BTreeSet<String> {
    let view = server.get("/v1/destinations").await;
    view["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["driven_here"] == true)
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect()
}

/// Waits (bounded) until exactly the `live` nodes are alive, every lane is driven by
/// exactly one of them, each holds its fair share (at least one, at most
/// `ceil(lanes / nodes)`), and each node's own `driven_here` agrees. How long it took.
async fn wait_spread(live: &[(&str, &Server)], lanes: &[&str], timeout: Duration) -> Duration {
    let started = Instant::now();
    let share = lanes.len().div_ceil(live.len());
    let mut last = Vec::new();
    while started.elapsed() < timeout {
        let rows = nodes(live[0].1).await;
        let alive: BTreeSet<&str> =
            rows.iter().filter(|r| r.alive).map(|r| r.id.as_str()).collect();
        let wanted: BTreeSet<&str> = live.iter().map(|(id, _)| *id).collect();
        let mut spread = alive == wanted;
        for lane in lanes {
            let holders = rows.iter().filter(|r| r.alive && r.lanes.iter().any(|l| l == lane));
            spread &= holders.count() == 1;
        }
        for (id, server) in live {
            let held: BTreeSet<String> = rows
                .iter()
                .find(|r| r.id == *id)
                .map(|r| r.lanes.iter().cloned().collect())
                .unwrap_or_default();
            spread &= (1..=share).contains(&held.len());
            spread &= driven_here(server).await == held;
        }
        if spread {
            return started.elapsed();
        }
        last = rows;
        tokio::time::sleep(ms(100)).await;
    }
    panic!(
        "the lanes did not spread over {live:?} within {timeout:?}: {last:?}",
        live = live.iter().map(|(id, _)| *id).collect::<Vec<_>>()
    );
}

/// Waits (bounded) until `viewer` shows `lane` driven by a live node other than `not`;
/// that node's id.
async fn wait_moved(viewer: &Server, lane: &str, not: &str, timeout: Duration) -> String {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if let Some(id) = driver(&nodes(viewer).await, lane)
            && id != not
        {
            return id;
        }
        tokio::time::sleep(ms(50)).await;
    }
    panic!("lane `{lane}` did not move off {not} within {timeout:?}");
}

/// The running servers of `servers`, each with its node id.
fn live(servers: &[Option<Server>]) -> Vec<(&'static str, &Server)> {
    servers.iter().zip(NODE_IDS).filter_map(|(s, id)| s.as_ref().map(|s| (id, s))).collect()
}

/// The most instants of `at` that fall in any half-open window of length `window`.
fn max_in_window(at: &[Instant], window: Duration) -> usize {
    let mut at = at.to_vec();
    at.sort();
    let mut best = 0;
    let mut first = 0;
    for last in 0..at.len() {
        while at[last].duration_since(at[first]) >= window {
            first += 1;
        }
        best = best.max(last - first + 1);
    }
    best
}

/// A submit's body: one broadcast to `lanes` under idempotency key `key`.
fn broadcast(key: &str, lanes: &[&str]) -> Value {
    json!({"destinations": lanes, "message": {"title": key}, "idempotency_key": key})
}

/// Submits broadcast `key` to `server`; it must be accepted. Its id.
async fn submit(server: &Server, key: &str, lanes: &[&str]) -> String {
    let (status, view) = server.post("/v1/broadcasts", broadcast(key, lanes)).await;
    assert_eq!(status, 202, "{key} at {}: {view}", server.base);
    view["id"].as_str().unwrap().to_string()
}

/// The deliveries whose attempt log has an ambiguous attempt.
async fn ambiguous(schema: &Schema) -> BTreeSet<String> {
    let mut conn = schema.conn().await;
    sqlx::query_scalar("SELECT DISTINCT delivery_id FROM attempts WHERE outcome = 'unknown'")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// Deliveries attempted by two nodes at once: attempts of one delivery by different
/// nodes whose [started_at, started_at + duration_ms] overlap.
async fn overlapping_attempts(schema: &Schema) -> Vec<String> {
    let mut conn = schema.conn().await;
    sqlx::query(
        "SELECT a.delivery_id FROM attempts a JOIN attempts b \
         ON a.delivery_id = b.delivery_id AND a.node_id <> b.node_id \
         AND a.started_at < b.started_at + b.duration_ms AND b.started_at < a.started_at + a.duration_ms",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .iter()
    .map(|row| row.get(0))
    .collect()
}

/// Attempts per node, for the log.
async fn attempts_per_node(schema: &Schema) -> BTreeMap<String, i64> {
    let mut conn = schema.conn().await;
    sqlx::query("SELECT node_id, COUNT(*) FROM attempts GROUP BY node_id")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// Who sent to `destination` in turn, from the attempt log: each node with its number
/// of attempts, and between two nodes the time from the last attempt of one to the first
/// of the next (recovered leases, which send nothing, left out).
async fn drivers(schema: &Schema, destination: &str) -> String {
    let mut conn = schema.conn().await;
    let rows = sqlx::query(
        "SELECT node_id, started_at FROM attempts WHERE destination = $1 \
         AND NOT (outcome = 'unknown' AND duration_ms = 0) ORDER BY started_at, id",
    )
    .bind(destination)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut turns: Vec<(String, usize, i64, i64)> = Vec::new();
    for row in rows {
        let (node, at): (String, i64) = (row.get(0), row.get(1));
        match turns.last_mut() {
            Some((last, n, _, until)) if *last == node => {
                *n += 1;
                *until = at;
            }
            _ => turns.push((node, 1, at, at)),
        }
    }
    let mut text = String::new();
    for (i, (node, n, from, _)) in turns.iter().enumerate() {
        if i > 0 {
            let gap = from - turns[i - 1].3;
            text.push_str(&format!(", after {:.1} s ", gap as f64 / 1000.0));
        }
        text.push_str(&format!("{node} ({n})"));
    }
    text
}

/// At a deduplicating destination: one copy of each of `keys` delivery ids, no other.
fn assert_once_each(sim: &Simulator, name: &str, expected: usize) {
    let copies = sim.copies(name);
    assert_eq!(copies.len(), expected, "`{name}` holds copies of {} deliveries", copies.len());
    let doubled: Vec<_> = copies.iter().filter(|(_, n)| **n != 1).collect();
    assert!(doubled.is_empty(), "duplicates at `{name}`: {doubled:?}");
}

/// At the counting destination: a delivery arrived more than once only if its attempt
/// log shows an ambiguous attempt (the only reason herald may send again). The number
/// of extra copies.
fn assert_resent_only_when_ambiguous(sim: &Simulator, unknown: &BTreeSet<String>) -> usize {
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for r in sim.received("counting") {
        *per_key.entry(r.key.unwrap()).or_default() += 1;
    }
    for (key, n) in &per_key {
        assert!(
            *n == 1 || unknown.contains(key),
            "{key} was sent {n} times without an ambiguous attempt"
        );
    }
    per_key.values().map(|n| n - 1).sum()
}

/// `herald nodes` against `server` (node `this`): one line per node, `(this)` on the
/// answering node's, and each lane on exactly one line.
async fn check_nodes_command(server: &Server, this: &str, ids: &[&str], lanes: &[&str]) {
    let output = cli::run(&["--server", &server.base, "nodes"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("NODE") && lines[0].ends_with("LANES"), "{stdout}");
    for id in ids {
        let line = lines
            .iter()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} missing:\n{stdout}"));
        assert_eq!(line.contains("(this)"), *id == this, "{stdout}");
        assert!(line.contains(" yes "), "{id} not alive:\n{stdout}");
    }
    assert_eq!(lines.len(), ids.len() + 1, "{stdout}");
    for lane in lanes {
        let on = lines.iter().filter(|l| l.split([' ', ',']).any(|word| word == *lane)).count();
        assert_eq!(on, 1, "lane `{lane}` should be on exactly one node's line:\n{stdout}");
    }
    figure!("herald nodes:\n{}", stdout.trim_end());
}

/// Issue 8's first proof. Three nodes (configs that differ only in `node_id`) on one
/// schema; ~90 broadcasts submitted to all three destinations through every node's API;
/// the node driving `limited` is SIGKILLed mid-run, and the node that took its lane over
/// is restarted with SIGTERM, so the rate-limited lane changes hands after the dead
/// node's lane lease, at once on SIGTERM, and (as the survivor hands back its surplus)
/// usually once more when the restarted node takes its share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_the_work_through_a_kill_and_a_restart_and_hold_the_rate_limit() {
    let schema = Schema::new().await;
    let sim = Simulator::start(vec![
        ("counting".into(), FaultPlan::healthy().dedupe(false).latency(ms(30))),
        ("dedupe".into(), FaultPlan::healthy().latency(ms(30))),
        ("limited".into(), FaultPlan::healthy().latency(ms(30))),
    ])
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let configs: Vec<PathBuf> = NODE_IDS
        .iter()
        .map(|id| write_config(dir.path(), id, &config(&sim, &schema.url(), id, &LANES)))
        .collect();
    let mut servers: Vec<Option<Server>> = Vec::new();
    for path in &configs {
        servers.push(Some(Server::start(path).await));
    }
    let spread = wait_spread(&live(&servers), &LANES, Duration::from_secs(30)).await;
    check_nodes_command(servers[0].as_ref().unwrap(), NODE_IDS[0], &NODE_IDS, &LANES).await;

    let mut accepted: Vec<String> = Vec::new();
    let wave = BROADCASTS / 3;
    let mut next = 0;
    let mut submit_wave = async |servers: &[Option<Server>], accepted: &mut Vec<String>| {
        let targets = live(servers);
        for _ in 0..wave {
            let (_, server) = targets[next % targets.len()];
            accepted.push(submit(server, &format!("m-{next}"), &LANES).await);
            next += 1;
        }
    };

    // Wave 1 through all three nodes; then kill the node driving `limited` mid-run.
    submit_wave(&servers, &mut accepted).await;
    assert!(sim.wait_until(Duration::from_secs(20), |v| v.requests("limited") >= 8).await);
    let rows = nodes(servers[0].as_ref().unwrap()).await;
    let victim_id = driver(&rows, "limited").expect("nobody drives `limited`");
    let victim = NODE_IDS.iter().position(|id| **id == victim_id).unwrap();
    let killed_at = Instant::now();
    servers[victim].take().unwrap().kill().await;
    let before_kill = sim.view().requests("limited") as usize;

    // Wave 2 through the survivors while `limited` has no driver.
    submit_wave(&servers, &mut accepted).await;
    let viewer = live(&servers)[0].1;
    let heir_id = wait_moved(viewer, "limited", &victim_id, Duration::from_secs(40)).await;
    let kill_handover = killed_at.elapsed();
    // Let the heir send before it goes too, so each handover shows on its own.
    let sending = sim
        .wait_until(Duration::from_secs(10), |v| v.requests("limited") as usize >= before_kill + 5)
        .await;
    assert!(sending, "{heir_id} took `limited` over but sent nothing");

    // Restart the heir gracefully: it hands its lanes over at once and comes back.
    let heir = NODE_IDS.iter().position(|id| **id == heir_id).unwrap();
    let terminated_at = Instant::now();
    servers[heir].take().unwrap().terminate().await;
    let viewer = live(&servers)[0].1;
    let third_id = wait_moved(viewer, "limited", &heir_id, Duration::from_secs(20)).await;
    let term_handover = terminated_at.elapsed();
    servers[heir] = Some(Server::start(&configs[heir]).await);

    // Wave 3 through the two live nodes; the restarted one takes its share back.
    submit_wave(&servers, &mut accepted).await;
    let rejoin = wait_spread(&live(&servers), &LANES, Duration::from_secs(30)).await;

    let all = sim
        .wait_until(Duration::from_secs(60), |v| {
            v.stored("dedupe") >= BROADCASTS as u64
                && v.stored("limited") >= BROADCASTS as u64
                && v.copies("counting").len() >= BROADCASTS
        })
        .await;
    assert!(all, "not every accepted broadcast reached every destination");
    let viewer = live(&servers)[0].1;
    for id in &accepted {
        let view = viewer.wait_converged(id).await;
        assert_eq!(view["state"], "delivered", "{view:#}");
    }

    assert_once_each(&sim, "dedupe", BROADCASTS);
    assert_once_each(&sim, "limited", BROADCASTS);
    let unknown = ambiguous(&schema).await;
    let resent = assert_resent_only_when_ambiguous(&sim, &unknown);
    // By node id: the restarted node's two lives share one, but the first ended its
    // attempts before it exited (SIGTERM), so they cannot overlap the second's.
    let overlapping = overlapping_attempts(&schema).await;
    assert!(overlapping.is_empty(), "attempted by two nodes at once: {overlapping:?}");
    let per_node = attempts_per_node(&schema).await;
    assert!(per_node.len() == 3, "every node should have made attempts: {per_node:?}");

    // The rate limit, measured where the requests arrive.
    let limited = sim.received("limited");
    let arrivals: Vec<Instant> = limited.iter().map(|r| r.at).collect();
    let in_window = max_in_window(&arrivals, WINDOW);
    let in_second = max_in_window(&arrivals, Duration::from_secs(1));
    let gap = |at: Instant| {
        let before = arrivals.iter().filter(|a| **a < at).max();
        let after = arrivals.iter().filter(|a| **a >= at).min();
        match (before, after) {
            (Some(b), Some(a)) => format!("{:?}", a.duration_since(*b)),
            _ => "n/a".into(),
        }
    };
    figure!(
        "cluster test: lanes spread over 3 nodes in {spread:?}, back over 2 after the restart in {rejoin:?}"
    );
    for name in LANES {
        figure!(
            "cluster test: `{name}` got {} requests, stored {}",
            sim.view().requests(name),
            sim.view().stored(name)
        );
    }
    figure!(
        "cluster test: `limited` max {in_window} requests in any {WINDOW:?} window (asserted <= {LIMIT}), {in_second} in any 1 s"
    );
    figure!(
        "cluster test: {victim_id} SIGKILLed after {before_kill} requests at `limited`; the lane moved to {heir_id} after {kill_handover:?} (gap at the simulator {})",
        gap(killed_at)
    );
    figure!(
        "cluster test: {heir_id} SIGTERMed; the lane moved to {third_id} after {term_handover:?} (gap at the simulator {})",
        gap(terminated_at)
    );
    figure!("cluster test: `limited` driven in turn by {}", drivers(&schema, "limited").await);
    figure!(
        "cluster test: {} deliveries recovered as ambiguous, {resent} extra copies at `counting`; attempts per node {per_node:?}",
        unknown.len()
    );
    assert!(
        before_kill < BROADCASTS,
        "everything reached `limited` before the kill; nothing was shown"
    );
    assert!(
        in_window <= LIMIT,
        "`limited` got {in_window} requests within {WINDOW:?}: {:?}",
        arrivals.iter().map(|a| a.duration_since(arrivals[0])).collect::<Vec<_>>()
    );

    for server in servers.into_iter().flatten() {
        server.kill().await;
    }
    sim.shutdown().await;
}

/// The destinations of the connection-loss tests.
const PAIR_LANES: [&str; 2] = ["counting", "dedupe"];

/// How long node A's connections are terminated as they come.
const STORM: Duration = Duration::from_secs(3);

/// How long the proxy stays cut.
const CUT: Duration = Duration::from_secs(5);

/// One submit as the client saw it.
#[derive(Debug, Clone)]
struct Answer {
    key: String,
    /// Which node's API it went to (0 or 1).
    node: usize,
    sent: Instant,
    answered: Instant,
    /// 0 when no HTTP answer came at all.
    status: u16,
    content_type: String,
    body: Value,
}

impl Answer {
    fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Sent after `from` and answered before `to`: wholly inside that span.
    fn within(&self, from: Instant, to: Instant) -> bool {
        self.sent >= from && self.answered <= to
    }
}

async fn try_submit(client: &reqwest::Client, base: &str, node: usize, key: &str) -> Answer {
    let sent = Instant::now();
    let res = client
        .post(format!("{base}/v1/broadcasts"))
        .json(&broadcast(key, &PAIR_LANES))
        .send()
        .await;
    let (status, content_type, body) = match res {
        Ok(res) => {
            let status = res.status().as_u16();
            let content_type = res
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            (status, content_type, res.json().await.unwrap_or(Value::Null))
        }
        Err(error) => (0, String::new(), json!(error.to_string())),
    };
    Answer {
        key: key.to_string(),
        node,
        sent,
        answered: Instant::now(),
        status,
        content_type,
        body,
    }
}

/// A steady stream of submits, alternating between two nodes, each on its own task so a
/// slow answer does not slow the stream.
struct Flow {
    answers: Arc<Mutex<Vec<Answer>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Flow {
    fn start(bases: [String; 2], every: Duration) -> Flow {
        let answers = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (record, stopped) = (Arc::clone(&answers), stop.clone());
        let task = tokio::spawn(async move {
            let client =
                reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
            let mut submits = tokio::task::JoinSet::new();
            // Bounded: 60 s of submits at most.
            for n in 0..(60_000 / every.as_millis().max(1)) as usize {
                if stopped.is_cancelled() {
                    break;
                }
                let (client, base, record) =
                    (client.clone(), bases[n % 2].clone(), Arc::clone(&record));
                submits.spawn(async move {
                    let answer = try_submit(&client, &base, n % 2, &format!("f-{n}")).await;
                    record.lock().unwrap().push(answer);
                });
                tokio::time::sleep(every).await;
            }
            while submits.join_next().await.is_some() {}
        });
        Flow { answers, stop, task }
    }

    /// Answers so far from `node` that were accepted and sent after `after`.
    fn accepted_since(&self, node: usize, after: Instant) -> usize {
        let answers = self.answers.lock().unwrap();
        answers.iter().filter(|a| a.node == node && a.sent >= after && a.accepted()).count()
    }

    /// Stops submitting and waits for every answer.
    async fn finish(self) -> Vec<Answer> {
        self.stop.cancel();
        self.task.await.unwrap();
        let mut answers = self.answers.lock().unwrap().clone();
        answers.sort_by_key(|a| a.sent);
        answers
    }
}

/// `GET /readyz` of one node, one probe after another.
struct Probe {
    probes: Arc<Mutex<Vec<(Instant, Instant, u16)>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Probe {
    fn start(base: String, every: Duration) -> Probe {
        let probes = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (record, stopped) = (Arc::clone(&probes), stop.clone());
        let task = tokio::spawn(async move {
            let client =
                reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
            for _ in 0..(60_000 / every.as_millis().max(1)) {
                if stopped.is_cancelled() {
                    break;
                }
                let sent = Instant::now();
                let status = match client.get(format!("{base}/readyz")).send().await {
                    Ok(res) => res.status().as_u16(),
                    Err(_) => 0,
                };
                record.lock().unwrap().push((sent, Instant::now(), status));
                tokio::time::sleep(every).await;
            }
        });
        Probe { probes, stop, task }
    }

    /// When a probe sent after `after` first answered 200.
    fn ready_since(&self, after: Instant) -> Option<Instant> {
        let probes = self.probes.lock().unwrap();
        probes.iter().find(|(sent, _, status)| *sent >= after && *status == 200).map(|p| p.1)
    }

    async fn finish(self) -> Vec<(Instant, Instant, u16)> {
        self.stop.cancel();
        self.task.await.unwrap();
        self.probes.lock().unwrap().clone()
    }
}

/// Two nodes on one schema with `counting` and `dedupe`; node A reaches the database
/// through `via` when given. Each node's connections carry its own `application_name`.
struct Pair {
    schema: Schema,
    sim: Simulator,
    a: Server,
    b: Server,
    a_application: String,
    _dir: tempfile::TempDir,
}

impl Pair {
    async fn start(via: Option<std::net::SocketAddr>) -> Pair {
        let schema = Schema::new().await;
        let sim = Simulator::start(vec![
            ("counting".into(), FaultPlan::healthy().dedupe(false).latency(ms(150))),
            ("dedupe".into(), FaultPlan::healthy().latency(ms(150))),
        ])
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let application = |node: &str| format!("herald_{}_{node}", schema.name());
        let a_application = application("a");
        let a_url = schema.node_url(via, &a_application);
        let b_url = schema.node_url(None, &application("b"));
        let a = write_config(dir.path(), "node-a", &config(&sim, &a_url, "node-a", &PAIR_LANES));
        let b = write_config(dir.path(), "node-b", &config(&sim, &b_url, "node-b", &PAIR_LANES));
        // Every request refused while the database is away logs an error line of its own;
        // the engine's and the store's warnings are the ones worth reading here.
        let log = "warn,herald_api::error=off,tower_http=off";
        let (a, b) = (Server::start_logging(&a, log).await, Server::start_logging(&b, log).await);
        wait_spread(&[("node-a", &a), ("node-b", &b)], &PAIR_LANES, Duration::from_secs(30)).await;
        Pair { schema, sim, a, b, a_application, _dir: dir }
    }

    /// Submits every key again (same key, same request) until it is accepted, then waits
    /// until every broadcast converged: delivered, one copy each at `dedupe`, resent at
    /// `counting` only after an ambiguous attempt, never attempted by both nodes at once.
    /// Checks that a submit herald accepted was stored (its replay is answered `200` with
    /// the same id) and that one refused as `unavailable` ("nothing was changed") was
    /// not (its replay creates it, `202`). Returns (keys resubmitted, stored although
    /// refused as timed out, ambiguous deliveries, extra copies at `counting`).
    async fn converge(&self, answers: &[Answer]) -> (usize, usize, usize, usize) {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        let mut ids = Vec::new();
        let (mut resubmitted, mut stored_anyway) = (0, 0);
        for answer in answers {
            let mut replay = None;
            for _ in 0..40 {
                let again = try_submit(&client, &self.b.base, 1, &answer.key).await;
                if again.accepted() {
                    replay = Some(again);
                    break;
                }
                tokio::time::sleep(ms(250)).await;
            }
            let replay = replay.unwrap_or_else(|| panic!("{} is never accepted", answer.key));
            let id = replay.body["id"].as_str().unwrap().to_string();
            if answer.accepted() {
                assert_eq!(
                    replay.status, 200,
                    "accepted {} was not stored: {replay:?}",
                    answer.key
                );
                assert_eq!(answer.body["id"], replay.body["id"], "{}", answer.key);
            } else {
                resubmitted += 1;
                let kind = answer.body["type"].as_str().unwrap_or("");
                if kind == "urn:herald:problem:unavailable" {
                    assert_eq!(
                        replay.status, 202,
                        "{} was refused with 'nothing was changed' but had been stored: {answer:?}",
                        answer.key
                    );
                } else if replay.status == 200 {
                    stored_anyway += 1;
                }
            }
            ids.push(id);
        }
        let n = ids.len();
        let all = self
            .sim
            .wait_until(Duration::from_secs(45), |v| {
                v.stored("dedupe") >= n as u64 && v.copies("counting").len() >= n
            })
            .await;
        assert!(all, "not every broadcast reached both destinations");
        for id in &ids {
            let view = self.b.wait_converged(id).await;
            assert_eq!(view["state"], "delivered", "{view:#}");
        }
        assert_once_each(&self.sim, "dedupe", n);
        let unknown = ambiguous(&self.schema).await;
        let extra = assert_resent_only_when_ambiguous(&self.sim, &unknown);
        let overlapping = overlapping_attempts(&self.schema).await;
        assert!(overlapping.is_empty(), "attempted by two nodes at once: {overlapping:?}");
        (resubmitted, stored_anyway, unknown.len(), extra)
    }

    async fn stop(self) {
        self.a.kill().await;
        self.b.kill().await;
        self.sim.shutdown().await;
    }
}

/// Waits (bounded) until node 0 accepted a few submits sent after `after`.
async fn wait_accepting(flow: &Flow, node: usize, after: Instant) {
    for _ in 0..300 {
        if flow.accepted_since(node, after) >= 5 {
            return;
        }
        tokio::time::sleep(ms(50)).await;
    }
    panic!("node {node} accepts nothing after {after:?}");
}

/// Issue 8, connection loss: node A reaches PostgreSQL through a proxy that is cut for
/// 5 s (every connection closed, new ones turned away) while broadcasts flow to both
/// nodes. While cut, A's `/readyz` is 503 and its submits are refused with 503 and a
/// problem document, never a 2xx; node B keeps accepting; A recovers by itself once the
/// proxy is back, and everything submitted before, during and after converges once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_postgres_refuses_submits_recovers_by_itself_and_loses_nothing() {
    let proxy = Proxy::start(server_addr()).await;
    let pair = Pair::start(Some(proxy.addr())).await;
    let flow = Flow::start([pair.a.base.clone(), pair.b.base.clone()], ms(100));
    let probe = Probe::start(pair.a.base.clone(), ms(200));
    assert!(pair.sim.wait_until(Duration::from_secs(20), |v| v.stored("dedupe") >= 10).await);

    proxy.cut().await;
    let cut_at = Instant::now();
    tokio::time::sleep(CUT).await;
    let restored_at = Instant::now();
    proxy.restore();
    wait_accepting(&flow, 0, restored_at).await;
    let ready_at = probe.ready_since(restored_at).expect("node A never became ready again");
    let answers = flow.finish().await;
    let probes = probe.finish().await;

    // During the cut: node A never said yes; node B went on.
    let during: Vec<&Answer> =
        answers.iter().filter(|a| a.node == 0 && a.within(cut_at, restored_at)).collect();
    assert!(during.len() >= 5, "too few submits to node A inside the cut: {}", during.len());
    for answer in &during {
        assert_eq!(answer.status, 503, "node A answered while cut off: {answer:?}");
        assert!(answer.content_type.starts_with("application/problem+json"), "{answer:?}");
        let kind = answer.body["type"].as_str().unwrap_or("");
        assert!(
            ["urn:herald:problem:unavailable", "urn:herald:problem:timed-out"].contains(&kind),
            "{answer:?}"
        );
        assert!(
            answer.body["detail"].as_str().is_some_and(|d| d.contains("database")),
            "{answer:?}"
        );
    }
    let b_during = answers
        .iter()
        .filter(|a| a.node == 1 && a.within(cut_at, restored_at) && a.accepted())
        .count();
    assert!(b_during >= 5, "node B stopped accepting while A was cut off: {b_during}");
    let probes_during: Vec<u16> = probes
        .iter()
        .filter(|(sent, answered, _)| *sent >= cut_at && *answered <= restored_at)
        .map(|p| p.2)
        .collect();
    assert!(!probes_during.is_empty(), "no readiness probe inside the cut");
    assert!(probes_during.iter().all(|s| *s == 503), "readyz while cut off: {probes_during:?}");
    let refused_anywhere = answers.iter().filter(|a| !a.accepted()).count();
    assert!(
        answers.iter().all(|a| a.accepted() || a.status == 503),
        "an answer other than 2xx or 503: {:?}",
        answers.iter().find(|a| !a.accepted() && a.status != 503)
    );

    let (resubmitted, stored_anyway, unknown, extra) = pair.converge(&answers).await;
    figure!(
        "outage test: {} submits ({} to node A inside the {CUT:?} cut, all 503; node B accepted {b_during} meanwhile), {refused_anywhere} refused in all",
        answers.len(),
        during.len()
    );
    figure!(
        "outage test: readyz {} probes inside the cut, all 503; ready again {:?} after the restore",
        probes_during.len(),
        ready_at.duration_since(restored_at)
    );
    figure!(
        "outage test: {resubmitted} resubmitted with their key ({stored_anyway} of them stored despite a timed-out 503), {unknown} deliveries recovered as ambiguous, {extra} extra copies at `counting`; all converged once"
    );
    pair.stop().await;
}

/// Issue 8, connection loss by `pg_terminate_backend`: node A's connections (told apart
/// by their `application_name`) are terminated three times while broadcasts flow to both
/// nodes. Nothing is lost, nothing doubled, A takes submits again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backends_lose_nothing_and_double_nothing() {
    let pair = Pair::start(None).await;
    let flow = Flow::start([pair.a.base.clone(), pair.b.base.clone()], ms(100));
    assert!(pair.sim.wait_until(Duration::from_secs(20), |v| v.stored("dedupe") >= 10).await);

    // For 3 s, every connection node A opens is terminated within ~25 ms: some mid-claim,
    // mid-record or mid-submit, most of them idle in the pool.
    let mut admin = crate::database::admin().await;
    let (mut terminated, mut rounds) = (0, 0);
    let storm = Instant::now();
    while storm.elapsed() < STORM {
        // The function in the select list, not the WHERE clause: PostgreSQL may evaluate
        // WHERE conditions in any order, and must only ever terminate node A's backends.
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(&pair.a_application)
        .fetch_all(&mut admin)
        .await
        .unwrap();
        terminated += killed.into_iter().filter(|k| *k).count();
        rounds += 1;
        tokio::time::sleep(ms(25)).await;
    }
    let last = Instant::now();
    assert!(terminated >= 10, "too few connections of node A terminated: {terminated}");
    wait_accepting(&flow, 0, last).await;
    let answers = flow.finish().await;
    assert!(
        answers.iter().all(|a| a.accepted() || a.status == 503),
        "an answer other than 2xx or 503: {:?}",
        answers.iter().find(|a| !a.accepted() && a.status != 503)
    );
    let refused = answers.iter().filter(|a| !a.accepted()).count();
    let (resubmitted, stored_anyway, unknown, extra) = pair.converge(&answers).await;
    figure!(
        "terminate test: {terminated} of node A's backends terminated in {rounds} rounds over {STORM:?}; {} submits, {refused} refused with 503, {resubmitted} resubmitted ({stored_anyway} stored despite a timed-out 503), {unknown} recovered as ambiguous, {extra} extra copies at `counting`; all converged once",
        answers.len()
    );
    pair.stop().await;
}

/// A node whose configuration lacks a destination that a live node still sends to (a
/// rolling change of the configuration) leaves that destination's deliveries alone; once
/// no live node configures it, a starting node holds them, as on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_only_another_live_node_configures_is_not_held() {
    let schema = Schema::new().await;
    // `extra` answers 503 for ever, so its deliveries stay pending while nodes come and go.
    let sim = Simulator::start(vec![
        ("dedupe".into(), FaultPlan::healthy()),
        ("extra".into(), FaultPlan::healthy().status_always(503)),
    ])
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = schema.url();
    let with_extra =
        write_config(dir.path(), "node-a", &config(&sim, &url, "node-a", &["dedupe", "extra"]));
    let without = write_config(dir.path(), "node-b", &config(&sim, &url, "node-b", &["dedupe"]));

    let a = Server::start(&with_extra).await;
    let id = submit(&a, "rolling-1", &["dedupe", "extra"]).await;
    let state_of_extra = |view: &Value| {
        view["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["destination"] == "extra")
            .map(|d| d["state"].as_str().unwrap().to_string())
            .unwrap()
    };
    // A's first beat has told the database what it configures.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nodes(&a).await.iter().any(|n| n.id == "node-a" && n.alive) {
        assert!(Instant::now() < deadline, "node-a never showed up in /v1/nodes");
        tokio::time::sleep(ms(50)).await;
    }
    let b = Server::start(&without).await;
    let view = b.get(&format!("/v1/broadcasts/{id}")).await;
    // Pending, or in flight when A is sending it at that moment; never held.
    assert_ne!(state_of_extra(&view), "held", "B held what A still sends: {view:#}");

    // A leaves; B restarts: now no live node configures `extra`.
    a.terminate().await;
    b.terminate().await;
    let b = Server::start(&without).await;
    let view = b.get(&format!("/v1/broadcasts/{id}")).await;
    assert_eq!(state_of_extra(&view), "held", "{view:#}");
    b.terminate().await;
    sim.shutdown().await;
}
