//! The grant handlers, called in process: no socket, no agent.

use std::os::unix::fs::PermissionsExt as _;

use super::*;

pub(super) struct Fixture {
    pub(super) dir: PathBuf,
    pub(super) api: Provisioning,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

pub(super) fn fixture(name: &str) -> Fixture {
    let dir = std::env::temp_dir().join(format!("op25b-prov-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("token"), "s3cret\n").unwrap();
    fs::set_permissions(dir.join("token"), fs::Permissions::from_mode(0o600)).unwrap();
    let config = ApiConfig {
        socket: None,
        listen_address: None,
        token_file: dir.join("token"),
        state_file: dir.join("state.json"),
        audit_log: dir.join("audit.jsonl"),
        max_body_bytes: 1024,
    };
    Fixture {
        api: Provisioning::open(config, crate::policy::limits::PrefixLimits::default()).unwrap(),
        dir,
    }
}

pub(super) fn call(
    api: &Provisioning,
    method: Method,
    path: &str,
    token: &str,
    body: &str,
) -> Answer {
    let mut head = RequestHead::new(method, path);
    head.authorization = Some(token.to_owned());
    api.admit(&head)
        .unwrap_or_else(|| api.answer(&head, body.as_bytes()))
}

pub(super) fn text(answer: &Answer) -> String {
    String::from_utf8_lossy(&answer.body).into_owned()
}

#[test]
fn the_token_is_checked_before_anything_and_the_scheme_is_case_insensitive() {
    let f = fixture("auth");
    let path = "/api/v1/exemptions";
    assert_eq!(
        call(&f.api, Method::GET, path, "Bearer wrong", "").status,
        401
    );
    assert_eq!(call(&f.api, Method::GET, path, "s3cret", "").status, 401);
    assert_eq!(
        call(&f.api, Method::GET, path, "Basic s3cret", "").status,
        401
    );
    assert_eq!(
        call(&f.api, Method::GET, path, "Bearer s3cret", "").status,
        200
    );
    assert_eq!(
        call(&f.api, Method::GET, path, "bearer s3cret", "").status,
        200
    );
    assert_eq!(
        call(&f.api, Method::GET, "/api/v1/nope", "Bearer wrong", "").status,
        401
    );
}

#[test]
fn grant_list_and_revoke_with_audit_and_persistence() {
    let f = fixture("cycle");
    let auth = "Bearer s3cret";
    let added = call(
        &f.api,
        Method::POST,
        "/api/v1/exemptions",
        auth,
        r#"{"prefix":"100.64.1.9","ttl":"1h","reason":"ticket 7","actor":"desk"}"#,
    );
    assert_eq!(added.status, 201, "{}", text(&added));
    let grant: Grant = serde_json::from_slice(&added.body).unwrap();
    assert_eq!(grant.prefix, "100.64.1.9/32");
    assert_eq!(grant.expires_at, Some(grant.created_at + 3600));
    assert!(f.api.changed.swap(false, Ordering::Relaxed));

    let listed: GrantListAnswer =
        serde_json::from_slice(&call(&f.api, Method::GET, "/api/v1/exemptions", auth, "").body)
            .unwrap();
    assert_eq!(listed.grants, [grant]);
    assert_eq!(
        GrantState::load(&f.dir.join("state.json"))
            .unwrap()
            .exempt
            .len(),
        1
    );

    let revoked = call(
        &f.api,
        Method::DELETE,
        "/api/v1/exemptions?prefix=100.64.1.9%2F32&actor=noc&reason=cleaned",
        auth,
        "",
    );
    assert_eq!(revoked.status, 200, "{}", text(&revoked));
    assert!(f.api.changed.load(Ordering::Relaxed));
    let audit = fs::read_to_string(f.dir.join("audit.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (lines[0]["actor"].as_str(), lines[0]["reason"].as_str()),
        (Some("desk"), Some("ticket 7"))
    );
    assert_eq!(
        (
            lines[1]["action"].as_str(),
            lines[1]["actor"].as_str(),
            lines[1]["reason"].as_str()
        ),
        (Some("delete"), Some("noc"), Some("cleaned"))
    );
    assert_eq!(
        call(
            &f.api,
            Method::DELETE,
            "/api/v1/exemptions?prefix=100.64.1.9",
            auth,
            ""
        )
        .status,
        404
    );
}

#[test]
fn bad_requests_name_what_is_wrong_and_change_nothing() {
    let f = fixture("bad");
    let auth = "Bearer s3cret";
    let cases = [
        (Method::POST, "/api/v1/exemptions", "{", 400, "body:"),
        (
            Method::POST,
            "/api/v1/exemptions",
            r#"{"prefix":"100.64.1.1/24"}"#,
            400,
            "host bits",
        ),
        (
            Method::POST,
            "/api/v1/exemptions",
            r#"{"prefix":"100.64.1.1","ttl":0}"#,
            400,
            "ttl",
        ),
        (
            Method::POST,
            "/api/v1/exemptions",
            r#"{"prefix":"100.64.1.1","extra":1}"#,
            400,
            "unknown field",
        ),
        (
            Method::DELETE,
            "/api/v1/exemptions?prefix=garbage",
            "",
            400,
            "prefix=",
        ),
        (
            Method::PUT,
            "/api/v1/exemptions",
            "",
            405,
            "GET, POST or DELETE",
        ),
        (Method::GET, "/api/v1/dynamic", "", 404, "not found"),
    ];
    for (method, path, body, status, message) in cases {
        let answer = call(&f.api, method.clone(), path, auth, body);
        assert_eq!(
            answer.status,
            status,
            "{method} {path} {body}: {}",
            text(&answer)
        );
        assert!(
            text(&answer).contains(message),
            "{method} {path}: {}",
            text(&answer)
        );
    }
    assert!(!f.api.changed.load(Ordering::Relaxed));
    assert_eq!(f.api.state(), GrantState::default());
}

#[test]
fn a_token_others_can_read_is_refused() {
    let f = fixture("mode");
    let token = f.dir.join("token");
    fs::set_permissions(&token, fs::Permissions::from_mode(0o640)).unwrap();
    let config = ApiConfig {
        token_file: token,
        ..f.api.config.clone()
    };
    let err = Provisioning::open(config, crate::policy::limits::PrefixLimits::default())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

#[test]
fn subscribers_are_granted_listed_persisted_audited_and_revoked() {
    let f = fixture("subscriber");
    let auth = "Bearer s3cret";
    let added = call(
        &f.api,
        Method::POST,
        "/api/v1/exemptions",
        auth,
        r#"{"subscriber":"alice@example.jp","ttl":"7d","reason":"ticket 1234","actor":"desk"}"#,
    );
    assert_eq!(added.status, 201, "{}", text(&added));
    let grant: crate::policy::subscriber_grants::SubscriberGrant =
        serde_json::from_slice(&added.body).unwrap();
    assert_eq!(grant.subscriber, "alice@example.jp");
    assert_eq!(grant.expires_at, Some(grant.created_at + 7 * 86_400));
    assert!(f.api.changed.swap(false, Ordering::Relaxed));
    assert!(f
        .api
        .exempt_subscribers(grant.created_at)
        .contains("alice@example.jp"));
    assert!(f
        .api
        .exempt_subscribers(grant.created_at + 7 * 86_400)
        .is_empty());

    let listed: GrantListAnswer =
        serde_json::from_slice(&call(&f.api, Method::GET, "/api/v1/exemptions", auth, "").body)
            .unwrap();
    assert!(listed.grants.is_empty());
    assert_eq!(listed.subscribers, std::slice::from_ref(&grant));
    let reopened = Provisioning::open(
        f.api.config.clone(),
        crate::policy::limits::PrefixLimits::default(),
    )
    .unwrap();
    assert_eq!(
        reopened.state().exempt_subscribers.get("alice@example.jp"),
        Some(&grant)
    );

    let revoked = call(
        &f.api,
        Method::DELETE,
        "/api/v1/exemptions?subscriber=alice%40example.jp&actor=noc&reason=done",
        auth,
        "",
    );
    assert_eq!(revoked.status, 200, "{}", text(&revoked));
    assert!(f.api.changed.load(Ordering::Relaxed));
    assert!(f.api.exempt_subscribers(0).is_empty());
    let audit = fs::read_to_string(f.dir.join("audit.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for (line, action) in lines.iter().zip(["add", "delete"]) {
        assert_eq!(line["action"], action);
        assert_eq!(line["subscriber"], "alice@example.jp");
        assert!(line.get("prefix").is_none(), "{line}");
    }
    assert_eq!(lines[1]["actor"], "noc");
    let again = call(
        &f.api,
        Method::DELETE,
        "/api/v1/exemptions?subscriber=alice%40example.jp",
        auth,
        "",
    );
    assert_eq!(again.status, 404);
}

#[test]
fn subscriber_grants_refuse_bad_requests_and_change_nothing() {
    let f = fixture("subscriber-bad");
    let auth = "Bearer s3cret";
    let cases = [
        (
            Method::POST,
            "/api/v1/exemptions",
            r#"{"prefix":"100.64.1.1","subscriber":"alice"}"#,
            400,
            "not both",
        ),
        (
            Method::POST,
            "/api/v1/exemptions",
            r#"{"reason":"nothing named"}"#,
            400,
            "give prefix or subscriber",
        ),
        (
            Method::POST,
            "/api/v1/exemptions",
            r#"{"subscriber":"alice bob"}"#,
            400,
            "spaces",
        ),
        (
            Method::POST,
            "/api/v1/allowed_destinations",
            r#"{"subscriber":"alice"}"#,
            400,
            "only exemptions",
        ),
        (
            Method::DELETE,
            "/api/v1/exemptions?subscriber=alice&prefix=100.64.1.1",
            "",
            400,
            "not both",
        ),
        (
            Method::DELETE,
            "/api/v1/exemptions?subscriber=nobody",
            "",
            404,
            "not granted",
        ),
    ];
    for (method, path, body, status, message) in cases {
        let answer = call(&f.api, method.clone(), path, auth, body);
        assert_eq!(
            answer.status,
            status,
            "{method} {path} {body}: {}",
            text(&answer)
        );
        assert!(
            text(&answer).contains(message),
            "{method} {path}: {}",
            text(&answer)
        );
    }
    assert!(!f.api.changed.load(Ordering::Relaxed));
    assert_eq!(f.api.state(), GrantState::default());
}
