//! Answers kept per graph version: a read of the live graph that is asked again before the graph
//! changes is answered with the bytes already made, with no lock, search or serialization. It is
//! what dashboards polling the same listing and researchers exploring an imported dataset (a graph
//! that no longer changes) ask most; under live ingest the version moves every commit and nothing
//! is served from here.
//!
//! Only reads whose answer depends on the graph's version alone are kept: listings, edges, counts,
//! fewest-hops paths and the whole-graph drawing. Not `/status` or `/metrics` (counters and clocks),
//! not the analyses (their answers say `stale` and `computed_at`, and the engine caches them itself),
//! not a user's detail (it shows analyses' metrics).

use super::AppState;
use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use std::collections::VecDeque;

/// Answers kept at most, and the largest kept (bytes): 64 × 256 KiB = 16 MiB at worst.
const KEPT: usize = 64;
const LARGEST: usize = 256 * 1024;

/// The kept answers: (path and query, graph version, body), oldest first.
#[derive(Default)]
pub struct Answers(parking_lot::Mutex<VecDeque<(String, u64, Bytes)>>);

impl Answers {
    fn get(&self, key: &str, version: u64) -> Option<Bytes> {
        let kept = self.0.lock();
        kept.iter().find(|(k, v, _)| *v == version && k == key).map(|(_, _, b)| b.clone())
    }

    fn put(&self, key: String, version: u64, body: Bytes) {
        let mut kept = self.0.lock();
        kept.retain(|(k, v, _)| *v == version && *k != key);
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back((key, version, body));
    }
}

/// Whether the answer to this read depends only on the graph's version (see the module docs).
fn cacheable(path: &str, query: &str) -> bool {
    let selects = ["kinds=", "since=", "until=", "weighted="].iter().any(|p| query.contains(p));
    let listing = matches!(path, "/vertices" | "/aristas" | "/vertices/count" | "/aristas/count");
    let edges =
        path.starts_with("/aristas/") || (path.starts_with("/vertices/") && path.ends_with("/aristas"));
    let paths = path.starts_with("/find_path/") || path.starts_with("/vertices/find_path/");
    listing || edges || ((paths || path == "/graph") && !selects)
}

/// The middleware (see the module docs): inside the gate, so that a kept answer is only given to
/// a request the gate admits.
pub async fn answers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let state = req.app_data::<actix_web::web::Data<AppState>>().cloned();
    let (Some(state), true) =
        (state, req.method() == Method::GET && cacheable(req.path(), req.query_string()))
    else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let key = req.uri().to_string();
    let version = state.store.graph().read().version();
    if let Some(body) = state.answers.get(&key, version) {
        let answer = actix_web::HttpResponse::Ok().content_type("application/json").body(body);
        return Ok(req.into_response(answer));
    }
    let res = next.call(req).await?;
    if res.status() != StatusCode::OK
        || res.headers().get(header::CONTENT_TYPE).is_none_or(|t| t != "application/json")
    {
        return Ok(res.map_into_boxed_body());
    }
    // Larger than kept, or of a size not known before reading it: answered as it comes, not kept.
    if !matches!(res.response().body().size(), BodySize::Sized(n) if n <= LARGEST as u64) {
        return Ok(res.map_into_boxed_body());
    }
    let (req, res) = res.into_parts();
    let (head, body) = res.into_parts();
    let body = actix_web::body::to_bytes(body).await.map_err(Into::into)?;
    // Made at the version read before: kept only for it (a write meanwhile moved the version on).
    state.answers.put(key, version, body.clone());
    Ok(ServiceResponse::new(req, head.set_body(BoxBody::new(body))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_answers_that_depend_on_the_version_alone_are_kept() {
        for (path, query) in [
            ("/vertices", "limit=100"),
            ("/vertices", "sort=degree"),
            ("/aristas", ""),
            ("/aristas/a/b", ""),
            ("/vertices/a/aristas", "limit=5"),
            ("/find_path/a/b", "directed=true"),
            ("/graph", "top=50"),
        ] {
            assert!(cacheable(path, query), "{path}?{query}");
        }
        for (path, query) in [
            ("/status", ""),
            ("/metrics", ""),
            ("/analytics/users", ""),
            ("/vertices/a", ""),
            ("/vertices/a/ego", ""),
            ("/find_path/a/b", "weighted=true"),
            ("/graph", "kinds=repost"),
        ] {
            assert!(!cacheable(path, query), "{path}?{query}");
        }
    }

    #[test]
    fn answers_are_kept_per_version_and_bounded() {
        let answers = Answers::default();
        answers.put("/vertices".into(), 1, Bytes::from_static(b"[1]"));
        assert_eq!(answers.get("/vertices", 1).as_deref(), Some(&b"[1]"[..]));
        assert_eq!(answers.get("/vertices", 2), None, "another version");
        answers.put("/aristas".into(), 2, Bytes::from_static(b"[2]"));
        assert_eq!(answers.get("/vertices", 1), None, "older versions are dropped");
        for n in 0..2 * KEPT {
            answers.put(format!("/vertices?limit={n}"), 3, Bytes::new());
        }
        assert_eq!(answers.0.lock().len(), KEPT);
    }
}
