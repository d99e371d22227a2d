//! Writing a post as an X API v2 filtered-stream line, by hand and fast: the generator must never
//! be what limits an import.

use super::names::write_display_name;
use super::names::UserTexts;
use super::text::Tag;
use super::text::{Shape, Text};
use super::{snowflake_time, Kind, WINDOW_MS};
use crate::graph::civil_from_days;
use crate::rng::mix64;

/// An entity of a text: a mention (`what` = user id) or a hashtag (`what` = tag index); offsets in
/// characters, `@`/`#` included, as X counts them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    pub(super) start: u32,
    pub(super) end: u32,
    pub(super) what: u32,
}

/// The earlier post of `target` that a retweet, reply or quote points at.
#[derive(Debug, Clone, Copy)]
pub(super) struct Referenced {
    pub(super) id: u64,
    pub(super) target: u32,
    pub(super) ms: i64,
    /// Seeds the content of the post, so every line referencing it shows the same text.
    pub(super) seed: u64,
}

impl Referenced {
    /// The post of `target` in the window before the one holding `now_ms`, with an id below `post_id`.
    pub(super) fn new(seed: u64, target: u32, now_ms: i64, post_id: u64) -> Referenced {
        let window = now_ms.div_euclid(WINDOW_MS);
        let h = mix64(seed ^ mix64(u64::from(target) ^ mix64(window as u64)));
        let ms = ((window - 1) * WINDOW_MS + (h % WINDOW_MS as u64) as i64).max(0);
        let id = (snowflake_time(ms) | (h >> 42)).min(post_id - 1);
        Referenced { id, target, ms, seed: h }
    }
}

/// Per-line working buffers, kept to avoid allocating per line.
#[derive(Debug, Clone, Default)]
pub(super) struct Scratch {
    pub(super) own: Text,
    pub(super) orig: Text,
    pub(super) excluded: Vec<u32>,
    pub(super) names: UserTexts,
    pub(super) users: Vec<u32>,
    pub(super) rules: Vec<u32>,
    pub(super) author: u32,
    pub(super) intended: Vec<(Kind, u32)>,
}

impl Scratch {
    pub(super) fn clear(&mut self) {
        self.own.clear();
        self.orig.clear();
        self.excluded.clear();
        self.names.0.clear();
        self.users.clear();
        self.rules.clear();
        self.intended.clear();
    }
}

/// A post's own facts: its id, its time, its shape and the post it references.
pub(super) struct Head<'a> {
    pub(super) id: u64,
    pub(super) now_ms: i64,
    pub(super) shape: Shape,
    pub(super) reference: Option<&'a Referenced>,
}

/// Writes the line: `{"data":{...},"includes":{"users":[...],"tweets":[...]},"matching_rules":[...]}`
/// for the post `head` names and `s` holds (its author, texts and mentions).
pub(super) fn emit(out: &mut Vec<u8>, head: Head, s: &mut Scratch, tags: &[Tag], lang: &str) {
    let Head { id, now_ms, shape, reference } = head;
    let (id, author) = (Decimal::new(id), s.author);
    let reference = reference.map(|r| (r, Decimal::new(r.id)));
    out.extend_from_slice(b"{\"data\":{\"id\":\"");
    id.push(out);
    out.extend_from_slice(b"\",\"text\":\"");
    out.extend_from_slice(&s.own.json);
    out.extend_from_slice(b"\",\"author_id\":\"");
    s.names.get(author).push_id(out);
    out.extend_from_slice(b"\",\"created_at\":\"");
    push_rfc3339_ms(out, now_ms);
    out.extend_from_slice(b"\",\"conversation_id\":\"");
    match &reference {
        Some((_, ref_id)) if shape == Shape::Reply => ref_id.push(out),
        _ => id.push(out),
    }
    out.push(b'"');
    if let Some((r, ref_id)) = &reference {
        out.extend_from_slice(b",\"referenced_tweets\":[{\"type\":\"");
        out.extend_from_slice(match shape {
            Shape::Retweet => b"retweeted",
            Shape::Reply => b"replied_to",
            _ => b"quoted",
        });
        out.extend_from_slice(b"\",\"id\":\"");
        ref_id.push(out);
        out.extend_from_slice(b"\"}]");
        if shape == Shape::Reply {
            out.extend_from_slice(b",\"in_reply_to_user_id\":\"");
            s.names.get(r.target).push_id(out);
            out.push(b'"');
        }
    }
    out.extend_from_slice(b",\"entities\":{\"hashtags\":[");
    for (i, span) in s.own.tags.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_span_start(out, span);
        out.extend_from_slice(b",\"tag\":\"");
        out.extend_from_slice(&tags[span.what as usize].json);
        out.extend_from_slice(b"\"}");
        if !s.rules.contains(&span.what) {
            s.rules.push(span.what);
        }
    }
    out.push(b']');
    if !s.own.mentions.is_empty() {
        out.extend_from_slice(b",\"mentions\":[");
        for (i, span) in s.own.mentions.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_span_start(out, span);
            out.extend_from_slice(b",\"username\":\"");
            let user = s.names.get(span.what);
            user.push_username(out);
            out.extend_from_slice(b"\",\"id\":\"");
            user.push_id(out);
            out.extend_from_slice(b"\"}");
        }
        out.push(b']');
    }
    out.extend_from_slice(b"},\"lang\":\"");
    out.extend_from_slice(lang.as_bytes());

    // Expansions: the author, the referenced author and every mentioned user, once each.
    out.extend_from_slice(b"\"},\"includes\":{\"users\":[");
    s.users.push(author);
    if let Some((r, _)) = &reference {
        if !s.users.contains(&r.target) {
            s.users.push(r.target);
        }
    }
    for span in &s.own.mentions {
        if !s.users.contains(&span.what) {
            s.users.push(span.what);
        }
    }
    for (i, &id) in s.users.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let user = s.names.get(id);
        out.extend_from_slice(b"{\"id\":\"");
        user.push_id(out);
        out.extend_from_slice(b"\",\"name\":\"");
        write_display_name(out, id, true);
        out.extend_from_slice(b"\",\"username\":\"");
        user.push_username(out);
        out.extend_from_slice(b"\"}");
    }
    out.push(b']');
    if let Some((r, ref_id)) = &reference {
        out.extend_from_slice(b",\"tweets\":[{\"id\":\"");
        ref_id.push(out);
        out.extend_from_slice(b"\",\"author_id\":\"");
        s.names.get(r.target).push_id(out);
        out.extend_from_slice(b"\",\"text\":\"");
        out.extend_from_slice(&s.orig.json);
        out.extend_from_slice(b"\",\"created_at\":\"");
        push_rfc3339_ms(out, r.ms);
        out.extend_from_slice(b"\",\"conversation_id\":\"");
        ref_id.push(out);
        out.extend_from_slice(b"\"}]");
    }
    out.extend_from_slice(b"},\"matching_rules\":[");
    for (i, &tag) in s.rules.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&tags[tag as usize].rule);
    }
    out.extend_from_slice(b"]}");
}

