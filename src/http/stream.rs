//! The live streams. `GET /stream/changes`: server-sent events telling pages and dashboards the
//! graph changed (its version and size, at most once a second).
//!
//! `GET /stream/gephi`: the graph as Gephi's "Connect to stream" client reads it, the Graph
//! Streaming JSON events, one object per line. First the selected network (`an` for each user,
//! `ae` for each edge), then every change as the write path makes it durable: `an` and `ae` when
//! an edge reaches the selection, `ce` with its new weight and counts, `de` and `dn` when it leaves
//! (a user is shown while it has an edge shown), `cn` when a shown user's handle changes.
//!
//! `kinds` and `min_weight` are honoured (a live stream has no time window). Changes come from the
//! store's change feed, which never waits for a consumer: one that falls behind by the feed's depth
//! is closed with an error line (`overloaded`). A blank line every [`HEARTBEAT`] keeps idle proxies (Heroku's
//! router cuts a connection silent for 55 s) from cutting the stream.

use super::analytics::{Params, SelectionQuery};
use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::export::{self, Plan, Request};
use crate::graph::{Kind, KindSet, Tie};
use crate::store::feed::Changes;
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// Streams open at the same time; one more is answered 503 `overloaded`.
pub const STREAMS_AT_ONCE: usize = 16;

/// Silence after which a blank line is sent.
pub const HEARTBEAT: Duration = Duration::from_secs(20);

/// Bytes per chunk of the first dump.
const CHUNK: usize = 256 << 10;

/// What one consumer has been shown: the selection, and each shown user's shown edges.
pub(crate) struct View {
    kinds: Vec<Kind>,
    min_weight: u64,
    degree: HashMap<Arc<str>, u32>,
}

/// Appends one event, `{"<op>":{"<id>":<body>}}`, and the line's end.
fn event(out: &mut Vec<u8>, op: &str, id: &str, body: Value) {
    let mut inner = Map::new();
    inner.insert(id.to_string(), body);
    let mut outer = Map::new();
    outer.insert(op.to_string(), Value::Object(inner));
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &outer);
    out.extend_from_slice(b"\r\n");
}

/// An edge's id: its users' keys, which hold no control characters, joined by a tab.
fn edge_id(from: &str, to: &str) -> String {
    format!("{from}\t{to}")
}

impl View {
    pub(crate) fn new(kinds: KindSet, min_weight: u32) -> View {
        View { kinds: kinds.kinds(), min_weight: u64::from(min_weight.max(1)), degree: HashMap::new() }
    }

    /// An edge's weight and counts in the selection (0 for no edge).
    fn counts(&self, tie: Option<&Tie>) -> (u64, Map<String, Value>) {
        let mut counts = Map::new();
        let mut weight = 0;
        if let Some(t) = tie {
            for &k in &self.kinds {
                let n = u64::from(t.count(k));
                weight += n;
                counts.insert(k.as_str().into(), n.into());
            }
        }
        (weight, counts)
    }

    fn show(&mut self, key: &Arc<str>, label: &dyn Fn(&str) -> String, out: &mut Vec<u8>) {
        let d = self.degree.entry(key.clone()).or_insert(0);
        *d += 1;
        if *d == 1 {
            event(out, "an", key, json!({ "label": label(key) }));
        }
    }

    fn hide(&mut self, key: &str, out: &mut Vec<u8>) {
        if let Some(d) = self.degree.get_mut(key) {
            *d -= 1;
            if *d == 0 {
                self.degree.remove(key);
                event(out, "dn", key, json!({}));
            }
        }
    }

    /// The selected network as it is: every user, every edge.
    pub(crate) fn dump(&mut self, plan: &Plan, out: &mut Vec<u8>) {
        for n in plan.users() {
            event(out, "an", &n.key, json!({ "label": n.label() }));
        }
        for e in plan.edges() {
            let mut body = Map::new();
            body.insert("source".into(), e.from.key.as_ref().into());
            body.insert("target".into(), e.to.key.as_ref().into());
            body.insert("directed".into(), true.into());
            body.insert("weight".into(), e.weight().into());
            let counts = e.counts();
            for &k in &self.kinds {
                body.insert(k.as_str().into(), counts[k.index()].into());
            }
            event(out, "ae", &edge_id(&e.from.key, &e.to.key), Value::Object(body));
            for key in [&e.from.key, &e.to.key] {
                *self.degree.entry(key.as_ref().into()).or_insert(0) += 1;
            }
        }
    }

