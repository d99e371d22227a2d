//! The HTTP server: actix's HTTP/1.1 service on an accept path of our own, for two things actix's
//! `HttpServer` cannot do:
//!
//! - Every connection is counted. Past `--max-connections` (by default a little under the process's
//!   file limit) a client gets a 503 and is closed at once instead of taking the last descriptors;
//!   the last [`Connections::reserve`] connections under the cap answer only the health check, so
//!   that `/status` keeps answering while slow clients hold the rest.
//! - The errors actix writes by itself, before any handler runs — 400 for bytes that are not HTTP,
//!   408 for a head that does not arrive in time, 431 for a head too large — come out with empty
//!   bodies. [`Conn`] rewrites exactly those answers into the JSON error shape of every other one.

use super::error::ApiError;
use actix_http::{HttpService, Request};
use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactory, ServiceFactoryExt};
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, Server, ServiceResponse};
use std::io;
use std::net::TcpListener;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How the server treats connections.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections at most; past it a client is answered 503 and closed.
    pub max_connections: usize,
    /// A request's head must arrive within this (408 otherwise).
    pub request_timeout: Duration,
    /// An idle kept-alive connection is closed after this.
    pub keep_alive: Duration,
    pub workers: usize,
    pub shutdown_timeout: Duration,
}

impl Limits {
    /// The default cap: the file limit (raised to its hard maximum first) less room for the store's
    /// files, the sources' sockets and the reserve.
    pub(crate) fn default_max_connections() -> usize {
        let nofile = match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(n) => n,
            Err(e) => {
                log::warn!("http: cannot read the file limit ({e}); assuming 1024");
                1024
            }
        };
        usize::try_from(nofile.saturating_sub(256)).unwrap_or(usize::MAX).clamp(64, 1 << 20)
    }
}

/// The open connections, shared by the accept path and the handlers (`/status`, `/metrics`).
#[derive(Debug)]
pub struct Connections {
    open: AtomicUsize,
    cap: usize,
    refused: AtomicU64,
    /// Refused connections being answered (see [`refuse`]).
    refusing: AtomicUsize,
}

impl Connections {
    pub fn new(cap: usize) -> Arc<Connections> {
        Arc::new(Connections {
            open: AtomicUsize::new(0),
            cap: cap.max(2),
            refused: AtomicU64::new(0),
            refusing: AtomicUsize::new(0),
        })
    }

    /// Connections under the cap kept for the health check: an eighth of it, at most 32.
    pub fn reserve(&self) -> usize {
        (self.cap / 8).clamp(1, 32)
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections closed at once because the cap was reached.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub fn cap(&self) -> usize {
        self.cap
    }
}

/// What the handlers know of their connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnInfo {
    /// Opened within the reserve: only the health check is answered on it.
    pub reserve: bool,
}

/// A counted connection that rewrites actix's bodiless protocol errors (see the module docs).
pub(crate) struct Conn {
    io: TcpStream,
    connections: Arc<Connections>,
    info: ConnInfo,
    /// A rewritten answer, and how much of it is written.
    pending: Vec<u8>,
    written: usize,
}

