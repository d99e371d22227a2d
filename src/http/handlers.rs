//! Request handlers. Each one validates its input, then either reads the graph under a short read
//! lock or submits a mutation to the store and answers once it is durable.

use super::analytics::{self, DrawnUser, Params, StrongestPath, UserMetrics};
use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::analytics::report::NetworkInfo;
use crate::graph::{
    decode_pair, parse_user_cursor, validate_key, Graph, GraphError, Kind, Mutation, PathView, TieView,
    UserDetail, UserOrder, UserView, PATH_STEP, QUICK_PATH_BUDGET,
};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

type Result<T> = std::result::Result<T, ApiError>;

/// A user named in a path: its key (`x:2244994945`, `mastodon:ana@mastodon.social`, `alice`) or
/// `@handle`.
pub(crate) const USER_PARAM: &str = "A user's key, or its handle after `@`";

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;

/// Runs an expensive read of the graph on the analytics engine's pool of reads (bounded and paced:
/// see [`crate::analytics::engine::Engine::read`]); `read` takes the read lock itself.
pub(super) async fn heavy<T, F>(state: &AppState, read: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&crate::store::SharedGraph) -> Result<T> + Send + 'static,
{
    state.analytics.read(state.store.stats().writing(), read).await.map_err(|e| match e {
        None => ApiError::Overloaded("too many expensive reads are waiting"),
        Some(cause) => ApiError::Internal(cause),
    })?
}

// ---- users ----

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// Users per page.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,10}:")]
    cursor: Option<String>,
    /// `key` (or `id`, the same): by key; the others: highest first, ties by key.
    #[param(inline)]
    sort: Option<Sort>,
}

/// How `GET /vertices` orders users.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Sort {
    Key,
    Id,
    Degree,
    InDegree,
    OutDegree,
}

fn limit(l: Option<usize>) -> Result<usize> {
    match l.unwrap_or(DEFAULT_LIMIT) {
        0 => Err(ApiError::InvalidQuery("limit must be at least 1".into())),
        n if n > MAX_LIMIT => Err(ApiError::InvalidQuery(format!("limit must be at most {MAX_LIMIT}"))),
        n => Ok(n),
    }
}

/// A page of users, serialized straight from the views (building a `json!` tree of them first cost
/// as much again).
#[derive(Serialize, ToSchema)]
pub(crate) struct UsersPage {
    vertices: Vec<UserView>,
    /// Users in the graph.
    count: usize,
    /// Pass as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

/// A user's heaviest edges and how many it has (`GET /vertices/{user}/aristas`).
#[derive(Serialize, ToSchema)]
pub(crate) struct UserEdges {
    user: String,
    /// The user's edges in the directions asked for.
    count: u32,
    /// The heaviest first, at most `limit`.
    edges: Vec<TieView>,
}

/// A page of edges, likewise.
#[derive(Serialize, ToSchema)]
pub(crate) struct EdgesPage {
    edges: Vec<TieView>,
    /// Edges in the graph.
    count: usize,
    next_cursor: Option<String>,
}

/// A count (`GET /vertices/count`).
#[derive(Serialize, ToSchema)]
pub(crate) struct Count {
    count: usize,
}

/// Edges and the interactions they carry (`GET /aristas/count`).
#[derive(Serialize, ToSchema)]
pub(crate) struct EdgeCount {
    count: usize,
    interactions: u64,
}

/// A list of users, a page at a time.
#[utoipa::path(get, path = "/vertices", tag = "users", params(ListParams),
    responses(
        (status = 200, description = "A page of users", body = UsersPage),
        (status = 400, description = "`invalid_query`, `invalid_cursor`", body = ErrorBody),
    ))]
