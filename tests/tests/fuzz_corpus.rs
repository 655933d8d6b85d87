//! Replays the fuzz corpora (fuzz/corpus/<target>/) through the same target
//! bodies libFuzzer runs: every input found interesting, and every crash
//! once fixed, stays a test.
use std::path::Path;

use op25b_tests::fuzz::TARGETS;

#[test]
fn every_corpus_input_runs_through_its_target() {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus"));
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        assert!(!inputs.is_empty(), "{}: no corpus", dir.display());
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            target(&data);
        }
    }
}
