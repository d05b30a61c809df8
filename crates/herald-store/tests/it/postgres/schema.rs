//! What the PostgreSQL schema promises: migrations that several nodes may run at once,
//! a claim whose plan reads the partial due-work index however many terminal rows
//! there are, terminal counters that always equal a `GROUP BY` of the rows, and
//! retention in small batches; and the scratch schemas `herald bench` makes. This module looks at the tables with SQL directly, which
//! the conformance suite never does.

use std::time::{Duration, Instant};

use herald_store::postgres::{MIGRATIONS, PgOptions, PgStore};
use herald_store::{ClaimRequest, Store};
use sqlx::Row;
use tokio::task::JoinSet;

use super::{Schema, admin_in, database_url};
use crate::fixture::*;
use crate::retention::{self, BATCH, Counted, days_ago, prune_all};

/// Per (destination, state): a `GROUP BY` count of the delivery rows.
async fn group_by(schema: &Schema) -> Counted {
    let mut conn = admin_in(schema).await;
    sqlx::query("SELECT destination, state, COUNT(*) FROM deliveries GROUP BY destination, state")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|row| {
            let n: i64 = row.get(2);
            ((row.get(0), row.get(1)), u64::try_from(n).unwrap())
        })
        .collect()
}

async fn versions(schema: &Schema) -> Vec<i32> {
    let mut conn = admin_in(schema).await;
    sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

/// Nodes starting at once on an empty schema: every one connects, each migration is
/// applied once, and `herald migrate` afterwards finds nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_starting_at_once_apply_each_migration_once() {
    let schema = Schema::new().await;
    let mut starts = JoinSet::new();
    for n in 0..6 {
        let options = schema.options();
        starts.spawn(async move {
            PgStore::connect(&database_url(), &format!("node-{n}"), &options).await.unwrap()
        });
    }
    let mut nodes = Vec::new();
    while let Some(node) = starts.join_next().await {
        nodes.push(node.unwrap());
    }
    let all: Vec<i32> = (1..=i32::try_from(MIGRATIONS.len()).unwrap()).collect();
    assert_eq!(versions(&schema).await, all);
    let again = PgStore::migrate(&database_url(), &schema.options()).await.unwrap();
    assert_eq!(again.applied, Vec::<u32>::new());
    assert_eq!(again.schema, schema.name);
    create(&nodes[0], broadcast(&["a"], at(0))).await;
}

#[tokio::test]
async fn migrate_reports_what_it_applied_and_refuses_a_newer_schema() {
    let schema = Schema::new().await;
    let done = PgStore::migrate(&database_url(), &schema.options()).await.unwrap();
    assert_eq!(done.applied, (1..=u32::try_from(MIGRATIONS.len()).unwrap()).collect::<Vec<_>>());
    assert_eq!(done.version as usize, MIGRATIONS.len());

    let mut conn = admin_in(&schema).await;
    sqlx::query("INSERT INTO schema_migrations (version) VALUES (99)")
        .execute(&mut conn)
        .await
        .unwrap();
    match PgStore::connect(&database_url(), "node", &schema.options()).await {
        Err(herald_store::StoreError::Unavailable(message)) => {
            assert!(message.contains("newer") && message.contains("upgrade herald"), "{message}")
        }
        res => panic!("a schema from a newer herald was accepted: {:?}", res.map(|_| ())),
    }

    let missing = PgOptions { schema: Some("herald_no_such_schema".into()), ..schema.options() };
    match PgStore::connect(&database_url(), "node", &missing).await {
        Err(herald_store::StoreError::Unavailable(message)) => {
            assert!(message.contains("create it first"), "{message}")
        }
        res => panic!("a missing schema was accepted: {:?}", res.map(|_| ())),
    }
}

/// The due-work query reads the partial index, not the table, with 20,000 terminal rows
/// (and statistics that say so) next to a few pending ones.
#[tokio::test]
async fn the_claim_reads_the_partial_due_work_index_among_many_terminal_rows() {
    let schema = Schema::new().await;
    let store = schema.connect("node-a").await;
    for _ in 0..20 {
        create(&store, broadcast(&["lane", "other"], at(0))).await;
    }
    let mut conn = admin_in(&schema).await;
    sqlx::query(
        "INSERT INTO deliveries (id, broadcast_id, seq, position, destination, state, attempts, \
         max_attempts, next_attempt_at, expires_at, delivered_at, created_at) \
         SELECT 'd_seed_' || g, 'b_seed_' || g, 0, 0, \
                CASE WHEN g % 2 = 0 THEN 'lane' ELSE 'other' END, \
                CASE WHEN g % 10 = 0 THEN 'failed' ELSE 'delivered' END, \
                1, 8, $1, $1, $1, $1 \
         FROM generate_series(1, 20000) g",
    )
    .bind(days_ago(3).0)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("UPDATE deliveries SET fail_reason = 'permanent' WHERE state = 'failed'")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("ANALYZE deliveries").execute(&mut conn).await.unwrap();

    let plan = store.explain_claim(&claim_request("lane", 64, at(10))).await.unwrap();
    eprintln!("{plan}");
    assert!(plan.contains("deliveries_due"), "the claim does not use the partial index:\n{plan}");
    assert!(!plan.contains("Seq Scan"), "the claim scans a table:\n{plan}");
    assert_eq!(claim(&store, "lane", 64, at(10)).await.len(), 20);
}

