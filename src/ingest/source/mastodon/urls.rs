//! URLs and answers of the Mastodon API: status id order, `Link` pagination, bounded bodies.

use super::*;

/// Compares two instance-local status ids: decimal strings numerically (by length, then digits),
/// anything else (a fork's fixed-width ids) bytewise.
pub(crate) fn cmp_ids(a: &str, b: &str) -> Ordering {
    let decimal = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if decimal(a) && decimal(b) {
        let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    } else {
        a.cmp(b)
    }
}

/// The `rel="next"` target of a `Link` header, only when it stays on the instance's origin: the
/// token is sent with every request, and must not follow a link elsewhere.
pub(super) fn link_next(headers: &HeaderMap, api: &Url) -> Option<Url> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        for (target, params) in parse_links(value) {
            let next = params.split(';').any(|p| {
                let p = p.trim();
                p.strip_prefix("rel=")
                    .is_some_and(|rel| rel.trim_matches('"').split_ascii_whitespace().any(|r| r == "next"))
            });
            if !next {
                continue;
            }
            match Url::parse(target) {
                Ok(url) if url.origin() == api.origin() => return Some(url),
                Ok(url) => {
                    log::warn!(
                        "source mastodon: not following a next link to another origin: {}",
                        url.origin().ascii_serialization()
                    );
                    return None;
                }
                Err(_) => return None,
            }
        }
    }
    None
}

/// `<target>; params, <target>; params` into (target, params) pairs.
pub(super) fn parse_links(value: &str) -> Vec<(&str, &str)> {
    let mut links = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let Some(len) = rest[open + 1..].find('>') else { break };
        let target = &rest[open + 1..open + 1 + len];
        let after = &rest[open + 2 + len..];
        // The parameters run to the next link's `<` (a `<` cannot appear unquoted in them).
        let end = after.find('<').unwrap_or(after.len());
        links.push((target, after[..end].trim_end().trim_end_matches(',')));
        rest = &after[end..];
    }
    links
}

/// `ws://` and `wss://` (how `/api/v2/instance` names the streaming host) to their HTTP twins: the
/// server-sent-events endpoint is plain HTTP on the same host.
pub(super) fn http_scheme(url: &str) -> String {
    let url = url.trim();
    if let Some(rest) = url.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = url.strip_prefix("ws://") {
        format!("http://{rest}")
    } else {
        url.to_string()
    }
}

pub(super) fn parse_base(url: &str) -> Result<Url, MastodonError> {
    let trimmed = url.trim().trim_end_matches('/');
    let parsed =
        Url::parse(trimmed).map_err(|e| MastodonError::InvalidUrl(url.to_string(), e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(MastodonError::InvalidUrl(url.to_string(), "not an http(s) url".into()));
    }
    Ok(parsed)
}

/// `base` with path segments appended (each percent-encoded), query cleared.
pub(super) fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// A URL for the log, without any user name or password it was given with.
pub(super) fn shown(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

/// `host[:port]` of the instance URL: the namespace of this source's cursors.
pub(super) fn instance_key(api: &Url) -> String {
    let host = api.host_str().unwrap_or("instance").to_ascii_lowercase();
    match api.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}
