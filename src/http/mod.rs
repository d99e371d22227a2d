//! The REST API: one route table ([`configure`]) used by the server and by tests.
//!
//! Handlers turn requests into domain mutations for the store's write path, or read the graph under
//! a short read lock. Only [`error::ApiError`] knows status codes.

mod analytics;
pub mod auth;
mod body;
pub mod cache;
pub mod error;
mod export;
pub mod gate;
mod handlers;
pub mod metrics;
mod openapi;
mod reads;
pub mod server;
mod status;
mod stream;

use crate::ingest::status::{Registry, SourceStatus};
use crate::store::StoreHandle;
use actix_web::web;
use error::ApiError;
pub use export::EXPORTS_AT_ONCE;
use std::sync::Arc;
use std::time::Instant;
pub use stream::{HEARTBEAT, STREAMS_AT_ONCE};

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
    pub sampled: Arc<status::Sampled>,
    /// The first pages of users by degree, at most a second old.
    pub degree_orders: Arc<reads::DegreeOrders>,
    /// What path searches may still walk on the request threads.
    pub path_walks: Arc<reads::PathWalks>,
    /// Answers kept for the graph's current version.
    pub answers: Arc<cache::Answers>,
    /// What `/metrics` exports.
    pub metrics: Arc<metrics::Metrics>,
    /// Per-client request rates.
    pub rates: Arc<gate::Rates>,
    /// A request's body must arrive within this.
    pub body_timeout: std::time::Duration,
    /// The terms watched (exports are named after the first).
    pub track: Arc<[String]>,
    /// Exports being written (at most [`export::EXPORTS_AT_ONCE`]).
    pub exports: Arc<tokio::sync::Semaphore>,
    /// The backup being written (one at a time).
    pub backups: Arc<tokio::sync::Semaphore>,
    /// Streams open (at most [`stream::STREAMS_AT_ONCE`]).
    pub streams: Arc<tokio::sync::Semaphore>,
    /// Cancelled when the service stops: long responses (streams) end then.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// Headers on every response, errors included: no MIME sniffing, no referrer leaked to other sites,
/// never framed (the page's CSP says `frame-ancestors 'none'` too).
pub(crate) const SECURITY_HEADERS: [(&str, &str); 3] =
    [("x-content-type-options", "nosniff"), ("referrer-policy", "no-referrer"), ("x-frame-options", "DENY")];

/// The middleware that puts [`SECURITY_HEADERS`] on every response.
pub(crate) fn security_headers() -> actix_web::middleware::DefaultHeaders {
    SECURITY_HEADERS.iter().fold(actix_web::middleware::DefaultHeaders::new(), |h, &pair| h.add(pair))
}

/// A resource of the route table: its routes by method, and a 405 `method_not_allowed` in the JSON
/// error shape, with the `Allow` header the protocol asks for, for every other method.
struct Res {
    path: &'static str,
    routes: Vec<(&'static str, actix_web::Route)>,
}

fn resource(path: &'static str) -> Res {
    Res { path, routes: Vec::new() }
}

impl Res {
    /// A read: GET, and HEAD (the same response without its body, which actix leaves out).
    fn get<F, A>(mut self, handler: F) -> Res
    where
        F: actix_web::Handler<A>,
        A: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        use actix_web::guard;
        self.routes
            .push(("GET, HEAD", web::route().guard(guard::Any(guard::Get()).or(guard::Head())).to(handler)));
        self
    }

    fn post<F, A>(mut self, handler: F) -> Res
    where
        F: actix_web::Handler<A>,
        A: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        self.routes.push(("POST", web::post().to(handler)));
        self
    }

    fn delete<F, A>(mut self, handler: F) -> Res
    where
        F: actix_web::Handler<A>,
        A: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        self.routes.push(("DELETE", web::delete().to(handler)));
        self
    }
}

