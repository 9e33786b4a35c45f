//! Replays every committed corpus input (`fuzz/corpus/<target>/*`) and every past crash
//! (`fuzz/artifacts/<target>/*`) through the harness its fuzz target wraps, on stable:
//! a regression fails `cargo test --workspace` without nightly or libFuzzer.

use std::path::{Path, PathBuf};

use isoswitch_fuzzing::{inputs, run_dir, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn names(dir: &Path, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter_map(|n| n.strip_suffix(suffix).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn every_fuzz_target_is_a_harness_and_every_harness_a_fuzz_target() {
    let files = names(&fuzz_dir().join("fuzz_targets"), ".rs");
    let mut harnesses: Vec<String> = TARGETS.iter().map(|t| t.name.to_string()).collect();
    harnesses.sort();
    assert_eq!(files, harnesses);
    let cargo = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for t in TARGETS {
        assert!(
            cargo.contains(&format!("name = \"{}\"\n", t.name)),
            "{} is not a [[bin]] of fuzz/Cargo.toml",
            t.name
        );
        let src = std::fs::read_to_string(fuzz_dir().join(format!("fuzz_targets/{}.rs", t.name)))
            .expect("target source");
        assert!(
            src.contains("isoswitch_fuzzing::"),
            "{} does not wrap a harness",
            t.name
        );
    }
}

#[test]
fn corpus_and_artifact_directories_belong_to_targets() {
    for sub in ["corpus", "artifacts"] {
        for d in names(&fuzz_dir().join(sub), "") {
            assert!(
                isoswitch_fuzzing::target(&d).is_some(),
                "fuzz/{sub}/{d} has no target"
            );
        }
    }
}

#[test]
fn every_committed_corpus_input_and_past_crash_replays() {
    for t in TARGETS {
        let corpus = fuzz_dir().join("corpus").join(t.name);
        assert!(
            !inputs(&corpus).expect("corpus").is_empty(),
            "{}: no committed corpus",
            t.name
        );
        let r = run_dir(t, &corpus).expect("corpus replays");
        let crashes = run_dir(t, &fuzz_dir().join("artifacts").join(t.name)).expect("artifacts");
        println!(
            "{:24} corpus {:4} reached {:5.1}%  past crashes {}",
            t.name,
            r.inputs,
            r.percent(),
            crashes.inputs
        );
        // The seeds are made to get past the front door (corpus::seeds).
        assert!(
            r.reached > 0,
            "{}: no corpus input reaches its property",
            t.name
        );
    }
}
