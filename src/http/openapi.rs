//! The API's contract: an OpenAPI 3.1 document generated from the handlers' annotations and the
//! types they answer with (utoipa), served at `GET /openapi.json`, and the page that reads it at
//! `GET /docs`, compiled in so that it works offline.
//!
//! What the annotations would repeat on every operation is added here, once: the answers any route
//! may give (401, 429, 503 and the JSON error shape for any other failure), and the seed project's
//! paths, which share the canonical routes' handlers.

use super::analytics;
use super::error::ErrorBody;
use super::handlers;
use super::metrics;
use super::status;
use actix_web::HttpResponse;
use std::sync::OnceLock;
use utoipa::openapi::path::{HttpMethod, Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, OpenApi as Document, Ref, RefOr, Response, ResponseBuilder,
};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tagflow",
        description = "The live graph of who interacts with whom around a hashtag or a word: users, \
            the interactions between them (reposts, replies, quotes, mentions) with counts and times, \
            and analyses of that network over any time window and kinds.\n\n\
            Writes need `Authorization: Bearer <token>` when the service has `TAGFLOW_API_TOKEN` \
            (without one, only clients on this machine may write); reads need it only with \
            `TAGFLOW_READ_TOKEN`. Every error has the shape `{\"error\":{\"code\":...,\"message\":...}}` \
            with a stable code. Users are named by key (`x:2244994945`) or `@handle`.",
    ),
    paths(
        status::status, metrics::metrics, openapi_json, docs,
        handlers::list_users, handlers::add_user, handlers::count_users, handlers::get_user,
        handlers::remove_user, handlers::user_edges,
        handlers::list_edges, handlers::add_edge, handlers::count_edges, handlers::get_edge,
        handlers::remove_edge,
        handlers::find_path, handlers::ingest,
        analytics::users, analytics::components, analytics::cores, analytics::communities,
        analytics::community_members, analytics::bridges, analytics::ego,
        analytics::timeline, super::export::export, super::stream::gephi, super::stream::changes,
        super::export::backup,
        handlers::subgraph, handlers::ui,
        handlers::add_user_at, handlers::add_edge_at, handlers::add_edge_at_kind,
    ),
    components(schemas(ErrorBody, analytics::TimeBound)),
    modifiers(&Contract),
    security((), ("token" = [])),
    tags(
        (name = "service", description = "Health, metrics and this contract"),
        (name = "users", description = "Users (vertices)"),
        (name = "edges", description = "Edges (aristas): who interacted with whom, per kind"),
        (name = "paths", description = "How two users are connected"),
        (name = "analytics", description = "Influence, communities, bridges and cores, on a selection"),
        (name = "ingest", description = "Posts sent to the service"),
        (name = "export", description = "The selected network as a file for Gephi, NetworkX, igraph, spreadsheets, sigma.js"),
        (name = "page", description = "The page and the subgraph it draws"),
        (name = "compatibility", description = "The seed project's routes, kept with their meaning"),
    ),
)]
struct ApiDoc;

/// The seed project's paths served by a canonical route's handler: (path, method, canonical path,
/// canonical method). Aliases with handlers of their own are annotated like any route.
const ALIASES: [(&str, HttpMethod, &str, HttpMethod); 6] = [
    ("/", HttpMethod::Get, "/status", HttpMethod::Get),
    ("/vertices/cuenta_vertices", HttpMethod::Get, "/vertices/count", HttpMethod::Get),
    ("/vertices/cuenta_vertices", HttpMethod::Post, "/vertices/count", HttpMethod::Get),
    ("/vertices/remove/{user}", HttpMethod::Delete, "/vertices/{user}", HttpMethod::Delete),
    ("/vertices/find_path/{from}/{to}", HttpMethod::Get, "/find_path/{from}/{to}", HttpMethod::Get),
    ("/aristas/remove/{from}/{to}", HttpMethod::Delete, "/aristas/{from}/{to}", HttpMethod::Delete),
];

/// What the annotations leave to one place (see the module docs).
struct Contract;