pub(crate) async fn list_users(
    state: web::Data<AppState>,
    q: web::Query<ListParams>,
) -> Result<HttpResponse> {
    let limit = limit(q.limit)?;
    let order = match q.sort {
        None | Some(Sort::Key) | Some(Sort::Id) => UserOrder::Key,
        Some(Sort::Degree) => UserOrder::Degree,
        Some(Sort::InDegree) => UserOrder::InDegree,
        Some(Sort::OutDegree) => UserOrder::OutDegree,
    };
    if q.cursor.as_deref().is_some_and(|c| parse_user_cursor(c).is_none()) {
        return Err(ApiError::InvalidCursor);
    }
    // By key, and by degree among the users with more than a few dozen edges (an order the graph
    // keeps), it is O(limit); a page past them is a scan of every user: off the request threads.
    let cursor = q.cursor.clone();
    let after = cursor.as_deref().and_then(parse_user_cursor);
    let fast = match order {
        UserOrder::Key => {
            let g = state.store.graph().read();
            Some((g.users_page(order, after, limit), g.user_count()))
        }
        _ => state.degree_orders.get(state.store.graph(), order).await.and_then(|ranked| {
            let g = state.store.graph().read();
            ranked.page(&g, after, limit).map(|page| (page, g.user_count()))
        }),
    };
    let (page, count) = match fast {
        Some(found) => found,
        None => {
            heavy(&state, move |graph| {
                let after = cursor.as_deref().and_then(parse_user_cursor);
                let g = graph.read();
                Ok((g.users_page(order, after, limit), g.user_count()))
            })
            .await?
        }
    };
    Ok(HttpResponse::Ok().json(UsersPage { vertices: page.items, count, next_cursor: page.next }))
}

/// How many users the graph holds (`cuenta_vertices`: the seed's name for it).
#[utoipa::path(get, path = "/vertices/count", tag = "users",
    responses((status = 200, description = "The number of users", body = Count)))]
pub(crate) async fn count_users(state: web::Data<AppState>) -> web::Json<Count> {
    web::Json(Count { count: state.store.graph().read().user_count() })
}

/// A user with its metrics in the whole network, where they have been computed.
#[derive(Serialize, ToSchema)]
pub(crate) struct UserAnswer {
    #[serde(flatten)]
    detail: UserDetail,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<UserMetrics>,
}

/// A user: degrees and interactions per kind, and its metrics in the whole network where they
/// have been computed (by `/analytics/...`).
#[utoipa::path(get, path = "/vertices/{user}", tag = "users",
    params(("user" = String, Path, description = USER_PARAM)),
    responses(
        (status = 200, description = "The user", body = UserAnswer),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 409, description = "`ambiguous_handle`: several users have this handle", body = ErrorBody),
    ))]
pub(crate) async fn get_user(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse> {
    let (detail, uid) = {
        let g = state.store.graph().read();
        let key = g.resolve(&path)?;
        (g.user(key).ok_or_else(|| ApiError::Graph(GraphError::UserNotFound(path.to_string())))?, g.uid(key))
    };
    let metrics = uid.and_then(|uid| analytics::cached_metrics(&state, uid));
    Ok(HttpResponse::Ok().json(UserAnswer { detail, metrics }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EdgesOfParams {
    /// Edges the user made (`out`), received (`in`), or both.
    #[param(inline)]
    direction: Option<Direction>,
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<usize>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Direction {
    In,
    Out,
    Both,
}

/// The edges of one user, heaviest first: O(limit · log degree) for any user, however many edges
/// it has (the graph keeps busy users' edges in order of weight), so on the request threads.
#[utoipa::path(get, path = "/vertices/{user}/aristas", tag = "users",
    params(("user" = String, Path, description = USER_PARAM), EdgesOfParams),
    responses(
        (status = 200, description = "The user's heaviest edges", body = UserEdges),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 409, description = "`ambiguous_handle`", body = ErrorBody),
    ))]
pub(crate) async fn user_edges(
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<EdgesOfParams>,
) -> Result<HttpResponse> {
    let limit = limit(q.limit)?;
    let (want_out, want_in) = match q.direction {
        None | Some(Direction::Both) => (true, true),
        Some(Direction::Out) => (true, false),
        Some(Direction::In) => (false, true),
    };
    let g = state.store.graph().read();
    let key = g.resolve(&path)?;
    let (count, edges) = g.heaviest_ties_of(key, want_out, want_in, limit).unwrap_or_default();
    let user = key.to_string();
    drop(g);
    Ok(HttpResponse::Ok().json(UserEdges { user, count, edges }))
}

/// A user to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUser {
    /// Its key: 1 to 256 characters, no control characters, not starting with `@`.
    #[schema(
        pattern = r"^(?!@)(?=[\s\S]*[^\s])[^\x00-\x1f\x7f-\x9f]{1,256}$",
        min_length = 1,
        max_length = 256
    )]
    id: String,
    /// Its handle (a leading `@` is dropped).
    #[schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]{0,1024}$", max_length = 1024)]
    handle: Option<String>,
    /// Its display name.
    #[schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]{0,1024}$", max_length = 1024)]
    name: Option<String>,
}

