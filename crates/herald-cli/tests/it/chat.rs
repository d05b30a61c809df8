//! The chat and ticket kinds end to end: a real `herald serve` configured with the exact
//! keys of the issue, delivering over loopback to the simulator's Slack and Jira
//! dialects; the verdict is read from the destinations' own state (messages, threads,
//! issues), never from herald's bookkeeping alone.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use herald_simulator::{
    Fate, FaultPlan, GRAPH_CHANNEL_ID, GRAPH_REFRESH_TOKEN, GRAPH_TEAM_ID, JIRA_EMAIL,
    JIRA_PROJECT, JIRA_TOKEN, SimView, Simulator, slack_hook_key,
};
use serde_json::{Value, json};

use crate::ALLOW_LOOPBACK;
use crate::process::Server;

/// How long a test waits for convergence before it gives up.
const PATIENCE: Duration = Duration::from_secs(120);

/// A herald configuration in a temporary directory: `[server]` plus `destinations`.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new(destinations: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("herald.toml");
        let text = format!(
            "{ALLOW_LOOPBACK}[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\n\
             shutdown_grace = \"1s\"\n\n{destinations}",
            dir.path().join("herald.db").display()
        );
        std::fs::write(&config, text).unwrap();
        Setup { dir, config }
    }

    fn path(&self) -> &Path {
        let _ = &self.dir;
        &self.config
    }
}

/// A `slack` destination on simulator endpoint `endpoint`, with `extra` settings.
fn slack(name: &str, sim: &SimView, endpoint: &str, extra: &str) -> String {
    format!(
        "[destinations.{name}]\nkind = \"slack\"\ntoken = \"xoxb-herald-test\"\n\
         channel = \"C0123456789\"\nbase_url = \"{}\"\n{extra}\n",
        sim.slack_api_url(endpoint)
    )
}

/// A `jira` destination on simulator endpoint `endpoint`, with `extra` settings.
fn jira(name: &str, sim: &SimView, endpoint: &str, extra: &str) -> String {
    format!(
        "[destinations.{name}]\nkind = \"jira\"\nurl = \"{}\"\nemail = \"{JIRA_EMAIL}\"\n\
         token = \"{JIRA_TOKEN}\"\nproject = \"{JIRA_PROJECT}\"\nissue_type = \"Incident\"\n{extra}\n",
        sim.jira_url(endpoint)
    )
}

/// A `teams-graph` destination on simulator endpoint `endpoint`, with `extra` settings.
fn graph(name: &str, sim: &SimView, endpoint: &str, extra: &str) -> String {
    format!(
        "[destinations.{name}]\nkind = \"teams-graph\"\ntenant = \"contoso.onmicrosoft.com\"\n\
         client_id = \"00000000-0000-0000-0000-000000000001\"\n\
         refresh_token = \"{GRAPH_REFRESH_TOKEN}\"\nteam_id = \"{GRAPH_TEAM_ID}\"\n\
         channel_id = \"{GRAPH_CHANNEL_ID}\"\nbase_url = \"{}\"\nlogin_url = \"{}\"\n{extra}\n",
        sim.graph_base_url(endpoint),
        sim.graph_login_url(endpoint)
    )
}

/// Fast retries, so a test spends its time on what it checks.
const QUICK: &str = "backoff_base = \"100ms\"\nbackoff_max = \"500ms\"\ntimeout = \"1s\"\n";