    /// The events of one commit; `label` names a user that appears (its handle, else its key).
    pub(crate) fn apply(&mut self, changes: &Changes, label: &dyn Fn(&str) -> String, out: &mut Vec<u8>) {
        for (key, handle) in &changes.users {
            if self.degree.contains_key(key) {
                event(out, "cn", key, json!({ "label": handle.as_deref().unwrap_or(key) }));
            }
        }
        for t in &changes.ties {
            let (before, _) = self.counts(t.before.as_ref());
            let (after, counts) = self.counts(t.after.as_ref());
            let was = before >= self.min_weight;
            let is = after >= self.min_weight;
            let id = edge_id(&t.from, &t.to);
            let mut body = counts;
            body.insert("weight".into(), after.into());
            match (was, is) {
                (false, true) => {
                    self.show(&t.from, label, out);
                    self.show(&t.to, label, out);
                    body.insert("source".into(), t.from.as_ref().into());
                    body.insert("target".into(), t.to.as_ref().into());
                    body.insert("directed".into(), true.into());
                    event(out, "ae", &id, Value::Object(body));
                }
                (true, true) if t.before != t.after => event(out, "ce", &id, Value::Object(body)),
                (true, false) => {
                    event(out, "de", &id, json!({}));
                    self.hide(&t.from, out);
                    self.hide(&t.to, out);
                }
                _ => {}
            }
        }
    }
}

/// What opening a stream takes: its response (headers only, answered at once to `HEAD`), a place
/// among the [`STREAMS_AT_ONCE`], and the store's change feed.
enum Opened {
    Head(HttpResponse),
    Stream(
        actix_web::HttpResponseBuilder,
        tokio::sync::OwnedSemaphorePermit,
        broadcast::Receiver<Arc<Changes>>,
    ),
}

fn open(state: &AppState, req: &HttpRequest, content_type: &'static str) -> Result<Opened, ApiError> {
    let mut response = HttpResponse::Ok();
    response
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // nginx would otherwise hold the events back to fill its buffers.
        .insert_header(("x-accel-buffering", "no"));
    if req.method() == actix_web::http::Method::HEAD {
        return Ok(Opened::Head(response.finish()));
    }
    let permit = state
        .streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Overloaded("as many streams as the service serves at once are open"))?;
    let feed = state.store.subscribe().ok_or_else(|| ApiError::Unavailable("the store is closing".into()))?;
    Ok(Opened::Stream(response, permit, feed))
}

/// Sends `bytes` in chunks; false when the client has gone.
async fn send(tx: &mpsc::Sender<io::Result<Bytes>>, bytes: Vec<u8>) -> bool {
    for chunk in bytes.chunks(CHUNK) {
        if tx.send(Ok(Bytes::copy_from_slice(chunk))).await.is_err() {
            return false;
        }
    }
    true
}

