//! The table's indexes, bounds and exemptions; the store across restarts.

use std::{collections::HashSet, fs, io::Write as _, net::IpAddr, path::PathBuf};

use super::*;

fn session(table: &mut SessionTable, id: &str, user: &str, v4: &str) -> Session {
    Session {
        nas: table.intern_nas("bng1"),
        id: id.into(),
        subscriber: user.into(),
        ipv4: Some(v4.parse().unwrap()),
        ipv6: vec![ipv6_prefix("2001:db8:1:100::".parse().unwrap(), 56)],
        attribute_exempt: false,
        coa: None,
        started_at: 100,
        updated_at: 100,
    }
}

fn key(id: &str) -> SessionKey {
    SessionKey {
        nas: "bng1".into(),
        id: id.into(),
    }
}

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn start_interim_stop_keep_every_index_in_step() {
    let mut table = SessionTable::new(10);
    let s = session(&mut table, "s1", "alice", "100.64.0.1");
    table.upsert(s.clone()).unwrap();
    assert_eq!(table.by_address(addr("100.64.0.1")).unwrap().id, s.id);
    assert_eq!(
        table.by_address(addr("2001:db8:1:1ff::9")).unwrap().id,
        s.id
    );
    assert!(table.by_address(addr("2001:db8:1:200::1")).is_none());
    assert_eq!(table.by_subscriber("alice").count(), 1);
    assert_eq!(table.by_session_id("s1", None).count(), 1);
    assert_eq!(table.by_session_id("s1", Some("bng2")).count(), 0);
    // Interim-Update with a new address: the old one leaves the index.
    let mut moved = s.clone();
    moved.ipv4 = Some("100.64.0.2".parse().unwrap());
    moved.updated_at = 200;
    table.upsert(moved).unwrap();
    assert!(table.by_address(addr("100.64.0.1")).is_none());
    assert_eq!(table.get(&key("s1")).unwrap().started_at, 100);
    table.remove(&key("s1")).unwrap();
    assert!(table.is_empty());
    assert!(table.by_address(addr("100.64.0.2")).is_none());
    assert!(table.by_address(addr("2001:db8:1:100::1")).is_none());
    assert_eq!(table.by_subscriber("alice").count(), 0);
    assert!(table.v6_lengths.is_empty());
}

#[test]
fn an_address_taken_over_drops_the_stale_session() {
    let mut table = SessionTable::new(10);
    let old = session(&mut table, "old", "bob", "100.64.0.1");
    table.upsert(old).unwrap();
    let mut new = session(&mut table, "new", "carol", "100.64.0.1");
    new.ipv6.clear();
    table.upsert(new).unwrap();
    assert_eq!(table.len(), 1);
    assert_eq!(
        &*table.by_address(addr("100.64.0.1")).unwrap().subscriber,
        "carol"
    );
    assert!(table.by_address(addr("2001:db8:1:100::1")).is_none());
}

#[test]
fn the_table_is_bounded_but_updates_still_fit() {
    let mut table = SessionTable::new(1);
    let s = session(&mut table, "s1", "alice", "100.64.0.1");
    table.upsert(s.clone()).unwrap();
    let other = session(&mut table, "s2", "bob", "100.64.0.2");
    assert_eq!(table.upsert(other), Err(TableError::Full { max: 1 }));
    let mut update = s;
    update.updated_at = 300;
    table.upsert(update).unwrap();
    assert_eq!(table.len(), 1);
}

#[test]
fn accounting_on_clears_only_that_nas() {
    let mut table = SessionTable::new(10);
    let a = session(&mut table, "a", "alice", "100.64.0.1");
    let mut b = session(&mut table, "b", "bob", "100.64.0.2");
    b.nas = table.intern_nas("bng2");
    b.ipv6.clear();
    table.upsert(a).unwrap();
    table.upsert(b).unwrap();
    assert_eq!(table.clear_nas("bng1"), 1);
    assert_eq!(table.len(), 1);
    assert!(table.by_address(addr("100.64.0.1")).is_none());
    assert!(table.by_address(addr("100.64.0.2")).is_some());
}