pub(super) fn push_span_start(out: &mut Vec<u8>, span: &Span) {
    out.extend_from_slice(b"{\"start\":");
    push_u64(out, u64::from(span.start));
    out.extend_from_slice(b",\"end\":");
    push_u64(out, u64::from(span.end));
}

/// Writes `s` as the inside of a JSON string: `"` and `\` escaped, control characters as `\n`, `\r`,
/// `\t` or `\u00XX`; everything else (non-ASCII included) verbatim, which JSON allows.
pub(super) fn escape_into(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[from..i]);
        if escaped.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escaped);
        }
        from = i + 1;
    }
    out.extend_from_slice(&bytes[from..]);
}

pub(super) fn decimal_len(v: u64) -> usize {
    v.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// `"00"` to `"99"`, to format numbers two digits per division.
pub(super) const DIGIT_PAIRS: [u8; 200] = {
    let mut pairs = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        pairs[2 * i] = b'0' + (i / 10) as u8;
        pairs[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    pairs
};

pub(super) fn pair(v: usize) -> &'static [u8] {
    &DIGIT_PAIRS[v * 2..v * 2 + 2]
}

/// Writes the `len` (= `decimal_len(v)`) digits of `v` at the start of `buf`, four per 64-bit
/// division as the `itoa` crate does.
pub(super) fn format_decimal(buf: &mut [u8], mut v: u64, len: usize) {
    let mut end = len;
    while v >= 10_000 {
        let rem = (v % 10_000) as usize;
        v /= 10_000;
        end -= 4;
        buf[end..end + 2].copy_from_slice(pair(rem / 100));
        buf[end + 2..end + 4].copy_from_slice(pair(rem % 100));
    }
    let mut v = v as usize;
    if v >= 100 {
        end -= 2;
        buf[end..end + 2].copy_from_slice(pair(v % 100));
        v /= 100;
    }
    if v >= 10 {
        buf[..2].copy_from_slice(pair(v));
    } else {
        buf[0] = b'0' + v as u8;
    }
}

/// A number formatted once and written several times (a post id appears up to three times a line).
#[derive(Debug, Clone, Copy)]
pub(super) struct Decimal {
    pub(super) digits: [u8; 20],
    pub(super) len: usize,
}

impl Decimal {
    pub(super) fn new(v: u64) -> Decimal {
        let len = decimal_len(v);
        let mut digits = [0u8; 20];
        format_decimal(&mut digits, v, len);
        Decimal { digits, len }
    }

    pub(super) fn push(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&self.digits);
        out.truncate(at + self.len);
    }
}

/// Writes `v` in decimal. This is the hottest function: it grows `out` by a fixed 20 bytes (a couple
/// of moves, where a variable-length copy calls `memcpy`), writes the digits in place (staging them
/// on the stack stalls store forwarding) and truncates the excess.
pub(super) fn push_u64(out: &mut Vec<u8>, v: u64) {
    let len = decimal_len(v);
    let at = out.len();
    out.extend_from_slice(&[0u8; 20]);
    format_decimal(&mut out[at..], v, len);
    out.truncate(at + len);
}

/// Writes `ms` (in `0..=MAX_MS`) as `YYYY-MM-DDTHH:MM:SS.mmmZ`, the fixtures' `created_at` format.
pub(super) fn push_rfc3339_ms(out: &mut Vec<u8>, ms: i64) {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000) as u32;
    let (year, month, day) = civil_from_days(days);
    let year = year as usize;
    let in_day = in_day as usize;
    out.extend_from_slice(pair(year / 100));
    out.extend_from_slice(pair(year % 100));
    out.push(b'-');
    out.extend_from_slice(pair(month as usize));
    out.push(b'-');
    out.extend_from_slice(pair(day as usize));
    out.push(b'T');
    out.extend_from_slice(pair(in_day / 3_600_000));
    out.push(b':');
    out.extend_from_slice(pair(in_day / 60_000 % 60));
    out.push(b':');
    out.extend_from_slice(pair(in_day / 1000 % 60));
    out.push(b'.');
    out.extend_from_slice(pair(in_day % 1000 / 10));
    out.push(b'0' + (in_day % 10) as u8);
    out.push(b'Z');
}
