//! Claim latency on PostgreSQL with an empty table and with a million terminal rows: the
//! due-work index is partial, so the second should cost what the first does.
//!
//! ```text
//! cargo run -p herald-store --example pg_claim_bench --release -- [ROWS] [ROUNDS] [BATCH]
//! ```
//!
//! Uses `HERALD_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`),
//! in two schemas of its own that it drops afterwards. Each round puts `BATCH` due
//! deliveries in each lane (with their broadcasts and messages), times one claim of
//! `BATCH` on each, alternating which goes first, and records them delivered, so
//! terminal rows also grow as a real lane's do.

use std::time::{Duration, Instant};

use herald_core::{Progress, State, Timestamp};
use herald_store::postgres::{PgOptions, PgStore};
use herald_store::{ClaimRequest, Record, Store};
use sqlx::{Connection, PgConnection};

const NOW: Timestamp = Timestamp(1_750_000_000_000);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let rows = args.first().copied().unwrap_or(1_000_000);
    let rounds = args.get(1).copied().unwrap_or(300);
    let batch = args.get(2).copied().unwrap_or(64);
    let url = std::env::var("HERALD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    println!("claims of {batch} due deliveries, {rounds} rounds each, on {}", redacted(&url));
    let pid = std::process::id();
    let schemas =
        [format!("herald_claim_bench_empty_{pid}"), format!("herald_claim_bench_full_{pid}")];
    let res = compare(&url, &schemas, rows, rounds, batch).await;
    for schema in &schemas {
        drop_schema(&url, schema).await?;
    }
    let [empty, full] = res?;
    for (terminal, times) in [(0, empty), (rows, full)] {
        println!(
            "{terminal:>9} terminal rows: median {:?}, p90 {:?}, p99 {:?}",
            times[times.len() / 2],
            times[times.len() * 9 / 10],
            times[times.len() * 99 / 100]
        );
    }
    Ok(())
}

/// Sets up an empty lane and one beside `rows` terminal rows, then claims on both in
/// alternation, so load from elsewhere on the machine falls on both alike.
async fn compare(
    url: &str,
    schemas: &[String; 2],
    rows: usize,
    rounds: usize,
    batch: usize,
) -> Result<[Vec<Duration>; 2], Box<dyn std::error::Error>> {
    let empty = Lane::new(url, &schemas[0], 0).await?;
    let full = Lane::new(url, &schemas[1], rows).await?;
    // The seeding's writes are flushed now, not by a checkpoint during the measurement.
    let mut conn = PgConnection::connect(url).await?;
    sqlx::query("CHECKPOINT").execute(&mut conn).await?;
    let mut lanes = [empty, full];
    let mut times = [Vec::with_capacity(rounds), Vec::with_capacity(rounds)];
    for round in 0..rounds {
        for idx in [round % 2, 1 - round % 2] {
            times[idx].push(lanes[idx].round(round, batch).await?);
        }
    }
    for lane in &lanes {
        lane.store.close().await;
    }
    for t in &mut times {
        t.sort();
    }
    Ok(times)
}

fn redacted(url: &str) -> String {
    match url.split_once('@') {
        Some((_, host)) => format!("postgres://…@{host}"),
        None => url.to_string(),
    }
}

async fn drop_schema(url: &str, schema: &str) -> Result<(), sqlx::Error> {
    let mut conn = PgConnection::connect(url).await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&mut conn).await?;
    Ok(())
}

/// One schema with a store and a connection to put due work in place.
struct Lane {
    store: PgStore,
    conn: PgConnection,
}

impl Lane {
    /// A fresh schema seeded with `terminal` rows.
    async fn new(
        url: &str,
        schema: &str,
        terminal: usize,
    ) -> Result<Lane, Box<dyn std::error::Error>> {
        let mut conn = PgConnection::connect(url).await?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&mut conn).await?;
        sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut conn).await?;
        sqlx::query(&format!("SET search_path TO {schema}")).execute(&mut conn).await?;
        let options = PgOptions { schema: Some(schema.into()), ..PgOptions::default() };
        let store = PgStore::connect(url, "bench", &options).await?;
        if terminal > 0 {
            let started = Instant::now();
            // Ten destinations, the lane among them; one in ten failed, the rest delivered.
            sqlx::query(
                "INSERT INTO deliveries (id, broadcast_id, seq, position, destination, state, \
                 fail_reason, attempts, max_attempts, next_attempt_at, expires_at, delivered_at, \
                 created_at) \
                 SELECT 'd_old_' || g, 'b_old_' || g, 0, 0, \
                        CASE WHEN g % 10 = 0 THEN 'lane' ELSE 'other-' || (g % 10) END, \
                        CASE WHEN g % 10 = 3 THEN 'failed' ELSE 'delivered' END, \
                        CASE WHEN g % 10 = 3 THEN 'permanent' END, \
                        1, 8, $1 - g, $1 - g, $1 - g, $1 - g \
                 FROM generate_series(1, $2) g",
            )
            .bind(NOW.0)
            .bind(i64::try_from(terminal)?)
            .execute(&mut conn)
            .await?;
            println!("seeded {terminal} terminal rows in {:?}", started.elapsed());
        }
        sqlx::query("VACUUM ANALYZE deliveries").execute(&mut conn).await?;
        Ok(Lane { store, conn })
    }

    /// Puts `batch` due deliveries in the lane, times their claim, records them delivered.
    async fn round(
        &mut self,
        round: usize,
        batch: usize,
    ) -> Result<Duration, Box<dyn std::error::Error>> {
        let conn = &mut self.conn;
        let body = r#"{"title":"bench","body":"","severity":"info"}"#;
        let first = i64::try_from(round * batch)?;
        let last = first + i64::try_from(batch)? - 1;
        for sql in [
            "INSERT INTO broadcasts (id, fingerprint, requested, destinations, created_at) \
             SELECT 'b_' || g, 'bench', '[\"lane\"]', '[\"lane\"]', $1 FROM generate_series($2, $3) g",
            "INSERT INTO messages (broadcast_id, seq, body, created_at) \
             SELECT 'b_' || g, 0, $4, $1 FROM generate_series($2, $3) g",
            "INSERT INTO deliveries (id, broadcast_id, seq, position, destination, state, attempts, \
             max_attempts, next_attempt_at, expires_at, created_at) \
             SELECT 'd_' || g, 'b_' || g, 0, 0, 'lane', 'pending', 0, 8, $1, $1 + 86400000, $1 \
             FROM generate_series($2, $3) g",
        ] {
            sqlx::query(sql)
                .bind(NOW.0)
                .bind(first)
                .bind(last)
                .bind(body)
                .execute(&mut *conn)
                .await?;
        }
        let request = ClaimRequest {
            destination: "lane".into(),
            limit: batch,
            now: NOW,
            lease_until: NOW.add(Duration::from_secs(30)),
            probe: false,
        };
        let started = Instant::now();
        let claimed = self.store.claim(request).await?;
        let took = started.elapsed();
        assert_eq!(claimed.work.len(), batch, "the claim did not find the round's deliveries");
        let records = claimed
            .work
            .iter()
            .map(|w| Record {
                delivery_id: w.delivery_id.clone(),
                lease_token: w.lease_token,
                progress: Progress {
                    state: State::Delivered,
                    attempts: 1,
                    delivered_at: Some(NOW),
                    ..w.progress.clone()
                },
                attempt: None,
                now: NOW,
            })
            .collect();
        self.store.record(records).await?;
        Ok(took)
    }
}
