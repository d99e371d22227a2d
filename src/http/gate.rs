//! The one middleware that refuses requests before any handler runs, cheapest check first: a
//! connection in the reserve asks for something other than the health check (503), the `Host` is
//! not ours (421), a web page of another origin tries to write (403), the token is missing (401), a
//! write's body is not JSON (415), the client is over its rate (429, with `Retry-After`).
//!
//! It also speaks CORS for `--allowed-origins`: it answers their preflights and marks the answers
//! to their pages as readable; other origins get no CORS headers, so a browser keeps the answers
//! from their pages.
//!
//! Rates are per client and per class: writes, and expensive reads (analyses, paths, subgraphs,
//! ego networks). Beside them, writes go first: while the store is taking writes, reads beyond a
//! budget a second wait their turn ([`WritesFirst`]). The client is the connection's address, or with `--trust-proxy`
//! the address the proxy in front (Heroku's router, nginx) appended last to `X-Forwarded-For`; an
//! IPv6 client counts by its /64, the block one subscriber is given.

use super::auth::{check_body, is_read};
use super::error::ApiError;
use super::reads::WritesFirst;
use super::server::ConnInfo;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

/// Requests per second allowed to one client, per class; `None`: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateSettings {
    pub writes: Option<NonZeroU32>,
    pub expensive_reads: Option<NonZeroU32>,
    /// Reads a second the request threads serve while the store is taking writes, before reads
    /// wait their turn (see [`WritesFirst`]).
    pub reads_while_writing: Option<NonZeroU32>,
    /// Take the client from the last `X-Forwarded-For` entry.
    pub trust_proxy: bool,
}

/// What a request costs, for rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Write,
    ExpensiveRead,
    Cheap,
}

fn class(read: bool, path: &str) -> Class {
    if !read {
        return Class::Write;
    }
    let expensive = path.starts_with("/analytics/")
        || path == "/graph"
        || path.starts_with("/find_path/")
        || path.starts_with("/vertices/find_path/")
        || path.starts_with("/export")
        || path.starts_with("/stream/")
        || (path.starts_with("/vertices/") && path.ends_with("/ego"));
    if expensive {
        Class::ExpensiveRead
    } else {
        Class::Cheap
    }
}

/// The per-client limiters.
pub struct Rates {
    settings: RateSettings,
    writes: Option<DefaultKeyedRateLimiter<u128>>,
    expensive: Option<DefaultKeyedRateLimiter<u128>>,
    writes_first: WritesFirst,
    checks: AtomicU64,
    limited: AtomicU64,
}

impl std::fmt::Debug for Rates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rates {:?}", self.settings)
    }
}

/// Forgotten clients are dropped from the limiters every this many checks.
const SWEEP_EVERY: u64 = 1 << 14;

impl Rates {
    pub fn new(settings: RateSettings) -> Rates {
        // A burst of ten seconds' worth: a client catching up (an import's batches, a page loading
        // its panels) is not cut off, a client that keeps it up is.
        let limiter = |rate: Option<NonZeroU32>| {
            rate.map(|r| {
                let burst = r.saturating_mul(NonZeroU32::new(10).expect("10 is not zero"));
                DefaultKeyedRateLimiter::keyed(Quota::per_second(r).allow_burst(burst))
            })
        };
        Rates {
            settings,
            writes: limiter(settings.writes),
            expensive: limiter(settings.expensive_reads),
            writes_first: WritesFirst::new(settings.reads_while_writing),
            checks: AtomicU64::new(0),
            limited: AtomicU64::new(0),
        }
    }

    /// Requests refused with 429 so far.
    pub fn limited(&self) -> u64 {
        self.limited.load(Ordering::Relaxed)
    }

