//! `GET /export`: the selected network as a file researchers open in Gephi, NetworkX, igraph, a
//! spreadsheet or sigma.js, streamed as it is written (gzipped when the client accepts it), at most
//! [`EXPORTS_AT_ONCE`] at a time; and `GET /backup`, the whole store as an archive, streamed the same
//! way.

use super::analytics::{community_params, CommunityQuery, Params, SelectionQuery};
use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::export::{self, EgoCut, Format, Metrics, Request, MAX_HOPS};
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use std::io;

/// Exports written at the same time; one more is answered 503 `overloaded`.
pub const EXPORTS_AT_ONCE: usize = 2;

/// Chunks in flight between the writer and the connection: a slow client slows the writer, never
/// grows memory.
const CHUNKS_IN_FLIGHT: usize = 8;

/// The query of `/export`, as the contract states it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct ExportQuery {
    /// `gexf` (GEXF 1.3, dynamic: Gephi's timeline plays the interactions), `graphml`, `csv`
    /// (Gephi's spreadsheet tables), `graphology` (the JSON sigma.js reads).
    #[param(pattern = "^(?i:gexf|graphml|csv|graphology|json)$", default = "gexf")]
    format: Option<String>,
    /// With `format=csv`: `edges` (Source, Target, Type, Weight, per kind, first and last seen) or
    /// `nodes` (Id, Label, ...).
    #[param(pattern = "^(?i:nodes|edges)$", default = "edges")]
    table: Option<String>,
    /// Keep users with at least this many distinct neighbours (in plus out) in the selection.
    #[param(value_type = Option<u64>, minimum = 0, maximum = 4294967295_u64, default = 0)]
    min_degree: Option<u32>,
    /// Keep the N users of highest degree in the selection.
    #[param(minimum = 1, maximum = 100000000)]
    top: Option<usize>,
    /// Keep the users of the K-core of the selection (core number at least K, undirected).
    #[param(value_type = Option<u64>, minimum = 1, maximum = 4294967295_u64)]
    core: Option<u32>,
    /// Keep the users within `hops` of this user (key or handle), either direction.
    #[param(min_length = 1, max_length = 257)]
    ego: Option<String>,
    /// How far from `ego`.
    #[param(minimum = 1, maximum = 3, default = 1)]
    hops: Option<u32>,
    /// Metrics each user carries, computed on the selection, comma separated: pagerank,
    /// community, core, component.
    #[param(
        pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(pagerank|community|core|component)?[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(,[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(pagerank|community|core|component)?[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*)*$"
    )]
    metrics: Option<String>,
    /// PageRank's damping factor, for `metrics=pagerank`.
    #[param(minimum = 0.0, maximum = 0.999, default = 0.85)]
    damping: Option<f64>,
}

/// Reads an export's request from the query string.
fn request(req: &HttpRequest) -> Result<(Format, Request), ApiError> {
    let mut p = Params::of(req)?;
    let format = p.take("format");
    let table = p.take("table");
    let format = Format::parse(format.as_deref().unwrap_or("gexf"), table.as_deref())
        .map_err(ApiError::InvalidQuery)?;
    let mut r = Request::new(p.selection()?);
    r.min_degree = p.number("min_degree", 0..=u32::MAX, 0)?;
    if p.has("top") {
        r.top = Some(p.number("top", 1..=100_000_000usize, 1)?);
    }
    if p.has("core") {
        r.core = Some(p.number("core", 1..=u32::MAX, 1)?);
    }
    let hops = if p.has("hops") { Some(p.number("hops", 1..=MAX_HOPS, 1)?) } else { None };
    r.ego = match (p.take("ego"), hops) {
        (Some(user), hops) => Some(EgoCut { user, hops: hops.unwrap_or(1) }),
        (None, Some(_)) => return Err(ApiError::InvalidQuery("hops is for an ego cut: give ego too".into())),
        (None, None) => None,
    };
    if let Some(list) = p.take("metrics") {
        r.metrics = Metrics::parse(&list).map_err(ApiError::InvalidQuery)?;
    }
    r.communities = community_params(&mut p)?;
    r.damping = p.number("damping", 0.0..=0.999, 0.85)?;
    p.finish()?;
    r.check().map_err(ApiError::InvalidQuery)?;
    Ok((format, r))
}

/// Whether the client takes gzip (`Accept-Encoding: gzip`, not with `q=0`).
fn accepts_gzip(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT_ENCODING)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let refused =
                parts.any(|p| p.strip_prefix("q=").is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q <= 0.0)));
            (name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip")) && !refused
        })
}

/// What the writer hands the connection: chunks, in a bounded channel.
pub(super) struct Chunks(tokio::sync::mpsc::Sender<io::Result<Bytes>>);

