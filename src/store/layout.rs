//! The on-disk key layout. Everything lives in sled's default tree so that one `apply_batch` is one
//! atomic write of a whole group commit.
//!
//! | key                                   | value                                           |
//! |---------------------------------------|-------------------------------------------------|
//! | `m` `version`                         | layout version (u32 LE)                         |
//! | `m` `next_uid`                        | next user id to assign (u32 LE)                 |
//! | `u` uid (u32 BE)                      | user: key, handle, name (u16-length-prefixed)   |
//! | `e` from uid (u32 BE) to uid (u32 BE) | [`Tie`] (28 bytes)                              |
//! | `p` platform tag (u8) post id         | interactions: (kind u8, from u32 LE, to u32 LE)*, or `[0xFF]` once deleted |
//! | `c` cursor name                       | the source's resume position (opaque bytes)     |
//!
//! Users are numbered by the store, not by petgraph: edges and posts on disk refer to those stable
//! uids, so that restarts and removals never renumber anything persisted.

use crate::graph::{Kind, Platform, Tie};

pub const LAYOUT_VERSION: u32 = 1;

pub const META_VERSION: &[u8] = b"mversion";
pub const META_NEXT_UID: &[u8] = b"mnext_uid";
pub const USER: u8 = b'u';
pub const TIE: u8 = b'e';
pub const POST: u8 = b'p';
pub const CURSOR: u8 = b'c';

/// Marks a post that was deleted: seen, but contributing nothing.
pub const POST_DELETED: &[u8] = &[0xFF];

pub fn user_key(uid: u32) -> [u8; 5] {
    let mut k = [USER, 0, 0, 0, 0];
    k[1..].copy_from_slice(&uid.to_be_bytes());
    k
}

pub fn tie_key(from: u32, to: u32) -> [u8; 9] {
    let mut k = [TIE, 0, 0, 0, 0, 0, 0, 0, 0];
    k[1..5].copy_from_slice(&from.to_be_bytes());
    k[5..].copy_from_slice(&to.to_be_bytes());
    k
}

pub fn post_key(platform: Platform, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + id.len());
    k.push(POST);
    k.push(platform.tag());
    k.extend_from_slice(id.as_bytes());
    k
}

pub fn cursor_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(CURSOR);
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn uid_from_user_key(k: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(k.get(1..5)?.try_into().ok()?))
}

pub fn uids_from_tie_key(k: &[u8]) -> Option<(u32, u32)> {
    let from = u32::from_be_bytes(k.get(1..5)?.try_into().ok()?);
    let to = u32::from_be_bytes(k.get(5..9)?.try_into().ok()?);
    Some((from, to))
}

/// A user record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub key: String,
    pub handle: Option<String>,
    pub name: Option<String>,
}

/// Handles and names longer than this are cut (at a character boundary) before storing.
const MAX_FIELD: usize = 1024;

fn push_field(out: &mut Vec<u8>, s: Option<&str>) {
    let s = s.map(|s| truncate(s, MAX_FIELD));
    match s {
        // Length 0xFFFF means "absent", distinct from an empty string.
        None => out.extend_from_slice(&u16::MAX.to_le_bytes()),
        Some(s) => {
            out.extend_from_slice(&(s.len() as u16).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub fn encode_user(key: &str, handle: Option<&str>, name: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len() + handle.map_or(0, str::len) + name.map_or(0, str::len));
    push_field(&mut out, Some(key));
    push_field(&mut out, handle);
    push_field(&mut out, name);
    out
}

pub fn decode_user(mut bytes: &[u8]) -> Option<UserRecord> {
    let mut field = || -> Option<Option<String>> {
        let len = u16::from_le_bytes(bytes.get(..2)?.try_into().ok()?);
        bytes = &bytes[2..];
        if len == u16::MAX {
            return Some(None);
        }
        let s = std::str::from_utf8(bytes.get(..len as usize)?).ok()?.to_string();
        bytes = &bytes[len as usize..];
        Some(Some(s))
    };
    let key = field()??;
    let handle = field()?;
    let name = field()?;
    Some(UserRecord { key, handle, name })
}

/// One persisted interaction of a post, by store uids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostEdge {
    pub kind: Kind,
    pub from: u32,
    pub to: u32,
}

pub fn encode_post(edges: &[PostEdge]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 9 * edges.len());
    // A leading version byte keeps an empty interaction list distinct from the deleted marker.
    out.push(1);
    for e in edges {
        out.push(e.kind.index() as u8);
        out.extend_from_slice(&e.from.to_le_bytes());
        out.extend_from_slice(&e.to.to_le_bytes());
    }
    out
}

/// The interactions of a stored post; empty for a deleted one; `None` if unreadable.
pub fn decode_post(bytes: &[u8]) -> Option<Vec<PostEdge>> {
    if bytes == POST_DELETED {
        return Some(Vec::new());
    }
    let body = bytes.strip_prefix(&[1])?;
    if body.len() % 9 != 0 {
        return None;
    }
    body.chunks_exact(9)
        .map(|c| {
            Some(PostEdge {
                kind: Kind::from_index(c[0] as usize)?,
                from: u32::from_le_bytes(c[1..5].try_into().ok()?),
                to: u32::from_le_bytes(c[5..9].try_into().ok()?),
            })
        })
        .collect()
}

pub fn encode_tie(t: &Tie) -> [u8; crate::graph::TIE_BYTES] {
    t.to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_records_round_trip_including_absent_and_empty_fields() {
        for (k, h, n) in
            [("x:1", Some("alice"), Some("Alice 🦀")), ("bob", None, None), ("c", Some(""), None)]
        {
            let rec = decode_user(&encode_user(k, h, n)).unwrap();
            assert_eq!(rec, UserRecord { key: k.into(), handle: h.map(Into::into), name: n.map(Into::into) });
        }
        assert_eq!(decode_user(&[3, 0, b'a']), None, "a truncated record is refused");
    }

    #[test]
    fn long_names_are_cut_at_a_character_boundary() {
        let long = "é".repeat(600);
        let rec = decode_user(&encode_user("k", None, Some(&long))).unwrap();
        assert_eq!(rec.name.unwrap().len(), 1024);
    }

    #[test]
    fn post_records_round_trip_and_deleted_is_distinct_from_empty() {
        let edges = vec![PostEdge { kind: Kind::Quote, from: 7, to: 1 << 20 }];
        assert_eq!(decode_post(&encode_post(&edges)), Some(edges));
        assert_eq!(decode_post(&encode_post(&[])), Some(vec![]));
        assert_ne!(encode_post(&[]).as_slice(), POST_DELETED);
        assert_eq!(decode_post(&[1, 2, 3]), None);
    }

    #[test]
    fn keys_sort_by_uid_so_scans_are_in_order() {
        assert!(user_key(255) < user_key(256));
        assert!(tie_key(1, 300) < tie_key(2, 0));
        assert_eq!(uids_from_tie_key(&tie_key(5, 9)), Some((5, 9)));
        assert_eq!(uid_from_user_key(&user_key(70_000)), Some(70_000));
    }
}
