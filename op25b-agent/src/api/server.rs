//! One HTTP/1 transport for every listener the agent opens (metrics, the
//! provisioning API on TCP and on its unix socket), built to stay
//! answering under hostile clients: a deadline for the request head and
//! for each connection, a bound on open connections (in all and per peer
//! address), and no body read past the route's limit, or at all when the
//! route refuses the request from its head. Each listener runs its own
//! small tokio runtime on its own thread; routes are plain synchronous
//! functions, run on the runtime's blocking pool.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::{body::Incoming, header, server::conn::http1, service::service_fn, Method};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

use super::types::ErrorAnswer;

/// A route's complete answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json<T: Serialize>(status: u16, value: &T) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(value).expect("answers serialize"),
        }
    }

    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self::json(
            status,
            &ErrorAnswer {
                error: message.into(),
            },
        )
    }

    pub fn text(status: u16, text: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain",
            body: text.into().into_bytes(),
        }
    }

    fn into_response(self) -> hyper::Response<Full<Bytes>> {
        hyper::Response::builder()
            .status(self.status)
            .header(header::CONTENT_TYPE, self.content_type)
            .body(Full::new(Bytes::from(self.body)))
            .expect("valid response")
    }
}

/// A request's head as routes see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub content_length: Option<u64>,
}

impl RequestHead {
    fn of(parts: &hyper::http::request::Parts) -> Self {
        Self {
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            authorization: parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            content_length: parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
        }
    }

    /// A head for in-process tests of routes.
    pub fn new(method: Method, path_and_query: &str) -> Self {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        Self {
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            authorization: None,
            content_length: None,
        }
    }
}

/// What a listener serves.
pub trait Routes: Send + Sync + 'static {
    /// An answer decided from the head alone (authentication); the body is
    /// then never read.
    fn admit(&self, _head: &RequestHead) -> Option<Answer> {
        None
    }

    /// Bodies longer than this are refused with 413, unread.
    fn max_body_bytes(&self) -> usize {
        0
    }

    /// The answer (on a blocking thread: it may touch files and maps).
    fn answer(&self, head: &RequestHead, body: &[u8]) -> Answer;
}

/// What one listener tolerates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at once; more are closed unanswered.
    pub max_connections: usize,
    /// Open connections from one peer address (TCP).
    pub max_connections_per_peer: usize,
    /// Time to send a request head.
    pub header_timeout: Duration,
    /// Lifetime of a connection, keep-alive included.
    pub connection_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_peer: 64,
            header_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(30),
        }
    }
}

/// A bound socket, handed to [`serve`].
pub enum Listener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// Open connections, in all and per peer.
#[derive(Default)]
struct Occupancy {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

/// Holds a connection's place; gives it back when dropped.
struct Place {
    occupancy: Arc<Mutex<Occupancy>>,
    peer: Option<IpAddr>,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut o = self.occupancy.lock().expect("not poisoned");
        o.total -= 1;
        if let Some(peer) = self.peer {
            if let Some(n) = o.per_peer.get_mut(&peer) {
                *n -= 1;
                if *n == 0 {
                    o.per_peer.remove(&peer);
                }
            }
        }
    }
}

fn take_place(
    occupancy: &Arc<Mutex<Occupancy>>,
    limits: Limits,
    peer: Option<IpAddr>,
) -> Option<Place> {
    let mut o = occupancy.lock().expect("not poisoned");
    if o.total >= limits.max_connections {
        return None;
    }
    if let Some(peer) = peer {
        let n = o.per_peer.entry(peer).or_default();
        if *n >= limits.max_connections_per_peer {
            return None;
        }
        *n += 1;
    }
    o.total += 1;
    Some(Place {
        occupancy: Arc::clone(occupancy),
        peer,
    })
}

/// Serves `listener` on its own thread until the process exits.
pub fn serve(
    name: &str,
    listener: Listener,
    routes: Arc<dyn Routes>,
    limits: Limits,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(8)
        .build()?;
    match &listener {
        Listener::Tcp(l) => l.set_nonblocking(true)?,
        Listener::Unix(l) => l.set_nonblocking(true)?,
    }
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || runtime.block_on(accept_loop(listener, routes, limits)))?;
    Ok(())
}

/// A stream the transport serves, whatever its socket family.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for S {}

enum Acceptor {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Acceptor {
    fn new(listener: Listener) -> std::io::Result<Self> {
        Ok(match listener {
            Listener::Tcp(l) => Self::Tcp(tokio::net::TcpListener::from_std(l)?),
            Listener::Unix(l) => Self::Unix(tokio::net::UnixListener::from_std(l)?),
        })
    }

    /// The next connection and, for TCP, its peer's address.
    async fn accept(&self) -> std::io::Result<(Box<dyn Stream>, Option<IpAddr>)> {
        Ok(match self {
            Self::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                (Box::new(stream), Some(peer.ip()))
            }
            Self::Unix(l) => (Box::new(l.accept().await?.0), None),
        })
    }
}

async fn accept_loop(listener: Listener, routes: Arc<dyn Routes>, limits: Limits) {
    let acceptor = match Acceptor::new(listener) {
        Ok(acceptor) => acceptor,
        Err(e) => {
            tracing::error!("cannot serve: {e}");
            return;
        }
    };
    let occupancy = Arc::new(Mutex::new(Occupancy::default()));
    loop {
        match acceptor.accept().await {
            Ok((stream, peer)) => {
                // Over the bounds: closed unanswered, costing nothing more.
                if let Some(place) = take_place(&occupancy, limits, peer) {
                    connection(stream, Arc::clone(&routes), limits, place);
                }
            }
            Err(e) => {
                // Out of descriptors or similar: back off instead of spinning.
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn connection(stream: Box<dyn Stream>, routes: Arc<dyn Routes>, limits: Limits, place: Place) {
    tokio::spawn(async move {
        let service = service_fn(move |request| handle(request, Arc::clone(&routes)));
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let _ = tokio::time::timeout(limits.connection_timeout, conn).await;
        drop(place);
    });
}

async fn handle(
    request: hyper::Request<Incoming>,
    routes: Arc<dyn Routes>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let head = RequestHead::of(&parts);
    let max = routes.max_body_bytes();
    let too_long = || Answer::error(413, format!("body over {max} bytes"));
    let answer = if let Some(answer) = routes.admit(&head) {
        answer
    } else if head.content_length.is_some_and(|n| n > max as u64) {
        too_long()
    } else {
        match Limited::new(body, max).collect().await {
            Ok(collected) => {
                let body = collected.to_bytes();
                tokio::task::spawn_blocking(move || routes.answer(&head, &body))
                    .await
                    .unwrap_or_else(|_| Answer::error(500, "the handler failed"))
            }
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => too_long(),
            Err(e) => Answer::error(400, format!("body: {e}")),
        }
    };
    Ok(answer.into_response())
}