/// Creates a user.
#[utoipa::path(post, path = "/vertices", tag = "users", request_body = NewUser,
    security(("token" = [])),
    responses(
        (status = 201, description = "Created; `Location` names it", body = UserDetail,
            headers(("Location" = String, description = "The new user's path")),
            links(
                ("GetUser" = (operation_id = "get_user", parameters(("user" = "$response.body#/id")))),
                ("RemoveUser" = (operation_id = "remove_user", parameters(("user" = "$response.body#/id")))),
                ("UserEdges" = (operation_id = "user_edges", parameters(("user" = "$response.body#/id")))),
            )),
        (status = 400, description = "`invalid_json`, `invalid_user`", body = ErrorBody),
        (status = 409, description = "`user_exists`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body must be JSON", body = ErrorBody),
    ))]
pub(crate) async fn add_user(
    state: web::Data<AppState>,
    body: super::body::Json<NewUser>,
) -> Result<HttpResponse> {
    let NewUser { id, handle, name } = body.0;
    create_user(&state, id, handle.map(|h| h.trim_start_matches('@').to_string()), name).await
}

/// Creates a user with no handle or name (the seed's route).
#[utoipa::path(post, path = "/vertices/add/{user}", tag = "compatibility",
    params(("user" = String, Path, description = "The new user's key", pattern = r"^(?!@)(?=[\s\S]*[^\s])[^\x00-\x1f\x7f-\x9f]{1,256}$")),
    security(("token" = [])),
    responses(
        (status = 201, description = "Created", body = UserDetail),
        (status = 400, description = "`invalid_user`", body = ErrorBody),
        (status = 409, description = "`user_exists`", body = ErrorBody),
    ))]
pub(crate) async fn add_user_at(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse> {
    create_user(&state, path.into_inner(), None, None).await
}

async fn create_user(
    state: &AppState,
    id: String,
    handle: Option<String>,
    name: Option<String>,
) -> Result<HttpResponse> {
    validate_key(&id)?;
    // An empty handle or name is none: a handle "" would otherwise name this user to `resolve("")`.
    let (handle, name) = (handle.filter(|h| !h.is_empty()), name.filter(|n| !n.is_empty()));
    for (field, v) in [("handle", &handle), ("name", &name)] {
        if v.as_deref().is_some_and(|s| s.chars().count() > 1024 || s.chars().any(char::is_control)) {
            return Err(ApiError::InvalidUser {
                key: id,
                reason: format!("{field} is too long or has control characters"),
            });
        }
    }
    state.store.submit_one(Mutation::AddUser { key: id.clone(), handle, name }).await??;
    let detail =
        state.store.graph().read().user(&id).ok_or_else(|| ApiError::Internal("user vanished".into()))?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/vertices/{}", encode_segment(&id))))
        .json(detail))
}

/// Removes a user and every edge it has.
#[utoipa::path(delete, path = "/vertices/{user}", tag = "users",
    params(("user" = String, Path, description = USER_PARAM)),
    security(("token" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 409, description = "`ambiguous_handle`", body = ErrorBody),
    ))]
pub(crate) async fn remove_user(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse> {
    let key = state.store.graph().read().resolve(&path)?.to_string();
    state.store.submit_one(Mutation::RemoveUser { key }).await??;
    Ok(HttpResponse::NoContent().finish())
}

// ---- edges ----

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EdgeParams {
    /// Edges per page.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^([0-9a-fA-F]{2})*$")]
    cursor: Option<String>,
}

/// Every edge, a page at a time, by (from, to).
#[utoipa::path(get, path = "/aristas", tag = "edges", params(EdgeParams),
    responses(
        (status = 200, description = "A page of edges", body = EdgesPage),
        (status = 400, description = "`invalid_query`, `invalid_cursor`", body = ErrorBody),
    ))]