/// A breaker's probe reads the retried rows' own index: with 20,000 never-tried
/// deliveries pending for its destination it neither sorts nor scans them (it did, once
/// per probe, which stalled claims behind a large backlog).
#[tokio::test]
async fn a_probe_reads_the_retried_index_not_the_whole_backlog() {
    let schema = Schema::new().await;
    let store = schema.connect("node-a").await;
    let mut conn = admin_in(&schema).await;
    sqlx::query(
        "INSERT INTO deliveries (id, broadcast_id, seq, position, destination, state, attempts, \
         max_attempts, next_attempt_at, expires_at, created_at) \
         SELECT 'd_seed_' || g, 'b_seed_' || g, 0, 0, 'lane', 'pending', \
                CASE WHEN g % 5000 = 0 THEN 1 ELSE 0 END, 8, $1 + g, $1 + 86400000, $1 \
         FROM generate_series(1, 20000) g",
    )
    .bind(at(0).0)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("ANALYZE deliveries").execute(&mut conn).await.unwrap();

    let probe = ClaimRequest { probe: true, ..claim_request("lane", 1, at(3600)) };
    let plan = store.explain_claim(&probe).await.unwrap();
    eprintln!("{plan}");
    assert!(plan.contains("deliveries_retry_due"), "the probe does not use its index:\n{plan}");
    assert!(
        !plan.contains("Sort") && !plan.contains("Seq Scan"),
        "the probe sorts or scans:\n{plan}"
    );
}

#[tokio::test]
async fn prune_takes_only_terminal_broadcasts_past_their_age_with_everything_they_own() {
    let schema = Schema::new().await;
    let store = schema.connect("node-a").await;
    retention::prune_takes_only_old_terminal_broadcasts(&store, async || group_by(&schema).await)
        .await;
}

#[tokio::test]
async fn the_counters_equal_a_group_by_count_after_random_operations() {
    let schema = Schema::new().await;
    let store = schema.connect("node-a").await;
    retention::counters_equal_a_group_by_count_after_random_operations(&store, async || {
        group_by(&schema).await
    })
    .await;
}

