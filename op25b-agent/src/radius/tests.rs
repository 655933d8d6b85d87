//! The listeners in-process over loopback: answers only after `sync`,
//! bad requests dropped and counted with the table unchanged, CoA and
//! Disconnect answers with their Error-Cause.

use std::{
    collections::HashSet,
    net::{SocketAddr, UdpSocket},
    os::unix::fs::PermissionsExt as _,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use super::{
    codec::{self, attr, code, status, Attribute},
    Radius,
};
use crate::{
    config::radius::{read_secret, RadiusClient, RadiusConfig},
    policy::prefix::Prefix,
};

const SECRET: &[u8] = b"testing123";

struct Harness {
    radius: Arc<Radius>,
    accounting: SocketAddr,
    coa: SocketAddr,
    /// What the fake agent loop last put in the "maps".
    maps: Arc<Mutex<Vec<Prefix>>>,
    /// While false, the fake agent loop does not apply (maps "stuck").
    applying: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    dir: PathBuf,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn harness(name: &str, exempt: &[&str]) -> Harness {
    let dir = std::env::temp_dir().join(format!("op25b-radius-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = RadiusConfig {
        accounting_listen: Some("127.0.0.1:0".parse().unwrap()),
        coa_listen: Some("127.0.0.1:0".parse().unwrap()),
        session_state_file: dir.join("sessions.json"),
        max_sessions: 3,
        receive_buffer_bytes: crate::config::radius::DEFAULT_RECEIVE_BUFFER_BYTES,
        exempt_filter_id: Some("op25b-exempt".into()),
        clients: vec![RadiusClient {
            address: "127.0.0.1/32".parse().unwrap(),
            secret: read_secret(&secret_file).unwrap(),
            secret_file,
        }],
    };
    let radius = Arc::new(Radius::open(config).unwrap());
    let (accounting, coa) = radius.serve().unwrap();
    let maps = Arc::new(Mutex::new(Vec::new()));
    let applying = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let subscribers: HashSet<String> = exempt.iter().map(|s| (*s).to_owned()).collect();
    {
        let (radius, maps, applying, stop) = (
            Arc::clone(&radius),
            Arc::clone(&maps),
            Arc::clone(&applying),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                radius.wait(Duration::from_millis(50));
                radius.sync(&subscribers, || {
                    if !applying.load(Ordering::Relaxed) {
                        return Err("maps stuck".into());
                    }
                    *maps.lock().unwrap() =
                        radius.exempt_prefixes(&subscribers).into_iter().collect();
                    Ok(())
                });
            }
        });
    }
    Harness {
        radius,
        accounting: accounting.unwrap(),
        coa: coa.unwrap(),
        maps,
        applying,
        stop,
        dir,
    }
}

fn client(from: &str) -> UdpSocket {
    let socket = UdpSocket::bind(format!("{from}:0")).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    socket
}

/// Sends and returns the decoded, verified answer (None: no answer).
fn exchange(to: SocketAddr, from: &str, raw: &[u8], secret: &[u8]) -> Option<codec::Packet> {
    let socket = client(from);
    socket.send_to(raw, to).unwrap();
    let mut buffer = [0; 4096];
    let (n, _) = socket.recv_from(&mut buffer).ok()?;
    let request = codec::decode(raw).unwrap();
    assert!(
        codec::verify_response(&buffer[..n], &request.authenticator, secret),
        "bad Response Authenticator"
    );
    Some(codec::decode(&buffer[..n]).unwrap())
}

fn accounting(kind: u32, id: &str, user: &str, address: [u8; 4], extra: &[Attribute]) -> Vec<u8> {
    let mut attributes = vec![
        Attribute::u32(attr::ACCT_STATUS_TYPE, kind),
        Attribute::new(attr::ACCT_SESSION_ID, id),
        Attribute::new(attr::USER_NAME, user),
        Attribute::new(attr::FRAMED_IP_ADDRESS, address),
        Attribute::new(attr::NAS_IDENTIFIER, "bng1"),
    ];
    attributes.extend_from_slice(extra);
    codec::encode_request(code::ACCOUNTING_REQUEST, 1, &attributes, SECRET)
}

fn counted(h: &Harness, kind: &str, result: &str) -> u64 {
    h.radius
        .metrics
        .requests
        .with_label_values(&[kind, result])
        .get()
}

fn maps(h: &Harness) -> Vec<String> {
    h.maps
        .lock()
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn accounting_follows_the_subscriber_and_answers_after_apply() {
    let h = harness("follow", &["alice@example.jp"]);
    let start = accounting(
        status::START,
        "s1",
        "alice@example.jp",
        [100, 64, 0, 1],
        &[],
    );
    let answer = exchange(h.accounting, "127.0.0.1", &start, SECRET).expect("answered");
    assert_eq!(answer.code, code::ACCOUNTING_RESPONSE);
    assert_eq!(
        maps(&h),
        ["100.64.0.1/32"],
        "answered before the maps had it"
    );
    // Bob is not exempt: in the table, not in the maps.
    let bob = accounting(status::START, "s2", "bob", [100, 64, 0, 2], &[]);
    assert!(exchange(h.accounting, "127.0.0.1", &bob, SECRET).is_some());
    assert_eq!(maps(&h), ["100.64.0.1/32"]);
    // Stop, then Start with another address: the exemption follows.
    let stop = accounting(status::STOP, "s1", "alice@example.jp", [100, 64, 0, 1], &[]);
    assert!(exchange(h.accounting, "127.0.0.1", &stop, SECRET).is_some());
    assert!(maps(&h).is_empty());
    let again = accounting(
        status::START,
        "s3",
        "alice@example.jp",
        [100, 64, 0, 9],
        &[],
    );
    assert!(exchange(h.accounting, "127.0.0.1", &again, SECRET).is_some());
    assert_eq!(maps(&h), ["100.64.0.9/32"]);
    // A Filter-Id the carrier sends for business plans exempts by itself.
    let business = accounting(
        status::START,
        "s4",
        "carol",
        [100, 64, 0, 4],
        &[Attribute::new(attr::FILTER_ID, "op25b-exempt")],
    );
    assert!(exchange(h.accounting, "127.0.0.1", &business, SECRET).is_some());
    assert_eq!(maps(&h), ["100.64.0.4/32", "100.64.0.9/32"]);
    assert_eq!(counted(&h, "start", "accepted"), 4);
    // Table full (max 3): dropped, counted, no answer.
    let dave = accounting(status::START, "s5", "dave", [100, 64, 0, 5], &[]);
    assert!(exchange(h.accounting, "127.0.0.1", &dave, SECRET).is_none());
    assert_eq!(counted(&h, "start", "table_full"), 1);
    // Accounting-On from the NAS: all its sessions end.
    let on = codec::encode_request(
        code::ACCOUNTING_REQUEST,
        9,
        &[
            Attribute::u32(attr::ACCT_STATUS_TYPE, status::ACCOUNTING_ON),
            Attribute::new(attr::NAS_IDENTIFIER, "bng1"),
        ],
        SECRET,
    );
    assert!(exchange(h.accounting, "127.0.0.1", &on, SECRET).is_some());
    assert!(maps(&h).is_empty());
    assert!(h.radius.table.lock().unwrap().is_empty());
}

#[test]
fn no_answer_while_the_maps_cannot_be_updated() {
    let h = harness("stuck", &["alice"]);
    h.applying.store(false, Ordering::Relaxed);
    let start = accounting(status::START, "s1", "alice", [100, 64, 0, 1], &[]);
    assert!(exchange(h.accounting, "127.0.0.1", &start, SECRET).is_none());
    h.applying.store(true, Ordering::Relaxed);
    // The NAS retransmits; now it is answered and in the maps.
    assert!(exchange(h.accounting, "127.0.0.1", &start, SECRET).is_some());
    assert_eq!(maps(&h), ["100.64.0.1/32"]);
}

#[test]
fn bad_requests_are_dropped_counted_and_change_nothing() {
    let h = harness("bad", &["alice"]);
    let start = accounting(status::START, "s1", "alice", [100, 64, 0, 1], &[]);
    // Unknown client (127.0.0.2 is not in the clients).
    assert!(exchange(h.accounting, "127.0.0.2", &start, SECRET).is_none());
    assert_eq!(counted(&h, "unknown", "unknown_client"), 1);
    // Wrong secret.
    let wrong = codec::encode_request(
        code::ACCOUNTING_REQUEST,
        1,
        &codec::decode(&start).unwrap().attributes,
        b"wrong",
    );
    assert!(exchange(h.accounting, "127.0.0.1", &wrong, b"wrong").is_none());
    assert_eq!(counted(&h, "start", "bad_authenticator"), 1);
    // A length that lies, an attribute of length 1, truncation.
    let mut lying = start.clone();
    lying[3] = lying[3].wrapping_add(40);
    let mut short_attribute = start.clone();
    short_attribute[21] = 1;
    for raw in [lying, short_attribute, start[..30].to_vec()] {
        assert!(exchange(h.accounting, "127.0.0.1", &raw, SECRET).is_none());
    }
    assert_eq!(counted(&h, "unknown", "malformed"), 3);
    // A Framed-IP-Address of 3 octets, properly signed: malformed too.
    let odd = codec::encode_request(
        code::ACCOUNTING_REQUEST,
        1,
        &[
            Attribute::u32(attr::ACCT_STATUS_TYPE, status::START),
            Attribute::new(attr::ACCT_SESSION_ID, "x"),
            Attribute::new(attr::FRAMED_IP_ADDRESS, [1, 2, 3]),
        ],
        SECRET,
    );
    assert!(exchange(h.accounting, "127.0.0.1", &odd, SECRET).is_none());
    assert_eq!(counted(&h, "start", "malformed"), 1);
    assert!(h.radius.table.lock().unwrap().is_empty());
    assert!(maps(&h).is_empty());
}

fn coa_request(code: u8, attributes: &[Attribute]) -> Vec<u8> {
    codec::encode_request(code, 5, attributes, SECRET)
}

fn error_cause(answer: &codec::Packet) -> Option<u32> {
    answer.integer(attr::ERROR_CAUSE).unwrap()
}

#[test]
fn coa_changes_a_session_and_disconnect_ends_it() {
    let h = harness("coa", &[]);
    let start = accounting(status::START, "s1", "bob", [100, 64, 0, 2], &[]);
    assert!(exchange(h.accounting, "127.0.0.1", &start, SECRET).is_some());
    assert!(maps(&h).is_empty());
    let exempt = coa_request(
        code::COA_REQUEST,
        &[
            Attribute::new(attr::ACCT_SESSION_ID, "s1"),
            Attribute::new(attr::FILTER_ID, "op25b-exempt"),
        ],
    );
    let answer = exchange(h.coa, "127.0.0.1", &exempt, SECRET).unwrap();
    assert_eq!(answer.code, code::COA_ACK);
    assert_eq!(maps(&h), ["100.64.0.2/32"]);
    let enforce = coa_request(
        code::COA_REQUEST,
        &[
            Attribute::new(attr::USER_NAME, "bob"),
            Attribute::new(attr::FILTER_ID, "op25b-enforce"),
        ],
    );
    assert_eq!(
        exchange(h.coa, "127.0.0.1", &enforce, SECRET).unwrap().code,
        code::COA_ACK
    );
    assert!(maps(&h).is_empty());
    // NAKs with the right Error-Cause.
    let cases: [(Vec<Attribute>, u32); 4] = [
        (
            vec![
                Attribute::new(attr::ACCT_SESSION_ID, "nope"),
                Attribute::new(attr::FILTER_ID, "op25b-exempt"),
            ],
            503,
        ),
        (vec![Attribute::new(attr::FILTER_ID, "op25b-exempt")], 402),
        (
            vec![
                Attribute::new(attr::ACCT_SESSION_ID, "s1"),
                Attribute::new(attr::FILTER_ID, "gold-plan"),
            ],
            407,
        ),
        (
            vec![
                Attribute::new(attr::ACCT_SESSION_ID, "s1"),
                Attribute::new(attr::FILTER_ID, "op25b-exempt"),
                Attribute::new(attr::REPLY_MESSAGE, "hello"),
            ],
            401,
        ),
    ];
    for (attributes, cause) in cases {
        let answer = exchange(
            h.coa,
            "127.0.0.1",
            &coa_request(code::COA_REQUEST, &attributes),
            SECRET,
        )
        .unwrap();
        assert_eq!(
            (answer.code, error_cause(&answer)),
            (code::COA_NAK, Some(cause))
        );
    }
    assert!(maps(&h).is_empty(), "a NAK changed the maps");
    // Framed-IP-Address names it too; then Disconnect removes the session.
    let by_address = coa_request(
        code::COA_REQUEST,
        &[
            Attribute::new(attr::FRAMED_IP_ADDRESS, [100, 64, 0, 2]),
            Attribute::new(attr::FILTER_ID, "op25b-exempt"),
        ],
    );
    assert_eq!(
        exchange(h.coa, "127.0.0.1", &by_address, SECRET)
            .unwrap()
            .code,
        code::COA_ACK
    );
    assert_eq!(maps(&h), ["100.64.0.2/32"]);
    let disconnect = coa_request(
        code::DISCONNECT_REQUEST,
        &[Attribute::new(attr::ACCT_SESSION_ID, "s1")],
    );
    assert_eq!(
        exchange(h.coa, "127.0.0.1", &disconnect, SECRET)
            .unwrap()
            .code,
        code::DISCONNECT_ACK
    );
    assert!(maps(&h).is_empty());
    let again = exchange(h.coa, "127.0.0.1", &disconnect, SECRET).unwrap();
    assert_eq!(
        (again.code, error_cause(&again)),
        (code::DISCONNECT_NAK, Some(503))
    );
    assert_eq!(counted(&h, "coa", "accepted"), 3);
    assert_eq!(counted(&h, "coa", "nak"), 4);
    assert_eq!(counted(&h, "disconnect", "nak"), 1);
}

#[test]
fn sessions_survive_a_restart() {
    let dir;
    {
        let h = harness("restart", &["alice"]);
        let start = accounting(status::START, "s1", "alice", [100, 64, 0, 1], &[]);
        assert!(exchange(h.accounting, "127.0.0.1", &start, SECRET).is_some());
        dir = h.dir.clone();
        let config = h.radius.config();
        // A second agent opens the same state file (as after kill -9).
        let reopened = Radius::open(config).unwrap();
        let subscribers: HashSet<String> = ["alice".to_owned()].into();
        assert_eq!(
            reopened
                .exempt_prefixes(&subscribers)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["100.64.0.1/32"]
        );
    }
    assert!(!dir.exists());
}