async fn submit(server: &Server, destinations: &[&str], title: &str) -> String {
    let (status, body) = server
        .post(
            "/v1/broadcasts",
            json!({"destinations": destinations, "message": {
                "title": title,
                "body": "Error rate **38 %** since 12:01.",
                "severity": "critical",
                "fields": {"service": "checkout"},
            }}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn update(server: &Server, id: &str, title: &str, severity: &str) {
    let (status, body) = server
        .post(
            &format!("/v1/broadcasts/{id}/updates"),
            json!({"message": {"title": title, "severity": severity}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
}

/// Broadcast `id` once every delivery is terminal or held (bounded by `PATIENCE`).
async fn settled(server: &Server, id: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let view = server.get(&format!("/v1/broadcasts/{id}")).await;
        let done = view["deliveries"].as_array().is_some_and(|ds| {
            ds.iter().all(|d| {
                matches!(d["state"].as_str(), Some("delivered" | "failed" | "cancelled" | "held"))
            })
        });
        if done {
            return view;
        }
        assert!(Instant::now() < deadline, "broadcast {id} did not settle: {view:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The delivery of `destination` at thread position `seq`.
fn delivery<'v>(view: &'v Value, destination: &str, seq: u64) -> &'v Value {
    view["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["destination"] == destination && d["seq"] == seq)
        .unwrap_or_else(|| panic!("no delivery {destination}/{seq} in {view:#}"))
}

fn str_of<'v>(value: &'v Value, key: &str) -> &'v str {
    value[key].as_str().unwrap_or_else(|| panic!("no string {key} in {value}"))
}

/// 50 broadcasts to one Slack channel behind a 1 message/s bucket: herald's default pace
/// for `slack` spreads them, every 429 is honoured to its `Retry-After`, no attempt is
/// burned by throttling, and all 50 arrive exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_broadcasts_to_one_slack_channel_are_paced_and_all_arrive_once() {
    let retry_after = Duration::from_secs(1);
    let sim = Simulator::start(vec![(
        "workspace".into(),
        FaultPlan::healthy().dedupe(false).rate_limit(1, retry_after),
    )])
    .await
    .unwrap();
    let view = sim.view();
    // No rate_limit: the kind's default (1/s) must apply.
    let setup = Setup::new(&slack("ops-slack", &view, "workspace", ""));
    let server = Server::start(setup.path()).await;
    let started = Instant::now();
    let mut ids = Vec::new();
    for n in 1..=50 {
        ids.push(submit(&server, &["ops-slack"], &format!("P2: alert {n}")).await);
    }
    let mut deliveries = Vec::new();
    for id in &ids {
        let settled = settled(&server, id).await;
        let d = delivery(&settled, "ops-slack", 0).clone();
        assert_eq!(d["state"], "delivered", "{d:#}");
        assert_eq!(d["attempts"], 1, "a throttle burned an attempt: {d:#}");
        deliveries.push(d);
    }
    let elapsed = started.elapsed();

    // Exactly one message per delivery, each under the ref herald recorded.
    let messages = view.slack_messages("workspace");
    assert_eq!(messages.len(), 50, "the channel holds {} messages", messages.len());
    for d in &deliveries {
        let id = str_of(d, "id");
        assert_eq!(view.copies_of("workspace", id), 1, "{id}");
        let message = messages.iter().find(|m| m.delivery_id() == Some(id)).unwrap();
        assert_eq!(d["remote_ref"], format!("{}:{}", message.channel, message.ts));
    }

    // Every 429 honoured: no post reached the channel between a 429 and its Retry-After
    // (a post already on its way when the 429 was answered may land just after it).
    let received = view.received("workspace");
    let in_flight = Duration::from_millis(100);
    let mut violations = Vec::new();
    for (i, r) in received.iter().enumerate() {
        if !matches!(r.fate, Fate::Throttled { .. }) {
            continue;
        }
        for later in &received[i + 1..] {
            let gap = later.at.duration_since(r.at);
            if gap > in_flight && gap + Duration::from_millis(50) < retry_after {
                violations.push(gap);
            }
        }
    }
    let throttled = view.stats("workspace").throttled;
    eprintln!(
        "50 broadcasts to a 1/s Slack channel: {} requests, {throttled} answered 429, all 50 \
         delivered in {elapsed:.1?}",
        received.len()
    );
    assert!(violations.is_empty(), "posts inside a Retry-After: {violations:?}");
    assert!(elapsed >= Duration::from_secs(45), "50 posts at 1/s took only {elapsed:?}");
    // Pacing at the bucket's own rate draws a 429 only when scheduling jitter puts two
    // posts inside one second: 6 on a quiet machine, 11 seen at load 6. Without pacing
    // every burst would draw one 429 per waiting post, hundreds in all.
    assert!(throttled <= 20, "herald drew {throttled} 429s from a 1/s channel it paces at 1/s");
    server.kill().await;
    sim.shutdown().await;
}

/// Lost answers are reconciled by look-up, never by a second post: Slack's store-then-
/// time-out and `internal_error` after storing, and Jira's store-then-time-out with a
/// search that lags behind; each ends delivered with the destination's own ref and one
/// copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_posts_are_found_by_look_up_and_never_posted_twice() {
    let sim = Simulator::start(vec![
        ("slack-hang".into(), FaultPlan::healthy().dedupe(false).hang_first(1)),
        ("slack-lies".into(), FaultPlan::healthy().dedupe(false).store_then_fail(1, 200)),
        (
            "jira-lag".into(),
            FaultPlan::healthy().dedupe(false).hang_first(1).search_lag(Duration::from_secs(2)),
        ),
        ("graph-hang".into(), FaultPlan::healthy().dedupe(false).hang_first(1)),
    ])
    .await
    .unwrap();
    let view = sim.view();
    let setup = Setup::new(&format!(
        "{}{}{}{}",
        slack("hang", &view, "slack-hang", QUICK),
        slack("lies", &view, "slack-lies", QUICK),
        jira("lag", &view, "jira-lag", &format!("{QUICK}lookup_grace = \"10s\"\n")),
        graph("teams", &view, "graph-hang", QUICK),
    ));
    let server = Server::start(setup.path()).await;
    let id = submit(&server, &["hang", "lies", "lag", "teams"], "P1: checkout is down").await;
    let settled = settled(&server, &id).await;

    for (name, endpoint) in [("hang", "slack-hang"), ("lies", "slack-lies")] {
        let d = delivery(&settled, name, 0);
        assert_eq!(d["state"], "delivered", "{d:#}");
        let messages = view.slack_messages(endpoint);
        assert_eq!(messages.len(), 1, "{name}: {messages:#?}");
        assert_eq!(view.copies_of(endpoint, str_of(d, "id")), 1);
        assert_eq!(d["remote_ref"], format!("{}:{}", messages[0].channel, messages[0].ts));
    }
    let d = delivery(&settled, "lag", 0);
    assert_eq!(d["state"], "delivered", "{d:#}");
    let issues = view.jira_issues("jira-lag");
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert_eq!(d["remote_ref"], issues[0].key.as_str());
    assert!(view.jira_searches("jira-lag") >= 1, "Jira was never searched");
    let d = delivery(&settled, "teams", 0);
    assert_eq!(d["state"], "delivered", "{d:#}");
    let messages = view.graph_messages("graph-hang");
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0].key.as_deref(), Some(str_of(d, "id")));
    assert_eq!(d["remote_ref"], messages[0].id.as_str());

    // The attempt log shows the doubt and how it was settled.
    let log = server.get(&format!("/v1/broadcasts/{id}/attempts")).await;
    let outcomes = |destination: &str| -> Vec<String> {
        log["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["destination"] == destination)
            .map(|a| a["outcome"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(outcomes("hang"), ["unknown", "delivered"]);
    assert_eq!(outcomes("lies"), ["unknown", "delivered"]);
    assert_eq!(outcomes("teams"), ["unknown", "delivered"]);
    let lag = outcomes("lag");
    assert_eq!(lag.first().map(String::as_str), Some("unknown"), "{lag:?}");
    assert_eq!(lag.last().map(String::as_str), Some("delivered"), "{lag:?}");
    assert!(lag.iter().any(|o| o == "reconciling"), "the lagging search was trusted: {lag:?}");
    server.kill().await;
    sim.shutdown().await;
}

/// A permanent error (bad token, unknown channel, unknown project) fails its delivery at
/// once with the destination's own error code, and the other destinations of the
/// broadcast are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_fail_at_once_in_the_destinations_words_and_spare_the_others() {
    let plan = FaultPlan::healthy().dedupe(false);
    let sim = Simulator::start(vec![
        ("slack".into(), plan.clone()),
        ("jira".into(), plan.clone()),
        ("graph".into(), plan),
    ])
    .await
    .unwrap();
    let view = sim.view();
    let bad_token =
        slack("bad-token", &view, "slack", QUICK).replace("xoxb-herald-test", "xoxb-bad");
    let bad_channel =
        slack("bad-channel", &view, "slack", QUICK).replace("C0123456789", "CMISSING0001");
    let bad_project = jira("bad-project", &view, "jira", QUICK)
        .replace(&format!("project = \"{JIRA_PROJECT}\""), "project = \"NOPE\"");
    let bad_grant = graph("bad-grant", &view, "graph", QUICK)
        .replace(GRAPH_REFRESH_TOKEN, "revoked-refresh-token");
    let no_channel = graph("no-channel", &view, "graph", QUICK)
        .replace(GRAPH_CHANNEL_ID, "19:gone@thread.tacv2");
    let setup = Setup::new(&format!(
        "{bad_token}{bad_channel}{bad_project}{bad_grant}{no_channel}{}",
        slack("good", &view, "slack", QUICK)
    ));
    let server = Server::start(setup.path()).await;
    let all = ["bad-token", "bad-channel", "bad-project", "bad-grant", "no-channel", "good"];
    let id = submit(&server, &all, "P1: down").await;
    let settled = settled(&server, &id).await;
    for (name, code) in [
        ("bad-token", "invalid_auth"),
        ("bad-channel", "channel_not_found"),
        ("bad-project", "project"),
        ("bad-grant", "invalid_grant"),
        ("no-channel", "NotFound"),
    ] {
        let d = delivery(&settled, name, 0);
        assert_eq!(
            (d["state"].as_str(), d["failure_reason"].as_str()),
            (Some("failed"), Some("permanent")),
            "{d:#}"
        );
        assert_eq!(d["attempts"], 1, "a permanent error was retried: {d:#}");
        assert!(str_of(d, "last_error").contains(code), "{name}: {}", d["last_error"]);
    }
    let good = delivery(&settled, "good", 0);
    assert_eq!(good["state"], "delivered");
    assert_eq!(good["attempts"], 1);
    assert_eq!(view.slack_messages("slack").len(), 1, "only the good destination posted");
    assert!(view.jira_issues("jira").is_empty());
    assert!(view.graph_messages("graph").is_empty());
    server.kill().await;
    sim.shutdown().await;
}

/// Slack incoming webhooks and Teams Workflows cannot be searched: after a post that
/// timed out, `hold` parks the delivery with no second post, and `resend` posts at most
/// one more copy. A Workflows `202` is delivered but shown as unconfirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsearchable_kinds_hold_or_resend_a_timeout_as_configured() {
    let plan = FaultPlan::healthy().dedupe(false).hang_first(1);
    let sim = Simulator::start(vec![
        ("hook-hold".into(), plan.clone()),
        ("hook-resend".into(), plan.clone()),
        ("flow-hold".into(), plan.clone()),
        ("flow-resend".into(), plan),
    ])
    .await
    .unwrap();
    let view = sim.view();
    let destination = |name: &str, kind: &str, url: String, policy: &str| {
        format!(
            "[destinations.{name}]\nkind = \"{kind}\"\nurl = \"{url}\"\n\
             on_unknown = \"{policy}\"\n{QUICK}\n"
        )
    };
    let setup = Setup::new(&format!(
        "{}{}{}{}",
        destination("hook-hold", "slack-webhook", view.slack_hook_url("hook-hold"), "hold"),
        destination("hook-resend", "slack-webhook", view.slack_hook_url("hook-resend"), "resend"),
        destination("flow-hold", "teams-workflow", view.teams_workflow_url("flow-hold"), "hold"),
        destination(
            "flow-resend",
            "teams-workflow",
            view.teams_workflow_url("flow-resend"),
            "resend"
        ),
    ));
    let server = Server::start(setup.path()).await;
    let all = ["hook-hold", "hook-resend", "flow-hold", "flow-resend"];
    let id = submit(&server, &all, "P1: checkout is down").await;
    let settled = settled(&server, &id).await;

    for name in ["hook-hold", "flow-hold"] {
        let held = delivery(&settled, name, 0);
        assert_eq!(held["state"], "held", "{held:#}");
        assert_eq!(held["attempts"], 1);
    }
    assert_eq!(view.slack_hook_posts("hook-hold").len(), 1, "hold posted a second copy");
    assert_eq!(view.teams_workflow_cards("flow-hold").len(), 1, "hold posted a second card");
    for name in ["hook-resend", "flow-resend"] {
        let resent = delivery(&settled, name, 0);
        assert_eq!(resent["state"], "delivered", "{resent:#}");
        assert_eq!(resent["attempts"], 2);
    }
    let posts = view.slack_hook_posts("hook-resend");
    assert_eq!(posts.len(), 2, "resend may add exactly one copy: {posts:#?}");
    assert_eq!(view.copies_of("hook-resend", &slack_hook_key(&posts[0].text)), 2);
    assert_eq!(delivery(&settled, "hook-resend", 0)["unconfirmed"], false);
    let cards = view.teams_workflow_cards("flow-resend");
    assert_eq!(cards.len(), 2, "resend may add exactly one card: {cards:#?}");
    let flow = delivery(&settled, "flow-resend", 0);
    assert_eq!(view.copies_of("flow-resend", str_of(flow, "id")), 2);
    assert_eq!(flow["unconfirmed"], true, "a 202 only says a flow run was queued: {flow:#}");
    server.kill().await;
    sim.shutdown().await;
}

/// An incident opened, updated twice and resolved, while each original needs retries and
/// herald is SIGKILLed in between: Slack holds one message with three thread replies
/// (or, in edit mode, one message edited three times), Jira one issue with three
/// comments and the final transition, Teams one thread of a message and three replies,
/// each in order and without a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_thread_stays_whole_and_in_order_across_retries_and_a_kill() {
    let plan = FaultPlan::healthy().dedupe(false).fail_first(2, 503);
    let sim = Simulator::start(vec![
        ("slack-thread".into(), plan.clone()),
        ("slack-edit".into(), plan.clone()),
        ("jira".into(), plan.clone()),
        ("graph".into(), plan),
    ])
    .await
    .unwrap();
    let view = sim.view();
    let setup = Setup::new(&format!(
        "{}{}{}{}",
        slack("thread", &view, "slack-thread", QUICK),
        slack("edit", &view, "slack-edit", &format!("{QUICK}update_mode = \"edit\"\n")),
        jira("tickets", &view, "jira", &format!("{QUICK}transition_on_resolve = \"Done\"\n")),
        graph("teams", &view, "graph", QUICK),
    ));
    let server = Server::start(setup.path()).await;
    let destinations = ["thread", "edit", "tickets", "teams"];
    let id = submit(&server, &destinations, "P1: checkout is down").await;
    update(&server, &id, "Update 1: failover started", "critical").await;
    update(&server, &id, "Update 2: error rate falling", "warning").await;
    update(&server, &id, "Resolved: checkout is back", "resolved").await;
    // Kill herald once the first original reached a destination: the rest of the thread
    // is still to come, some of it mid-retry.
    let first = sim
        .wait_until(PATIENCE, |v| {
            !v.slack_messages("slack-thread").is_empty()
                || !v.slack_messages("slack-edit").is_empty()
                || !v.jira_issues("jira").is_empty()
                || !v.graph_messages("graph").is_empty()
        })
        .await;
    assert!(first, "no original arrived anywhere");
    server.kill().await;
    let server = Server::start(setup.path()).await;
    let settled = settled(&server, &id).await;
    for d in settled["deliveries"].as_array().unwrap() {
        assert_eq!(d["state"], "delivered", "{d:#}");
    }
    let delivery_id = |name: &str, seq: u64| str_of(delivery(&settled, name, seq), "id").to_owned();

    // Slack, thread mode: one message, three replies in order, one copy of each.
    let messages = view.slack_messages("slack-thread");
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let original = &messages[0];
    assert_eq!(original.delivery_id(), Some(delivery_id("thread", 0).as_str()));
    let replies: Vec<Option<&str>> = original.replies.iter().map(|r| r.delivery_id()).collect();
    let expected: Vec<String> = (1..=3).map(|seq| delivery_id("thread", seq)).collect();
    assert_eq!(replies, expected.iter().map(|s| Some(s.as_str())).collect::<Vec<_>>());
    assert!(original.replies[2].text.contains("Resolved"), "{:?}", original.replies[2].text);

    // Slack, edit mode: one message, edited three times, showing the last update.
    let messages = view.slack_messages("slack-edit");
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0].edits, 3, "{messages:#?}");
    assert!(messages[0].replies.is_empty());
    assert!(messages[0].text.contains("Resolved"), "{:?}", messages[0].text);

    // Jira: one issue, three comments in order, then the transition to Done.
    let issues = view.jira_issues("jira");
    assert_eq!(issues.len(), 1, "{issues:#?}");
    let issue = &issues[0];
    assert_eq!(delivery(&settled, "tickets", 0)["remote_ref"], issue.key.as_str());
    let comments: Vec<&str> = issue.comments.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(comments.len(), 3, "{comments:#?}");
    for (comment, (seq, title)) in comments.iter().zip([
        (1, "failover started"),
        (2, "error rate falling"),
        (3, "checkout is back"),
    ]) {
        assert!(comment.contains(title), "comment {seq} is out of order: {comments:#?}");
        assert!(comment.contains(&delivery_id("tickets", seq)), "{comment}");
    }
    assert_eq!(issue.status, "Done");
    assert_eq!(issue.transitions.len(), 1, "{:?}", issue.transitions);

    // Teams (Graph): one message, its three replies in order in its thread.
    let messages = view.graph_messages("graph");
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0].key.as_deref(), Some(delivery_id("teams", 0).as_str()));
    let replies: Vec<Option<&str>> = messages[0].replies.iter().map(|r| r.key.as_deref()).collect();
    let expected: Vec<String> = (1..=3).map(|seq| delivery_id("teams", seq)).collect();
    assert_eq!(replies, expected.iter().map(|s| Some(s.as_str())).collect::<Vec<_>>());
    server.kill().await;
    sim.shutdown().await;
}
