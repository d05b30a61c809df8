//! The behavioural contract of `Cluster` (node liveness and lane leases), as bodies any
//! backend runs: each takes a function that opens the member handle of a node on one
//! shared, empty cluster. Time is always an argument.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use herald_store::cluster::{Beat, Cluster, FORGET_AFTER, LaneClaim, LocalCluster};

use crate::fixture::{T0, at};

/// Opens node `id`'s handle on the cluster under test.
pub type Member<'a> = &'a dyn Fn(&str) -> Arc<dyn Cluster>;

const TTL: Duration = Duration::from_secs(10);

fn beat(node: &str, incarnation: &str, now: herald_core::Timestamp) -> Beat {
    Beat {
        node_id: node.into(),
        incarnation: incarnation.into(),
        started_at: T0,
        now,
        ttl: TTL,
        address: format!("127.0.0.1:80{}", node.len()),
        version: "0.0.0".into(),
        destinations: vec![format!("{node}-hook"), "shared".into()],
    }
}

fn claim(node: &str, candidates: &[&str], share: usize, now: herald_core::Timestamp) -> LaneClaim {
    LaneClaim {
        node_id: node.into(),
        candidates: candidates.iter().map(|c| c.to_string()).collect(),
        share,
        now,
        ttl: TTL,
    }
}

fn names(lanes: &[&str]) -> Vec<String> {
    lanes.iter().map(|l| l.to_string()).collect()
}

pub async fn a_lane_has_one_owner_until_its_lease_runs_out(member: Member<'_>) {
    let (a, b) = (member("a"), member("b"));
    assert_eq!(a.hold_lanes(claim("a", &["x", "y"], 2, T0)).await.unwrap(), names(&["x", "y"]));
    assert!(b.hold_lanes(claim("b", &["x", "y"], 2, at(1))).await.unwrap().is_empty());
    // A renews before the lease ends: still A's.
    assert_eq!(a.hold_lanes(claim("a", &["x", "y"], 2, at(9))).await.unwrap(), names(&["x", "y"]));
    assert!(b.hold_lanes(claim("b", &["x", "y"], 2, at(18))).await.unwrap().is_empty());
    // A falls silent: one lease after its last renewal, B takes both.
    assert_eq!(b.hold_lanes(claim("b", &["x", "y"], 2, at(19))).await.unwrap(), names(&["x", "y"]));
    // A, back, has lost them and cannot renew them.
    assert!(a.hold_lanes(claim("a", &["x", "y"], 2, at(20))).await.unwrap().is_empty());
}

pub async fn the_share_bounds_new_lanes_but_not_renewals(member: Member<'_>) {
    let (a, b) = (member("a"), member("b"));
    assert_eq!(a.hold_lanes(claim("a", &["x", "y", "z"], 3, T0)).await.unwrap().len(), 3);
    // A's share drops to 2 (a node joined): it still renews all 3 until it drops one.
    assert_eq!(a.hold_lanes(claim("a", &["x", "y", "z"], 2, at(1))).await.unwrap().len(), 3);
    a.drop_lane("a", "z").await.unwrap();
    assert_eq!(b.hold_lanes(claim("b", &["x", "y", "z"], 2, at(2))).await.unwrap(), names(&["z"]));
    // Taking stops at the share.
    let c = member("c");
    assert!(c.hold_lanes(claim("c", &["x", "y", "z"], 1, at(3))).await.unwrap().is_empty());
    let d = member("d");
    assert_eq!(d.hold_lanes(claim("d", &["v", "w"], 1, at(3))).await.unwrap().len(), 1);
}

pub async fn only_the_owner_can_drop_a_lane(member: Member<'_>) {
    let (a, b) = (member("a"), member("b"));
    a.hold_lanes(claim("a", &["x"], 1, T0)).await.unwrap();
    b.drop_lane("b", "x").await.unwrap();
    assert!(b.hold_lanes(claim("b", &["x"], 1, at(1))).await.unwrap().is_empty());
    a.drop_lane("a", "x").await.unwrap();
    assert_eq!(b.hold_lanes(claim("b", &["x"], 1, at(1))).await.unwrap(), names(&["x"]));
}