/// Writes `n` delivered broadcasts with one delivery, one message and one attempt each,
/// created at `created_at`, with the counter rows a real run would have left.
async fn seed_delivered(schema: &Schema, from: usize, n: usize, created_at: i64) {
    let mut conn = admin_in(schema).await;
    let body = serde_json::to_string(&message("seeded")).unwrap();
    let range = (i64::try_from(from).unwrap(), i64::try_from(from + n - 1).unwrap());
    for sql in [
        "INSERT INTO broadcasts (id, fingerprint, requested, destinations, created_at) \
         SELECT 'b_seed_' || g, 'seeded', '[\"ops\"]', '[\"ops\"]', $1 FROM generate_series($2, $3) g",
        "INSERT INTO messages (broadcast_id, seq, body, created_at) \
         SELECT 'b_seed_' || g, 0, $4, $1 FROM generate_series($2, $3) g",
        "INSERT INTO deliveries (id, broadcast_id, seq, position, destination, state, attempts, \
         max_attempts, next_attempt_at, expires_at, delivered_at, created_at) \
         SELECT 'd_seed_' || g, 'b_seed_' || g, 0, 0, 'ops', 'delivered', 1, 8, $1, $1, $1, $1 \
         FROM generate_series($2, $3) g",
        "INSERT INTO attempts (delivery_id, broadcast_id, destination, node_id, number, \
         started_at, duration_ms, outcome) \
         SELECT 'd_seed_' || g, 'b_seed_' || g, 'ops', 'seed', 1, $1, 100, 'delivered' \
         FROM generate_series($2, $3) g",
    ] {
        sqlx::query(sql)
            .bind(created_at)
            .bind(range.0)
            .bind(range.1)
            .bind(&body)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    sqlx::query(
        "INSERT INTO destination_counts (destination, state, shard, n, last_delivered_at) \
         VALUES ('ops', 'delivered', 0, $1, $2) ON CONFLICT (destination, state, shard) \
         DO UPDATE SET n = destination_counts.n + EXCLUDED.n",
    )
    .bind(i64::try_from(n).unwrap())
    .bind(created_at)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(&mut conn).await.unwrap();
}

/// 50,000 terminal broadcasts: `destination_stats` costs what it costs at 1,000 (the
/// terminal counts come from counters), and retention deletes them in small batches
/// while submits go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_terminal_rows_prune_in_small_batches_without_holding_up_submits() {
    let _alone = HEAVY.lock().await;
    let schema = Schema::new().await;
    let store = std::sync::Arc::new(schema.connect("node-a").await);
    seed_delivered(&schema, 1, 1_000, days_ago(10).0).await;
    let small = retention::stats_time(store.as_ref()).await;
    seed_delivered(&schema, 1_001, 49_000, days_ago(10).0).await;
    let large = retention::stats_time(store.as_ref()).await;
    eprintln!("destination_stats: {small:?} at 1,000 rows, {large:?} at 50,000 rows");
    assert!(
        large < small * 3 + Duration::from_millis(5),
        "destination_stats grew with the rows: {small:?} at 1,000, {large:?} at 50,000"
    );

    let pruning = {
        let store = std::sync::Arc::clone(&store);
        tokio::spawn(async move { prune_all(store.as_ref(), BATCH).await })
    };
    let mut submits = Vec::new();
    while !pruning.is_finished() {
        let started = Instant::now();
        create(store.as_ref(), broadcast(&["ops"], T0)).await;
        submits.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let batches = pruning.await.unwrap();
    let pruned: usize = batches.iter().map(|(p, _)| p.broadcasts).sum();
    let mut times: Vec<Duration> = batches.iter().map(|(_, t)| *t).collect();
    times.sort();
    submits.sort();
    let (median_batch, p99_batch) = (times[times.len() / 2], times[times.len() * 99 / 100]);
    let median_submit = submits[submits.len() / 2];
    eprintln!(
        "pruned {pruned} broadcasts in {} batches, batch median {median_batch:?}, p99 {p99_batch:?}; \
         {} submits during pruning, median {median_submit:?}, slowest {:?}",
        batches.len(),
        submits.len(),
        submits.last().unwrap()
    );
    assert_eq!(pruned, 50_000);
    assert!(batches.len() >= 50_000 / BATCH, "the prune did not go in small batches");
    // Generous bounds for a debug build on shared cores; they catch a batch that grew
    // with the table or a submit that waited for a whole prune.
    assert!(p99_batch < Duration::from_millis(500), "1 % of the batches took over {p99_batch:?}");
    assert!(submits.len() >= 3, "too few submits ran during the prune to judge: {submits:?}");
    assert!(median_submit < Duration::from_millis(100), "submits waited {median_submit:?}");

    let stats = store.destination_stats().await.unwrap();
    assert_eq!((stats[0].delivered, stats[0].pending), (0, submits.len() as u64), "{stats:?}");
    assert_eq!(stats[0].last_delivered_at, Some(days_ago(10)), "the last success was forgotten");
    assert_eq!(retention::counters(store.as_ref()).await, group_by(&schema).await);
}

/// `herald bench` gives each run a schema: made once, refused twice, dropped with what is
/// in it, and a name that is not a plain identifier is never spliced into SQL.
#[tokio::test]
async fn a_scratch_schema_is_created_once_dropped_with_its_tables_and_named_plainly() {
    let url = database_url();
    let name = format!("herald_test_scratch_{}", std::process::id());
    PgStore::drop_schema(&url, &name).await.unwrap();
    PgStore::create_schema(&url, &name).await.unwrap();
    assert!(PgStore::create_schema(&url, &name).await.is_err(), "it exists already");
    let options =
        PgOptions { schema: Some(name.clone()), max_connections: 2, ..PgOptions::default() };
    let store = PgStore::connect(&url, "node-a", &options).await.unwrap();
    store.close().await;
    PgStore::drop_schema(&url, &name).await.unwrap();
    PgStore::drop_schema(&url, &name).await.unwrap();
    let mut conn = super::admin().await;
    let left: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = $1",
    )
    .bind(&name)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(left, 0);
    for bad in ["", "a b", "x;DROP SCHEMA public", "1abc", "a-b"] {
        assert!(PgStore::create_schema(&url, bad).await.is_err(), "{bad:?}");
    }
}
