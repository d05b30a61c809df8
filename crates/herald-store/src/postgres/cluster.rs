//! [`Cluster`] on PostgreSQL: node heartbeats, lane leases and pauses in three small
//! tables (migration 0002), and work announcements over `LISTEN`/`NOTIFY`.
//!
//! Lane leases are taken with one conditional upsert per lane (`ON CONFLICT DO UPDATE
//! ... WHERE` the old lease ran out), so two nodes racing for a free lane cannot both
//! win: the row lock makes the second see the first's fresh lease. Announcements go on
//! a channel named after the schema (tests and tenants in other schemas of the database
//! do not hear them), each payload `node_id`, a tab and a destination; a node ignores its
//! own. A lost notification (the listening connection dropped) only delays work until the
//! lane's fallback poll.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use herald_core::Timestamp;
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Row};
use tokio::sync::mpsc;

use super::unavailable;
use crate::StoreError;
use crate::cluster::{Beat, Beaten, Cluster, FORGET_AFTER, LaneClaim, NodeView};

/// Channel payloads longer than this are not sent (PostgreSQL's limit is 8000 bytes).
const MAX_PAYLOAD: usize = 7900;

/// One node's handle on the cluster in a PostgreSQL database (see the module docs).
pub struct PgCluster {
    pool: PgPool,
    node_id: String,
    channel: String,
    outbox: mpsc::UnboundedSender<String>,
    taken: Mutex<bool>,
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCluster")
            .field("node_id", &self.node_id)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl PgCluster {
    /// The cluster handle of node `node_id` on `pool`'s database and schema. Starts the
    /// task that sends this node's announcements, so it must run inside a runtime.
    ///
    /// # Errors
    /// `Unavailable` when the schema cannot be read.
    pub async fn new(pool: PgPool, node_id: &str) -> Result<PgCluster, StoreError> {
        let schema: String = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&pool)
            .await
            .map_err(|error| unavailable(&error))?;
        // Channel names are identifiers of at most 63 bytes; schema names herald accepts
        // are plain words.
        let mut channel = format!("herald_work_{schema}");
        channel.truncate(63);
        let (outbox, mut queued) = mpsc::unbounded_channel::<String>();
        let sender = pool.clone();
        let (from, to) = (node_id.to_owned(), channel.clone());
        tokio::spawn(async move {
            while let Some(first) = queued.recv().await {
                // Everything queued meanwhile goes in one round trip.
                let mut batch = vec![first];
                while let Ok(next) = queued.try_recv() {
                    batch.push(next);
                }
                batch.sort();
                batch.dedup();
                let payloads: Vec<String> =
                    batch.iter().map(|destination| format!("{from}\t{destination}")).collect();
                let payloads: Vec<String> =
                    payloads.into_iter().filter(|p| p.len() <= MAX_PAYLOAD).collect();
                let sent = sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
                    .bind(&to)
                    .bind(&payloads)
                    .execute(&sender)
                    .await;
                if let Err(error) = sent {
                    tracing::debug!(%error, "Could not announce work to the other nodes; they find it at their next poll.");
                }
            }
        });
        Ok(PgCluster {
            pool,
            node_id: node_id.to_owned(),
            channel,
            outbox,
            taken: Mutex::new(false),
        })
    }
}

