//! The stable fuzzer: it runs every target within a budget, is reproducible from its
//! seed, and finds and reports an input that breaks a property.

use std::time::Duration;

use herald_fuzz::stable::{self, Budget, Failure};
use herald_fuzz::{TARGETS, Target, fuzz_dir};

const RUNS: u64 = 300;

fn budget(runs: u64) -> Budget {
    Budget { time: Duration::from_secs(600), runs }
}

#[test]
fn every_target_survives_a_short_seeded_run() {
    for target in TARGETS {
        let dir = fuzz_dir();
        let corpus = stable::read_corpus(&dir.join("corpus").join(target.name)).unwrap();
        let dictionary =
            stable::read_dictionary(&dir.join("dict").join(format!("{}.dict", target.name)))
                .unwrap();
        let runs = RUNS + corpus.len() as u64;
        let stats = stable::fuzz(target, &corpus, &dictionary, 7, budget(runs))
            .unwrap_or_else(|f| panic!("{}: {} on {:?}", target.name, f.message, f.input));
        assert_eq!(stats.runs, runs, "{}", target.name);
        assert_eq!(stats.corpus, corpus.len(), "{}", target.name);
    }
}

/// Fails on any input holding `boom` after a NUL: two steps apart, so finding it takes
/// mutations (a dictionary token and a splice or insertion), not the seed alone.
fn fragile(data: &[u8]) {
    if let Some(at) = data.iter().position(|&b| b == 0) {
        assert!(!data[at..].windows(4).any(|w| w == b"boom"), "found the bomb");
    }
}

#[test]
fn it_finds_and_reports_an_input_that_breaks_a_property() {
    let target = Target { name: "fragile", run: fragile, max_len: 64, share: 1 };
    let corpus = vec![b"seed".to_vec()];
    let dictionary = vec![b"boom".to_vec(), b"\0".to_vec()];
    let failure: Failure = stable::fuzz(&target, &corpus, &dictionary, 1, budget(100_000))
        .expect_err("the fuzzer must find the bomb within 100,000 runs");
    assert!(failure.message.contains("found the bomb"), "{failure:?}");
    assert!(std::panic::catch_unwind(|| fragile(&failure.input)).is_err(), "not a failing input");
    assert!(failure.runs >= 1, "the seed itself does not fail");
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let target = Target { name: "fragile", run: fragile, max_len: 64, share: 1 };
    let corpus = vec![b"seed".to_vec()];
    let dictionary = vec![b"boom".to_vec(), b"\0".to_vec()];
    let first = stable::fuzz(&target, &corpus, &dictionary, 99, budget(100_000));
    let second = stable::fuzz(&target, &corpus, &dictionary, 99, budget(100_000));
    assert_eq!(first, second);
}

#[test]
fn dictionaries_read_libfuzzer_escapes() {
    let dir = std::env::temp_dir().join(format!("herald-fuzz-dict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.dict");
    std::fs::write(&path, "# comment\n\nkw=\"a\\x22b\"\n\"\\\\\\x00\"\n").unwrap();
    let tokens = stable::read_dictionary(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(tokens, vec![b"a\"b".to_vec(), b"\\\0".to_vec()]);
}
