//! The agent's admin endpoint: `/metrics` (Prometheus text format),
//! `/healthz`, `/readyz` and `/api/v1/top` for the abuse desk. Routes are
//! plain functions of the request; `serve` puts them on the transport.

use std::{net::SocketAddr, sync::Arc};

use super::{
    server::{self, Answer, Limits, Listener, RequestHead, Routes},
    types::{TopAnswer, TopQuery},
};
use crate::observe::{metrics::Telemetry, readiness::Readiness};

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address}: {source}")]
pub struct ListenError {
    pub address: String,
    #[source]
    pub source: std::io::Error,
}

/// What the admin routes read.
pub struct AdminRoutes {
    pub telemetry: Arc<Telemetry>,
    pub readiness: Arc<Readiness>,
}

impl Routes for AdminRoutes {
    fn answer(&self, head: &RequestHead, _body: &[u8]) -> Answer {
        match head.path.as_str() {
            "/metrics" => Answer {
                status: 200,
                content_type: "text/plain; version=0.0.4",
                body: self.telemetry.render(),
            },
            "/healthz" => Answer::text(200, "ok\n"),
            "/readyz" => match self.readiness.check() {
                Ok(()) => Answer::text(200, "ready\n"),
                Err(why) => Answer::text(503, format!("not ready: {why}\n")),
            },
            "/api/v1/top" => match TopQuery::from_query(&head.query) {
                Ok(query) => Answer::json(200, &self.top(query)),
                Err(message) => Answer::error(400, message),
            },
            _ => Answer::text(404, "not found: /metrics /healthz /readyz /api/v1/top\n"),
        }
    }
}

impl AdminRoutes {
    fn top(&self, query: TopQuery) -> TopAnswer {
        let now = crate::clock::now_unix();
        let sources = self.telemetry.top.lock().expect("not poisoned").top(
            now,
            query.window_seconds,
            query.limit,
        );
        TopAnswer {
            window_seconds: query.window_seconds,
            generated_at: now,
            sources: sources.into_iter().map(Into::into).collect(),
        }
    }
}

/// Binds `address` and serves the admin routes on their own thread.
pub fn serve(address: &str, routes: AdminRoutes) -> Result<SocketAddr, ListenError> {
    let listen_err = |source| ListenError {
        address: address.to_owned(),
        source,
    };
    let listener = std::net::TcpListener::bind(address).map_err(listen_err)?;
    let bound = listener.local_addr().map_err(listen_err)?;
    server::serve(
        "http-admin",
        Listener::Tcp(listener),
        Arc::new(routes),
        Limits::default(),
    )
    .map_err(listen_err)?;
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use hyper::Method;

    use super::*;

    fn routes() -> AdminRoutes {
        AdminRoutes {
            telemetry: Arc::new(Telemetry::new(std::path::Path::new("/nonexistent"), 16)),
            readiness: Arc::new(Readiness::default()),
        }
    }

    fn get(routes: &AdminRoutes, path: &str) -> Answer {
        routes.answer(&RequestHead::new(Method::GET, path), b"")
    }

    #[test]
    fn readiness_follows_its_handle() {
        let routes = routes();
        let answer = get(&routes, "/readyz");
        assert_eq!(answer.status, 503);
        assert!(String::from_utf8_lossy(&answer.body).contains("starting"));
        routes.readiness.set_ready();
        assert_eq!(get(&routes, "/readyz").status, 200);
        assert_eq!(get(&routes, "/healthz").status, 200);
    }

    #[test]
    fn metrics_render_and_unknown_paths_are_404() {
        let routes = routes();
        let metrics = get(&routes, "/metrics");
        assert_eq!(metrics.status, 200);
        assert!(String::from_utf8_lossy(&metrics.body).contains("op25b_build_info"));
        assert_eq!(get(&routes, "/nope").status, 404);
    }

    #[test]
    fn top_answers_json_and_names_bad_parameters() {
        let routes = routes();
        let now = crate::clock::now_unix();
        routes.telemetry.top.lock().unwrap().record(
            "100.64.1.2".parse().unwrap(),
            "198.51.100.25".parse().unwrap(),
            3,
            now,
        );
        let answer = get(&routes, "/api/v1/top?window=1h&limit=5");
        assert_eq!(answer.status, 200);
        let top: TopAnswer = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(top.sources.len(), 1);
        assert_eq!(
            (top.sources[0].source.as_str(), top.sources[0].attempts),
            ("100.64.1.2", 3)
        );
        let bad = get(&routes, "/api/v1/top?limit=0");
        assert_eq!(bad.status, 400);
        assert!(String::from_utf8_lossy(&bad.body).contains("limit"));
    }
}