pub(crate) async fn list_edges(
    state: web::Data<AppState>,
    q: web::Query<EdgeParams>,
) -> Result<HttpResponse> {
    let limit = limit(q.limit)?;
    let after = match &q.cursor {
        Some(c) => Some(decode_pair(c).ok_or(ApiError::InvalidCursor)?),
        None => None,
    };
    let g = state.store.graph().read();
    let page = g.ties_page(after.as_ref().map(|(a, b)| (a.as_str(), b.as_str())), limit);
    let count = g.tie_count();
    drop(g);
    Ok(HttpResponse::Ok().json(EdgesPage { edges: page.items, count, next_cursor: page.next }))
}

/// How many edges the graph holds, and the interactions they carry.
#[utoipa::path(get, path = "/aristas/count", tag = "edges",
    responses((status = 200, description = "The counts", body = EdgeCount)))]
pub(crate) async fn count_edges(state: web::Data<AppState>) -> web::Json<EdgeCount> {
    let g = state.store.graph().read();
    web::Json(EdgeCount { count: g.tie_count(), interactions: g.interaction_count() })
}

/// The edge from one user to another: its interactions per kind and when.
#[utoipa::path(get, path = "/aristas/{from}/{to}", tag = "edges",
    params(("from" = String, Path, description = "The user who acted: key or `@handle`"),
           ("to" = String, Path, description = "The user acted upon: key or `@handle`")),
    responses(
        (status = 200, description = "The edge", body = TieView),
        (status = 404, description = "`user_not_found`, `edge_not_found`", body = ErrorBody),
        (status = 409, description = "`ambiguous_handle`", body = ErrorBody),
    ))]
pub(crate) async fn get_edge(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let g = state.store.graph().read();
    let (from, to) = g.resolve_pair(&path.0, &path.1)?;
    let view = g
        .tie_view(from, to)
        .ok_or_else(|| ApiError::Graph(GraphError::TieNotFound { from: from.into(), to: to.into() }))?;
    Ok(HttpResponse::Ok().json(view))
}

/// An interaction to record. Users named by a key that does not exist yet are created.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewEdge {
    /// The user who acted: a key (created if new) or `@handle`.
    #[schema(pattern = r"^(?=[\s\S]*[^\s])[^\x00-\x1f\x7f-\x9f]{1,256}$")]
    from: String,
    /// The user acted upon.
    #[schema(pattern = r"^(?=[\s\S]*[^\s])[^\x00-\x1f\x7f-\x9f]{1,256}$")]
    to: String,
    /// `manual` when absent.
    #[schema(value_type = Option<Kind>)]
    kind: Option<String>,
}

/// Records one interaction from a user to another (creating unknown users).
#[utoipa::path(post, path = "/aristas", tag = "edges", request_body = NewEdge,
    security(("token" = [])),
    responses(
        (status = 201, description = "Recorded; the edge as it is now", body = TieView,
            headers(("Location" = String, description = "The edge's path")),
            links(
                ("GetEdge" = (operation_id = "get_edge",
                    parameters(("from" = "$response.body#/from"), ("to" = "$response.body#/to")))),
                ("RemoveEdge" = (operation_id = "remove_edge",
                    parameters(("from" = "$response.body#/from"), ("to" = "$response.body#/to")))),
            )),
        (status = 400, description = "`invalid_json`, `invalid_user`, `invalid_kind`, `self_loop`", body = ErrorBody),
        (status = 404, description = "`user_not_found`: an unknown `@handle`", body = ErrorBody),
        (status = 409, description = "`ambiguous_handle`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
    ))]
pub(crate) async fn add_edge(
    state: web::Data<AppState>,
    body: super::body::Json<NewEdge>,
) -> Result<HttpResponse> {
    let NewEdge { from, to, kind } = body.0;
    record_interaction(&state, &from, &to, kind.as_deref()).await
}

