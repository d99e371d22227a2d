//! The REST API: one route table ([`configure`]) used by the server and by tests.
//!
//! Handlers turn requests into domain mutations for the store's write path, or read the graph under
//! a short read lock. Only [`error::ApiError`] knows status codes.

mod analytics;
pub mod auth;
mod body;
pub mod error;
pub mod gate;
mod handlers;
pub mod metrics;
pub mod server;

use crate::ingest::status::{Registry, SourceStatus};
use crate::store::StoreHandle;
use actix_web::web;
use error::ApiError;
use std::sync::Arc;
use std::time::Instant;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    pub store: StoreHandle,
    pub sources: Arc<Registry>,
    pub started: Instant,
    pub max_body: usize,
    /// Counters of `POST /ingest`, shown in `/status` as the source `ingest`.
    pub ingest: Arc<SourceStatus>,
    /// Analyses of the graph, off the request threads.
    pub analytics: Arc<crate::analytics::engine::Engine>,
    /// Who may write and read.
    pub access: Arc<auth::Access>,
    /// The open connections (see [`server`]).
    pub connections: Arc<server::Connections>,
    /// Resident memory and bytes on disk, read at most once a second.
    pub sampled: Arc<handlers::Sampled>,
    /// What `/metrics` exports.
    pub metrics: Arc<metrics::Metrics>,
    /// Per-client request rates.
    pub rates: Arc<gate::Rates>,
    /// A request's body must arrive within this.
    pub body_timeout: std::time::Duration,
}

/// Headers on every response, errors included: no MIME sniffing, no referrer leaked to other sites,
/// never framed (the page's CSP says `frame-ancestors 'none'` too).
pub(crate) const SECURITY_HEADERS: [(&str, &str); 3] =
    [("x-content-type-options", "nosniff"), ("referrer-policy", "no-referrer"), ("x-frame-options", "DENY")];

/// The middleware that puts [`SECURITY_HEADERS`] on every response.
pub fn security_headers() -> actix_web::middleware::DefaultHeaders {
    SECURITY_HEADERS.iter().fold(actix_web::middleware::DefaultHeaders::new(), |h, &pair| h.add(pair))
}

/// A resource whose other methods are answered 405 `method_not_allowed` in the JSON error shape.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(handlers::method_not_allowed))
}

/// A route for reads: GET, and HEAD (the same response without its body, which actix leaves out).
fn read() -> actix_web::Route {
    use actix_web::guard;
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// The route table. The seed project's documented routes are served at their original paths beside
/// the canonical ones, with the same meaning.
pub fn configure(cfg: &mut web::ServiceConfig, state: AppState) {
    use handlers::*;
    use web::{delete, post};
    cfg.app_data(web::Data::new(state))
        .app_data(
            web::QueryConfig::default()
                .error_handler(|err, _req| ApiError::InvalidQuery(err.to_string()).into()),
        )
        .app_data(
            web::PathConfig::default()
                .error_handler(|err, _req| ApiError::InvalidPath(err.to_string()).into()),
        )
        .service(resource("/").route(read().to(status)))
        .service(resource("/status").route(read().to(status)))
        .service(resource("/metrics").route(read().to(metrics::metrics)))
        // Users. Fixed segments first, so that `count` is not taken for a user.
        .service(resource("/vertices").route(read().to(list_users)).route(post().to(add_user)))
        .service(resource("/vertices/count").route(read().to(count_users)))
        .service(
            resource("/vertices/cuenta_vertices").route(read().to(count_users)).route(post().to(count_users)),
        )
        .service(resource("/vertices/add/{v}").route(post().to(add_user_at)))
        .service(resource("/vertices/remove/{v}").route(delete().to(remove_user)))
        .service(resource("/vertices/find_path/{v1}/{v2}").route(read().to(find_path)))
        .service(resource("/vertices/{v}").route(read().to(get_user)).route(delete().to(remove_user)))
        .service(resource("/vertices/{v}/aristas").route(read().to(user_edges)))
        // Edges.
        .service(resource("/aristas").route(read().to(list_edges)).route(post().to(add_edge)))
        .service(resource("/aristas/count").route(read().to(count_edges)))
        .service(resource("/aristas/add/{v1}/{v2}").route(post().to(add_edge_at)))
        .service(resource("/aristas/add/{v1}/{v2}/{kind}").route(post().to(add_edge_at_kind)))
        .service(resource("/aristas/remove/{v1}/{v2}").route(delete().to(remove_edge)))
        .service(resource("/aristas/{v1}/{v2}").route(read().to(get_edge)).route(delete().to(remove_edge)))
        .service(resource("/ingest").route(post().to(ingest)))
        .service(resource("/find_path/{v1}/{v2}").route(read().to(find_path)))
        // Analyses.
        .service(resource("/analytics/users").route(read().to(analytics::users)))
        .service(resource("/analytics/components").route(read().to(analytics::components)))
        .service(resource("/analytics/cores").route(read().to(analytics::cores)))
        .service(resource("/analytics/communities").route(read().to(analytics::communities)))
        .service(resource("/analytics/communities/{id}").route(read().to(analytics::community_members)))
        .service(resource("/analytics/bridges").route(read().to(analytics::bridges)))
        .service(resource("/vertices/{v}/ego").route(read().to(analytics::ego)))
        // The page and the subgraph it draws.
        .service(resource("/graph").route(read().to(subgraph)))
        .service(resource("/ui").route(read().to(ui)))
        .default_service(web::to(route_not_found));
}
