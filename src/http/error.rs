//! `ApiError`: the one place that maps failures to HTTP status codes and a JSON body with a stable
//! code, `{"error":{"code":"user_not_found","message":"..."}}`.

use crate::graph::{GraphError, Rejection};
use crate::store::StoreError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use std::fmt;

/// Every failure an API client can see. `code()` values are a stable contract.
#[derive(Debug)]
pub enum ApiError {
    UserNotFound(String),
    AmbiguousHandle {
        handle: String,
        keys: Vec<String>,
    },
    EdgeNotFound {
        from: String,
        to: String,
    },
    NoPath {
        from: String,
        to: String,
    },
    UserExists(String),
    CommunityNotFound(u32),
    SelfLoop(String),
    InvalidUser {
        key: String,
        reason: String,
    },
    InvalidJson(String),
    /// A gzip or deflate body that does not inflate.
    InvalidEncoding(String),
    InvalidQuery(String),
    InvalidPath(String),
    InvalidCursor,
    InvalidKind(String),
    PayloadTooLarge(usize),
    /// No valid token for this request: what is needed, never what was sent.
    Unauthorized(String),
    /// A write's body is not declared as JSON: what is accepted.
    UnsupportedMediaType(String),
    /// A web page of another origin (not in `--allowed-origins`) tried to write.
    OriginNotAllowed(String),
    /// The request's `Host` is not one of `--public-host` (the names it accepts).
    UnknownHost(String),
    RouteNotFound(String),
    /// The method used, and the methods the route answers (the `Allow` header).
    MethodNotAllowed {
        method: String,
        allow: String,
    },
    /// The request is not HTTP/1.1 that can be parsed (written by the connection layer).
    BadRequest,
    /// The request's head or body did not arrive in time.
    RequestTimeout,
    /// The request's head is larger than the server reads.
    HeadersTooLarge,
    /// Too many requests from this client: seconds until one is accepted again.
    RateLimited {
        retry_after: u64,
    },
    /// Too much at once (connections, expensive reads waiting): what is short.
    Overloaded(&'static str),
    /// A search gave up within its budget (see `graph::path::PATH_BUDGET`).
    TooExpensive {
        walked: u64,
    },
    /// The store could not write or is shutting down; the client may retry.
    Unavailable(String),
    /// A bug or an unexpected failure: the client sees a generic message, the log the cause.
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::UserNotFound(_) => "user_not_found",
            ApiError::AmbiguousHandle { .. } => "ambiguous_handle",
            ApiError::EdgeNotFound { .. } => "edge_not_found",
            ApiError::NoPath { .. } => "no_path",
            ApiError::UserExists(_) => "user_exists",
            ApiError::CommunityNotFound(_) => "community_not_found",
            ApiError::SelfLoop(_) => "self_loop",
            ApiError::InvalidUser { .. } => "invalid_user",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidEncoding(_) => "invalid_encoding",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::InvalidPath(_) => "invalid_path",
            ApiError::InvalidCursor => "invalid_cursor",
            ApiError::InvalidKind(_) => "invalid_kind",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::UnknownHost(_) => "unknown_host",
            ApiError::OriginNotAllowed(_) => "origin_not_allowed",
            ApiError::RouteNotFound(_) => "route_not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::BadRequest => "bad_request",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::HeadersTooLarge => "headers_too_large",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Overloaded(_) => "overloaded",
            ApiError::TooExpensive { .. } => "too_expensive",
            ApiError::Unavailable(_) => "store_unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::UserNotFound(u) => write!(f, "no user {u:?}"),
            ApiError::AmbiguousHandle { handle, keys } => {
                write!(f, "handle {handle:?} matches {} users: {}; use a key", keys.len(), keys.join(", "))
            }
            ApiError::EdgeNotFound { from, to } => write!(f, "no edge from {from:?} to {to:?}"),
            ApiError::NoPath { from, to } => write!(f, "{from:?} and {to:?} are not connected"),
            ApiError::UserExists(u) => write!(f, "user {u:?} already exists"),
            ApiError::CommunityNotFound(id) => write!(f, "no community {id} in this selection"),
            ApiError::SelfLoop(u) => write!(f, "a user cannot interact with itself ({u:?})"),
            ApiError::InvalidUser { key, reason } => write!(f, "invalid user {key:?}: {reason}"),
            ApiError::InvalidJson(m) => write!(f, "invalid JSON body: {m}"),
            ApiError::InvalidEncoding(m) => write!(f, "the body does not inflate: {m}"),
            ApiError::InvalidQuery(m) => write!(f, "invalid query string: {m}"),
            ApiError::InvalidPath(m) => write!(f, "invalid path: {m}"),
            ApiError::InvalidCursor => write!(f, "cursor is not one this API returned"),
            ApiError::InvalidKind(k) => {
                write!(f, "unknown interaction kind {k:?} (repost, reply, quote, mention, manual)")
            }
            ApiError::PayloadTooLarge(limit) => write!(f, "request body larger than {limit} bytes"),
            ApiError::Unauthorized(m) => write!(f, "{m}"),
            ApiError::UnsupportedMediaType(m) => write!(f, "unsupported content type: {m}"),
            ApiError::UnknownHost(hosts) => write!(f, "this service answers to {hosts} only"),
            ApiError::OriginNotAllowed(origin) => {
                write!(f, "pages of {origin} may not call this service (see --allowed-origins)")
            }
            ApiError::RouteNotFound(p) => write!(f, "no route {p}"),
            ApiError::MethodNotAllowed { method, allow } => {
                write!(f, "method {method} is not allowed on this route (it answers {allow})")
            }
            ApiError::BadRequest => write!(f, "the request is not valid HTTP/1.1"),
            ApiError::RequestTimeout => write!(f, "the request did not arrive in time"),
            ApiError::HeadersTooLarge => write!(f, "the request's head is too large"),
            ApiError::RateLimited { retry_after } => {
                write!(f, "too many requests from this client; retry in {retry_after} s")
            }
            ApiError::Overloaded(what) => write!(f, "{what}; retry later"),
            ApiError::TooExpensive { walked } => write!(
                f,
                "the search gave up after walking {walked} adjacency entries: these users are far apart, or \
                 not connected, in a very large component"
            ),
            ApiError::Unavailable(_) => write!(f, "the store is unavailable; retry later"),
            ApiError::Internal(_) => write!(f, "internal error"),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::UserNotFound(_)
            | ApiError::EdgeNotFound { .. }
            | ApiError::NoPath { .. }
            | ApiError::CommunityNotFound(_)
            | ApiError::RouteNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::AmbiguousHandle { .. } | ApiError::UserExists(_) => StatusCode::CONFLICT,
            ApiError::SelfLoop(_)
            | ApiError::InvalidUser { .. }
            | ApiError::InvalidJson(_)
            | ApiError::InvalidEncoding(_)
            | ApiError::InvalidQuery(_)
            | ApiError::InvalidPath(_)
            | ApiError::InvalidCursor
            | ApiError::InvalidKind(_)
            | ApiError::BadRequest => StatusCode::BAD_REQUEST,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded(_) | ApiError::TooExpensive { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::OriginNotAllowed(_) => StatusCode::FORBIDDEN,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::UnknownHost(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Internal(cause) | ApiError::Unavailable(cause) => {
                log::error!("http: {} cause={cause}", self.code());
            }
            _ => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unauthorized(_) => {
                response.insert_header(("WWW-Authenticate", "Bearer realm=\"tagflow\""));
            }
            ApiError::RateLimited { retry_after } => {
                response.insert_header(("Retry-After", retry_after.to_string()));
            }
            ApiError::MethodNotAllowed { allow, .. } => {
                response.insert_header(("Allow", allow.as_str()));
            }
            ApiError::Overloaded(_) => {
                response.insert_header(("Retry-After", "1"));
                response.force_close();
            }
            _ => {}
        }
        response.json(self.body())
    }
}

/// The body of every error the service answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable code for programs: `user_not_found`, `invalid_query`, `rate_limited`, ...
    #[schema(example = "user_not_found")]
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// With `ambiguous_handle`: the keys of the users that have the handle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matches: Option<Vec<String>>,
}