/// Records a `manual` interaction (the seed's route).
#[utoipa::path(post, path = "/aristas/add/{from}/{to}", tag = "compatibility",
    params(("from" = String, Path, description = "The user who acted: key (created if new) or `@handle`", pattern = r"^(?=[\s\S]*[^\s])[^\x00-\x1f\x7f-\x9f]{1,256}$"),
           ("to" = String, Path, description = "The user acted upon", pattern = r"^(?=[\s\S]*[^\s])[^\x00-\x1f\x7f-\x9f]{1,256}$")),
    security(("token" = [])),
    responses(
        (status = 201, description = "Recorded", body = TieView),
        (status = 400, description = "`invalid_user`, `self_loop`", body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 409, description = "`ambiguous_handle`", body = ErrorBody),
    ))]
pub(crate) async fn add_edge_at(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    record_interaction(&state, &path.0, &path.1, None).await
}

/// Records an interaction of a kind (the seed's route, extended).
#[utoipa::path(post, path = "/aristas/add/{from}/{to}/{kind}", tag = "compatibility",
    params(("from" = String, Path, description = "The user who acted: key (created if new) or `@handle`", pattern = r"^(?=[\s\S]*[^\s])[^\x00-\x1f\x7f-\x9f]{1,256}$"),
           ("to" = String, Path, description = "The user acted upon", pattern = r"^(?=[\s\S]*[^\s])[^\x00-\x1f\x7f-\x9f]{1,256}$"),
           ("kind" = Kind, Path, description = "The interaction's kind")),
    security(("token" = [])),
    responses(
        (status = 201, description = "Recorded", body = TieView),
        (status = 400, description = "`invalid_user`, `invalid_kind`, `self_loop`", body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 409, description = "`ambiguous_handle`", body = ErrorBody),
    ))]
pub(crate) async fn add_edge_at_kind(
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse> {
    record_interaction(&state, &path.0, &path.1, Some(&path.2)).await
}

/// Names a user for a write that creates unknown users: a known key or handle resolves; an unknown
/// plain name becomes a new key; an unknown `@handle` is an error (a handle cannot be a key).
fn resolve_or_new(g: &Graph, spec: &str) -> Result<String> {
    match g.resolve(spec) {
        Ok(k) => Ok(k.to_string()),
        Err(GraphError::UserNotFound(_)) if !spec.starts_with('@') => {
            validate_key(spec)?;
            Ok(spec.to_string())
        }
        Err(e) => Err(e.into()),
    }
}

async fn record_interaction(
    state: &AppState,
    from: &str,
    to: &str,
    kind: Option<&str>,
) -> Result<HttpResponse> {
    let kind = match kind {
        None => Kind::Manual,
        Some(k) => Kind::parse(k).ok_or_else(|| ApiError::InvalidKind(k.chars().take(64).collect()))?,
    };
    let (from, to) = {
        let g = state.store.graph().read();
        (resolve_or_new(&g, from)?, resolve_or_new(&g, to)?)
    };
    let at = chrono::Utc::now().timestamp();
    state
        .store
        .submit_one(Mutation::AddInteraction { from: from.clone(), to: to.clone(), kind, at })
        .await??;
    let view = state
        .store
        .graph()
        .read()
        .tie_view(&from, &to)
        .ok_or_else(|| ApiError::Internal("edge vanished after write".into()))?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/aristas/{}/{}", encode_segment(&from), encode_segment(&to))))
        .json(view))
}

/// Removes the edge from one user to another, every interaction it carries.
#[utoipa::path(delete, path = "/aristas/{from}/{to}", tag = "edges",
    params(("from" = String, Path, description = "The user who acted: key or `@handle`"),
           ("to" = String, Path, description = "The user acted upon: key or `@handle`")),
    security(("token" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "`user_not_found`, `edge_not_found`", body = ErrorBody),
        (status = 409, description = "`ambiguous_handle`", body = ErrorBody),
    ))]
pub(crate) async fn remove_edge(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let (from, to) = {
        let g = state.store.graph().read();
        let (a, b) = g.resolve_pair(&path.0, &path.1)?;
        (a.to_string(), b.to_string())
    };
    state.store.submit_one(Mutation::RemoveTie { from, to }).await??;
    Ok(HttpResponse::NoContent().finish())
}

