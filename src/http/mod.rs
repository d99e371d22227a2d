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
/// the canonical ones, with the same meaning.
pub fn configure(cfg: &mut web::ServiceConfig, state: AppState) {
    use handlers::*;
    cfg.app_data(web::Data::new(state))
        .app_data(
            web::QueryConfig::default()
                .error_handler(|err, _req| ApiError::InvalidQuery(err.to_string()).into()),
        )
        .app_data(
            web::PathConfig::default()
                .error_handler(|err, _req| ApiError::InvalidPath(err.to_string()).into()),
        )
        .service(resource("/").get(status))
        .service(resource("/status").get(status))
        .service(resource("/metrics").get(metrics::metrics))
        // Users. Fixed segments first, so that `count` is not taken for a user.
        .service(resource("/vertices").get(list_users).post(add_user))
        .service(resource("/vertices/count").get(count_users))
        .service(resource("/vertices/cuenta_vertices").get(count_users).post(count_users))
        .service(resource("/vertices/add/{v}").post(add_user_at))
        .service(resource("/vertices/remove/{v}").delete(remove_user))
        .service(resource("/vertices/find_path/{v1}/{v2}").get(find_path))
        .service(resource("/vertices/{v}").get(get_user).delete(remove_user))
        .service(resource("/vertices/{v}/aristas").get(user_edges))
        // Edges.
        .service(resource("/aristas").get(list_edges).post(add_edge))
        .service(resource("/aristas/count").get(count_edges))
        .service(resource("/aristas/add/{v1}/{v2}").post(add_edge_at))
        .service(resource("/aristas/add/{v1}/{v2}/{kind}").post(add_edge_at_kind))
        .service(resource("/aristas/remove/{v1}/{v2}").delete(remove_edge))
        .service(resource("/aristas/{v1}/{v2}").get(get_edge).delete(remove_edge))
        .service(resource("/ingest").post(ingest))
        .service(resource("/find_path/{v1}/{v2}").get(find_path))
        // Analyses.
        .service(resource("/analytics/users").get(analytics::users))
        .service(resource("/analytics/components").get(analytics::components))
        .service(resource("/analytics/cores").get(analytics::cores))
        .service(resource("/analytics/communities").get(analytics::communities))
        .service(resource("/analytics/communities/{id}").get(analytics::community_members))
        .service(resource("/analytics/bridges").get(analytics::bridges))
        .service(resource("/vertices/{v}/ego").get(analytics::ego))
        // The page and the subgraph it draws.
        .service(resource("/graph").get(subgraph))
        .service(resource("/ui").get(ui))
        .default_service(web::to(route_not_found));
}
