//! RADIUS in the netns lab with FreeRADIUS's radclient as the real client
//! (Debian freeradius-utils). The agent listens on 127.0.0.1 inside the
//! lab's router namespace; radclient runs there too. Needs root.
//!
//! An answer from the agent means the change is in the maps, so each
//! connection check right after radclient returns needs no waiting.
use std::{fs, os::unix::fs::PermissionsExt as _, time::Duration};

use op25b_tests::{lab::Lab, netns::run};

const A: &str = "100.64.1.2";
const B: &str = "100.64.1.3";
const MX: &str = "198.51.100.25";
const SECRET: &str = "lab-nas-secret";

const RADIUS_TOML: &str = "[radius]\naccounting_listen = \"127.0.0.1:1813\"\ncoa_listen = \"127.0.0.1:3799\"\nsession_state_file = \"sessions.json\"\nmax_sessions = 100\nexempt_filter_id = \"op25b-exempt\"\n[[radius.clients]]\naddress = \"127.0.0.1/32\"\nsecret_file = \"nas.secret\"\n";

fn radius_lab() -> Lab {
    let lab = radius_lab_with("");
    lab.edit_config(
        "[policy]\n",
        "[policy]\nexempt_subscribers = [\"alice@example.jp\"]\n",
    );
    lab
}

/// The RADIUS lab with `extra_toml` and no subscriber exempt by config.
fn radius_lab_with(extra_toml: &str) -> Lab {
    let lab = Lab::up_with(&[], &format!("{RADIUS_TOML}{extra_toml}"));
    let secret = lab.dir.path().join("nas.secret");
    fs::write(&secret, format!("{SECRET}\n")).unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    // A second dynamic address for the subscriber (gone with the lab's netns).
    run(
        "ip",
        &[
            "-n",
            &lab.ns('s'),
            "addr",
            "add",
            &format!("{B}/24"),
            "dev",
            &format!("{}s0", lab.name),
        ],
    );
    lab
}

/// Runs radclient in the router namespace; returns (answered, output).
fn radclient(lab: &Lab, port: u16, kind: &str, secret: &str, attributes: &str) -> (bool, String) {
    op25b_tests::radclient::send(&lab.ns('r'), port, kind, secret, attributes)
}

fn accounting(
    lab: &Lab,
    status: &str,
    session: &str,
    user: &str,
    address: &str,
    extra: &str,
) -> String {
    let (answered, out) = radclient(
        lab,
        1813,
        "acct",
        SECRET,
        &format!(
            "Acct-Status-Type = {status}\nAcct-Session-Id = \"{session}\"\nUser-Name = \"{user}\"\nFramed-IP-Address = {address}\nNAS-Identifier = \"bng1\"\n{extra}"
        ),
    );
    assert!(
        answered,
        "no Accounting-Response to {status}: {out}\n{}",
        lab.log()
    );
    assert!(out.contains("Received Accounting-Response"), "{out}");
    out
}