// ---- paths ----

/// The answer of `find_path`: the fewest hops, or the strongest path with `weighted=true`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum PathAnswer {
    Fewest(PathView),
    Strongest(StrongestPath),
}

/// The query of `find_path`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read by `Params`: this type states the contract.
pub(crate) struct PathQuery {
    /// Follow edges only from the user who acted to the user acted upon.
    #[param(default = false)]
    directed: Option<bool>,
    /// The strongest path (cost 1/weight per edge) on the selection, instead of the fewest hops on
    /// the whole graph.
    #[param(default = false)]
    weighted: Option<bool>,
}

/// How two users are connected: the fewest hops on the whole graph, or with `weighted=true` the
/// strongest path on a selection (cost 1/weight per edge).
#[utoipa::path(get, path = "/find_path/{from}/{to}", tag = "paths",
    params(("from" = String, Path, description = USER_PARAM), ("to" = String, Path, description = USER_PARAM),
           PathQuery, analytics::SelectionQuery),
    responses(
        (status = 200, description = "The path", body = PathAnswer),
        (status = 400, description = "`invalid_query`; selection parameters without `weighted=true`", body = ErrorBody),
        (status = 404, description = "`user_not_found`, `no_path`", body = ErrorBody),
        (status = 409, description = "`ambiguous_handle`", body = ErrorBody),
        (status = 503, description = "`too_expensive`: the search gave up within its budget; `overloaded`", body = ErrorBody),
    ))]
pub async fn find_path(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> Result<web::Json<PathAnswer>> {
    let mut p = Params::of(&req)?;
    let directed = p.flag("directed")?;
    let weighted = p.flag("weighted")?;
    if !weighted && (analytics::selects(&p) || p.has("min_weight")) {
        return Err(ApiError::InvalidQuery(
            "kinds, since, until and min_weight select the network of weighted=true paths".into(),
        ));
    }
    let sel = p.selection()?;
    p.finish()?;
    if weighted {
        let found = analytics::strongest_path(&state, &path.0, &path.1, directed, sel).await?;
        return Ok(web::Json(PathAnswer::Strongest(found)));
    }
    // First on this thread within a small budget (most paths are found in it) while the request
    // threads' allowance of walking lasts; otherwise, or if that did not decide, on the paced pool
    // of expensive reads with the full budget, letting go of the graph between steps.
    let (from, to) = path.into_inner();
    let quick = state.path_walks.take(QUICK_PATH_BUDGET).then(|| {
        let (found, walked) =
            state.store.graph().read().find_path_within(&from, &to, directed, QUICK_PATH_BUDGET);
        state.path_walks.give_back(QUICK_PATH_BUDGET.saturating_sub(walked));
        found
    });
    let found = match quick {
        None | Some(Err(GraphError::TooExpensive { .. })) => {
            heavy(&state, move |graph| {
                Ok(Graph::find_path_stepped(|| graph.read(), &from, &to, directed, PATH_STEP)?)
            })
            .await?
        }
        Some(other) => other?,
    };
    Ok(web::Json(PathAnswer::Fewest(found)))
}

// ---- the page ----

const DEFAULT_TOP: usize = 100;
const MAX_TOP: usize = 500;
/// Edges `/graph` draws at most, the heaviest: more than a picture can show, and bounded, where the
/// edges among 500 hubs can be a hundred thousand.
const DEFAULT_MAX_EDGES: usize = 2_000;
/// Users whose edges `/graph` looks through per read lock (a few hundred microseconds for hubs).
const DRAWING_CHUNK: usize = 25;
const MAX_MAX_EDGES: usize = 20_000;

/// The subgraph `/ui` draws.
#[derive(Serialize, ToSchema)]
pub(crate) struct Drawing {
    /// By degree, highest first.
    nodes: Vec<DrawnUser>,
    /// The heaviest edges among them, at most `max_edges`.
    edges: Vec<TieView>,
    /// Edges among them (with the minimum weight) in all.
    edges_among: usize,
    /// Users in the graph (or in the selection).
    users: usize,
    edges_total: usize,
    /// The selection, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<NetworkInfo>,
}

/// The query of `/graph`, besides the selection.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read by `Params`: this type states the contract.
pub(crate) struct DrawingQuery {
    /// Users drawn, those of highest degree.
    #[param(minimum = 1, maximum = 500, default = 100)]
    top: Option<usize>,
    /// Edges drawn at most, the heaviest.
    #[param(minimum = 0, maximum = 20000, default = 2000)]
    max_edges: Option<usize>,
}

/// The `top` users of highest degree and the edges among them with at least `min_weight`
/// interactions, the subgraph `/ui` draws. With `kinds`, `since` or `until`, degrees and weights are
/// those of that selection.
#[utoipa::path(get, path = "/graph", tag = "page", params(DrawingQuery, analytics::SelectionQuery),
    responses(
        (status = 200, description = "The subgraph", body = Drawing),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
    ))]
