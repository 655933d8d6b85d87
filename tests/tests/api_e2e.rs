//! The provisioning API in the netns lab: grants over the CLI take effect,
//! persist across kill -9, expire on time, and are audited; bad requests get
//! precise answers; 50 concurrent clients are safe. Needs root.
use std::{fs, time::Duration};

use op25b_agent::api::client::{self, ClientError, Endpoint};
use op25b_tests::lab::Lab;

const DYN4: &str = "100.64.1.2";
const MX4: &str = "198.51.100.25";
const TOKEN: &str = "s3cret-token-for-tests";

/// One API request over the unix socket: (status, body).
fn request(
    socket: &std::path::Path,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), ClientError> {
    let reply = client::request(
        &Endpoint::Unix(socket.to_owned()),
        method.parse().expect("an HTTP method"),
        path,
        Some(token),
        body.map(|b| b.as_bytes().to_vec()),
    )?;
    Ok((reply.status, reply.text()))
}

fn api_lab() -> Lab {
    let lab = Lab::up_with(&[], "[api]\nsocket = \"api.sock\"\ntoken_file = \"api.token\"\nstate_file = \"state.json\"\naudit_log = \"audit.jsonl\"\nmax_body_bytes = 4096\n");
    fs::write(lab.dir.path().join("api.token"), format!("{TOKEN}\n")).unwrap();
    // A token others can read is refused, as ssh refuses such keys.
    fs::set_permissions(
        lab.dir.path().join("api.token"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    lab
}

fn cli(lab: &Lab, args: &[&str]) -> String {
    let mut all = args.to_vec();
    let config = lab.config.to_str().unwrap().to_owned();
    all.extend(["--config", &config]);
    let (ok, out, err) = lab.agent_cmd(&all);
    assert!(ok, "op25b-agent {args:?}: {err}");
    out
}

#[test]
fn grants_take_effect_persist_across_kill_9_expire_and_are_audited() {
    let mut lab = api_lab();
    lab.start_agent();
    assert!(!lab.connects(DYN4, MX4, 25, 0.5));

    cli(
        &lab,
        &[
            "exempt",
            "add",
            "100.64.1.2/32",
            "--ttl",
            "7d",
            "--reason",
            "ticket 1234",
        ],
    );
    lab.wait_for(Duration::from_secs(3), "the exemption", |l| {
        l.connects(DYN4, MX4, 25, 0.3)
    });
    let list = cli(&lab, &["exempt", "list"]);
    assert!(
        list.contains("100.64.1.2/32") && list.contains("ticket 1234") && list.contains("cli:"),
        "{list}"
    );
    let audit = fs::read_to_string(lab.dir.path().join("audit.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(
        (
            line["action"].as_str(),
            line["list"].as_str(),
            line["prefix"].as_str()
        ),
        (Some("add"), Some("exemptions"), Some("100.64.1.2/32"))
    );
    assert_eq!(line["reason"], "ticket 1234");
    assert!(
        line["actor"].as_str().unwrap().starts_with("cli:")
            && line["time"].as_str().unwrap().ends_with('Z')
    );
    assert!(line["expires_at"].as_str().is_some(), "{line}");

    // kill -9: the kernel keeps enforcing, the state file brings the grant back.
    lab.stop_agent(libc::SIGKILL);
    assert!(lab.connects(DYN4, MX4, 25, 1.0));
    lab.start_agent();
    assert!(
        lab.connects(DYN4, MX4, 25, 1.0),
        "the grant was lost across a restart"
    );
    assert!(cli(&lab, &["exempt", "list", "--json"]).contains("ticket 1234"));

    cli(&lab, &["exempt", "del", "100.64.1.2/32"]);
    lab.wait_for(Duration::from_secs(3), "the revocation", |l| {
        !l.connects(DYN4, MX4, 25, 0.3)
    });

    // A temporary exemption disappears on its own, from the maps and the state.
    cli(&lab, &["exempt", "add", "100.64.1.2", "--ttl", "2s"]);
    lab.wait_for(Duration::from_secs(3), "the temporary exemption", |l| {
        l.connects(DYN4, MX4, 25, 0.3)
    });
    lab.wait_for(Duration::from_secs(6), "the exemption to expire", |l| {
        !l.connects(DYN4, MX4, 25, 0.3)
    });
    let state = fs::read_to_string(lab.dir.path().join("state.json")).unwrap();
    assert!(!state.contains("100.64.1.2"), "{state}");

    // Allowed destinations work the same way.
    cli(
        &lab,
        &[
            "allow-destination",
            "add",
            "198.51.100.25/32",
            "--reason",
            "partner relay",
        ],
    );
    lab.wait_for(Duration::from_secs(3), "the new relay", |l| {
        l.connects(DYN4, MX4, 25, 0.3)
    });
    cli(&lab, &["allow-destination", "del", "198.51.100.25/32"]);
    lab.wait_for(Duration::from_secs(3), "the relay's removal", |l| {
        !l.connects(DYN4, MX4, 25, 0.3)
    });
}

#[test]
fn bad_requests_get_precise_answers_and_change_nothing() {
    let mut lab = api_lab();
    lab.start_agent();
    let socket = lab.dir.path().join("api.sock");
    let call = |token: &str, method: &str, path: &str, body: Option<&str>| {
        request(&socket, token, method, path, body).unwrap()
    };
    let post = |body: &str| call(TOKEN, "POST", "/api/v1/exemptions", Some(body));

    assert_eq!(call("", "GET", "/api/v1/exemptions", None).0, 401);
    assert_eq!(call("wrong", "GET", "/api/v1/exemptions", None).0, 401);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the socket must not be world-writable");
    let cases: &[(&str, u16, &str)] = &[
        ("{not json", 400, "body:"),
        (
            "{\"prefix\": \"100.64.1.9/32\", \"colour\": 1}",
            400,
            "unknown field `colour`",
        ),
        ("{\"ttl\": 5}", 400, "missing field `prefix`"),
        (
            "{\"prefix\": \"100.64.1.9/24\"}",
            400,
            "prefix: host bits set in 100.64.1.9/24",
        ),
        ("{\"prefix\": \"banana\"}", 400, "prefix:"),
        (
            "{\"prefix\": \"100.64.1.9\", \"ttl\": \"soon\"}",
            400,
            "ttl",
        ),
        ("{\"prefix\": \"100.64.1.9\", \"ttl\": 0}", 400, "ttl"),
    ];
    for (body, status, needle) in cases {
        let (got, answer) = post(body);
        assert_eq!(got, *status, "{body} -> {answer}");
        assert!(
            answer.contains(needle),
            "{body} -> {answer} (wanted {needle:?})"
        );
    }
    let big = format!(
        "{{\"prefix\": \"100.64.1.9\", \"reason\": \"{}\"}}",
        "x".repeat(8000)
    );
    assert_eq!(post(&big).0, 413);
    assert_eq!(call(TOKEN, "GET", "/api/v1/nothing", None).0, 404);
    assert_eq!(call(TOKEN, "PUT", "/api/v1/exemptions", Some("{}")).0, 405);
    assert_eq!(
        call(
            TOKEN,
            "DELETE",
            "/api/v1/exemptions?prefix=100.64.1.9%2F32",
            None
        )
        .0,
        404
    );
    let (status, list) = call(TOKEN, "GET", "/api/v1/exemptions", None);
    assert_eq!((status, list.as_str()), (200, "{\"exemptions\":[]}"));
    assert!(
        !lab.dir.path().join("audit.jsonl").exists(),
        "refused requests were audited as changes"
    );
}

#[test]
fn fifty_concurrent_clients() {
    let mut lab = api_lab();
    lab.start_agent();
    let socket = lab.dir.path().join("api.sock");
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let body = format!("{{\"prefix\": \"100.64.2.{i}/32\", \"reason\": \"bulk {i}\", \"actor\": \"portal\"}}");
                request(&socket, TOKEN, "POST", "/api/v1/exemptions", Some(&body)).unwrap()
            })
        })
        .collect();
    for t in threads {
        let (status, body) = t.join().unwrap();
        assert_eq!(status, 201, "{body}");
    }
    let (_, list) = request(&socket, TOKEN, "GET", "/api/v1/exemptions", None).unwrap();
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v["exemptions"].as_array().unwrap().len(), 50);
    let state: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(lab.dir.path().join("state.json")).unwrap())
            .unwrap();
    assert_eq!(state["exempt"].as_object().unwrap().len(), 50);
    assert_eq!(
        fs::read_to_string(lab.dir.path().join("audit.jsonl"))
            .unwrap()
            .lines()
            .count(),
        50
    );
    lab.wait_for(Duration::from_secs(3), "the kernel to hold all 50", |l| {
        let (_, out, _) = l.agent_cmd(&[
            "explain",
            "100.64.2.49",
            MX4,
            "--json",
            "--pin-path",
            l.pin.to_str().unwrap(),
        ]);
        out.contains("\"reason\":\"src_exempt\"")
    });
    let status = lab.status();
    let exempt = status["lists"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["list"] == "exempt")
        .unwrap()
        .clone();
    assert_eq!(
        exempt["ipv4"], 51,
        "1 from the config + 50 granted: {exempt}"
    );
}
