//! Every input the fuzz targets keep — their seeds, the corpus libFuzzer grew from them, and
//! each input that once crashed a harness — goes through the same harness here, on the stable
//! toolchain: a crash found once stays a regression test (`fuzz/README.md`).

use std::path::{Path, PathBuf};

use momentd::fuzzing;
use momentd::Encoding;

const TARGETS: [&str; 5] = [
    "event_json",
    "event_protobuf",
    "config",
    "changelog",
    "internal_topics",
];

fn harness(target: &str) -> fn(&[u8]) {
    match target {
        "event_json" => |d| {
            fuzzing::input_messages(d, Encoding::Json);
        },
        "event_protobuf" => |d| {
            fuzzing::input_messages(d, Encoding::Protobuf);
        },
        "config" => fuzzing::configuration,
        "changelog" => |d| {
            fuzzing::changelog(d);
        },
        "internal_topics" => fuzzing::internal_topics,
        _ => unreachable!("{target}"),
    }
}

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for kind in ["seeds", "corpus", "regressions"] {
        if let Ok(dir) = std::fs::read_dir(root.join(kind).join(target)) {
            files.extend(dir.filter_map(|e| e.ok()).map(|e| e.path()));
        }
    }
    files.sort();
    files
}

fn run_all(target: &str) {
    let files = inputs(target);
    assert!(
        files.len() >= 3,
        "{target}: seeds are committed ({files:?})"
    );
    let run = harness(target);
    for f in &files {
        let data = std::fs::read(f).unwrap();
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            panic!("{target}: {} makes the harness panic", f.display());
        }
    }
    eprintln!("{target}: {} inputs", files.len());
}

#[test]
fn event_json_inputs_never_panic() {
    run_all("event_json");
}

#[test]
fn event_protobuf_inputs_never_panic() {
    run_all("event_protobuf");
}

#[test]
fn config_inputs_never_panic() {
    run_all("config");
}

#[test]
fn changelog_inputs_never_panic() {
    run_all("changelog");
}

#[test]
fn internal_topic_inputs_never_panic() {
    run_all("internal_topics");
}

/// The seeds are what `momentd::fuzzing::seeds` makes today (`cargo run --features fuzzing --example fuzz_seeds`
/// writes them): a change to what momentd writes reaches the fuzzers' starting points.
#[test]
fn the_committed_seeds_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for (target, bytes) in fuzzing::seeds() {
        assert!(TARGETS.contains(&target));
        let name = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes));
        assert!(
            root.join(target).join(&name).exists(),
            "fuzz/seeds/{target}/{name} is missing: run `cargo run --features fuzzing --example fuzz_seeds`"
        );
    }
}