impl Conn {
    /// Counts a new connection: `None` when the cap is reached (the caller answers and closes).
    fn admit(io: TcpStream, connections: &Arc<Connections>) -> Result<Conn, TcpStream> {
        let before = connections.open.fetch_add(1, Ordering::Relaxed);
        if before >= connections.cap {
            connections.open.fetch_sub(1, Ordering::Relaxed);
            connections.refused.fetch_add(1, Ordering::Relaxed);
            return Err(io);
        }
        let reserve = before >= connections.cap - connections.reserve();
        Ok(Conn {
            io,
            connections: connections.clone(),
            info: ConnInfo { reserve },
            pending: Vec::new(),
            written: 0,
        })
    }

    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        if let Some(answer) = json_protocol_error(buf) {
            this.pending = answer;
            // The bytes are taken: what does not go out now goes on the next write, flush or shutdown.
            if let Poll::Ready(Err(e)) = this.drain(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// An answer written without actix: status line, the security headers, a JSON error body.
fn raw_answer(error: &ApiError, extra: &[(&str, &str)]) -> Vec<u8> {
    use actix_web::ResponseError;
    let status = error.status_code();
    let body = serde_json::to_string(&error.body()).unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    for (name, value) in super::SECURITY_HEADERS.iter().chain(extra) {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

/// The JSON form of an answer actix wrote by itself: a whole response head (nothing after it) with
/// status 400, 408 or 431 and `content-length: 0`. Every answer of a handler has a JSON body, so an
/// empty one with these statuses can only be actix's own.
fn json_protocol_error(buf: &[u8]) -> Option<Vec<u8>> {
    let status = buf.strip_prefix(b"HTTP/1.1 ").or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?;
    let error = match status.get(..4)? {
        b"400 " => ApiError::BadRequest,
        b"408 " => ApiError::RequestTimeout,
        b"431 " => ApiError::HeadersTooLarge,
        _ => return None,
    };
    if !buf.ends_with(b"\r\n\r\n") || buf.windows(4).position(|w| w == b"\r\n\r\n")? != buf.len() - 4 {
        return None;
    }
    let head = buf.to_ascii_lowercase();
    if !head.windows(21).any(|w| w == b"\r\ncontent-length: 0\r\n") {
        return None;
    }
    Some(raw_answer(&error, &[]))
}

/// Why a connection past the cap, or in the reserve, is refused.
pub(crate) const TOO_MANY_CONNECTIONS: &str =
    "the server holds too many connections (the health check still answers)";

/// Refused connections answered at once, at most; past it they are closed without a word.
const MAX_REFUSING: usize = 64;

/// Answers a connection past the cap with 503 `overloaded`: after its request has arrived (closing
/// with it unread would reset the connection and lose the answer), waiting at most 250 ms for it,
/// and only [`MAX_REFUSING`] at a time, so that refusing costs a bounded number of descriptors.
async fn refuse(io: TcpStream, connections: &Connections) {
    if connections.refusing.fetch_add(1, Ordering::Relaxed) < MAX_REFUSING {
        let answer = raw_answer(&ApiError::Overloaded(TOO_MANY_CONNECTIONS), &[("retry-after", "1")]);
        let _ = tokio::time::timeout(Duration::from_millis(250), async {
            io.readable().await?;
            let mut scratch = [0u8; 4096];
            while io.try_read(&mut scratch).is_ok_and(|n| n > 0) {}
            io.writable().await?;
            io.try_write(&answer)
        })
        .await;
    }
    connections.refusing.fetch_sub(1, Ordering::Relaxed);
}

/// Builds the server on `listener`: `app` makes one actix `App` per worker.
///
/// # Errors
/// The listener cannot be registered with the accept loop.
pub fn serve<F, I, S, B>(
    listener: TcpListener,
    limits: &Limits,
    connections: Arc<Connections>,
    app: F,
) -> io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<
            Request,
            Config = AppConfig,
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    B: MessageBody + 'static,
{
    let local = listener.local_addr()?;
    let per_worker = limits.max_connections.div_ceil(limits.workers.max(1)) + 1;
    let limits = limits.clone();
    let builder = Server::build();
    // Tells idle kept-alive connections to close when a graceful stop begins, instead of waiting
    // out their keep-alive.
    let shutdown = builder.graceful_shutdown_signal();
    let server = builder
        .workers(limits.workers.max(1))
        // Signals are the application's: SIGTERM must also stop the sources and flush the store.
        .disable_signals()
        .shutdown_timeout(limits.shutdown_timeout.as_secs())
        .max_concurrent_connections(per_worker)
        .listen("tagflow-http", listener, move || {
            let connections = connections.clone();
            let shutdown = shutdown.clone();
            let service = HttpService::build()
                .graceful_shutdown_signal(move || {
                    let shutdown = shutdown.clone();
                    async move { shutdown.notified().await }
                })
                .keep_alive(limits.keep_alive)
                .client_request_timeout(limits.request_timeout)
                .client_disconnect_timeout(Duration::from_secs(1))
                .local_addr(local)
                .on_connect_ext(|conn: &Conn, ext| {
                    ext.insert(conn.info);
                })
                .h1(map_config(app().into_factory().map_err(|e| e.error_response()), |()| {
                    AppConfig::default()
                }));
            fn_service(move |io: TcpStream| {
                let connections = connections.clone();
                async move {
                    // Small answers go out at once rather than waiting for more to send.
                    let _ = io.set_nodelay(true);
                    let peer = io.peer_addr().ok();
                    match Conn::admit(io, &connections) {
                        Ok(conn) => Ok((conn, peer)),
                        Err(io) => {
                            refuse(io, &connections).await;
                            Err(())
                        }
                    }
                }
            })
            .and_then(service.map_err(|_| ()))
        })?
        .run();
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_actix_own_empty_error_answers_are_rewritten() {
        let actix400 =
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\ndate: x\r\n\r\n";
        let out = String::from_utf8(json_protocol_error(actix400).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n") && head.contains("x-content-type-options"));
        assert!(head.contains(&format!("content-length: {}\r\n", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "bad_request");
        let actix408 = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        assert!(String::from_utf8(json_protocol_error(actix408).unwrap())
            .unwrap()
            .contains("request_timeout"));
        let ours =
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 61\r\ncontent-type: application/json\r\n\r\n";
        assert!(json_protocol_error(ours).is_none(), "a handler's answer has a body");
        let followed = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nHTTP/1.1 200 OK\r\n";
        assert!(json_protocol_error(followed).is_none());
        assert!(json_protocol_error(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(json_protocol_error(b"{\"a\":1}").is_none());
    }
}
