//! Who may write, and who may read: bearer tokens from the environment (`TAGFLOW_API_TOKEN` for
//! writes and reads, `TAGFLOW_READ_TOKEN` for reads only; each a comma list), compared in constant
//! time. With no write token, writes are accepted from this machine only (loopback), so that a
//! service started on 0.0.0.0 cannot be emptied by whoever reaches its port. `/status` (the health
//! check) and `/ui` (a page with no data of its own) are always open.
//!
//! A write with a body must say it is JSON (`application/json`, or NDJSON for `/ingest`): the
//! content types a cross-site form can send without asking (form, multipart, `text/plain`) are
//! refused, so a web page the operator visits cannot write through the operator's browser.
//!
//! [`super::gate`] applies these checks to every request.

use super::error::ApiError;
use actix_web::http::Method;
use std::net::IpAddr;
use subtle::ConstantTimeEq;

/// Environment variables holding the tokens.
pub(crate) const ENV_API_TOKEN: &str = "TAGFLOW_API_TOKEN";
pub(crate) const ENV_READ_TOKEN: &str = "TAGFLOW_READ_TOKEN";

/// The tokens a request may present. Never printed: `Debug` shows how many there are.
#[derive(Clone, Default)]
pub struct Access {
    write: Vec<String>,
    read: Vec<String>,
    /// `--public-host`: the names a request's `Host` may give (lowercase, no port); empty: any.
    hosts: Vec<String>,
    /// `--allowed-origins`: web origins whose pages may call the API (`*`: any).
    origins: Vec<String>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Access {{ write tokens: {}, read tokens: {}, hosts: {:?}, origins: {:?} }}",
            self.write.len(),
            self.read.len(),
            self.hosts,
            self.origins
        )
    }
}

/// The tokens of a comma list, trimmed, empty ones dropped.
pub(crate) fn tokens(list: Option<String>) -> Vec<String> {
    list.into_iter()
        .flat_map(|l| l.split(',').map(str::trim).map(String::from).collect::<Vec<_>>())
        .filter(|t| !t.is_empty())
        .collect()
}

impl Access {
    /// The tokens of `TAGFLOW_API_TOKEN` and `TAGFLOW_READ_TOKEN`.
    pub(crate) fn from_env() -> Access {
        Access::new(std::env::var(ENV_API_TOKEN).ok(), std::env::var(ENV_READ_TOKEN).ok())
    }

    /// Tokens from comma lists (for tests and the environment).
    pub fn new(write: Option<String>, read: Option<String>) -> Access {
        Access { write: tokens(write), read: tokens(read), hosts: Vec::new(), origins: Vec::new() }
    }

    /// Lets pages of `origins` (`https://dash.example.org`, or `*` for any) call the API: CORS.
    pub fn with_origins(mut self, origins: &[String]) -> Access {
        self.origins = origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .collect();
        self
    }

    /// Whether `origin` is one of `--allowed-origins`: its pages may read answers (CORS headers).
    pub(crate) fn origin_listed(&self, origin: &[u8]) -> bool {
        let origin = String::from_utf8_lossy(origin).to_ascii_lowercase();
        self.origins.iter().any(|o| o == "*" || *o == origin)
    }

    /// Whether a page of `origin` may write: a listed origin, or this service's own (the origin
    /// names the host the request was sent to). A browser names the origin of every cross-site
    /// write, so a page elsewhere cannot write through a visitor's browser, even with a bodiless
    /// POST of the seed's routes (which needs no preflight).
    pub(crate) fn origin_may_write(&self, origin: &[u8], host: Option<&[u8]>) -> bool {
        if self.origin_listed(origin) {
            return true;
        }
        let origin = String::from_utf8_lossy(origin).to_ascii_lowercase();
        let authority = origin.split_once("://").map_or("", |(_, a)| a);
        host.is_some_and(|h| String::from_utf8_lossy(h).trim().eq_ignore_ascii_case(authority))
    }

    /// Answers only requests whose `Host` names one of `hosts` (or this machine).
    pub fn with_hosts(mut self, hosts: &[String]) -> Access {
        self.hosts = hosts.iter().map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect();
        self
    }