    /// The client a request counts against.
    fn client(&self, peer: Option<IpAddr>, forwarded: Option<&[u8]>) -> u128 {
        let proxied = self
            .settings
            .trust_proxy
            .then(|| forwarded.and_then(|f| std::str::from_utf8(f).ok()))
            .flatten()
            .and_then(|f| f.rsplit(',').next())
            .and_then(|last| last.trim().parse::<IpAddr>().ok());
        match proxied.or(peer).map(|ip| ip.to_canonical()) {
            Some(IpAddr::V4(v4)) => u128::from(u32::from(v4)),
            // The /64, and a bit no IPv4 key has.
            Some(IpAddr::V6(v6)) => (u128::from(v6) >> 64) | (1 << 127),
            None => 0,
        }
    }

    /// Whether a request of `class` from `client` is within its rate.
    fn check(&self, class: Class, client: u128) -> Result<(), ApiError> {
        let limiter = match class {
            Class::Write => &self.writes,
            Class::ExpensiveRead => &self.expensive,
            Class::Cheap => return Ok(()),
        };
        let Some(limiter) = limiter else { return Ok(()) };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            for l in [&self.writes, &self.expensive].into_iter().flatten() {
                l.retain_recent();
                l.shrink_to_fit();
            }
        }
        limiter.check_key(&client).map_err(|not_until| {
            self.limited.fetch_add(1, Ordering::Relaxed);
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::RateLimited { retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0) }
        })
    }
}

/// What CORS answers a listed origin: the methods and headers its pages may use, for how long the
/// browser may remember it, and the headers of ours its scripts may read.
const CORS_ALLOW_METHODS: &str = "GET, HEAD, POST, DELETE";
const CORS_ALLOW_HEADERS: &str = "Authorization, Content-Type, Content-Encoding";
const CORS_EXPOSE_HEADERS: &str = "Location, Retry-After, WWW-Authenticate";
const CORS_MAX_AGE: &str = "600";

/// The middleware (see the module docs).
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let listed = origin.as_ref().is_some_and(|o| {
        req.app_data::<actix_web::web::Data<super::AppState>>()
            .is_some_and(|s| s.access.origin_listed(o.as_bytes()))
    });
    let preflight = req.method() == actix_web::http::Method::OPTIONS
        && origin.is_some()
        && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        let answer = if listed {
            let mut ok = actix_web::HttpResponse::NoContent();
            ok.insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, CORS_ALLOW_METHODS))
                .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, CORS_ALLOW_HEADERS))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, CORS_MAX_AGE));
            ok.finish()
        } else {
            let origin = origin.as_ref().map_or(&b""[..], header::HeaderValue::as_bytes);
            actix_web::ResponseError::error_response(&origin_refused(origin))
        };
        req.into_response(answer).map_into_right_body()
    } else {
        match admit(&req) {
            Err(e) => {
                let response = actix_web::ResponseError::error_response(&e);
                req.into_response(response).map_into_right_body()
            }
            Ok(turn) => {
                if let Some(wait) = turn {
                    tokio::time::sleep(wait).await;
                }
                next.call(req).await?.map_into_left_body()
            }
        }
    };
    if let (true, Some(origin)) = (listed, origin) {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            header::HeaderValue::from_static(CORS_EXPOSE_HEADERS),
        );
        headers.append(header::VARY, header::HeaderValue::from_static("Origin"));
    }
    Ok(response)
}

/// The refusal of a page of `origin` (named as sent, at most 200 characters).
fn origin_refused(origin: &[u8]) -> ApiError {
    ApiError::OriginNotAllowed(String::from_utf8_lossy(origin).chars().take(200).collect())
}

