//! The one HTTP client: what the CLI uses to talk to a running agent, over
//! the API's unix socket or TCP.

use std::{fmt, path::PathBuf, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{header, Method};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};

use super::types::ErrorAnswer;

/// How long a read (GET) may take in all.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a change may take in all: longer than the agent waits for etcd
/// (20 s, `fleet::handle`), so the operator hears whether it was made
/// rather than a timeout that leaves it open.
pub const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

fn timeout_of(method: &Method) -> Duration {
    if method == Method::GET {
        READ_TIMEOUT
    } else {
        CHANGE_TIMEOUT
    }
}

/// Where the agent listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    /// `host:port`.
    Tcp(String),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "{}", path.display()),
            Self::Tcp(address) => f.write_str(address),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{endpoint}: {source}")]
    Io {
        endpoint: Endpoint,
        #[source]
        source: std::io::Error,
    },
    #[error("{endpoint}: {source}")]
    Http {
        endpoint: Endpoint,
        #[source]
        source: hyper::Error,
    },
    #[error("{endpoint}: no answer within {} s", after.as_secs())]
    Timeout { endpoint: Endpoint, after: Duration },
    #[error("{endpoint}{path}: {status}: {message}")]
    Status {
        endpoint: Endpoint,
        path: String,
        status: u16,
        message: String,
    },
    #[error("{endpoint}: bad answer: {message}")]
    Answer { endpoint: Endpoint, message: String },
}

/// An answer, whatever its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The error message of an error answer (or its raw text).
    pub fn error_message(&self) -> String {
        serde_json::from_slice::<ErrorAnswer>(&self.body)
            .map_or_else(|_| self.text().trim().to_owned(), |e| e.error)
    }
}

/// One request. `token` goes in as a bearer token.
pub fn request(
    endpoint: &Endpoint,
    method: Method,
    path_and_query: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> Result<Reply, ClientError> {
    let io = |source| ClientError::Io {
        endpoint: endpoint.clone(),
        source,
    };
    let timeout = timeout_of(&method);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(io)?;
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(header::HOST, "op25b")
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| ClientError::Answer {
            endpoint: endpoint.clone(),
            message: e.to_string(),
        })?;
    runtime.block_on(async {
        let exchange = async {
            match endpoint {
                Endpoint::Unix(path) => {
                    let stream = tokio::net::UnixStream::connect(path).await.map_err(io)?;
                    exchange(endpoint, stream, request).await
                }
                Endpoint::Tcp(address) => {
                    let stream = tokio::net::TcpStream::connect(address.as_str())
                        .await
                        .map_err(io)?;
                    exchange(endpoint, stream, request).await
                }
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(ClientError::Timeout {
                    endpoint: endpoint.clone(),
                    after: timeout,
                })
            })
    })
}

async fn exchange<S>(
    endpoint: &Endpoint,
    stream: S,
    request: hyper::Request<Full<Bytes>>,
) -> Result<Reply, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = |source| ClientError::Http {
        endpoint: endpoint.clone(),
        source,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(http)?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(http)?
        .to_bytes();
    Ok(Reply { status, body })
}

/// The admin listener as a client reaches it: where, and the read token
/// when the agent asks for one (`[metrics] read_token_file`).
#[derive(Clone, Debug)]
pub struct AdminEndpoint {
    pub endpoint: Endpoint,
    pub read_token: Option<String>,
}

impl AdminEndpoint {
    /// GET `path` and decode a 2xx JSON answer.
    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        get_json(&self.endpoint, path, self.read_token.as_deref())
    }

    /// GET `path` and return a 200 answer's text.
    pub fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let reply = request(
            &self.endpoint,
            Method::GET,
            path,
            self.read_token.as_deref(),
            None,
        )?;
        if reply.status != 200 {
            return Err(ClientError::Status {
                endpoint: self.endpoint.clone(),
                path: path.to_owned(),
                status: reply.status,
                message: reply.error_message(),
            });
        }
        Ok(reply.text())
    }
}

/// GET `path` (with `token` as a bearer token, if any) and decode a 2xx
/// JSON answer; other statuses are errors carrying the answer's message.
pub fn get_json<T: DeserializeOwned>(
    endpoint: &Endpoint,
    path: &str,
    token: Option<&str>,
) -> Result<T, ClientError> {
    let reply = request(endpoint, Method::GET, path, token, None)?;
    if !(200..300).contains(&reply.status) {
        return Err(ClientError::Status {
            endpoint: endpoint.clone(),
            path: path.to_owned(),
            status: reply.status,
            message: reply.error_message(),
        });
    }
    serde_json::from_slice(&reply.body).map_err(|e| ClientError::Answer {
        endpoint: endpoint.clone(),
        message: e.to_string(),
    })
}

/// GET `path` from `address` (host:port) and return a 200 answer's text.
pub fn get(address: &str, path: &str) -> Result<String, ClientError> {
    AdminEndpoint {
        endpoint: Endpoint::Tcp(address.to_owned()),
        read_token: None,
    }
    .get_text(path)
}