impl utoipa::Modify for Contract {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A token of TAGFLOW_API_TOKEN (writes) or TAGFLOW_READ_TOKEN (reads)"))
                    .build(),
            ),
        );
        for (path, method, canonical, canonical_method) in ALIASES {
            let Some(op) = operation(doc, canonical, &canonical_method).cloned() else {
                panic!("alias {path} of an undocumented operation {canonical}")
            };
            let mut op = op;
            op.operation_id = op.operation_id.map(|id| format!("{id}_at_{}", slug(path, &method)));
            op.tags = Some(vec!["compatibility".into()]);
            op.description = Some(format!(
                "The seed project's path for `{} {canonical}`, with the same meaning.",
                method_name(&canonical_method)
            ));
            if method != HttpMethod::Get {
                op.security = Some(vec![SecurityRequirement::new("token", Vec::<String>::new())]);
            }
            let item = doc.paths.paths.entry(path.to_string()).or_default();
            set_operation(item, &method, op);
        }
        // An empty NDJSON body is zero records, not an error (utoipa marks every body required).
        if let Some(body) =
            doc.paths.paths.get_mut("/ingest").and_then(|i| i.post.as_mut()?.request_body.as_mut())
        {
            body.required = Some(utoipa::openapi::Required::False);
        }
        for item in doc.paths.paths.values_mut() {
            for (method, op) in operations(item) {
                // Secured: a write, or a read that only a write token may make (`/backup`).
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let write = secured && method != "get";
                let responses = &mut op.responses.responses;
                let mut add = |status: &str, response: Response| {
                    responses.entry(status.to_string()).or_insert(RefOr::T(response));
                };
                add(
                    "401",
                    error(
                        if secured {
                            "`unauthorized`: no valid token (writes need one when the service has \
                             tokens; without, only clients on its machine may write)"
                        } else {
                            "`unauthorized`: the service has a read token and none valid was sent"
                        },
                        Some(("WWW-Authenticate", "`Bearer realm=\"tagflow\"`")),
                    ),
                );
                if secured {
                    add("403", error("`origin_not_allowed`: a page of another origin may not write", None));
                }
                if write {
                    add(
                        "507",
                        error(
                            "`storage_full`: the disk holding the data directory is full; nothing of \
                             the write was made (retry once space is freed)",
                            Some(("Retry-After", "Seconds to wait")),
                        ),
                    );
                }
                add(
                    "429",
                    error(
                        "`rate_limited`: too many writes or expensive reads from this client",
                        Some(("Retry-After", "Seconds until a request is accepted again")),
                    ),
                );
                add(
                    "503",
                    error(
                        "`overloaded` (too many connections or expensive reads waiting), or \
                         `store_unavailable`",
                        Some(("Retry-After", "Seconds to wait")),
                    ),
                );
                add(
                    "default",
                    error(
                        "Any other failure, in the same shape: `bad_request` (400), \
                         `request_timeout` (408), `unknown_host` (421), `headers_too_large` (431), \
                         `not_implemented` (501: `GET /backup` of a service on PostgreSQL), \
                         `internal` (500)",
                        None,
                    ),
                );
            }
        }
    }
}

fn error(description: &str, header: Option<(&str, &str)>) -> Response {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
    );
    if let Some((name, about)) = header {
        response = response.header(name, HeaderBuilder::new().description(Some(about)).build());
    }
    response.build()
}

fn operation<'a>(doc: &'a Document, path: &str, method: &HttpMethod) -> Option<&'a Operation> {
    let item = doc.paths.paths.get(path)?;
    match method {
        HttpMethod::Get => item.get.as_ref(),
        HttpMethod::Post => item.post.as_ref(),
        HttpMethod::Delete => item.delete.as_ref(),
        _ => None,
    }
}

fn set_operation(item: &mut PathItem, method: &HttpMethod, op: Operation) {
    match method {
        HttpMethod::Get => item.get = Some(op),
        HttpMethod::Post => item.post = Some(op),
        HttpMethod::Delete => item.delete = Some(op),
        _ => unreachable!("aliases are GET, POST or DELETE"),
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("post", &mut item.post),
        ("put", &mut item.put),
        ("delete", &mut item.delete),
        ("patch", &mut item.patch),
        ("head", &mut item.head),
    ]
    .into_iter()
    .filter_map(|(m, op)| Some((m, op.as_mut()?)))
}

