//! Request bodies, the one way every handler reads them: at most `--max-body-kb` as sent and again
//! once inflated (gzip or deflate, checked while inflating, so that a small compressed bomb costs
//! no more than the limit), within `--body-timeout` (a client sending a byte a second does not
//! hold a connection for ever).

use super::error::ApiError;
use super::AppState;
use actix_web::dev::Payload;
use actix_web::http::header::CONTENT_ENCODING;
use actix_web::web::{Bytes, BytesMut, Data};
use actix_web::{FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::io::Read;
use std::pin::Pin;

/// How a body is encoded, from `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
    Deflate,
}

fn encoding(req: &HttpRequest) -> Result<Encoding, ApiError> {
    let Some(value) = req.headers().get(CONTENT_ENCODING) else { return Ok(Encoding::Identity) };
    let value = value.to_str().unwrap_or("").trim().to_ascii_lowercase();
    match value.as_str() {
        "" | "identity" => Ok(Encoding::Identity),
        "gzip" | "x-gzip" => Ok(Encoding::Gzip),
        "deflate" => Ok(Encoding::Deflate),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "content encoding {:?}: send identity, gzip or deflate",
            value.chars().take(32).collect::<String>()
        ))),
    }
}

/// Inflates at most `limit` bytes.
fn inflate(raw: &[u8], encoding: Encoding, limit: usize) -> Result<Vec<u8>, ApiError> {
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::with_capacity(raw.len().saturating_mul(4).min(limit));
    let read = match encoding {
        Encoding::Identity => return Ok(raw.to_vec()),
        Encoding::Gzip => flate2::read::MultiGzDecoder::new(raw).take(cap).read_to_end(&mut out),
        Encoding::Deflate => flate2::read::ZlibDecoder::new(raw).take(cap).read_to_end(&mut out),
    };
    read.map_err(|e| ApiError::InvalidEncoding(format!("{encoding:?} body: {e}").to_lowercase()))?;
    if out.len() > limit {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    Ok(out)
}

/// Reads the whole body of `req`, decoded.
///
/// # Errors
/// 413 past the limit (as sent or inflated), 408 past the body timeout, 415 for an encoding other
/// than gzip or deflate, 400 for a body that does not inflate.
pub(crate) async fn read(
    state: &AppState,
    req: &HttpRequest,
    payload: &mut Payload,
) -> Result<Bytes, ApiError> {
    let encoding = encoding(req)?;
    let limit = state.max_body;
    let receive = async {
        let mut body = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::InvalidJson(format!("body: {e}")))?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    let raw =
        tokio::time::timeout(state.body_timeout, receive).await.map_err(|_| ApiError::RequestTimeout)??;
    if encoding == Encoding::Identity {
        return Ok(raw);
    }
    // Inflating megabytes is CPU work: keep it off the async workers.
    actix_web::web::block(move || inflate(&raw, encoding, limit))
        .await
        .map_err(|e| ApiError::Internal(format!("inflate task: {e}")))?
        .map(Bytes::from)
}

/// A JSON body, read by [`read`].
#[derive(Debug)]
pub(crate) struct Json<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let state = req
                .app_data::<Data<AppState>>()
                .ok_or_else(|| ApiError::Internal("no application state".into()))?
                .clone();
            let body = read(&state, &req, &mut payload).await?;
            serde_json::from_slice(&body).map(Json).map_err(|e| ApiError::InvalidJson(e.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn inflating_stops_at_the_limit_whatever_the_ratio() {
        let bomb = gzip(&vec![b' '; 64 << 20]);
        assert!(bomb.len() < 100 << 10, "64 MiB of spaces compress to {} bytes", bomb.len());
        assert_eq!(inflate(&bomb, Encoding::Gzip, 1 << 20).unwrap_err().code(), "payload_too_large");
        let line = b"{\"a\":1}\n".repeat(1000);
        assert_eq!(inflate(&gzip(&line), Encoding::Gzip, 1 << 20).unwrap(), line);
        assert_eq!(inflate(&gzip(&line), Encoding::Gzip, line.len()).unwrap().len(), line.len());
        assert_eq!(inflate(b"not gzip", Encoding::Gzip, 1 << 20).unwrap_err().code(), "invalid_encoding");
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&line).unwrap();
        assert_eq!(inflate(&z.finish().unwrap(), Encoding::Deflate, 1 << 20).unwrap(), line);
    }
}