/// Runs `op25b-agent ARGS --json --config <lab config>`; its JSON.
fn agent_json(lab: &Lab, args: &[&str]) -> serde_json::Value {
    let config = lab.config.to_str().unwrap().to_owned();
    let mut all = args.to_vec();
    all.extend(["--json", "--config", &config]);
    let (ok, out, err) = lab.agent_cmd(&all);
    assert!(ok, "op25b-agent {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

fn metric(lab: &Lab, series: &str) -> f64 {
    let text = lab.http_get("/metrics").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn the_exemption_follows_alice_from_address_to_address_and_survives_kill_9() {
    let mut lab = radius_lab();
    lab.start_agent();
    assert!(!lab.connects(A, MX, 25, 0.5), "A is dynamic: blocked");

    accounting(&lab, "Start", "s-1", "alice@example.jp", A, "");
    assert!(
        lab.connects(A, MX, 25, 1.0),
        "the answer came before the map entry"
    );
    assert!(!lab.connects(B, MX, 25, 0.5));

    accounting(&lab, "Stop", "s-1", "alice@example.jp", A, "");
    assert!(
        !lab.connects(A, MX, 25, 0.5),
        "Stop left the exemption in place"
    );
    accounting(&lab, "Start", "s-2", "alice@example.jp", B, "");
    assert!(
        lab.connects(B, MX, 25, 1.0),
        "the exemption did not follow alice to B"
    );
    assert!(!lab.connects(A, MX, 25, 0.5), "A kept alice's exemption");

    // `sessions` and `explain` name the session and why it is exempt.
    let sessions = agent_json(&lab, &["sessions", "--subscriber", "alice@example.jp"]);
    assert_eq!(
        sessions["sessions"].as_array().unwrap().len(),
        1,
        "{sessions}"
    );
    let session = &sessions["sessions"][0];
    assert_eq!(session["session"], "bng1/s-2", "{sessions}");
    assert_eq!(session["addresses"][0], format!("{B}/32"));
    assert_eq!(session["exempt_by"], "subscriber");
    let at_a = agent_json(&lab, &["sessions", "--address", A]);
    assert_eq!(at_a["sessions"].as_array().unwrap().len(), 0, "{at_a}");
    let explained = agent_json(&lab, &["explain", B, MX]);
    assert_eq!(explained["reason"], "src_exempt", "{explained}");
    assert_eq!(explained["session"]["known"], "held", "{explained}");
    assert_eq!(
        explained["session"]["session"]["subscriber"],
        "alice@example.jp"
    );
    assert_eq!(explained["session"]["session"]["exempt_by"], "subscriber");

    // kill -9 and a new agent: the session table comes back from disk,
    // so B stays exempt (a lost table would remove it at start).
    lab.stop_agent(libc::SIGKILL);
    let unasked = agent_json(&lab, &["explain", B, MX]);
    assert_eq!(unasked["session"]["known"], "unknown", "{unasked}");
    lab.start_agent();
    assert!(
        lab.connects(B, MX, 25, 1.0),
        "the session was lost across kill -9"
    );
    assert!(!lab.connects(A, MX, 25, 0.5));
    assert!((metric(&lab, "op25b_radius_sessions ") - 1.0).abs() < f64::EPSILON);
    assert!((metric(&lab, "op25b_radius_exempt_sessions ") - 1.0).abs() < f64::EPSILON);
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one lab, one story: each step starts from the state the previous left"
)]
fn radclient_interim_coa_disconnect_accounting_on_and_a_wrong_secret() {
    let mut lab = radius_lab();
    lab.start_agent();

    // Bob is not listed; his Start makes a session but no exemption.
    accounting(&lab, "Start", "b-1", "bob@example.jp", A, "");
    assert!(!lab.connects(A, MX, 25, 0.5));
    // An Interim-Update carrying the business-plan Filter-Id exempts him.
    accounting(
        &lab,
        "Interim-Update",
        "b-1",
        "bob@example.jp",
        A,
        "Filter-Id = \"op25b-exempt\"\n",
    );
    assert!(
        lab.connects(A, MX, 25, 1.0),
        "Filter-Id op25b-exempt did not exempt"
    );

    // CoA op25b-enforce ends it mid-session.
    let (answered, out) = radclient(
        &lab,
        3799,
        "coa",
        SECRET,
        "Acct-Session-Id = \"b-1\"\nFilter-Id = \"op25b-enforce\"\n",
    );
    assert!(answered && out.contains("Received CoA-ACK"), "{out}");
    assert!(
        !lab.connects(A, MX, 25, 0.5),
        "CoA enforce left the exemption"
    );
    // CoA op25b-exempt by User-Name brings it back.
    let (answered, out) = radclient(
        &lab,
        3799,
        "coa",
        SECRET,
        "User-Name = \"bob@example.jp\"\nFilter-Id = \"op25b-exempt\"\n",
    );
    assert!(answered && out.contains("Received CoA-ACK"), "{out}");
    assert!(lab.connects(A, MX, 25, 1.0));

    // A session that does not exist: CoA-NAK, Session-Context-Not-Found.
    let (_, out) = radclient(
        &lab,
        3799,
        "coa",
        SECRET,
        "Acct-Session-Id = \"nope\"\nFilter-Id = \"op25b-exempt\"\n",
    );
    assert!(
        out.contains("Received CoA-NAK") && out.contains("Session-Context-Not-Found"),
        "{out}"
    );

    // Disconnect ends the session and its exemption.
    let (answered, out) = radclient(
        &lab,
        3799,
        "disconnect",
        SECRET,
        "Acct-Session-Id = \"b-1\"\n",
    );
    assert!(answered && out.contains("Received Disconnect-ACK"), "{out}");
    assert!(
        !lab.connects(A, MX, 25, 0.5),
        "Disconnect left the exemption"
    );

    // A wrong secret: no answer, counted, nothing changes.
    let (answered, out) = radclient(
        &lab,
        1813,
        "acct",
        "not-the-secret",
        &format!("Acct-Status-Type = Start\nAcct-Session-Id = \"w\"\nUser-Name = \"alice@example.jp\"\nFramed-IP-Address = {B}\n"),
    );
    assert!(
        !answered,
        "a request with a wrong secret was answered: {out}"
    );
    assert!(
        !lab.connects(B, MX, 25, 0.5),
        "a wrong secret changed the maps"
    );
    assert!(
        metric(
            &lab,
            "op25b_radius_requests_total{result=\"bad_authenticator\",type=\"start\"} "
        ) >= 1.0,
        "{}",
        lab.http_get("/metrics").unwrap()
    );

    // Accounting-On from the NAS clears its sessions.
    accounting(&lab, "Start", "a-1", "alice@example.jp", B, "");
    assert!(lab.connects(B, MX, 25, 1.0));
    let (answered, out) = radclient(
        &lab,
        1813,
        "acct",
        SECRET,
        "Acct-Status-Type = Accounting-On\nNAS-Identifier = \"bng1\"\n",
    );
    assert!(answered, "{out}");
    assert!(
        !lab.connects(B, MX, 25, 0.5),
        "Accounting-On left the NAS's sessions"
    );
    assert!(metric(&lab, "op25b_radius_sessions ").abs() < f64::EPSILON);
    assert!(
        metric(
            &lab,
            "op25b_radius_requests_total{result=\"accepted\",type=\"coa\"} "
        ) >= 2.0
    );
}

#[test]
fn block_events_name_the_subscriber_and_the_session() {
    let mut lab = radius_lab();
    lab.edit_config(
        "[radius]\n",
        "[events]\npath = \"events.jsonl\"\nper_source_interval_seconds = 0.5\n[radius]\n",
    );
    lab.start_agent();
    accounting(&lab, "Start", "b-9", "bob@example.jp", A, "");
    assert!(!lab.connects(A, MX, 25, 0.5), "bob is not exempt");
    assert!(!lab.connects(B, MX, 25, 0.5), "B has no session");
    let events = lab.dir.path().join("events.jsonl");
    let line_from = |src: &str| {
        fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .find(|l| l.contains(&format!("\"src\":\"{src}\"")))
            .map(str::to_owned)
    };
    lab.wait_for(
        std::time::Duration::from_secs(5),
        "block events from A and B",
        |_| line_from(A).is_some() && line_from(B).is_some(),
    );
    let from_a = line_from(A).unwrap();
    assert!(
        from_a.contains(r#""subscriber":"bob@example.jp","session":"bng1/b-9""#),
        "{from_a}"
    );
    let from_b = line_from(B).unwrap();
    assert!(
        !from_b.contains("subscriber") && !from_b.contains("\"session\""),
        "{from_b}"
    );

    // Bob reconnects with B: `top` keeps him on one row, both addresses
    // listed; B's attempts from before it was his stay a row of their own.
    accounting(&lab, "Stop", "b-9", "bob@example.jp", A, "");
    accounting(&lab, "Start", "b-10", "bob@example.jp", B, "");
    let bob_from_b = |_: &Lab| {
        fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .any(|l| {
                l.contains(&format!("\"src\":\"{B}\"")) && l.contains("\"session\":\"bng1/b-10\"")
            })
    };
    lab.wait_for(
        std::time::Duration::from_secs(5),
        "a block event from bob at B",
        |l| {
            let _ = l.connects(B, MX, 25, 0.3);
            bob_from_b(l)
        },
    );
    let top = agent_json(&lab, &["top"]);
    let rows = top["sources"].as_array().unwrap();
    let bob: Vec<_> = rows
        .iter()
        .filter(|r| r["subscriber"] == "bob@example.jp")
        .collect();
    assert_eq!(bob.len(), 1, "{top}");
    assert_eq!(bob[0]["addresses"], serde_json::json!([A, B]), "{top}");
    assert_eq!(bob[0]["source"], B, "the latest address: {top}");
    let anonymous: Vec<_> = rows
        .iter()
        .filter(|r| r.get("subscriber").is_none())
        .map(|r| r["source"].as_str().unwrap())
        .collect();
    assert_eq!(anonymous, [B], "{top}");
}

/// A grant by subscriber over the API (the CLI): alice's session already
/// running becomes exempt, her next session at another address is exempt
/// as soon as it is answered, and revoking the grant ends it.
#[test]
fn a_subscriber_granted_over_the_api_is_exempt_wherever_she_connects() {
    let mut lab = radius_lab_with(
        "[api]\nsocket = \"api.sock\"\ntoken_file = \"api.token\"\nstate_file = \"state.json\"\naudit_log = \"audit.jsonl\"\n",
    );
    let token = lab.dir.path().join("api.token");
    fs::write(&token, "lab-api-token\n").unwrap();
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
    lab.start_agent();
    let config = lab.config.to_str().unwrap().to_owned();
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--config", &config]);
        let (ok, out, err) = lab.agent_cmd(&all);
        assert!(ok, "op25b-agent {args:?}: {err}");
        out
    };

    accounting(&lab, "Start", "s-1", "alice@example.jp", A, "");
    assert!(!lab.connects(A, MX, 25, 0.5), "alice is not exempt yet");

    cli(&[
        "exempt",
        "add",
        "--subscriber",
        "alice@example.jp",
        "--ttl",
        "7d",
        "--reason",
        "ticket 1234",
    ]);
    lab.wait_for(
        Duration::from_secs(3),
        "alice's running session exempt",
        |l| l.connects(A, MX, 25, 0.3),
    );
    let list = cli(&["exempt", "list"]);
    assert!(
        list.contains("subscriber alice@example.jp") && list.contains("ticket 1234"),
        "{list}"
    );

    accounting(&lab, "Stop", "s-1", "alice@example.jp", A, "");
    assert!(!lab.connects(A, MX, 25, 0.5), "Stop left A exempt");
    accounting(&lab, "Start", "s-2", "alice@example.jp", B, "");
    assert!(
        lab.connects(B, MX, 25, 1.0),
        "the granted exemption did not follow alice to B"
    );

    cli(&["exempt", "del", "--subscriber", "alice@example.jp"]);
    lab.wait_for(Duration::from_secs(3), "the revoked grant leaving", |l| {
        !l.connects(B, MX, 25, 0.3)
    });
    let audit = fs::read_to_string(lab.dir.path().join("audit.jsonl")).unwrap();
    assert_eq!(
        audit.matches(r#""subscriber":"alice@example.jp""#).count(),
        2,
        "{audit}"
    );
}