#[async_trait]
impl Cluster for PgCluster {
    async fn beat(&self, beat: Beat) -> Result<Beaten, StoreError> {
        let now = beat.now.as_millis();
        let mut tx = self.pool.begin().await.map_err(|e| unavailable(&e))?;
        // Inserted, or taken over from a quiet or same incarnation; a live other
        // incarnation keeps the row and this process learns it is a duplicate.
        let written = sqlx::query(
            "INSERT INTO nodes (node_id, incarnation, address, version, started_at, heartbeat_at, expires_at, destinations) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (node_id) DO UPDATE SET incarnation = EXCLUDED.incarnation, \
                 address = EXCLUDED.address, version = EXCLUDED.version, \
                 started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at, \
                 expires_at = EXCLUDED.expires_at, destinations = EXCLUDED.destinations \
             WHERE nodes.incarnation = EXCLUDED.incarnation OR nodes.expires_at <= $6",
        )
        .bind(&beat.node_id)
        .bind(&beat.incarnation)
        .bind(&beat.address)
        .bind(&beat.version)
        .bind(beat.started_at.as_millis())
        .bind(now)
        .bind(beat.now.add(beat.ttl).as_millis())
        .bind(serde_json::to_string(&beat.destinations).unwrap_or_else(|_| "[]".into()))
        .execute(&mut *tx)
        .await
        .map_err(|e| unavailable(&e))?
        .rows_affected();
        sqlx::query("DELETE FROM nodes WHERE expires_at < $1")
            .bind(now.saturating_sub(millis(FORGET_AFTER)))
            .execute(&mut *tx)
            .await
            .map_err(|e| unavailable(&e))?;
        let live: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM nodes WHERE expires_at > $1")
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| unavailable(&e))?;
        let paused = sqlx::query("SELECT destination, reason FROM paused_destinations")
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| unavailable(&e))?
            .into_iter()
            .map(|row| (row.get::<String, _>(0), row.get::<Option<String>, _>(1)))
            .collect::<HashMap<_, _>>();
        tx.commit().await.map_err(|e| unavailable(&e))?;
        Ok(Beaten { live: usize::try_from(live).unwrap_or(0), duplicate: written == 0, paused })
    }

    async fn hold_lanes(&self, claim: LaneClaim) -> Result<Vec<String>, StoreError> {
        let now = claim.now.as_millis();
        let until = claim.now.add(claim.ttl).as_millis();
        let mut tx = self.pool.begin().await.map_err(|e| unavailable(&e))?;
        let mut owned: Vec<String> = sqlx::query_scalar(
            "UPDATE lanes SET expires_at = $3 \
             WHERE owner = $1 AND expires_at > $2 AND destination = ANY($4) \
             RETURNING destination",
        )
        .bind(&claim.node_id)
        .bind(now)
        .bind(until)
        .bind(&claim.candidates)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| unavailable(&e))?;
        for name in &claim.candidates {
            if owned.len() >= claim.share {
                break;
            }
            if owned.contains(name) {
                continue;
            }
            let taken = sqlx::query(
                "INSERT INTO lanes (destination, owner, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (destination) DO UPDATE SET owner = EXCLUDED.owner, \
                     expires_at = EXCLUDED.expires_at \
                 WHERE lanes.expires_at <= $4",
            )
            .bind(name)
            .bind(&claim.node_id)
            .bind(until)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| unavailable(&e))?
            .rows_affected();
            if taken == 1 {
                owned.push(name.clone());
            }
        }
        tx.commit().await.map_err(|e| unavailable(&e))?;
        owned.sort();
        Ok(owned)
    }

    async fn drop_lane(&self, node_id: &str, destination: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM lanes WHERE destination = $1 AND owner = $2")
            .bind(destination)
            .bind(node_id)
            .execute(&self.pool)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(())
    }

    async fn leave(&self, node_id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(|e| unavailable(&e))?;
        for statement in
            ["DELETE FROM lanes WHERE owner = $1", "DELETE FROM nodes WHERE node_id = $1"]
        {
            sqlx::query(statement)
                .bind(node_id)
                .execute(&mut *tx)
                .await
                .map_err(|e| unavailable(&e))?;
        }
        tx.commit().await.map_err(|e| unavailable(&e))
    }

    async fn set_paused(
        &self,
        destination: &str,
        paused: bool,
        reason: Option<String>,
    ) -> Result<(), StoreError> {
        let statement = if paused {
            sqlx::query(
                "INSERT INTO paused_destinations (destination, reason) VALUES ($1, $2) \
                 ON CONFLICT (destination) DO UPDATE SET reason = EXCLUDED.reason",
            )
            .bind(destination)
            .bind(reason)
        } else {
            sqlx::query("DELETE FROM paused_destinations WHERE destination = $1").bind(destination)
        };
        statement.execute(&self.pool).await.map_err(|e| unavailable(&e))?;
        Ok(())
    }

    async fn nodes(&self, now: Timestamp) -> Result<Vec<NodeView>, StoreError> {
        let now = now.as_millis();
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(|e| unavailable(&e))?;
        let rows = sqlx::query(
            "SELECT node_id, address, version, started_at, heartbeat_at, expires_at, destinations \
             FROM nodes ORDER BY node_id",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| unavailable(&e))?;
        let lanes = sqlx::query(
            "SELECT owner, destination FROM lanes WHERE expires_at > $1 ORDER BY destination",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| unavailable(&e))?;
        tx.commit().await.map_err(|e| unavailable(&e))?;
        let mut by_owner: HashMap<String, Vec<String>> = HashMap::new();
        for row in lanes {
            by_owner.entry(row.get(0)).or_default().push(row.get(1));
        }
        Ok(rows
            .into_iter()
            .map(|row| {
                let node_id: String = row.get(0);
                NodeView {
                    lanes: by_owner.remove(&node_id).unwrap_or_default(),
                    node_id,
                    address: row.get(1),
                    version: row.get(2),
                    started_at: Timestamp::from_millis(row.get(3)),
                    heartbeat_at: Timestamp::from_millis(row.get(4)),
                    alive: row.get::<i64, _>(5) > now,
                    // Written by `beat` from a list of names; anything else reads as none.
                    destinations: serde_json::from_str(&row.get::<String, _>(6))
                        .unwrap_or_default(),
                }
            })
            .collect())
    }

    fn announce(&self, destinations: &[String]) {
        for destination in destinations {
            // The sending task lives as long as this handle; a send fails only after.
            let _ = self.outbox.send(destination.clone());
        }
    }

    fn announcements(&self) -> mpsc::UnboundedReceiver<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut taken = self.taken.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if *taken {
            return rx;
        }
        *taken = true;
        let (pool, channel, me) = (self.pool.clone(), self.channel.clone(), self.node_id.clone());
        tokio::spawn(async move {
            let mut listener = loop {
                match listen(&pool, &channel).await {
                    Ok(listener) => break listener,
                    Err(_) if pool.is_closed() || tx.is_closed() => return,
                    Err(error) => {
                        tracing::warn!(%error, "Cannot listen for other nodes' work yet; retrying.");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        if tx.is_closed() {
                            return;
                        }
                    }
                }
            };
            loop {
                // `recv` reconnects by itself after the connection dropped (announcements
                // sent meanwhile are lost; the lanes' fallback poll covers them).
                match listener.recv().await {
                    Ok(notification) => {
                        let Some((from, destination)) = notification.payload().split_once('\t')
                        else {
                            continue;
                        };
                        if from != me && tx.send(destination.to_owned()).is_err() {
                            return;
                        }
                    }
                    Err(_) if pool.is_closed() || tx.is_closed() => return,
                    Err(error) => {
                        tracing::warn!(%error, "Lost the notification connection; reconnecting.");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        if tx.is_closed() {
                            return;
                        }
                    }
                }
            }
        });
        rx
    }
}

async fn listen(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    Ok(listener)
}