impl io::Write for Chunks {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The selected network as a file: GEXF 1.3 (dynamic), GraphML, CSV or graphology JSON, with the
/// selection of the analytics routes, cuts to what can be drawn (`min_degree`, `top`, `core`,
/// `ego`) and metrics per user. Streamed; gzipped when the client accepts it.
#[utoipa::path(get, path = "/export", tag = "export",
    params(ExportQuery, SelectionQuery, CommunityQuery),
    responses(
        (status = 200, description = "The file (`Content-Disposition` names it after the hashtag and the window)",
            content(
                (String = "application/gexf+xml"),
                (String = "application/graphml+xml"),
                (String = "text/csv"),
                (Object = "application/json"),
            )),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 404, description = "`user_not_found`: the ego cut names no user", body = ErrorBody),
        (status = 409, description = "`ambiguous_handle`: the ego cut's handle is several users'", body = ErrorBody),
    ))]
pub async fn export(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let (format, request) = request(&req)?;
    let mut response = HttpResponse::Ok();
    response
        .content_type(format.content_type())
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}\"", request.file_name(&state.track, format)),
        ))
        .insert_header((header::VARY, "accept-encoding"))
        .insert_header((header::CACHE_CONTROL, "no-store"));
    let gzip = accepts_gzip(&req);
    if gzip {
        response.insert_header((header::CONTENT_ENCODING, "gzip"));
    }
    if req.method() == actix_web::http::Method::HEAD {
        return Ok(response.finish());
    }
    let permit = state
        .exports
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Overloaded("as many exports as the service writes at once are running"))?;
    let plan = export::prepare(&state.analytics, &request).await?;
    Ok(response.streaming(streamed("export", move |sink| {
        let _permit = permit;
        if gzip {
            let mut gz = flate2::write::GzEncoder::new(sink, flate2::Compression::fast());
            export::write(&plan, format, &mut gz, &mut |_| {}).and_then(|()| gz.finish().map(drop))
        } else {
            export::write(&plan, format, sink, &mut |_| {})
        }
    })))
}

/// Runs `write` on a blocking thread into a bounded channel of chunks, and returns them as a
/// response body: a slow client slows the writer, never grows memory. An error ends the body short,
/// so that the client sees a broken transfer, never a file that looks whole.
fn streamed(
    what: &'static str,
    write: impl FnOnce(&mut Chunks) -> io::Result<()> + Send + 'static,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let mut sink = Chunks(tx);
        if let Err(e) = write(&mut sink) {
            if e.kind() != io::ErrorKind::BrokenPipe {
                log::warn!("{what}: {e}");
                let _ = sink.0.blocking_send(Err(e));
            }
        }
    });
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The whole store as of one commit — users, edges, timeline, seen posts, post records and source
/// cursors — as a gzipped, checksummed archive, written while the service keeps serving and
/// ingesting; `tagflow restore` rebuilds a data directory from it. Needs an API token (or, without
/// one set, a client on this machine), as writes do. One at a time.
#[utoipa::path(get, path = "/backup", tag = "service",
    security(("token" = [])),
    responses(
        (status = 200, description = "The archive (`Content-Disposition` names it after the store and the \
            commit; `X-Tagflow-Commit` is the commit)", content_type = "application/gzip", body = Vec<u8>),
    ))]
pub async fn backup(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let permit = state
        .backups
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Overloaded("a backup is already being written"))?;
    let backup = state.store.backup().await?;
    let mut response = HttpResponse::Ok();
    response
        .content_type("application/gzip")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}.gz\"", backup.file_name()),
        ))
        .insert_header(("x-tagflow-commit", backup.seq().to_string()))
        .insert_header((header::CACHE_CONTROL, "no-store"));
    if req.method() == actix_web::http::Method::HEAD {
        return Ok(response.finish());
    }
    Ok(response.streaming(streamed("backup", move |sink| {
        let _permit = permit;
        backup.write(sink).map(drop).map_err(|e| match e {
            crate::store::StoreError::Io { cause, .. } => cause,
            other => io::Error::other(other.to_string()),
        })
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_taken_unless_refused() {
        let with = |v: &str| {
            let req = actix_web::test::TestRequest::default()
                .insert_header((header::ACCEPT_ENCODING, v))
                .to_http_request();
            accepts_gzip(&req)
        };
        assert!(with("gzip"));
        assert!(with("br, GZIP;q=0.5"));
        assert!(!with("gzip;q=0"));
        assert!(!with("identity"));
        assert!(!accepts_gzip(&actix_web::test::TestRequest::default().to_http_request()));
    }
}
