//! What the sources that speak HTTP share: one client builder (user agent, connect timeout,
//! keep-alive, the token as a sensitive default header), one bounded body reader, and errors on one
//! line without the URL.

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use std::time::Duration;

/// How long a connection may take to open.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client for one source. With a token, every request carries `Authorization: Bearer <token>` as
/// a sensitive header (kept out of debug output); the token is in no URL, so no error names it.
///
/// # Errors
/// The token cannot go in an HTTP header (`what` names where it came from), or TLS cannot be set up.
pub(crate) fn client(token: Option<&str>, what: &str) -> Result<reqwest::Client, String> {
    let mut headers = HeaderMap::new();
    if let Some(token) = token {
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| format!("{what} holds characters that cannot go in an HTTP header"))?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
    }
    reqwest::Client::builder()
        .user_agent(concat!("tagflow/", env!("CARGO_PKG_VERSION")))
        .default_headers(headers)
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_keepalive(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// A whole body, refused past `max` bytes or when it does not arrive `within`.
///
/// # Errors
/// What went wrong, on one line.
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    max: usize,
    within: Duration,
) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let read = async {
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > max {
                        return Err(format!("response body over {max} bytes"));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(format!("reading the response: {}", request_error(e))),
            }
        }
    };
    match tokio::time::timeout(within, read).await {
        Ok(Ok(())) => Ok(body),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("response body not read within {within:?}")),
    }
}

/// Up to `max` bytes of a body (an error's explanation): whatever arrives within a few seconds.
pub(crate) async fn read_prefix(mut response: reqwest::Response, max: usize) -> Vec<u8> {
    let mut body = Vec::new();
    let read = async {
        while let Ok(Some(chunk)) = response.chunk().await {
            body.extend_from_slice(&chunk);
            if body.len() >= max {
                body.truncate(max);
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    body
}

/// A request's error and its causes on one line, without the URL (it names no token, but its query
/// and the causes say enough).
pub(crate) fn request_error(e: reqwest::Error) -> String {
    super::error_chain(&e.without_url())
}