pub async fn subgraph(state: web::Data<AppState>, req: HttpRequest) -> Result<web::Json<Drawing>> {
    let mut p = Params::of(&req)?;
    let top = match p.take("top") {
        None => DEFAULT_TOP,
        Some(t) => match t.parse::<usize>() {
            Ok(0) => return Err(ApiError::InvalidQuery("top must be at least 1".into())),
            Ok(n) if n <= MAX_TOP => n,
            _ => return Err(ApiError::InvalidQuery(format!("top must be a number from 1 to {MAX_TOP}"))),
        },
    };
    let max_edges = match p.take("max_edges") {
        None => DEFAULT_MAX_EDGES,
        Some(t) => match t.parse::<usize>() {
            Ok(n) if n <= MAX_MAX_EDGES => n,
            _ => {
                return Err(ApiError::InvalidQuery(format!(
                    "max_edges must be a number from 0 to {MAX_MAX_EDGES}"
                )))
            }
        },
    };
    let selected = analytics::selects(&p);
    let sel = p.selection()?;
    p.finish()?;
    if selected {
        let a = state
            .analytics
            .run(crate::analytics::engine::Task::Network, sel)
            .await
            .map_err(ApiError::Internal)?;
        let net = &a.network;
        let mut ids: Vec<usize> = (0..net.users()).collect();
        let degree = |i: usize| net.out(i).0.len() + net.inc(i).len();
        ids.sort_unstable_by(|&x, &y| degree(y).cmp(&degree(x)).then(x.cmp(&y)));
        ids.truncate(top);
        let (nodes, edges, edges_among) = analytics::drawing(&state, &sel, net, &ids, None, max_edges);
        return Ok(web::Json(Drawing {
            nodes,
            edges,
            edges_among,
            users: net.users(),
            edges_total: net.edges(),
            network: Some(NetworkInfo::of(&sel, net)),
        }));
    }
    let min_weight = u64::from(sel.min_weight);
    // The busiest users from the order by degree held (no scan of every user) where it has them.
    let ranked = state.degree_orders.get(state.store.graph(), UserOrder::Degree).await;
    let (drawn, users, edges_total) = heavy(&state, move |graph| {
        let page = ranked.and_then(|r| r.page(&graph.read(), None, top));
        let Some(page) = page else {
            let g = graph.read();
            return Ok((g.top_subgraph(top, min_weight, max_edges), g.user_count(), g.tie_count()));
        };
        // The edges among the busiest users, a few users' edges per read lock: the writer waits
        // for one chunk at most, never for the whole drawing.
        let users = page.items;
        let keys: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
        let mut found = Vec::new();
        for chunk in keys.chunks(DRAWING_CHUNK) {
            found.extend(graph.read().edges_among(chunk, &keys, min_weight));
        }
        let (kept, among) = crate::graph::heaviest(found, max_edges);
        let g = graph.read();
        let ties = g.drawn(kept);
        Ok((crate::graph::Subgraph { users, ties, among }, g.user_count(), g.tie_count()))
    })
    .await?;
    Ok(web::Json(Drawing {
        nodes: drawn.users.into_iter().map(|user| DrawnUser { user, hop: None }).collect(),
        edges: drawn.ties,
        edges_among: drawn.among,
        users,
        edges_total,
        network: None,
    }))
}