pub async fn beats_count_live_nodes_and_list_them_with_their_lanes(member: Member<'_>) {
    let (a, b) = (member("a"), member("b"));
    assert_eq!(a.beat(beat("a", "a1", T0)).await.unwrap().live, 1);
    let beaten = b.beat(beat("b", "b1", at(1))).await.unwrap();
    assert_eq!((beaten.live, beaten.duplicate), (2, false));
    b.hold_lanes(claim("b", &["x"], 1, at(1))).await.unwrap();

    let nodes = a.nodes(at(2)).await.unwrap();
    let ids: Vec<&str> = nodes.iter().map(|n| n.node_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert!(nodes.iter().all(|n| n.alive));
    assert_eq!(nodes[1].lanes, names(&["x"]));
    assert_eq!(nodes[1].heartbeat_at, at(1));
    assert_eq!(nodes[1].address, "127.0.0.1:801");
    assert_eq!(nodes[1].destinations, names(&["b-hook", "shared"]));

    // A goes quiet: listed as not alive, not counted, its lanes not shown as held.
    let beaten = b.beat(beat("b", "b1", at(10))).await.unwrap();
    assert_eq!(beaten.live, 1);
    let nodes = b.nodes(at(12)).await.unwrap();
    assert!(!nodes[0].alive && nodes[1].alive, "{nodes:?}");
    assert!(nodes[1].lanes.is_empty(), "b's lane lease ran out at 11 s");
    // Long silent nodes are forgotten.
    let later = at(20).add(FORGET_AFTER);
    b.beat(beat("b", "b1", later)).await.unwrap();
    let ids: Vec<String> = b.nodes(later).await.unwrap().into_iter().map(|n| n.node_id).collect();
    assert_eq!(ids, ["b"]);
}

pub async fn a_second_live_process_with_a_node_id_is_a_duplicate(member: Member<'_>) {
    let (first, second) = (member("a"), member("a"));
    assert!(!first.beat(beat("a", "one", T0)).await.unwrap().duplicate);
    assert!(second.beat(beat("a", "two", at(1))).await.unwrap().duplicate);
    assert!(!first.beat(beat("a", "one", at(2))).await.unwrap().duplicate);
    // Once the first is quiet for a whole ttl, a restart under the same id is welcome.
    assert!(!second.beat(beat("a", "two", at(13))).await.unwrap().duplicate);
    let nodes = second.nodes(at(13)).await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].heartbeat_at, at(13));
}

pub async fn leaving_frees_the_lanes_and_the_listing(member: Member<'_>) {
    let (a, b) = (member("a"), member("b"));
    a.beat(beat("a", "a1", T0)).await.unwrap();
    b.beat(beat("b", "b1", T0)).await.unwrap();
    a.hold_lanes(claim("a", &["x", "y"], 2, T0)).await.unwrap();
    a.leave("a").await.unwrap();
    assert_eq!(b.hold_lanes(claim("b", &["x", "y"], 2, at(1))).await.unwrap(), names(&["x", "y"]));
    let ids: Vec<String> = b.nodes(at(1)).await.unwrap().into_iter().map(|n| n.node_id).collect();
    assert_eq!(ids, ["b"]);
}

pub async fn pauses_are_seen_by_every_node(member: Member<'_>) {
    let (a, b) = (member("a"), member("b"));
    a.set_paused("x", true, None).await.unwrap();
    b.set_paused("y", true, Some("404 Unknown Webhook".into())).await.unwrap();
    let beaten = b.beat(beat("b", "b1", T0)).await.unwrap();
    let expected: HashMap<String, Option<String>> = HashMap::from([
        ("x".to_string(), None),
        ("y".to_string(), Some("404 Unknown Webhook".to_string())),
    ]);
    assert_eq!(beaten.paused, expected);
    a.set_paused("x", false, None).await.unwrap();
    let beaten = a.beat(beat("a", "a1", T0)).await.unwrap();
    assert_eq!(beaten.paused.keys().collect::<Vec<_>>(), ["y"]);
}

