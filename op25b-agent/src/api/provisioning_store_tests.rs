//! Where grants are kept: a fleet's store instead of the state file, and a
//! state file that cannot be written (nothing changes on any path).

use std::fs;

use super::{
    tests::{call, fixture, text},
    *,
};
use crate::policy::subscriber_grants::SubscriberGrant;

/// A store standing in for the fleet's etcd: records writes, or fails.
#[derive(Default)]
struct FakeStore {
    puts: Mutex<Vec<(crate::policy::ListKind, String)>>,
    subscribers: Mutex<Vec<String>>,
    down: bool,
}

impl GrantStore for Arc<FakeStore> {
    fn put(
        &self,
        kind: crate::policy::ListKind,
        grant: &Grant,
    ) -> Result<(), grant_store::StoreError> {
        if self.down {
            return Err(grant_store::StoreError::Unavailable("etcd: gone".into()));
        }
        self.puts.lock().unwrap().push((kind, grant.prefix.clone()));
        Ok(())
    }
    fn delete(
        &self,
        _: crate::policy::ListKind,
        prefix: &Prefix,
        _: &str,
    ) -> Result<(), grant_store::StoreError> {
        Err(grant_store::StoreError::NotFound(format!(
            "{prefix} is not granted"
        )))
    }
    fn list(&self, _: crate::policy::ListKind) -> Result<Vec<Grant>, grant_store::StoreError> {
        Ok(Vec::new())
    }
    fn put_subscriber(&self, grant: &SubscriberGrant) -> Result<(), grant_store::StoreError> {
        self.subscribers
            .lock()
            .unwrap()
            .push(grant.subscriber.clone());
        Ok(())
    }
    fn delete_subscriber(&self, name: &str, _: &str) -> Result<(), grant_store::StoreError> {
        let mut subscribers = self.subscribers.lock().unwrap();
        let before = subscribers.len();
        subscribers.retain(|s| s != name);
        if subscribers.len() == before {
            return Err(grant_store::StoreError::NotFound(format!(
                "{name} is not granted"
            )));
        }
        Ok(())
    }
    fn list_subscribers(&self) -> Result<Vec<SubscriberGrant>, grant_store::StoreError> {
        Ok(self
            .subscribers
            .lock()
            .unwrap()
            .iter()
            .map(|name| SubscriberGrant {
                subscriber: name.clone(),
                expires_at: None,
                reason: String::new(),
                actor: "fake".into(),
                created_at: 0,
            })
            .collect())
    }
}