/// The page, compiled in so that the binary alone serves it, offline.
const UI_HTML: &str = include_str!("ui.html");

/// The live drawing of the graph. The content security policy backs the page's promise to load
/// nothing from elsewhere: only its own inline script and style, and requests to this origin.
#[utoipa::path(get, path = "/ui", tag = "page",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
pub async fn ui() -> HttpResponse {
    page(UI_HTML)
}

/// A page compiled into the binary, with the policy that keeps it to this origin.
pub(super) fn page(html: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; connect-src 'self'; script-src 'unsafe-inline'; \
             style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
        ))
        .insert_header(("Cache-Control", "no-cache"))
        .body(html)
}

// ---- the HTTP collector ----

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct IngestParams {
    /// The records' format; `auto` (the default) detects it per line.
    #[param(inline)]
    format: Option<IngestFormat>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
pub(crate) enum IngestFormat {
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "x-v2")]
    XV2,
    #[serde(rename = "x-v1")]
    XV1,
    #[serde(rename = "mastodon")]
    Mastodon,
    #[serde(rename = "jetstream")]
    Jetstream,
}

/// Collects posts: NDJSON of any supported payload (X v2 lines, v1.1 statuses, Mastodon statuses,
/// Jetstream events), gzip allowed, decoded and committed durably before the answer. Broken lines
/// are counted and skipped, with the first few reasons quoted.
#[utoipa::path(post, path = "/ingest", tag = "ingest", params(IngestParams),
    request_body(description = "One record per line (may be empty)", content(
        (String = "application/x-ndjson"),
        (serde_json::Value = "application/json"),
    )),
    security(("token" = [])),
    responses(
        (status = 200, description = "What was made of the records", body = crate::ingest::IngestAnswer),
        (status = 400, description = "`invalid_query`, `invalid_encoding`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body must be NDJSON or JSON", body = ErrorBody),
    ))]
pub async fn ingest(
    state: web::Data<AppState>,
    q: web::Query<IngestParams>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse> {
    use crate::config::ImportFormat;
    let format = match q.format {
        None | Some(IngestFormat::Auto) => ImportFormat::Auto,
        Some(IngestFormat::XV2) => ImportFormat::XV2,
        Some(IngestFormat::XV1) => ImportFormat::XV1,
        Some(IngestFormat::Mastodon) => ImportFormat::Mastodon,
        Some(IngestFormat::Jetstream) => ImportFormat::Jetstream,
    }
    .into_format();
    let body = super::body::read(&state, &req, &mut payload.into_inner()).await?;
    // Decoding a large body is CPU work: keep it off the async workers.
    let collected = web::block(move || crate::ingest::Collected::ndjson(&body, format))
        .await
        .map_err(|e| ApiError::Internal(format!("decode task: {e}")))?;
    let outcomes = state.store.submit(collected.mutations).await?;
    let tally = crate::ingest::source::Tally::of(&outcomes);
    tally.report_to(&state.ingest);
    state.ingest.add(&state.ingest.skipped, collected.skipped);
    if !collected.reasons.is_empty() {
        log::warn!("ingest: skipped {} records, first: {}", collected.skipped, collected.reasons[0]);
    }
    Ok(HttpResponse::Ok().json(crate::ingest::IngestAnswer {
        records: collected.records,
        accepted: tally.posts,
        interactions: tally.interactions,
        duplicates: tally.duplicates,
        deleted: tally.deleted,
        new_users: tally.new_users,
        skipped: collected.skipped,
        reasons: collected.reasons,
    }))
}

// ---- fallbacks ----

/// The answer to a method a route does not take: 405, naming the ones it does.
pub fn method_not_allowed(req: &HttpRequest, allow: &str) -> ApiError {
    ApiError::MethodNotAllowed {
        method: req.method().to_string().chars().take(32).collect(),
        allow: allow.to_string(),
    }
}

pub async fn route_not_found(req: HttpRequest) -> Result<HttpResponse> {
    Err(ApiError::RouteNotFound(req.path().chars().take(200).collect()))
}

/// Percent-encodes a user key for a `Location` header path segment.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@!$&'()*+,;=".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