#[test]
fn exemption_by_name_attribute_and_coa() {
    let mut table = SessionTable::new(10);
    let alice = session(&mut table, "a", "alice", "100.64.0.1");
    let mut bob = session(&mut table, "b", "bob", "100.64.0.2");
    bob.ipv6.clear();
    bob.attribute_exempt = true;
    let mut carol = session(&mut table, "c", "carol", "100.64.0.3");
    carol.ipv6.clear();
    table.upsert(alice).unwrap();
    table.upsert(bob).unwrap();
    table.upsert(carol).unwrap();
    let names: HashSet<String> = ["alice".to_owned(), "nobody".to_owned()].into();
    let exempt = |table: &SessionTable| {
        let mut v: Vec<(String, ExemptBy)> = table
            .exempt_sessions(&names)
            .map(|(s, by)| (s.subscriber.to_string(), by))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    assert_eq!(
        exempt(&table),
        [
            ("alice".into(), ExemptBy::Subscriber),
            ("bob".into(), ExemptBy::SessionAttribute)
        ]
    );
    // CoA: enforce alice, exempt carol.
    assert!(table.set_coa(&key("a"), Some(CoaPolicy::Enforce)));
    assert!(table.set_coa(&key("c"), Some(CoaPolicy::Exempt)));
    assert!(!table.set_coa(&key("zz"), Some(CoaPolicy::Exempt)));
    assert_eq!(
        exempt(&table),
        [
            ("bob".into(), ExemptBy::SessionAttribute),
            ("carol".into(), ExemptBy::Coa)
        ]
    );
    // An Interim-Update keeps the CoA decision.
    let mut update = table.get(&key("c")).unwrap().clone();
    update.coa = None;
    update.updated_at = 999;
    table.upsert(update).unwrap();
    assert_eq!(table.get(&key("c")).unwrap().coa, Some(CoaPolicy::Exempt));
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("op25b-sessions-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_journal_and_snapshot_bring_the_table_back() {
    let dir = temp_dir("persist");
    let path = dir.join("sessions.json");
    let (mut store, mut table) = SessionStore::open(&path, 10).unwrap();
    let a = session(&mut table, "a", "alice", "100.64.0.1");
    let mut b = session(&mut table, "b", "bob", "100.64.0.2");
    b.ipv6.clear();
    table.upsert(a).unwrap();
    table.upsert(b).unwrap();
    table.set_coa(&key("b"), Some(CoaPolicy::Exempt));
    store.commit(&table.take_unwritten()).unwrap();
    // "kill -9" here: only snapshot (empty) + journal on disk.
    drop(store);
    let (mut store, mut again) = SessionStore::open(&path, 10).unwrap();
    assert_eq!(again.len(), 2);
    assert_eq!(again.get(&key("b")).unwrap().coa, Some(CoaPolicy::Exempt));
    assert!(again.by_address(addr("2001:db8:1:100::1")).is_some());
    // The reopen compacted: a snapshot, an empty journal.
    assert_eq!(
        fs::metadata(dir.join("sessions.json.journal"))
            .unwrap()
            .len(),
        0
    );
    again.clear_nas("bng1");
    let c = session(&mut again, "c", "carol", "100.64.0.3");
    again.upsert(c).unwrap();
    store.commit(&again.take_unwritten()).unwrap();
    // A torn last line (crash mid-append) is ignored.
    fs::OpenOptions::new()
        .append(true)
        .open(dir.join("sessions.json.journal"))
        .unwrap()
        .write_all(b"{\"seq\":99,\"op\":\"rem")
        .unwrap();
    drop(store);
    let (_, third) = SessionStore::open(&path, 10).unwrap();
    assert_eq!(third.len(), 1);
    assert_eq!(&*third.get(&key("c")).unwrap().subscriber, "carol");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn journal_lines_the_snapshot_already_holds_are_skipped() {
    let dir = temp_dir("order");
    let path = dir.join("sessions.json");
    let (mut store, mut table) = SessionStore::open(&path, 10).unwrap();
    let a = session(&mut table, "a", "alice", "100.64.0.1");
    table.upsert(a).unwrap();
    let journal = table.take_unwritten();
    store.commit(&journal).unwrap();
    store.compact(&mut table).unwrap();
    // A crash between snapshot and truncation leaves the journal; its
    // remove of "a" (seq 1) is older than the snapshot and must not run.
    fs::write(
        dir.join("sessions.json.journal"),
        "{\"seq\":1,\"op\":\"remove\",\"key\":{\"nas\":\"bng1\",\"id\":\"a\"}}\n",
    )
    .unwrap();
    let (_, again) = SessionStore::open(&path, 10).unwrap();
    assert_eq!(again.len(), 1, "a journal line older than the snapshot ran");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_bad_record_names_file_and_line_and_capacity_is_checked() {
    let dir = temp_dir("bad");
    let path = dir.join("sessions.json");
    fs::write(&path, "{\"op25b_sessions\":1,\"seq\":0}\n{\"nas\":1}\n").unwrap();
    let e = SessionStore::open(&path, 10).err().unwrap().to_string();
    assert!(e.contains("sessions.json:2: not a session record"), "{e}");
    let (mut store, mut table) = SessionStore::open(&dir.join("ok.json"), 10).unwrap();
    for i in 0..3 {
        let mut s = session(&mut table, &format!("s{i}"), "u", &format!("100.64.0.{i}"));
        s.ipv6.clear();
        table.upsert(s).unwrap();
    }
    store.commit(&table.take_unwritten()).unwrap();
    drop(store);
    let e = SessionStore::open(&dir.join("ok.json"), 2)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("3 sessions stored, more than max_sessions = 2"),
        "{e}"
    );
    fs::remove_dir_all(dir).unwrap();
}
