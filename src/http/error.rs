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
    /// A query named a user or an edge the graph does not have, or users it cannot connect: the
    /// graph's own error, and its message.
    Graph(GraphError),
    /// The write path refused a mutation: its reason, and its message.
    Rejected(Rejection),
    /// An analysis could not answer: a community the selection does not have.
    CommunityNotFound(u32),
    /// A user's handle or name that cannot be stored.
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
    /// The store could not write or is shutting down; the client may retry.
    Unavailable(String),
    /// The disk holding the data directory is full: nothing of the write was made.
    StorageFull(String),
    /// Something this deployment does not do (a backup of a database store): what to do instead.
    NotImplemented(String),
    /// A bug or an unexpected failure: the client sees a generic message, the log the cause.
    Internal(String),
}

impl ApiError {
    /// The one table of failures: each one's status and its stable code (the message is its
    /// `Display`).
    fn kind(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            ApiError::Graph(GraphError::UserNotFound(_)) | ApiError::Rejected(Rejection::UserNotFound(_)) => {
                (S::NOT_FOUND, "user_not_found")
            }
            ApiError::Graph(GraphError::AmbiguousHandle { .. }) => (S::CONFLICT, "ambiguous_handle"),
            ApiError::Graph(GraphError::TieNotFound { .. })
            | ApiError::Rejected(Rejection::TieNotFound { .. }) => (S::NOT_FOUND, "edge_not_found"),
            ApiError::Graph(GraphError::NoPath { .. }) => (S::NOT_FOUND, "no_path"),
            ApiError::Graph(GraphError::TooExpensive { .. }) => (S::SERVICE_UNAVAILABLE, "too_expensive"),
            ApiError::Rejected(Rejection::UserExists(_)) => (S::CONFLICT, "user_exists"),
            ApiError::Rejected(Rejection::SelfLoop(_)) => (S::BAD_REQUEST, "self_loop"),
            ApiError::Rejected(Rejection::InvalidKey { .. }) | ApiError::InvalidUser { .. } => {
                (S::BAD_REQUEST, "invalid_user")
            }
            ApiError::CommunityNotFound(_) => (S::NOT_FOUND, "community_not_found"),
            ApiError::InvalidJson(_) => (S::BAD_REQUEST, "invalid_json"),
            ApiError::InvalidEncoding(_) => (S::BAD_REQUEST, "invalid_encoding"),
            ApiError::InvalidQuery(_) => (S::BAD_REQUEST, "invalid_query"),
            ApiError::InvalidPath(_) => (S::BAD_REQUEST, "invalid_path"),
            ApiError::InvalidCursor => (S::BAD_REQUEST, "invalid_cursor"),
            ApiError::InvalidKind(_) => (S::BAD_REQUEST, "invalid_kind"),
            ApiError::PayloadTooLarge(_) => (S::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Unauthorized(_) => (S::UNAUTHORIZED, "unauthorized"),
            ApiError::UnsupportedMediaType(_) => (S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            ApiError::UnknownHost(_) => (S::MISDIRECTED_REQUEST, "unknown_host"),
            ApiError::OriginNotAllowed(_) => (S::FORBIDDEN, "origin_not_allowed"),
            ApiError::RouteNotFound(_) => (S::NOT_FOUND, "route_not_found"),
            ApiError::MethodNotAllowed { .. } => (S::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::BadRequest => (S::BAD_REQUEST, "bad_request"),
            ApiError::RequestTimeout => (S::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::HeadersTooLarge => (S::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large"),
            ApiError::RateLimited { .. } => (S::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Overloaded(_) => (S::SERVICE_UNAVAILABLE, "overloaded"),
            ApiError::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "store_unavailable"),
            ApiError::StorageFull(_) => (S::INSUFFICIENT_STORAGE, "storage_full"),
            ApiError::NotImplemented(_) => (S::NOT_IMPLEMENTED, "not_implemented"),
            ApiError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    pub fn code(&self) -> &'static str {
        self.kind().1
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Graph(GraphError::TooExpensive { walked }) => write!(
                f,
                "the search gave up after walking {walked} adjacency entries: these users are far apart, or \
                 not connected, in a very large component"
            ),
            ApiError::Graph(e) => write!(f, "{e}"),
            ApiError::Rejected(e) => write!(f, "{e}"),
            ApiError::CommunityNotFound(id) => write!(f, "no community {id} in this selection"),
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
            ApiError::Unavailable(_) => {
                write!(f, "the store cannot make writes durable right now (nothing of this one was made); retry later")
            }
            ApiError::StorageFull(_) => write!(
                f,
                "the disk holding the data directory is full: nothing of this write was made; retry once space is freed"
            ),
            ApiError::NotImplemented(what) => write!(f, "{what}"),
            ApiError::Internal(_) => write!(f, "internal error"),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.kind().0
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Internal(cause) | ApiError::Unavailable(cause) | ApiError::StorageFull(cause) => {
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
            ApiError::Unavailable(_) | ApiError::StorageFull(_) => {
                response.insert_header(("Retry-After", "5"));
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
            ApiError::Graph(GraphError::AmbiguousHandle { keys, .. }) => Some(keys.clone()),
            _ => None,
        };
        ErrorBody { error: ErrorDetail { code: self.code(), message: self.to_string(), matches } }
    }
}

impl From<GraphError> for ApiError {
    fn from(e: GraphError) -> Self {
        ApiError::Graph(e)
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        ApiError::Rejected(r)
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

impl From<crate::export::ExportError> for ApiError {
    fn from(e: crate::export::ExportError) -> ApiError {
        use crate::export::ExportError;
        match e {
            ExportError::Graph(g) => ApiError::Graph(g),
            ExportError::Failed(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            e if e.is_storage_full() => ApiError::StorageFull(e.to_string()),
            StoreError::Closed
            | StoreError::Sled(_)
            | StoreError::Io { .. }
            | StoreError::Database { .. } => ApiError::Unavailable(e.to_string()),
            StoreError::Unsupported(what) => ApiError::NotImplemented(what.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}
