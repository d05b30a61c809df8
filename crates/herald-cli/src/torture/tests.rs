//! Unit tests of the torture run's seeded choices.

use std::time::Duration;

use super::{Rng, destinations};

#[test]
fn a_seed_replays_the_same_faults_and_another_seed_does_not() {
    let minute = Duration::from_secs(60);
    let plans = |seed| {
        destinations(&mut Rng::new(seed), minute, 5)
            .into_iter()
            .map(|spec| (spec.name, spec.plan, spec.settings, spec.chance))
            .collect::<Vec<_>>()
    };
    assert_eq!(plans(1), plans(1));
    assert_ne!(plans(1), plans(2));
    let names: Vec<String> = plans(1).into_iter().map(|(name, ..)| name).collect();
    assert_eq!(
        names,
        [
            "steady",
            "flaky",
            "throttled",
            "paced",
            "hang",
            "reset",
            "slow",
            "down",
            "nodedupe",
            "dead"
        ]
    );
}

#[test]
fn draws_stay_in_their_ranges() {
    let mut rng = Rng::new(3);
    for _ in 0..1000 {
        assert!((2..=5).contains(&rng.range(2, 5)));
        let unit = rng.unit();
        assert!((0.0..1.0).contains(&unit));
        let d = rng.between(Duration::from_millis(10), Duration::from_millis(20));
        assert!(d >= Duration::from_millis(10) && d <= Duration::from_millis(20));
    }
    assert_eq!(rng.range(4, 4), 4);
}

#[test]
fn only_the_nodedupe_receiver_is_configured_without_deduplication() {
    let specs = destinations(&mut Rng::new(9), Duration::from_secs(8), 5);
    for spec in &specs {
        let off = spec.settings.contains("dedupe = false");
        assert_eq!(off, spec.name == "nodedupe", "{}: {}", spec.name, spec.settings);
        assert_eq!(spec.dedupe, !off);
    }
}
