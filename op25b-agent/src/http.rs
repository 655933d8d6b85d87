//! The agent's HTTP endpoint: `/metrics` (Prometheus text format),
//! `/healthz`, `/readyz` and `/api/v1/top` for the abuse desk.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    sync::Arc,
    time::Duration,
};

use serde::Serialize;
use tiny_http::{Header, Request, Response, Server};

use crate::{telemetry::Telemetry, top::TopSource};

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {address}: {message}")]
    Listen { address: String, message: String },
    #[error("{address}: {source}")]
    Client {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{address}{path}: {status}")]
    Status {
        address: String,
        path: String,
        status: String,
    },
}

/// The `/api/v1/top` answer.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct TopAnswer {
    pub window_seconds: u64,
    pub generated_at: u64,
    pub sources: Vec<TopSourceJson>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct TopSourceJson {
    pub source: String,
    pub attempts: u64,
    pub error: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub distinct_destinations: u64,
}

impl From<TopSource> for TopSourceJson {
    fn from(s: TopSource) -> Self {
        Self {
            source: s.source.to_string(),
            attempts: s.attempts,
            error: s.error,
            first_seen: crate::clock::rfc3339(s.first_seen),
            last_seen: crate::clock::rfc3339(s.last_seen),
            distinct_destinations: s.distinct_destinations,
        }
    }
}

/// Parses `window=1h&limit=20`; bad values name themselves.
pub fn parse_top_query(query: &str) -> Result<(u64, usize), String> {
    let (mut window, mut limit) = (3600, 20);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "window" => {
                window = humantime::parse_duration(value)
                    .map(|d| d.as_secs())
                    .or_else(|_| value.parse())
                    .map_err(|_| {
                        format!("window={value:?}: give a duration like 1h, 30m or seconds")
                    })?;
            }
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|l| (1..=10_000).contains(l))
                    .ok_or_else(|| format!("limit={value:?}: give 1..=10000"))?;
            }
            _ => return Err(format!("unknown parameter {key:?} (window, limit)")),
        }
    }
    Ok((window, limit))
}

fn respond(request: Request, status: u16, content_type: &str, body: Vec<u8>) {
    let header = Header::from_bytes("Content-Type", content_type).expect("valid header");
    let _ = request.respond(
        Response::from_data(body)
            .with_status_code(status)
            .with_header(header),
    );
}

fn handle(request: Request, telemetry: &Telemetry) {
    let url = request.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    match path {
        "/metrics" => respond(
            request,
            200,
            "text/plain; version=0.0.4",
            telemetry.render(),
        ),
        "/healthz" => respond(request, 200, "text/plain", b"ok\n".to_vec()),
        "/readyz" if telemetry.is_ready() => {
            respond(request, 200, "text/plain", b"ready\n".to_vec());
        }
        "/readyz" => respond(
            request,
            503,
            "text/plain",
            b"not ready: an interface is not attached\n".to_vec(),
        ),
        "/api/v1/top" => match parse_top_query(query) {
            Ok((window, limit)) => {
                let now = crate::clock::now_unix();
                let sources = telemetry
                    .top
                    .lock()
                    .expect("not poisoned")
                    .top(now, window, limit);
                let answer = TopAnswer {
                    window_seconds: window,
                    generated_at: now,
                    sources: sources.into_iter().map(Into::into).collect(),
                };
                respond(
                    request,
                    200,
                    "application/json",
                    serde_json::to_vec(&answer).expect("serializes"),
                );
            }
            Err(message) => respond(
                request,
                400,
                "application/json",
                serde_json::to_vec(&serde_json::json!({ "error": message })).expect("serializes"),
            ),
        },
        _ => respond(
            request,
            404,
            "text/plain",
            b"not found: /metrics /healthz /readyz /api/v1/top\n".to_vec(),
        ),
    }
}

/// Binds `address` and serves on a thread.
pub fn serve(address: &str, telemetry: Arc<Telemetry>) -> Result<SocketAddr, HttpError> {
    let server = Server::http(address).map_err(|e| HttpError::Listen {
        address: address.to_owned(),
        message: e.to_string(),
    })?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| HttpError::Listen {
            address: address.to_owned(),
            message: "not an IP listener".into(),
        })?;
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                handle(request, &telemetry);
            }
        })
        .expect("spawn http thread");
    Ok(bound)
}

/// A plain HTTP/1.0 GET, for the CLI talking to its agent.
pub fn get(address: &str, path: &str) -> Result<String, HttpError> {
    let client = |source| HttpError::Client {
        address: address.to_owned(),
        source,
    };
    let mut stream = TcpStream::connect(address).map_err(client)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(client)?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").map_err(client)?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(client)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") {
        return Err(HttpError::Status {
            address: address.to_owned(),
            path: path.to_owned(),
            status: format!("{status} {}", body.trim()),
        });
    }
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_query_parsing() {
        assert_eq!(parse_top_query(""), Ok((3600, 20)));
        assert_eq!(parse_top_query("window=24h&limit=5"), Ok((86_400, 5)));
        assert_eq!(parse_top_query("window=90"), Ok((90, 20)));
        assert!(parse_top_query("window=soon")
            .unwrap_err()
            .contains("window"));
        assert!(parse_top_query("limit=0").unwrap_err().contains("limit"));
        assert!(parse_top_query("sort=asc")
            .unwrap_err()
            .contains("unknown parameter"));
    }
}
