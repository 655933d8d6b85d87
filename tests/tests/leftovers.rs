//! A SIGKILLed test, soak or bench leaves its namespaces, veths and pins;
//! the next run's guards remove them, and only them.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use op25b_tests::{
    leftovers::{claim_in, sweep_in, write_record, Kind, Owner},
    netns::ip,
    require_root, unique_suffix, TempDir,
};

/// A process that existed and is gone (reaped), with its start time.
fn gone_owner() -> Owner {
    let mut child = Command::new("sleep")
        .arg("30")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let owner = Owner::of(child.id()).expect("a running child has a stat");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!owner.is_alive());
    owner
}

fn scratch_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("op25b-leftover-{tag}-{}", unique_suffix()));
    std::fs::create_dir_all(dir.join("inside")).unwrap();
    dir
}

#[test]
fn a_dead_owners_directory_is_removed_a_live_ones_kept() {
    let registry = TempDir::new("registry");
    let dead = scratch_dir("dead");
    let alive = scratch_dir("alive");
    write_record(
        &registry.path().join("dir.dead"),
        gone_owner(),
        Kind::Dir,
        dead.to_str().unwrap(),
    )
    .unwrap();
    write_record(
        &registry.path().join("dir.alive"),
        Owner::current().unwrap(),
        Kind::Dir,
        alive.to_str().unwrap(),
    )
    .unwrap();

    let removed = sweep_in(registry.path());
    assert_eq!(removed, vec![dead.to_str().unwrap().to_owned()]);
    assert!(!dead.exists(), "the killed run's directory is gone");
    assert!(alive.exists(), "a running owner's directory stays");
    assert!(!registry.path().join("dir.dead").exists());
    assert!(registry.path().join("dir.alive").exists());
    let _ = std::fs::remove_dir_all(&alive);
}

#[test]
fn a_record_never_removes_what_is_not_op25bs_scratch() {
    let registry = TempDir::new("registry");
    // Not named op25b-*, and op25b-* but not directly under a scratch root.
    let foreign = std::env::temp_dir().join(format!("not-ours-{}", unique_suffix()));
    std::fs::create_dir_all(&foreign).unwrap();
    let nested = scratch_dir("outer").join("op25b-nested");
    std::fs::create_dir_all(&nested).unwrap();
    for (i, path) in [&foreign, &nested].into_iter().enumerate() {
        write_record(
            &registry.path().join(format!("dir.{i}")),
            gone_owner(),
            Kind::Dir,
            path.to_str().unwrap(),
        )
        .unwrap();
    }
    sweep_in(registry.path());
    assert!(foreign.exists() && nested.exists());
    let _ = std::fs::remove_dir_all(&foreign);
    let _ = std::fs::remove_dir_all(nested.parent().unwrap());
}

#[test]
fn a_claim_sweeps_first_and_its_record_goes_with_it() {
    require_root();
    let registry = TempDir::new("registry");
    let ns = format!("o5lo{}", unique_suffix());
    ip(&["netns", "add", &ns]);
    let exists = |ns: &str| Path::new("/run/netns").join(ns).exists();
    write_record(
        &registry.path().join("netns.killed"),
        gone_owner(),
        Kind::Netns,
        &ns,
    )
    .unwrap();
    assert!(exists(&ns));

    let claim = claim_in(registry.path(), Kind::Veth, "o5lo-unused");
    assert!(!exists(&ns), "the killed run's namespace is removed");
    assert!(!registry.path().join("netns.killed").exists());
    let mine = registry.path().join("veth.o5lo-unused");
    assert!(mine.exists(), "the new claim is recorded");
    drop(claim);
    assert!(!mine.exists(), "and forgotten when dropped");
}