pub async fn announcements_reach_the_other_nodes(member: Member<'_>) {
    let (a, b) = (member("a"), member("b"));
    let mut to_a = a.announcements();
    let mut to_b = b.announcements();
    // Announcements are best effort (a listener may still be connecting), so each side
    // repeats until the other heard everything.
    let heard_by_b = hear(&mut to_b, &*a, &names(&["x", "y"])).await;
    let heard_by_a = hear(&mut to_a, &*b, &names(&["z"])).await;
    // Never to the announcer itself: its engine woke its own lanes already.
    assert_eq!(heard_by_b, names(&["x", "y"]));
    assert_eq!(heard_by_a, names(&["z"]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(late) = to_a.try_recv() {
        assert_eq!(late, "z", "a heard its own announcement");
    }
    while let Ok(late) = to_b.try_recv() {
        assert!(late == "x" || late == "y", "b heard its own announcement: {late}");
    }
}

/// Announces `what` through `from` until `rx` has heard each at least once (10 s at
/// most); returns what it heard, sorted and deduplicated.
async fn hear(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    from: &dyn Cluster,
    what: &[String],
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut heard = std::collections::BTreeSet::new();
    while !what.iter().all(|w| heard.contains(w)) {
        assert!(tokio::time::Instant::now() < deadline, "heard only {heard:?} of {what:?}");
        from.announce(what);
        while let Ok(Some(got)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await
        {
            heard.insert(got);
        }
    }
    heard.into_iter().collect()
}

/// Runs every body on a fresh in-process cluster.
mod local {
    use super::*;

    macro_rules! on_local {
        ($($body:ident),* $(,)?) => {$(
            #[tokio::test]
            async fn $body() {
                let cluster = LocalCluster::new();
                let member = |id: &str| Arc::new(cluster.member(id)) as Arc<dyn Cluster>;
                super::$body(&member).await;
            }
        )*};
    }

    on_local!(
        a_lane_has_one_owner_until_its_lease_runs_out,
        the_share_bounds_new_lanes_but_not_renewals,
        only_the_owner_can_drop_a_lane,
        beats_count_live_nodes_and_list_them_with_their_lanes,
        a_second_live_process_with_a_node_id_is_a_duplicate,
        leaving_frees_the_lanes_and_the_listing,
        pauses_are_seen_by_every_node,
        announcements_reach_the_other_nodes,
    );
}

/// Runs every body on a fresh schema of the test database (`HERALD_TEST_DATABASE_URL`),
/// each node with its own pool, as separate processes would.
mod postgres {
    use super::*;
    use crate::postgres::Schema;

    macro_rules! on_postgres {
        ($($body:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $body() {
                let schema = Schema::new().await;
                let member = |id: &str| {
                    tokio::task::block_in_place(|| {
                        tokio::runtime::Handle::current().block_on(async {
                            let store = schema.connect(id).await;
                            Arc::new(store.cluster().await.unwrap()) as Arc<dyn Cluster>
                        })
                    })
                };
                super::$body(&member).await;
            }
        )*};
    }

    on_postgres!(
        a_lane_has_one_owner_until_its_lease_runs_out,
        the_share_bounds_new_lanes_but_not_renewals,
        only_the_owner_can_drop_a_lane,
        beats_count_live_nodes_and_list_them_with_their_lanes,
        a_second_live_process_with_a_node_id_is_a_duplicate,
        leaving_frees_the_lanes_and_the_listing,
        pauses_are_seen_by_every_node,
        announcements_reach_the_other_nodes,
    );
}