    /// Whether a request's `Host` header names this service.
    ///
    /// # Errors
    /// [`ApiError::UnknownHost`] when `--public-host` is set and the header names another host.
    pub(crate) fn check_host(&self, host: Option<&[u8]>) -> Result<(), ApiError> {
        if self.hosts.is_empty() {
            return Ok(());
        }
        let name = host.and_then(|h| std::str::from_utf8(h).ok()).map(|h| {
            let h = h.trim().to_ascii_lowercase();
            // Drop a port: after the last ':' unless inside an IPv6 literal's brackets.
            match h.rfind(':') {
                Some(i) if !h[i..].contains(']') && (!h.starts_with('[') || h[..i].ends_with(']')) => {
                    h[..i].to_string()
                }
                _ => h,
            }
        });
        match name {
            Some(n)
                if ["localhost", "127.0.0.1", "[::1]"].contains(&n.as_str()) || self.hosts.contains(&n) =>
            {
                Ok(())
            }
            _ => Err(ApiError::UnknownHost(self.hosts.join(", "))),
        }
    }

    /// Whether remote writes are possible (a write token is set).
    pub(crate) fn remote_writes(&self) -> bool {
        !self.write.is_empty()
    }

    /// Whether reads need a token.
    pub(crate) fn private_reads(&self) -> bool {
        !self.read.is_empty()
    }

    /// Decides a request: its method, path, client address and `Authorization` header.
    ///
    /// # Errors
    /// [`ApiError::Unauthorized`] saying what is missing (never echoing what was sent).
    pub fn check(
        &self,
        method: &Method,
        path: &str,
        peer: Option<IpAddr>,
        authorization: Option<&[u8]>,
    ) -> Result<(), ApiError> {
        let read = is_read(method, path);
        let presented = authorization.and_then(|h| h.strip_prefix(b"Bearer ")).map(<[u8]>::trim_ascii);
        let matches = |list: &[String]| {
            // Every token is compared, whatever matched before: the time says nothing of which.
            presented
                .is_some_and(|p| list.iter().fold(false, |hit, t| hit | bool::from(t.as_bytes().ct_eq(p))))
        };
        if read {
            if !self.private_reads()
                || path == "/status"
                || path == "/ui"
                || matches(&self.read)
                || matches(&self.write)
            {
                return Ok(());
            }
            return Err(ApiError::Unauthorized(
                "this service's data is private: send Authorization: Bearer <a read or API token>".into(),
            ));
        }
        if self.remote_writes() {
            return if matches(&self.write) {
                Ok(())
            } else {
                Err(ApiError::Unauthorized(
                    "writes need Authorization: Bearer <an API token of this service>".into(),
                ))
            };
        }
        if peer.is_some_and(|ip| ip.to_canonical().is_loopback()) {
            return Ok(());
        }
        Err(ApiError::Unauthorized(format!(
            "writes are accepted from this machine only until {ENV_API_TOKEN} is set on the server"
        )))
    }
}

/// Reads change nothing: GET, HEAD and OPTIONS; but `/backup`, which hands over the whole store
/// (post records and source cursors included), is for the holders of an API token, as writes are.
pub(crate) fn is_read(method: &Method, path: &str) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) && path != "/backup"
}