/// Writes the first dump, then the changes, until the client goes, the service stops, or the
/// stream falls behind.
async fn follow(
    state: web::Data<AppState>,
    mut view: View,
    plan: Plan,
    mut feed: broadcast::Receiver<Arc<Changes>>,
    tx: mpsc::Sender<io::Result<Bytes>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let mut out = Vec::new();
    view.dump(&plan, &mut out);
    let since = plan.version;
    drop(plan);
    if !send(&tx, std::mem::take(&mut out)).await {
        return;
    }
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = heartbeat.tick() => {
                if tx.send(Ok(Bytes::from_static(b"\r\n"))).await.is_err() {
                    return;
                }
            }
            changes = feed.recv() => match changes {
                Ok(changes) if changes.version <= since => {}
                Ok(changes) => {
                    {
                        let graph = state.store.graph().read();
                        let label = |key: &str| {
                            graph.profile(key).and_then(|(h, _)| h).unwrap_or(key).to_string()
                        };
                        view.apply(&changes, &label, &mut out);
                    }
                    if !out.is_empty() {
                        if !send(&tx, std::mem::take(&mut out)).await {
                            return;
                        }
                        heartbeat.reset();
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let lagged = ApiError::Overloaded(
                        "this stream fell further behind the graph than the change feed holds and was \
                         closed: reconnect to start again from the graph as it is",
                    );
                    let mut line = serde_json::to_vec(&lagged.body()).unwrap_or_default();
                    line.extend_from_slice(b"\r\n");
                    let _ = send(&tx, line).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// The graph for Gephi's "Connect to stream" (Graph Streaming JSON, one event per line): the
/// selected network, then its changes as they are made durable.
#[utoipa::path(get, path = "/stream/gephi", tag = "export",
    params(SelectionQuery),
    responses(
        (status = 200, description = "Events, one JSON object per line (`an`, `ae`, `ce`, `de`, `dn`, `cn`), \
            blank lines as heartbeats; a last line `{\"error\":...}` if the stream fell behind",
            content((String = "application/json"))),
        (status = 400, description = "`invalid_query` (a live stream takes no `since` or `until`)", body = ErrorBody),
    ))]
pub async fn gephi(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let mut p = Params::of(&req)?;
    if p.has("since") || p.has("until") {
        return Err(ApiError::InvalidQuery(
            "a live stream has no time window: it takes kinds and min_weight".into(),
        ));
    }
    let sel = p.selection()?;
    p.finish()?;
    // Subscribed before the copy: every change after the copy is in the feed.
    let (mut response, permit, feed) = match open(&state, &req, "application/json")? {
        Opened::Head(head) => return Ok(head),
        Opened::Stream(response, permit, feed) => (response, permit, feed),
    };
    let plan = export::prepare(&state.analytics, &Request::new(sel)).await?;
    let (tx, mut rx) = mpsc::channel(16);
    let view = View::new(sel.kinds, sel.min_weight);
    tokio::spawn(follow(state.clone(), view, plan, feed, tx, permit));
    Ok(response.streaming(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))))
}

/// Ticks of `/stream/changes` come at most this often.
const TICK: Duration = Duration::from_secs(1);

/// The graph's size and version, as `/stream/changes` sends it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Tick {
    /// Grows with every change: a page reloads what it shows when it moves.
    version: u64,
    users: usize,
    edges: usize,
    interactions: u64,
}

fn tick(state: &AppState) -> Vec<u8> {
    let t = {
        let g = state.store.graph().read();
        Tick {
            version: g.version(),
            users: g.user_count(),
            edges: g.tie_count(),
            interactions: g.interaction_count(),
        }
    };
    let mut out = b"event: change\ndata: ".to_vec();
    let _ = serde_json::to_writer(&mut out, &t);
    out.extend_from_slice(b"\n\n");
    out
}

/// Server-sent events for pages and dashboards: an event `change` with the graph's version and
/// size at once, then after every change (at most once a second); a comment line as a heartbeat.
#[utoipa::path(get, path = "/stream/changes", tag = "page",
    responses(
        (status = 200, description = "`text/event-stream`: events `change` whose data is a `Tick`",
            content((Tick = "text/event-stream"))),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
    ))]
