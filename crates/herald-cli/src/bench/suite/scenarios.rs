//! The scenarios, one method each: what each starts, loads, waits for and reports. The
//! phases they are made of (a load on herald, the raw baseline) are in `phase`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::bench::load::{Summary, Target};
use crate::bench::report::{Measured, Run};
use crate::bench::sink::Plan;
use crate::bench::suite::phase::{Phase, PhaseSpec, Sink, dir_mib, failures};
use crate::bench::suite::{OUTAGE_HEALTHY, Suite, names};
use crate::bench::{percentile_ms, wall_nanos};

impl Suite<'_> {
    pub(super) async fn throughput(
        &mut self,
        webhooks: usize,
        clients: usize,
    ) -> anyhow::Result<Measured> {
        let o = self.options;
        let herald_names = names("bench", webhooks);
        let herald = self.start_herald(&herald_names, "", None).await?;
        let phase = self
            .herald_phase(
                &herald,
                PhaseSpec {
                    names: herald_names.clone(),
                    count: o.broadcasts,
                    clients,
                    rate: None,
                    record: true,
                    plans: HashMap::new(),
                    measured: herald_names,
                    timed: None,
                },
            )
            .await;
        let peak = herald.peak_rss("peak_rss");
        herald.kill().await?;
        let phase = phase?;
        let raw = self
            .raw_phase(webhooks, o.broadcasts * webhooks, clients, None, HashMap::new(), None)
            .await?;
        let mut m = measured(
            format!("{} broadcasts x {webhooks} webhook(s), {clients} clients", o.broadcasts),
            &phase,
            &raw,
        );
        m.run.herald.extend(peak);
        m.run.herald.insert("answer_p50_ms".into(), phase.load.answer_p50_ms);
        m.run.herald.insert("answer_p99_ms".into(), phase.load.answer_p99_ms);
        percent_of_raw(&mut m.run);
        Ok(m)
    }

    /// The fixed-rate case with `Some(rate)`, the one-client case with `None`.
    pub(super) async fn latency(&mut self, rate: Option<f64>) -> anyhow::Result<Measured> {
        let o = self.options;
        let webhooks = o.latency_webhooks;
        let seconds = o.latency_for.as_secs_f64();
        let (count, clients, timed, case) = match rate {
            Some(rate) => (
                (rate * seconds).ceil() as usize,
                1,
                None,
                format!("{rate} broadcasts/s x {webhooks} webhooks, open loop"),
            ),
            None => (usize::MAX / 2, 1, Some(seconds), format!("1 client x {webhooks} webhooks")),
        };
        let herald_names = names("bench", webhooks);
        let herald = self.start_herald(&herald_names, "", None).await?;
        let phase = self
            .herald_phase(
                &herald,
                PhaseSpec {
                    names: herald_names.clone(),
                    count,
                    clients,
                    rate,
                    record: true,
                    plans: HashMap::new(),
                    measured: herald_names,
                    timed,
                },
            )
            .await;
        let peak = herald.peak_rss("peak_rss");
        herald.kill().await?;
        let phase = phase?;
        let raw_count = if timed.is_some() { count } else { count * webhooks };
        let raw_rate = rate.map(|r| r * webhooks as f64);
        let raw =
            self.raw_phase(webhooks, raw_count, clients, raw_rate, HashMap::new(), timed).await?;
        let mut m = measured(case, &phase, &raw);
        m.run.herald.extend(peak);
        if let Some(rate) = rate {
            m.run.herald.insert("offered_broadcasts_per_s".into(), rate);
            m.run.herald.insert("load_lag_ms".into(), phase.load.lag_ms);
        }
        Ok(m)
    }

    pub(super) async fn backlog(&mut self) -> anyhow::Result<Measured> {
        let o = self.options;
        let webhooks = o.backlog_webhooks;
        let broadcasts = o.backlog.div_ceil(webhooks);
        // A port nothing listens on until the sink comes up there after the restart.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("cannot find a free port for the unreachable destinations")?
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let herald_names = names("bench", webhooks);
        let policy = "max_attempts = 1000\nbackoff_max = \"5s\"\n";
        let dir = self.fresh_dir("backlog")?;
        let deployment = self.deploy(&dir, &herald_names, policy, &base).await?;
        let herald = self.spawn_herald(&deployment, true).await?;
        let mut notes = Vec::new();
        let seeding = self
            .load(
                Target::Herald,
                &herald.url(),
                &herald_names,
                broadcasts,
                32,
                None,
                None,
                o.max_seconds,
            )
            .await;
        let seeding = match seeding {
            Ok(seeding) => seeding,
            Err(error) => {
                herald.kill().await?;
                return Err(error);
            }
        };
        if seeding.cut {
            notes.push(format!(
                "--max-seconds cut the seeding at {} of {broadcasts} broadcasts",
                seeding.accepted
            ));
        }
        if seeding.failed > 0 {
            notes.push(failures(&seeding));
        }
        // Let the lanes settle into waiting before reading the resident set.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let queued_rss = herald.memory_mib("VmRSS");
        let queued_rss_sum = herald.shared.then(|| herald.memory_sum_mib("VmRSS"));
        let seeding_peak = herald.peak_rss("seeding_peak_rss");
        // Every node at once, as a power cut would.
        herald.kill().await?;
        // On PostgreSQL the rows are the server's, not in this directory.
        let database_mib = (!deployment.shared).then(|| dir_mib(&dir));
        let expected = seeding.accepted * webhooks as u64;

        let sink = Sink::spawn(&self.exe, &format!("127.0.0.1:{port}")).await?;
        self.reset_at(&sink.base, false, HashMap::new()).await?;
        // From the first node's spawn; the cluster is not waited for: its settling is
        // part of the restart.
        let spawned_ns = wall_nanos();
        let herald = self.spawn_herald(&deployment, false).await?;
        let cpu_before = herald.cpu_seconds();
        let deadline = Instant::now() + Duration::from_secs_f64(o.max_seconds);
        let waited = self.wait_delivered(&sink.base, &herald_names, expected, deadline).await;
        let cpu = herald.cpu_seconds() - cpu_before;
        let drain_peak = herald.peak_rss("drain_peak_rss");
        herald.kill().await?;
        let (stats, done) = waited?;
        let delivered = stats.delivered(&herald_names);
        if !done {
            notes.push(format!(
                "--max-seconds ({}) cut the drain at {delivered} of {expected} deliveries",
                o.max_seconds
            ));
        }
        let mut run = Run { notes, ..Run::default() };
        let h = &mut run.herald;
        h.insert("pending_deliveries".into(), expected as f64);
        h.insert("seeding_s".into(), seeding.elapsed_s());
        h.insert("seeding_broadcasts_per_s".into(), seeding.accepted as f64 / seeding.elapsed_s());
        h.insert("queued_rss_mib".into(), queued_rss);
        if let Some(sum) = queued_rss_sum {
            h.insert("queued_rss_sum_mib".into(), sum);
        }
        h.extend(seeding_peak);
        if let Some(mib) = database_mib {
            h.insert("database_mib".into(), mib);
        }
        h.insert("deliveries".into(), delivered as f64);
        if stats.first_ns > 0 {
            h.insert(
                "restart_to_first_delivery_ms".into(),
                (stats.first_ns.saturating_sub(spawned_ns)) as f64 / 1e6,
            );
            let span = stats.last_ns.saturating_sub(stats.first_ns) as f64 / 1e9;
            if span > 0.0 {
                h.insert("deliveries_per_s".into(), delivered as f64 / span);
            }
        }
        h.extend(drain_peak);
        if delivered > 0 {
            h.insert("cpu_ms_per_delivery".into(), cpu * 1000.0 / delivered as f64);
        }
        let timeline = {
            let phase = Phase {
                load: Summary { started_ns: spawned_ns, ..Summary::default() },
                stats,
                latencies: Vec::new(),
                cpu_seconds: f64::NAN,
                delivered,
                expected,
                notes: Vec::new(),
            };
            phase.timeline()
        };
        // The raw baseline on the same sink: up to 200,000 requests from 32 clients.
        let raw_count = o.backlog.min(200_000);
        let raw_names = names("raw", webhooks);
        self.seq += 1;
        let prefix = format!("raw{}", self.seq);
        self.reset_at(&sink.base, false, HashMap::new()).await?;
        let load = self
            .load_at(
                Target::Sink,
                &sink.base,
                &raw_names,
                raw_count,
                32,
                None,
                None,
                o.max_seconds,
                &prefix,
            )
            .await?;
        let stats = self.stats_at(&sink.base, true).await?;
        let raw = Phase {
            delivered: stats.delivered(&raw_names),
            expected: raw_count as u64,
            load,
            stats,
            latencies: Vec::new(),
            cpu_seconds: f64::NAN,
            notes: Vec::new(),
        };
        run.raw.insert("deliveries_per_s".into(), raw.rate());
        run.raw.insert("deliveries".into(), raw.delivered as f64);
        percent_of_raw(&mut run);
        drop(sink);
        Ok(Measured {
            case: format!(
                "{} pending deliveries ({broadcasts} broadcasts x {webhooks} webhooks)",
                o.backlog
            ),
            run,
            timeline,
            raw_timeline: raw.timeline(),
            ..Measured::default()
        })
    }

    pub(super) async fn outage(&mut self) -> anyhow::Result<Measured> {
        let o = self.options;
        let herald_names = names("bench", OUTAGE_HEALTHY + 1);
        let healthy: Vec<String> = herald_names[..OUTAGE_HEALTHY].to_vec();
        let dead = herald_names[OUTAGE_HEALTHY].clone();
        let seconds = o.outage_for.as_secs_f64();
        let count = (o.outage_rate * seconds).ceil() as usize;
        let spec = |plans| PhaseSpec {
            names: herald_names.clone(),
            count,
            clients: 1,
            rate: Some(o.outage_rate),
            record: true,
            plans,
            measured: healthy.clone(),
            timed: None,
        };
        // Without the outage first, then with it, each on a fresh herald.
        let herald = self.start_herald(&herald_names, "", None).await?;
        let calm = self.herald_phase(&herald, spec(HashMap::new())).await;
        herald.kill().await?;
        let calm = calm?;
        let herald = self.start_herald(&herald_names, "", None).await?;
        // The outage starts with the load: the sink's window is set at the phase's reset.
        let stormy = self
            .herald_phase_with(&herald, spec(HashMap::new()), Some((dead.clone(), o.outage_for)))
            .await;
        let peak = herald.peak_rss("peak_rss");
        herald.kill().await?;
        let stormy = stormy?;
        let raw_count = ((o.outage_rate * seconds.min(10.0)).ceil() as usize) * OUTAGE_HEALTHY;
        let raw = self
            .raw_phase(
                OUTAGE_HEALTHY,
                raw_count,
                1,
                Some(o.outage_rate * OUTAGE_HEALTHY as f64),
                HashMap::new(),
                None,
            )
            .await?;
        let mut m = measured(
            format!(
                "{} broadcasts/s x ({OUTAGE_HEALTHY} healthy + 1 dead) for {}",
                o.outage_rate,
                humantime::format_duration(o.outage_for)
            ),
            &stormy,
            &raw,
        );
        m.run.notes.extend(calm.notes.iter().map(|n| format!("without the outage: {n}")));
        let h = &mut m.run.herald;
        let calm_p99 = percentile_ms(&calm.latencies, 99.0);
        let stormy_p99 = percentile_ms(&stormy.latencies, 99.0);
        h.insert("healthy_p50_ms".into(), percentile_ms(&stormy.latencies, 50.0));
        h.insert("healthy_p99_ms".into(), stormy_p99);
        h.insert("healthy_p50_ms_without_outage".into(), percentile_ms(&calm.latencies, 50.0));
        h.insert("healthy_p99_ms_without_outage".into(), calm_p99);
        h.insert("healthy_p99_change_pct".into(), (stormy_p99 - calm_p99) / calm_p99 * 100.0);
        let dead_counts = stormy.stats.destinations.get(&dead).copied().unwrap_or_default();
        h.insert("requests_to_dead".into(), dead_counts.rejected as f64);
        h.insert("dead_deliveries_expected".into(), stormy.load.accepted as f64);
        h.insert(
            "dead_requests_per_broadcast".into(),
            dead_counts.rejected as f64 / stormy.load.accepted.max(1) as f64,
        );
        h.extend(peak);
        m.run.raw.insert("healthy_p99_ms".into(), percentile_ms(&raw.latencies, 99.0));
        m.run.raw.insert("healthy_p50_ms".into(), percentile_ms(&raw.latencies, 50.0));
        Ok(m)
    }

    pub(super) async fn retry(&mut self) -> anyhow::Result<Measured> {
        let o = self.options;
        let webhooks = 5;
        let herald_names = names("bench", webhooks);
        let failing = |names: &[String]| {
            names
                .iter()
                .map(|n| (n.clone(), Plan { fail_rate: o.retry_fail_rate, down_until_ns: 0 }))
                .collect::<HashMap<_, _>>()
        };
        let policy = "max_attempts = 50\nbackoff_base = \"100ms\"\nbackoff_max = \"2s\"\n";
        let herald = self.start_herald(&herald_names, policy, None).await?;
        let phase = self
            .herald_phase(
                &herald,
                PhaseSpec {
                    names: herald_names.clone(),
                    count: o.retry_broadcasts,
                    clients: 8,
                    rate: None,
                    record: false,
                    plans: failing(&herald_names),
                    measured: herald_names.clone(),
                    timed: None,
                },
            )
            .await;
        let peak = herald.peak_rss("peak_rss");
        herald.kill().await?;
        let phase = phase?;
        let raw_names = names("raw", webhooks);
        let raw = self
            .raw_phase(webhooks, o.retry_broadcasts * webhooks, 8, None, failing(&raw_names), None)
            .await?;
        let mut m = measured(
            format!(
                "{} broadcasts x {webhooks} webhooks, {:.0} % random 503s",
                o.retry_broadcasts,
                o.retry_fail_rate * 100.0
            ),
            &phase,
            &raw,
        );
        let per = |p: &Phase, names: &[String]| {
            p.stats.requests(names) as f64 / p.delivered.max(1) as f64
        };
        m.run.herald.insert("requests_per_delivered".into(), per(&phase, &herald_names));
        m.run.herald.insert("requests".into(), phase.stats.requests(&herald_names) as f64);
        m.run.herald.extend(peak);
        m.run.raw.insert("requests_per_delivered".into(), per(&raw, &raw_names));
        m.run.raw.insert("ideal_requests_per_delivered".into(), 1.0 / (1.0 - o.retry_fail_rate));
        Ok(m)
    }
}

/// A case's figures from herald's phase and the raw phase.
fn measured(case: String, phase: &Phase, raw: &Phase) -> Measured {
    let mut run =
        Run { herald: phase.metrics("e2e"), raw: raw.metrics("e2e"), notes: phase.notes.clone() };
    run.notes.extend(raw.notes.iter().cloned());
    run.raw.remove("expected_deliveries");
    Measured {
        case,
        run,
        latencies: phase.latencies.clone(),
        raw_latencies: raw.latencies.clone(),
        timeline: phase.timeline(),
        raw_timeline: raw.timeline(),
    }
}

/// herald's deliveries per second as a share of the raw baseline's, %.
fn percent_of_raw(run: &mut Run) {
    if let (Some(herald), Some(raw)) =
        (run.herald.get("deliveries_per_s"), run.raw.get("deliveries_per_s"))
    {
        let pct = herald / raw * 100.0;
        run.herald.insert("pct_of_raw_rate".into(), pct);
    }
}