/// Refuses the request, or admits it with how long it waits for its turn first (a read while the
/// store takes writes: see [`WritesFirst`]).
fn admit(req: &ServiceRequest) -> Result<Option<std::time::Duration>, ApiError> {
    let path = req.path();
    let health = path == "/status" || path == "/";
    if !health && req.conn_data::<ConnInfo>().is_some_and(|c| c.reserve) {
        return Err(ApiError::Overloaded(super::server::TOO_MANY_CONNECTIONS));
    }
    let Some(state) = req.app_data::<actix_web::web::Data<super::AppState>>() else { return Ok(None) };
    let headers = req.headers();
    let bytes = |name| headers.get(name).map(header::HeaderValue::as_bytes);
    let read = is_read(req.method(), path);
    let peer = req.peer_addr().map(|a| a.ip());
    state.access.check_host(bytes(header::HOST))?;
    if let Some(origin) = bytes(header::ORIGIN).filter(|_| !read) {
        if !state.access.origin_may_write(origin, bytes(header::HOST)) {
            return Err(origin_refused(origin));
        }
    }
    state.access.check(req.method(), path, peer, bytes(header::AUTHORIZATION))?;
    if !read {
        let has_body = bytes(header::CONTENT_LENGTH).is_some_and(|l| l != b"0")
            || headers.contains_key(header::TRANSFER_ENCODING);
        check_body(path, has_body, bytes(header::CONTENT_TYPE))?;
    }
    let client = state.rates.client(peer, bytes(header::X_FORWARDED_FOR));
    state.rates.check(class(read, path), client)?;
    Ok(if read && !health { state.rates.writes_first.turn(state.store.stats().writing()) } else { None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_classed_by_what_they_cost() {
        assert_eq!(class(false, "/vertices/add/a"), Class::Write);
        assert_eq!(class(true, "/vertices"), Class::Cheap);
        assert_eq!(class(true, "/status"), Class::Cheap);
        for p in
            ["/analytics/users", "/graph", "/find_path/a/b", "/vertices/find_path/a/b", "/vertices/a/ego"]
        {
            assert_eq!(class(true, p), Class::ExpensiveRead, "{p}");
        }
        // A user's heaviest edges cost O(limit · log degree): the graph keeps them in order.
        assert_eq!(class(true, "/vertices/a/aristas"), Class::Cheap);
    }

    #[test]
    fn a_client_over_its_rate_is_told_when_to_come_back_and_others_are_not_held() {
        let rates = Rates::new(RateSettings {
            writes: NonZeroU32::new(1),
            expensive_reads: None,
            reads_while_writing: None,
            trust_proxy: false,
        });
        let a = rates.client(Some("203.0.113.7".parse().unwrap()), None);
        let b = rates.client(Some("203.0.113.8".parse().unwrap()), None);
        for _ in 0..10 {
            rates.check(Class::Write, a).unwrap();
        }
        let err = rates.check(Class::Write, a).unwrap_err();
        assert!(matches!(err, ApiError::RateLimited { retry_after: 1 }), "{err:?}");
        rates.check(Class::Write, b).unwrap();
        rates.check(Class::ExpensiveRead, a).unwrap();
        rates.check(Class::Cheap, a).unwrap();
        assert_eq!(rates.limited(), 1);
    }

    #[test]
    fn the_client_is_the_proxy_s_last_entry_only_when_trusted_and_ipv6_counts_by_its_64() {
        let peer = Some("10.0.0.1".parse().unwrap());
        let xff = Some(&b"198.51.100.1, 203.0.113.9"[..]);
        let direct = Rates::new(RateSettings::default());
        assert_eq!(direct.client(peer, xff), direct.client(peer, None), "a spoofable header is ignored");
        let proxied = Rates::new(RateSettings { trust_proxy: true, ..RateSettings::default() });
        assert_eq!(proxied.client(peer, xff), proxied.client(Some("203.0.113.9".parse().unwrap()), None));
        assert_eq!(proxied.client(peer, Some(b"garbage")), proxied.client(peer, None));
        let v6 = |s: &str| direct.client(Some(s.parse().unwrap()), None);
        assert_eq!(v6("2001:db8:1:2::1"), v6("2001:db8:1:2:ffff::9"));
        assert_ne!(v6("2001:db8:1:2::1"), v6("2001:db8:1:3::1"));
        assert_eq!(v6("::ffff:203.0.113.7"), direct.client(Some("203.0.113.7".parse().unwrap()), None));
    }
}