pub async fn changes(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Params::of(&req)?.finish()?;
    let (mut response, permit, mut feed) = match open(&state, &req, "text/event-stream")? {
        Opened::Head(head) => return Ok(head),
        Opened::Stream(response, permit, feed) => (response, permit, feed),
    };
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(4);
    let state = state.clone();
    tokio::spawn(async move {
        let _permit = permit;
        // Reconnect after 3 s if the connection drops; then where the graph is now.
        let mut first = b"retry: 3000\n\n".to_vec();
        first.extend(tick(&state));
        if tx.send(Ok(Bytes::from(first))).await.is_err() {
            return;
        }
        let (mut dirty, mut quiet) = (false, Duration::ZERO);
        let mut every = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                () = state.shutdown.cancelled() => return,
                changes = feed.recv() => match changes {
                    // A lag only means changes were missed: one tick says where the graph is.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => dirty = true,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = every.tick() => {
                    let out = if dirty {
                        dirty = false;
                        quiet = Duration::ZERO;
                        tick(&state)
                    } else {
                        quiet += TICK;
                        if quiet < HEARTBEAT {
                            continue;
                        }
                        quiet = Duration::ZERO;
                        b": heartbeat\n\n".to_vec()
                    };
                    if tx.send(Ok(Bytes::from(out))).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    Ok(response.streaming(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::feed::TieChange;

    fn tie(pairs: &[(Kind, u32)]) -> Option<Tie> {
        let mut t = Tie::default();
        for &(k, n) in pairs {
            for _ in 0..n {
                t.add(k, 1_700_000_000);
            }
        }
        Some(t)
    }

    fn change(from: &str, to: &str, before: Option<Tie>, after: Option<Tie>) -> TieChange {
        TieChange { from: from.into(), to: to.into(), before, after }
    }

    fn lines(out: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(out).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn edges_enter_change_and_leave_the_selection_with_their_users() {
        let mut view = View::new(KindSet::of(&[Kind::Repost, Kind::Reply]), 2);
        let label = |k: &str| format!("@{k}");
        let mut out = Vec::new();
        // One repost: under min_weight, nothing shown; a mention does not count.
        let c = Changes {
            version: 2,
            users: vec![],
            ties: vec![change("a", "b", None, tie(&[(Kind::Repost, 1), (Kind::Mention, 5)]))],
        };
        view.apply(&c, &label, &mut out);
        assert!(out.is_empty());
        // A second repost: the edge and both users appear.
        let c = Changes {
            version: 3,
            users: vec![],
            ties: vec![change("a", "b", tie(&[(Kind::Repost, 1)]), tie(&[(Kind::Repost, 2)]))],
        };
        view.apply(&c, &label, &mut out);
        let got = lines(&out);
        assert_eq!(got[0], json!({"an": {"a": {"label": "@a"}}}));
        assert_eq!(got[1], json!({"an": {"b": {"label": "@b"}}}));
        assert_eq!(
            got[2],
            json!({"ae": {"a\tb": {"source": "a", "target": "b", "directed": true, "weight": 2, "repost": 2, "reply": 0}}})
        );
        out.clear();
        // A reply from b to a, a rename of a, then a's edge grows; then b is removed.
        let c = Changes {
            version: 4,
            users: vec![("a".into(), Some("alice".into()))],
            ties: vec![
                change("b", "a", None, tie(&[(Kind::Reply, 2)])),
                change("a", "b", tie(&[(Kind::Repost, 2)]), tie(&[(Kind::Repost, 3)])),
            ],
        };
        view.apply(&c, &label, &mut out);
        let got = lines(&out);
        assert_eq!(got[0], json!({"cn": {"a": {"label": "alice"}}}));
        assert_eq!(got[1]["ae"]["b\ta"]["weight"], 2);
        assert_eq!(got[2], json!({"ce": {"a\tb": {"weight": 3, "repost": 3, "reply": 0}}}));
        out.clear();
        let c = Changes {
            version: 5,
            users: vec![],
            ties: vec![
                change("b", "a", tie(&[(Kind::Reply, 2)]), None),
                change("a", "b", tie(&[(Kind::Repost, 3)]), None),
            ],
        };
        view.apply(&c, &label, &mut out);
        let got = lines(&out);
        assert_eq!(got[0], json!({"de": {"b\ta": {}}}));
        assert_eq!(got[1], json!({"de": {"a\tb": {}}}));
        assert_eq!(got[2], json!({"dn": {"a": {}}}));
        assert_eq!(got[3], json!({"dn": {"b": {}}}));
        assert!(view.degree.is_empty());
    }
}
