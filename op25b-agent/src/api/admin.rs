//! The agent's admin endpoint: `/metrics` (Prometheus text format),
//! `/healthz`, `/readyz` and `/api/v1/top` for the abuse desk. Routes are
//! plain functions of the request; `serve` puts them on the transport.

use std::{net::SocketAddr, sync::Arc};

use super::{
    bearer::BearerToken,
    server::{self, Answer, Limits, Listener, RequestHead, Routes},
    types::{SessionsQuery, TopAnswer, TopQuery},
};
use crate::{
    observe::{metrics::Telemetry, readiness::Readiness},
    radius::Radius,
};

/// The answer when the agent keeps no session table.
pub const NO_RADIUS: &str = "no RADIUS sessions: this agent has no [radius] listener";

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
    /// The RADIUS session table, when `[radius]` listens.
    pub radius: Option<Arc<Radius>>,
    /// Asked of every route that names sources or subscribers (all but the
    /// health checks), when set.
    pub read_token: Option<BearerToken>,
}

/// Routes anyone may ask: a health check needs no secret.
const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

impl Routes for AdminRoutes {
    fn answer(&self, head: &RequestHead, _body: &[u8]) -> Answer {
        if let Some(token) = &self.read_token {
            if !OPEN_PATHS.contains(&head.path.as_str())
                && !token.accepts(head.authorization.as_deref())
            {
                return Answer::error(
                    401,
                    "missing or wrong bearer token (Authorization: Bearer <token from metrics.read_token_file>)",
                );
            }
        }
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
            "/api/v1/sessions" => match (&self.radius, SessionsQuery::from_query(&head.query)) {
                (None, _) => Answer::error(404, NO_RADIUS),
                (Some(_), Err(message)) => Answer::error(400, message),
                (Some(radius), Ok(query)) => Answer::json(200, &radius.sessions(&query)),
            },
            _ => Answer::text(
                404,
                "not found: /metrics /healthz /readyz /api/v1/top /api/v1/sessions\n",
            ),
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
            radius: None,
            read_token: None,
        }
    }

    fn get(routes: &AdminRoutes, path: &str) -> Answer {
        routes.answer(&RequestHead::new(Method::GET, path), b"")
    }

    #[test]
    fn a_read_token_guards_all_but_the_health_checks() {
        use std::{io::Write as _, os::unix::fs::PermissionsExt as _};
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"r34d\n").unwrap();
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        let routes = AdminRoutes {
            read_token: Some(BearerToken::load(file.path()).unwrap()),
            ..routes()
        };
        routes.readiness.set_ready();
        let ask = |path: &str, authorization: Option<&str>| {
            let mut head = RequestHead::new(Method::GET, path);
            head.authorization = authorization.map(str::to_owned);
            routes.answer(&head, b"").status
        };
        for path in ["/metrics", "/api/v1/top", "/api/v1/sessions", "/nope"] {
            assert_eq!(ask(path, None), 401, "{path} without a token");
            assert_eq!(
                ask(path, Some("Bearer wrong")),
                401,
                "{path} with a wrong token"
            );
        }
        assert_eq!(ask("/metrics", Some("Bearer r34d")), 200);
        assert_eq!(ask("/api/v1/top", Some("Bearer r34d")), 200);
        assert_eq!(ask("/healthz", None), 200);
        assert_eq!(ask("/readyz", None), 200);
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
        let sessions = get(&routes, "/api/v1/sessions");
        assert_eq!(sessions.status, 404);
        assert!(String::from_utf8_lossy(&sessions.body).contains("no [radius] listener"));
        let bad = get(&routes, "/api/v1/top?limit=0");
        assert_eq!(bad.status, 400);
        assert!(String::from_utf8_lossy(&bad.body).contains("limit"));
    }
}
