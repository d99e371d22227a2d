//! The REST API: one route table ([`configure`]) used by the server and by tests.
//!
//! Handlers turn requests into domain mutations for the store's write path, or read the graph under
//! a short read lock. Only [`error::ApiError`] knows status codes.

mod analytics;
pub mod error;
mod handlers;

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
}

/// The route table. The seed project's documented routes are served at their original paths beside
/// the canonical ones, with the same meaning.
pub fn configure(cfg: &mut web::ServiceConfig, state: AppState) {
    let limit = state.max_body;
    use handlers::*;
    use web::{delete, get, post, resource};
    cfg.app_data(web::Data::new(state))
        .app_data(
            web::JsonConfig::default()
                .limit(limit)
                .content_type_required(false)
                .error_handler(move |err, _req| error::json_error(err, limit).into()),
        )
        .app_data(web::PayloadConfig::default().limit(limit))
        .app_data(
            web::QueryConfig::default()
                .error_handler(|err, _req| ApiError::InvalidQuery(err.to_string()).into()),
        )
        .app_data(
            web::PathConfig::default()
                .error_handler(|err, _req| ApiError::InvalidPath(err.to_string()).into()),
        )
        .service(resource("/").route(get().to(status)).default_service(web::to(method_not_allowed)))
        .service(resource("/status").route(get().to(status)).default_service(web::to(method_not_allowed)))
        // Users. Fixed segments first, so that `count` is not taken for a user.
        .service(
            resource("/vertices")
                .route(get().to(list_users))
                .route(post().to(add_user))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            resource("/vertices/count")
                .route(get().to(count_users))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            resource("/vertices/cuenta_vertices")
                .route(get().to(count_users))
                .route(post().to(count_users))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            resource("/vertices/add/{v}")
                .route(post().to(add_user_at))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            resource("/vertices/remove/{v}")
                .route(delete().to(remove_user))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            resource("/vertices/find_path/{v1}/{v2}")
                .route(get().to(find_path))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            resource("/vertices/{v}")
                .route(get().to(get_user))
                .route(delete().to(remove_user))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            resource("/vertices/{v}/aristas")
                .route(get().to(user_edges))
                .default_service(web::to(method_not_allowed)),
        )
        // Edges.
        .service(
            resource("/aristas")
                .route(get().to(list_edges))
                .route(post().to(add_edge))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            resource("/aristas/count")
                .route(get().to(count_edges))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            resource("/aristas/add/{v1}/{v2}")
                .route(post().to(add_edge_at))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            resource("/aristas/add/{v1}/{v2}/{kind}")
                .route(post().to(add_edge_at_kind))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            resource("/aristas/remove/{v1}/{v2}")
                .route(delete().to(remove_edge))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            resource("/aristas/{v1}/{v2}")
                .route(get().to(get_edge))
                .route(delete().to(remove_edge))
                .default_service(web::to(method_not_allowed)),
        )
        .service(resource("/ingest").route(post().to(ingest)).default_service(web::to(method_not_allowed)))
        .service(
            resource("/find_path/{v1}/{v2}")
                .route(get().to(find_path))
                .default_service(web::to(method_not_allowed)),
        )
        // Analyses.
        .service(
            resource("/analytics/users")
                .route(get().to(analytics::users))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            resource("/analytics/components")
                .route(get().to(analytics::components))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            resource("/analytics/cores")
                .route(get().to(analytics::cores))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            resource("/analytics/communities")
                .route(get().to(analytics::communities))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            resource("/analytics/communities/{id}")
                .route(get().to(analytics::community_members))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            resource("/analytics/bridges")
                .route(get().to(analytics::bridges))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            resource("/vertices/{v}/ego")
                .route(get().to(analytics::ego))
                .default_service(web::to(method_not_allowed)),
        )
        // The page and the subgraph it draws.
        .service(resource("/graph").route(get().to(subgraph)).default_service(web::to(method_not_allowed)))
        .service(resource("/ui").route(get().to(ui)).default_service(web::to(method_not_allowed)))
        .default_service(web::to(route_not_found));
}