impl ApiError {
    /// The JSON body of this error: `{"error":{"code":...,"message":...}}`.
    pub fn body(&self) -> ErrorBody {
        let matches = match self {
            ApiError::AmbiguousHandle { keys, .. } => Some(keys.clone()),
            _ => None,
        };
        ErrorBody { error: ErrorDetail { code: self.code(), message: self.to_string(), matches } }
    }
}

impl From<GraphError> for ApiError {
    fn from(e: GraphError) -> Self {
        match e {
            GraphError::UserNotFound(u) => ApiError::UserNotFound(u),
            GraphError::AmbiguousHandle { handle, keys } => ApiError::AmbiguousHandle { handle, keys },
            GraphError::TieNotFound { from, to } => ApiError::EdgeNotFound { from, to },
            GraphError::NoPath { from, to } => ApiError::NoPath { from, to },
            GraphError::TooExpensive { walked } => ApiError::TooExpensive { walked },
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::UserExists(u) => ApiError::UserExists(u),
            Rejection::UserNotFound(u) => ApiError::UserNotFound(u),
            Rejection::TieNotFound { from, to } => ApiError::EdgeNotFound { from, to },
            Rejection::SelfLoop(u) => ApiError::SelfLoop(u),
            Rejection::InvalidKey { key, reason } => {
                ApiError::InvalidUser { key, reason: reason.to_string() }
            }
        }
    }
}

impl From<crate::analytics::report::ReportError> for ApiError {
    fn from(e: crate::analytics::report::ReportError) -> ApiError {
        use crate::analytics::report::ReportError;
        match e {
            ReportError::Failed(cause) => ApiError::Internal(cause),
            ReportError::CommunityNotFound(id) => ApiError::CommunityNotFound(id),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Closed => ApiError::Unavailable(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}