#[test]
fn with_a_fleet_store_grants_go_to_the_store_not_the_state_file_and_bounds_still_hold() {
    let f = fixture("store");
    let store = Arc::new(FakeStore::default());
    f.api.use_store(Box::new(Arc::clone(&store)));
    let path = "/api/v1/exemptions";
    let body = r#"{"prefix": "100.64.1.7/32", "reason": "T-1"}"#;
    let answer = call(&f.api, Method::POST, path, "Bearer s3cret", body);
    assert_eq!(answer.status, 201, "{}", text(&answer));
    assert_eq!(
        *store.puts.lock().unwrap(),
        [(crate::policy::ListKind::Exempt, "100.64.1.7/32".to_owned())]
    );
    assert!(
        !f.dir.join("state.json").exists(),
        "a fleet grant must not land in the local state file"
    );
    assert!(!f.api.changed.load(Ordering::Relaxed));
    assert!(fs::read_to_string(f.dir.join("audit.jsonl"))
        .unwrap()
        .contains("100.64.1.7/32"));
    // The bound is checked before the store sees anything.
    let everyone = r#"{"prefix": "0.0.0.0/0"}"#;
    let answer = call(&f.api, Method::POST, path, "Bearer s3cret", everyone);
    assert_eq!(answer.status, 400, "{}", text(&answer));
    assert_eq!(store.puts.lock().unwrap().len(), 1);
    // Grants by subscriber go to the store too, not to this box's state.
    let subscriber = r#"{"subscriber": "alice@example.jp", "reason": "T-2"}"#;
    let answer = call(&f.api, Method::POST, path, "Bearer s3cret", subscriber);
    assert_eq!(answer.status, 201, "{}", text(&answer));
    assert_eq!(*store.subscribers.lock().unwrap(), ["alice@example.jp"]);
    assert!(f.api.state().exempt_subscribers.is_empty());
    assert!(!f.dir.join("state.json").exists());
    assert!(fs::read_to_string(f.dir.join("audit.jsonl"))
        .unwrap()
        .contains("alice@example.jp"));
    let listed = call(&f.api, Method::GET, path, "Bearer s3cret", "");
    assert!(
        text(&listed).contains("alice@example.jp"),
        "{}",
        text(&listed)
    );
    let relay = call(
        &f.api,
        Method::POST,
        "/api/v1/allowed_destinations",
        "Bearer s3cret",
        subscriber,
    );
    assert_eq!(relay.status, 400, "{}", text(&relay));
    let revoke = format!("{path}?subscriber=alice%40example.jp");
    let answer = call(&f.api, Method::DELETE, &revoke, "Bearer s3cret", "");
    assert_eq!(answer.status, 200, "{}", text(&answer));
    assert!(store.subscribers.lock().unwrap().is_empty());
    // Neither in the store nor on this box: 404.
    let answer = call(&f.api, Method::DELETE, &revoke, "Bearer s3cret", "");
    assert_eq!(answer.status, 404, "{}", text(&answer));
    // The store's answers come through: missing → 404.
    let answer = call(
        &f.api,
        Method::DELETE,
        &format!("{path}?prefix=100.64.9.9%2F32"),
        "Bearer s3cret",
        "",
    );
    assert_eq!(answer.status, 404, "{}", text(&answer));

    let down = fixture("store-down");
    down.api.use_store(Box::new(Arc::new(FakeStore {
        down: true,
        ..FakeStore::default()
    })));
    let answer = call(&down.api, Method::POST, path, "Bearer s3cret", body);
    assert_eq!(answer.status, 503, "{}", text(&answer));
    assert!(text(&answer).contains("not changed"), "{}", text(&answer));
}

#[test]
fn a_grant_that_cannot_be_persisted_changes_nothing_on_every_path() {
    let f = fixture("unsaved");
    let auth = "Bearer s3cret";
    let path = "/api/v1/exemptions";
    for body in [
        r#"{"prefix": "100.64.1.7/32"}"#,
        r#"{"subscriber": "alice@example.jp"}"#,
    ] {
        assert_eq!(call(&f.api, Method::POST, path, auth, body).status, 201);
    }
    assert!(f.api.changed.swap(false, Ordering::Relaxed));
    let granted = f.api.state();
    // The state file's place taken by a directory: every save fails.
    let state_file = f.dir.join("state.json");
    fs::remove_file(&state_file).unwrap();
    fs::create_dir_all(state_file.join("blocker")).unwrap();
    let attempts = [
        (
            Method::POST,
            path.to_owned(),
            r#"{"prefix": "100.64.1.8/32"}"#,
        ),
        (Method::POST, path.to_owned(), r#"{"subscriber": "bob"}"#),
        (Method::DELETE, format!("{path}?prefix=100.64.1.7%2F32"), ""),
        (
            Method::DELETE,
            format!("{path}?subscriber=alice%40example.jp"),
            "",
        ),
    ];
    for (method, target, body) in attempts {
        let answer = call(&f.api, method.clone(), &target, auth, body);
        assert_eq!(answer.status, 500, "{method} {target}: {}", text(&answer));
        assert!(
            text(&answer).contains("nothing changed"),
            "{}",
            text(&answer)
        );
        assert_eq!(
            f.api.state(),
            granted,
            "{method} {target} changed the grants"
        );
    }
    assert!(!f.api.changed.load(Ordering::Relaxed));
    // A refusal (404) stays a refusal, not a failure to persist.
    let answer = call(
        &f.api,
        Method::DELETE,
        &format!("{path}?subscriber=nobody"),
        auth,
        "",
    );
    assert_eq!(answer.status, 404, "{}", text(&answer));
}