fn method_name(method: &HttpMethod) -> &'static str {
    match method {
        HttpMethod::Get => "GET",
        HttpMethod::Post => "POST",
        HttpMethod::Delete => "DELETE",
        HttpMethod::Put => "PUT",
        HttpMethod::Patch => "PATCH",
        HttpMethod::Head => "HEAD",
        HttpMethod::Options => "OPTIONS",
        HttpMethod::Trace => "TRACE",
    }
}

/// An operation id's suffix for an alias: `cuenta_vertices_post`.
fn slug(path: &str, method: &HttpMethod) -> String {
    let words: Vec<&str> =
        path.split('/').filter(|s| !s.is_empty() && !s.starts_with('{')).collect::<Vec<_>>();
    let name = if words.is_empty() { "root".to_string() } else { words.join("_") };
    format!("{name}_{}", method_name(method).to_lowercase())
}

/// The document, built once.
pub(crate) fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes");
        camel_case_links(&mut doc);
        doc.to_string()
    })
}

/// utoipa 5 writes a link's fields in snake case (`operation_id`) where OpenAPI spells them in
/// camel case (`operationId`), which leaves the links unusable: renamed here.
fn camel_case_links(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            if let Some(Value::Object(links)) = map.get_mut("links") {
                for link in links.values_mut().filter_map(Value::as_object_mut) {
                    for (from, to) in [
                        ("operation_id", "operationId"),
                        ("operation_ref", "operationRef"),
                        ("request_body", "requestBody"),
                    ] {
                        if let Some(x) = link.remove(from) {
                            link.insert(to.to_string(), x);
                        }
                    }
                }
            }
            map.values_mut().for_each(camel_case_links);
        }
        Value::Array(items) => items.iter_mut().for_each(camel_case_links),
        _ => {}
    }
}

/// This contract, as OpenAPI 3.1 JSON.
#[utoipa::path(get, path = "/openapi.json", tag = "service",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json",
        body = Object)))]
pub(crate) async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(document())
}

const DOCS_HTML: &str = include_str!("docs.html");

/// The contract as a page: every route with its parameters, bodies and answers, and a form to try
/// reads. It reads `/openapi.json` and loads nothing from elsewhere.
#[utoipa::path(get, path = "/docs", tag = "service",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
pub(crate) async fn docs() -> HttpResponse {
    handlers::page(DOCS_HTML)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> serde_json::Value {
        serde_json::from_str(document()).unwrap()
    }

    #[test]
    fn the_document_is_openapi_3_1() {
        let doc = doc();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
        assert_eq!(doc["components"]["securitySchemes"]["token"]["scheme"], "bearer");
        let links = &doc["paths"]["/vertices"]["post"]["responses"]["201"]["links"];
        assert_eq!(links["GetUser"]["operationId"], "get_user", "{links}");
        assert_eq!(links["GetUser"]["parameters"]["user"], "$response.body#/id");
    }

    /// Every route the server answers is in the contract, with the same methods, and nothing else.
    #[test]
    fn the_document_covers_the_route_table_exactly() {
        let doc = doc();
        let mut served: Vec<(String, String)> = super::super::routes()
            .into_iter()
            .flat_map(|(path, methods)| {
                methods
                    .into_iter()
                    .filter(|m| *m != "HEAD")
                    .map(move |m| (path.to_string(), m.to_lowercase()))
            })
            .collect();
        let mut documented: Vec<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |m| (path.clone(), m.clone())))
            .collect();
        served.sort();
        documented.sort();
        assert_eq!(served, documented);
    }

    #[test]
    fn every_operation_documents_its_errors_and_writes_need_a_token() {
        let doc = doc();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                for status in ["401", "429", "503", "default"] {
                    assert!(responses.contains_key(status), "{method} {path} lacks {status}");
                }
                let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
                assert_eq!(
                    method != "get",
                    responses.contains_key("507"),
                    "{method} {path}: 507 storage_full"
                );
                assert_eq!(
                    method != "get" || path == "/backup",
                    secured,
                    "{method} {path}: security {}",
                    op["security"]
                );
                assert!(op["operationId"].is_string(), "{method} {path}");
            }
        }
    }
}