/// Whether a write's body may be read: none, or one declared as JSON (NDJSON too for `/ingest`).
///
/// # Errors
/// [`ApiError::UnsupportedMediaType`] naming what is accepted.
pub(crate) fn check_body(path: &str, has_body: bool, content_type: Option<&[u8]>) -> Result<(), ApiError> {
    if !has_body {
        return Ok(());
    }
    let essence = content_type
        .and_then(|c| std::str::from_utf8(c).ok())
        .map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    let json =
        essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"));
    let ndjson =
        matches!(essence.as_str(), "application/x-ndjson" | "application/jsonl" | "application/json-seq");
    if json || (path == "/ingest" && ndjson) {
        return Ok(());
    }
    Err(ApiError::UnsupportedMediaType(if path == "/ingest" {
        "send the posts as application/x-ndjson (or application/json)".into()
    } else {
        "send the body as application/json".into()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_public_hosts_set_only_those_and_this_machine_are_answered() {
        let any = Access::default();
        assert!(any.check_host(Some(b"evil.example")).is_ok());
        let set = Access::default().with_hosts(&["Tagflow.Example.org ".into(), "10.0.0.5".into()]);
        for ok in [
            "tagflow.example.org",
            "TAGFLOW.example.org:443",
            "10.0.0.5:8080",
            "localhost:8080",
            "127.0.0.1",
            "[::1]:80",
            "[::1]",
        ] {
            assert!(set.check_host(Some(ok.as_bytes())).is_ok(), "{ok}");
        }
        for bad in ["evil.example", "tagflow.example.org.evil.example", "10.0.0.6", "[::2]:80", ""] {
            assert_eq!(set.check_host(Some(bad.as_bytes())).unwrap_err().code(), "unknown_host", "{bad}");
        }
        assert!(set.check_host(None).is_err());
    }

    #[test]
    fn write_bodies_must_be_json_so_that_a_cross_site_form_cannot_write() {
        let code = |path, body, ct: Option<&str>| {
            check_body(path, body, ct.map(str::as_bytes)).err().map_or("ok", |e| e.code())
        };
        assert_eq!(code("/vertices", true, Some("application/json")), "ok");
        assert_eq!(code("/vertices", true, Some("Application/JSON; charset=utf-8")), "ok");
        assert_eq!(code("/vertices/add/a", false, None), "ok", "the seed's bodiless POSTs");
        for ct in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
        ] {
            assert_eq!(code("/vertices", true, ct), "unsupported_media_type", "{ct:?}");
        }
        assert_eq!(code("/ingest", true, Some("application/x-ndjson")), "ok");
        assert_eq!(code("/aristas", true, Some("application/x-ndjson")), "unsupported_media_type");
        assert_eq!(code("/ingest", true, Some("text/plain")), "unsupported_media_type");
    }

    fn code(r: Result<(), ApiError>) -> &'static str {
        r.err().map_or("ok", |e| e.code())
    }

    #[test]
    fn writes_need_a_token_once_one_is_set_and_only_loopback_writes_without() {
        let remote: Option<IpAddr> = Some("203.0.113.7".parse().unwrap());
        let local: Option<IpAddr> = Some("::ffff:127.0.0.1".parse().unwrap());
        let open = Access::new(None, None);
        assert_eq!(code(open.check(&Method::POST, "/vertices", local, None)), "ok");
        assert_eq!(code(open.check(&Method::POST, "/vertices", remote, None)), "unauthorized");
        assert_eq!(
            code(open.check(&Method::DELETE, "/vertices/a", remote, Some(b"Bearer x"))),
            "unauthorized"
        );
        assert_eq!(code(open.check(&Method::GET, "/vertices", remote, None)), "ok");
        let set = Access::new(Some("s3cret, other".into()), None);
        assert_eq!(code(set.check(&Method::POST, "/ingest", remote, Some(b"Bearer s3cret"))), "ok");
        assert_eq!(code(set.check(&Method::POST, "/ingest", remote, Some(b"Bearer other"))), "ok");
        assert_eq!(
            code(set.check(&Method::POST, "/ingest", local, None)),
            "unauthorized",
            "a token binds loopback too"
        );
        assert_eq!(code(set.check(&Method::POST, "/ingest", remote, Some(b"Bearer s3cre"))), "unauthorized");
        assert_eq!(code(set.check(&Method::POST, "/ingest", remote, Some(b"s3cret"))), "unauthorized");
        let err = set.check(&Method::POST, "/ingest", remote, Some(b"Bearer wrong-s3cret")).unwrap_err();
        assert!(!err.to_string().contains("s3cret") && !format!("{set:?}").contains("s3cret"));
        let private = Access::new(Some("w".into()), Some("r".into()));
        assert_eq!(code(private.check(&Method::GET, "/vertices", remote, None)), "unauthorized");
        assert_eq!(code(private.check(&Method::GET, "/vertices", remote, Some(b"Bearer r"))), "ok");
        assert_eq!(code(private.check(&Method::GET, "/vertices", remote, Some(b"Bearer w"))), "ok");
        assert_eq!(
            code(private.check(&Method::POST, "/vertices", remote, Some(b"Bearer r"))),
            "unauthorized"
        );
        assert_eq!(code(private.check(&Method::GET, "/status", remote, None)), "ok");
    }
}
