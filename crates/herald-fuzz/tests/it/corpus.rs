//! Every committed corpus input passes its target, and every target has a corpus and a
//! readable dictionary (the libFuzzer run and the stable fuzzer start from them).

use std::panic::{self, AssertUnwindSafe};

use herald_fuzz::{TARGETS, fuzz_dir, stable};

#[test]
fn every_corpus_input_passes_its_target() {
    let mut failures = Vec::new();
    for target in TARGETS {
        let dir = fuzz_dir().join("corpus").join(target.name);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        assert!(entries.len() >= 3, "{}: only {} seed inputs", target.name, entries.len());
        for path in entries {
            let input = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(input.len() <= target.max_len, "{} is longer than -max_len", path.display());
            if panic::catch_unwind(AssertUnwindSafe(|| (target.run)(&input))).is_err() {
                failures.push(path.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "corpus inputs that fail: {failures:#?}");
}

#[test]
fn every_target_has_a_dictionary_the_fuzzers_can_read() {
    for target in TARGETS {
        let path = fuzz_dir().join("dict").join(format!("{}.dict", target.name));
        let tokens = stable::read_dictionary(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(tokens.len() >= 10, "{}: {} tokens", path.display(), tokens.len());
        assert!(tokens.iter().all(|t| !t.is_empty()), "{}: an empty token", path.display());
    }
}

#[test]
fn every_target_has_a_libfuzzer_entry_point() {
    for target in TARGETS {
        let path = fuzz_dir().join("fuzz_targets").join(format!("{}.rs", target.name));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let call = format!("herald_fuzz::{}::run(data)", target.name);
        assert!(text.contains(&call), "{} does not call {call}", path.display());
    }
}

#[test]
fn xtask_and_cargo_fuzz_know_every_target_with_its_max_len_and_share() {
    let xtask = std::fs::read_to_string(fuzz_dir().join("../xtask/src/fuzz.rs")).unwrap();
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for target in TARGETS {
        let entry = format!("(\"{}\", {}, {})", target.name, target.max_len, target.share);
        assert!(xtask.contains(&entry), "xtask/src/fuzz.rs lacks {entry}");
        let bin = format!("name = \"{}\"\npath = \"fuzz_targets/{}.rs\"", target.name, target.name);
        assert!(manifest.contains(&bin), "fuzz/Cargo.toml lacks the [[bin]] {}", target.name);
    }
}