impl actix_web::dev::HttpServiceFactory for Res {
    fn register(self, config: &mut actix_web::dev::AppService) {
        let allow: std::rc::Rc<str> =
            self.routes.iter().map(|(m, _)| *m).collect::<Vec<_>>().join(", ").into();
        let resource = self.routes.into_iter().fold(web::resource(self.path), |r, (_, route)| r.route(route));
        resource
            .default_service(web::to(move |req: actix_web::HttpRequest| {
                let allow = allow.clone();
                async move { Err::<actix_web::HttpResponse, _>(handlers::method_not_allowed(&req, &allow)) }
            }))
            .register(config);
    }
}

/// The route table. The seed project's documented routes are served at their original paths beside
/// the canonical ones, with the same meaning. [`openapi`] documents exactly these routes (a test
/// compares them).
fn table() -> Vec<Res> {
    use handlers::*;
    vec![
        resource("/").get(status::status),
        resource("/status").get(status::status),
        resource("/metrics").get(metrics::metrics),
        resource("/openapi.json").get(openapi::openapi_json),
        resource("/docs").get(openapi::docs),
        // Users. Fixed segments first, so that `count` is not taken for a user.
        resource("/vertices").get(list_users).post(add_user),
        resource("/vertices/count").get(count_users),
        resource("/vertices/cuenta_vertices").get(count_users).post(count_users),
        resource("/vertices/add/{user}").post(add_user_at),
        resource("/vertices/remove/{user}").delete(remove_user),
        resource("/vertices/find_path/{from}/{to}").get(find_path),
        resource("/vertices/{user}").get(get_user).delete(remove_user),
        resource("/vertices/{user}/aristas").get(user_edges),
        // Edges.
        resource("/aristas").get(list_edges).post(add_edge),
        resource("/aristas/count").get(count_edges),
        resource("/aristas/add/{from}/{to}").post(add_edge_at),
        resource("/aristas/add/{from}/{to}/{kind}").post(add_edge_at_kind),
        resource("/aristas/remove/{from}/{to}").delete(remove_edge),
        resource("/aristas/{from}/{to}").get(get_edge).delete(remove_edge),
        resource("/ingest").post(ingest),
        resource("/find_path/{from}/{to}").get(find_path),
        // Analyses.
        resource("/analytics/users").get(analytics::users),
        resource("/analytics/components").get(analytics::components),
        resource("/analytics/cores").get(analytics::cores),
        resource("/analytics/communities").get(analytics::communities),
        resource("/analytics/communities/{id}").get(analytics::community_members),
        resource("/analytics/bridges").get(analytics::bridges),
        resource("/analytics/timeline").get(analytics::timeline),
        resource("/vertices/{user}/ego").get(analytics::ego),
        resource("/export").get(export::export),
        resource("/backup").get(export::backup),
        resource("/stream/gephi").get(stream::gephi),
        resource("/stream/changes").get(stream::changes),
        // The page and the subgraph it draws.
        resource("/graph").get(subgraph),
        resource("/ui").get(ui),
    ]
}

/// Every route's path and methods, as served.
#[cfg(test)]
fn routes() -> Vec<(&'static str, Vec<&'static str>)> {
    table().iter().map(|r| (r.path, r.routes.iter().flat_map(|(m, _)| m.split(", ")).collect())).collect()
}

/// Registers the route table and what its handlers share.
pub(crate) fn configure(cfg: &mut web::ServiceConfig, state: AppState) {
    cfg.app_data(web::Data::new(state))
        .app_data(
            web::QueryConfig::default()
                .error_handler(|err, _req| ApiError::InvalidQuery(err.to_string()).into()),
        )
        .app_data(
            web::PathConfig::default()
                .error_handler(|err, _req| ApiError::InvalidPath(err.to_string()).into()),
        );
    for resource in table() {
        cfg.service(resource);
    }
    cfg.default_service(web::to(handlers::route_not_found));
}
