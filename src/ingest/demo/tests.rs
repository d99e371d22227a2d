//! The demo generator's tests: the model's figures, determinism, and what each line decodes to.

use super::json::{escape_into, push_rfc3339_ms};
use super::names::{FIRST_NAMES, LAST_NAMES};
use super::*;
use serde_json::Value;
use std::collections::HashSet;

fn generator(users: u32, seed: u64) -> DemoGenerator {
    DemoGenerator::new(DemoConfig { users, seed, ..DemoConfig::default() })
}

fn text_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("{pointer} is not a string in {v}"))
}

fn number_at(v: &Value, pointer: &str) -> usize {
    v.pointer(pointer).and_then(Value::as_u64).unwrap_or_else(|| panic!("{pointer} is not a number in {v}"))
        as usize
}

fn id_at(v: &Value, pointer: &str) -> u64 {
    text_at(v, pointer).parse().unwrap_or_else(|e| panic!("{pointer} is not a decimal id ({e}) in {v}"))
}

fn array_at<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// The characters `start..end` of `text`, as X counts entity offsets.
fn chars(text: &str, start: usize, end: usize) -> String {
    text.chars().skip(start).take(end - start).collect()
}

/// Runs `posts` posts and hands each one's author and intended interactions to `f`.
fn for_each_post(g: &mut DemoGenerator, posts: usize, mut f: impl FnMut(u32, &[(Kind, u32)])) {
    let mut buf = Vec::with_capacity(4096);
    for _ in 0..posts {
        buf.clear();
        g.write_next(&mut buf);
        let (author, intended) = g.intended();
        f(author, intended);
    }
}

#[test]
fn the_same_seed_gives_the_same_lines() {
    let a: Vec<String> = generator(5_000, 7).take(2_000).collect();
    let b: Vec<String> = generator(5_000, 7).take(2_000).collect();
    assert_eq!(a, b);
}

#[test]
fn a_different_seed_gives_different_lines() {
    let a: Vec<String> = generator(5_000, 7).take(100).collect();
    let b: Vec<String> = generator(5_000, 8).take(100).collect();
    let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    assert_eq!(same, 0, "{same} of 100 lines are identical across seeds");
}

#[test]
fn the_default_stream_never_changes_by_accident() {
    // FNV-1a of the first 1,000 default lines. If this fails, the stream changed: benchmarks and
    // demo screenshots of earlier versions no longer match. Update it only for a deliberate change.
    let mut g = DemoGenerator::new(DemoConfig::default());
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for _ in 0..1_000 {
        for b in g.next_line().bytes().chain([b'\n']) {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    assert_eq!(hash, 13_841_409_966_302_241_156, "the default stream changed");
}

#[test]
fn every_line_is_valid_json_in_the_x_v2_stream_shape() {
    let config = DemoConfig::default();
    let tags: HashSet<&str> = config.hashtags.iter().map(String::as_str).collect();
    let mut g = DemoGenerator::new(config.clone());
    for n in 0..5_000 {
        let line = g.next_line();
        assert!(!line.contains('\n') && !line.contains('\r'), "line {n} is not one line: {line}");
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("line {n}: {e}: {line}"));
        let id = id_at(&v, "/data/id");
        let text = text_at(&v, "/data/text");
        let author = text_at(&v, "/data/author_id");
        let created_at = text_at(&v, "/data/created_at").as_bytes();
        let shape = created_at.iter().map(|b| if b.is_ascii_digit() { b'0' } else { *b }).collect::<Vec<_>>();
        assert_eq!(shape, b"0000-00-00T00:00:00.000Z", "line {n}: created_at");
        let conversation = id_at(&v, "/data/conversation_id");
        assert!(matches!(text_at(&v, "/data/lang"), "en" | "es" | "de" | "fr" | "pt"), "line {n}: lang");

        let hashtags = array_at(&v, "/data/entities/hashtags");
        assert!(!hashtags.is_empty(), "line {n}: no hashtag");
        for h in hashtags {
            let tag = text_at(h, "/tag");
            assert!(tags.contains(tag), "line {n}: unknown tag {tag}");
            let (start, end) = (number_at(h, "/start"), number_at(h, "/end"));
            assert_eq!(chars(text, start, end), format!("#{tag}"), "line {n}: hashtag offsets in {text:?}");
        }
        for rule in array_at(&v, "/matching_rules") {
            assert!(text_at(rule, "/id").parse::<u64>().is_ok(), "line {n}: rule id");
            assert!(hashtags.iter().any(|h| h["tag"] == rule["tag"]), "line {n}: rule matches no hashtag");
        }
        assert!(!array_at(&v, "/matching_rules").is_empty(), "line {n}: no matching rule");

        let users = array_at(&v, "/includes/users");
        assert_eq!(text_at(&users[0], "/id"), author, "line {n}: the author comes first in includes.users");
        for u in users {
            let uid: u32 = text_at(u, "/id").parse().expect("user id");
            assert_eq!(text_at(u, "/username"), username(uid), "line {n}");
            assert_eq!(text_at(u, "/name"), display_name(uid), "line {n}");
        }
        let mentions = array_at(&v, "/data/entities/mentions");
        for m in mentions {
            let (start, end) = (number_at(m, "/start"), number_at(m, "/end"));
            let name = text_at(m, "/username");
            assert_eq!(chars(text, start, end), format!("@{name}"), "line {n}: mention offsets in {text:?}");
            let uid = text_at(m, "/id");
            assert!(users.iter().any(|u| u["id"] == uid), "line {n}: mentioned user {uid} not in includes");
        }

        let refs = array_at(&v, "/data/referenced_tweets");
        let replied_to = v.pointer("/data/in_reply_to_user_id");
        if refs.is_empty() {
            assert_eq!(conversation, id, "line {n}: an original post starts its conversation");
            assert!(replied_to.is_none(), "line {n}");
            assert!(v.pointer("/includes/tweets").is_none(), "line {n}");
            continue;
        }
        assert_eq!(refs.len(), 1, "line {n}");
        let ref_id = id_at(&refs[0], "/id");
        assert!(ref_id < id, "line {n}: references a later post");
        let tweet = &array_at(&v, "/includes/tweets")[0];
        assert_eq!(id_at(tweet, "/id"), ref_id, "line {n}: referenced post not in includes.tweets");
        text_at(tweet, "/created_at");
        let target = text_at(tweet, "/author_id");
        assert!(users.iter().any(|u| u["id"] == target), "line {n}: referenced author not in includes");
        let target_name = username(target.parse().expect("author id"));
        match text_at(&refs[0], "/type") {
            "retweeted" => {
                let prefix = format!("RT @{target_name}: ");
                assert_eq!(text.strip_prefix(&prefix), Some(text_at(tweet, "/text")), "line {n}: RT text");
                assert_eq!(text_at(&mentions[0], "/id"), target, "line {n}: RT mentions its author first");
                assert_eq!(conversation, id, "line {n}");
                assert!(replied_to.is_none(), "line {n}");
            }
            "replied_to" => {
                assert_eq!(replied_to.and_then(Value::as_str), Some(target), "line {n}: in_reply_to_user_id");
                assert!(text.starts_with(&format!("@{target_name} ")), "line {n}: reply text {text:?}");
                assert_eq!(conversation, ref_id, "line {n}: a reply joins the conversation it answers");
            }
            "quoted" => {
                assert!(replied_to.is_none(), "line {n}");
                assert_eq!(conversation, id, "line {n}");
            }
            other => panic!("line {n}: unknown reference type {other}"),
        }
    }
}

#[test]
fn the_x_v2_decoder_finds_exactly_the_intended_interactions() {
    use crate::graph::Record;
    use crate::ingest::decode::x_v2;
    let mut g = generator(10_000, 13);
    let mut buf = Vec::with_capacity(4096);
    for n in 0..10_000 {
        buf.clear();
        g.write_next(&mut buf);
        let line = String::from_utf8_lossy(&buf);
        let records = x_v2::decode(&buf).unwrap_or_else(|e| panic!("line {n}: {e}: {line}"));
        let [Record::Post(post)] = records.as_slice() else {
            panic!("line {n}: expected one post, got {records:?}: {line}")
        };
        let (author, intended) = g.intended();
        assert_eq!(post.author.key, format!("x:{author}"), "line {n}");
        assert_eq!(post.author.handle.as_deref(), Some(username(author).as_str()), "line {n}");
        assert!(post.created_at.is_some() && !post.tags.is_empty(), "line {n}: {post:?}");
        let mut found: Vec<(Kind, String)> =
            post.interactions.iter().map(|i| (i.kind, i.to.clone())).collect();
        let mut wanted: Vec<(Kind, String)> =
            intended.iter().map(|&(kind, to)| (kind, format!("x:{to}"))).collect();
        found.sort();
        wanted.sort();
        assert_eq!(found, wanted, "line {n}: {line}");
    }
}

#[test]
fn no_user_ever_interacts_with_itself() {
    for (users, seed) in [(5_000, 1), (130, 2), (2, 3)] {
        let mut g = generator(users, seed);
        for n in 0..20_000 {
            let v: Value = serde_json::from_str(&g.next_line()).expect("valid json");
            let author = text_at(&v, "/data/author_id");
            let mut targets: Vec<&str> = array_at(&v, "/data/entities/mentions")
                .iter()
                .map(|m| text_at(m, "/id"))
                .chain(array_at(&v, "/includes/tweets").iter().map(|t| text_at(t, "/author_id")))
                .collect();
            targets.extend(v.pointer("/data/in_reply_to_user_id").and_then(Value::as_str));
            assert!(
                !targets.contains(&author),
                "{users} users, line {n}: user {author} acts upon itself: {v}"
            );
            let (_, intended) = g.intended();
            assert!(intended.iter().all(|&(_, to)| to.to_string() != author), "{users} users, line {n}");
        }
    }
}

#[test]
fn post_ids_strictly_increase_even_when_the_clock_goes_back() {
    let mut g = DemoGenerator::new(DemoConfig { seconds_per_post: 0.0001, ..DemoConfig::default() });
    let mut last = 0u64;
    for n in 0..100_000u64 {
        let line = match n % 1_000 {
            // The caller's clock jumps back a day, then resumes.
            500..=599 => g.next_line_at(1_735_603_200_000),
            _ => g.next_line(),
        };
        let v: Value = serde_json::from_str(&line).expect("valid json");
        let id = id_at(&v, "/data/id");
        assert!(id > last, "line {n}: id {id} after {last}");
        last = id;
    }
    assert_eq!(g.posts_generated(), 100_000);
}

#[test]
fn the_simulated_clock_and_the_caller_clock_stamp_created_at() {
    let mut g = DemoGenerator::new(DemoConfig::default());
    let first: Value = serde_json::from_str(&g.next_line()).expect("json");
    let second: Value = serde_json::from_str(&g.next_line()).expect("json");
    let live: Value = serde_json::from_str(&g.next_line_at(1_700_000_000_123)).expect("json");
    assert_eq!(text_at(&first, "/data/created_at"), "2025-01-01T00:00:00.000Z");
    assert_eq!(text_at(&second, "/data/created_at"), "2025-01-01T00:00:00.250Z");
    assert_eq!(text_at(&live, "/data/created_at"), "2023-11-14T22:13:20.123Z");
}

#[test]
fn dates_are_formatted_like_the_fixtures() {
    let cases = [
        (0, "1970-01-01T00:00:00.000Z"),
        (951_782_400_000, "2000-02-29T00:00:00.000Z"),
        (1_617_292_351_000, "2021-04-01T15:52:31.000Z"),
        (MAX_MS, "9999-12-31T23:59:59.999Z"),
    ];
    for (ms, expected) in cases {
        let mut out = Vec::new();
        push_rfc3339_ms(&mut out, ms);
        assert_eq!(String::from_utf8(out).expect("ascii"), expected, "{ms} ms");
    }
}

#[test]
fn kinds_and_mentions_follow_hashtag_traffic() {
    let mut g = generator(10_000, 5);
    let posts = 100_000;
    let mut counts = [0usize; 4]; // retweet, reply, quote, original
    for n in 0..posts {
        let v: Value = serde_json::from_str(&g.next_line()).expect("json");
        let mentions = array_at(&v, "/data/entities/mentions").len();
        let kind = array_at(&v, "/data/referenced_tweets").first().map(|r| text_at(r, "/type"));
        let (slot, allowed) = match kind {
            Some("retweeted") => (0, 1..=4),
            Some("replied_to") => (1, 1..=3),
            Some("quoted") => (2, 0..=3),
            _ => (3, 0..=3),
        };
        counts[slot] += 1;
        assert!(allowed.contains(&mentions), "line {n}: {mentions} mentions on a {kind:?}");
    }
    let share = |i: usize| counts[i] as f64 / posts as f64;
    let bounds =
        [("retweets", 0.50, 0.60), ("replies", 0.10, 0.15), ("quotes", 0.05, 0.10), ("originals", 0.2, 0.3)];
    for (i, (name, low, high)) in bounds.into_iter().enumerate() {
        assert!((low..=high).contains(&share(i)), "{name}: {:.3} not in {low}..={high}", share(i));
    }
}

#[test]
fn mean_interactions_per_post_is_about_2_5() {
    let mut g = DemoGenerator::new(DemoConfig { users: 100_000, ..DemoConfig::default() });
    let posts = 200_000;
    let mut interactions = 0;
    for_each_post(&mut g, posts, |_, intended| interactions += intended.len());
    let mean = interactions as f64 / posts as f64;
    println!("mean interactions per post: {mean:.3}");
    assert!((2.35..=2.65).contains(&mean), "mean {mean:.3} interactions per post");
}

#[test]
fn interactions_received_are_heavy_tailed() {
    let users = 10_000;
    let mut received = vec![0u64; users as usize + 1];
    for_each_post(&mut generator(users, 9), 40_000, |_, intended| {
        for &(_, to) in intended {
            received[to as usize] += 1;
        }
    });
    let total: u64 = received.iter().sum();
    received.sort_unstable_by(|a, b| b.cmp(a));
    let top: u64 = received[..users as usize / 100].iter().sum();
    let share = top as f64 / total as f64;
    println!("top 1% of users receive {:.1}% of interactions", 100.0 * share);
    assert!(share > 0.25, "top 1% receive only {:.1}%", 100.0 * share);
}

#[test]
fn four_posts_per_user_touch_nearly_every_user() {
    // Same ratio as the benchmark (4M posts over 1M users); coverage depends on the ratio only,
    // since authors are mostly uniform (see the module doc).
    let users = 10_000;
    let mut seen = vec![false; users as usize + 1];
    for_each_post(&mut generator(users, 11), 40_000, |author, intended| {
        seen[author as usize] = true;
        for &(_, to) in intended {
            seen[to as usize] = true;
        }
    });
    let covered = seen.iter().filter(|&&s| s).count() as f64 / users as f64;
    println!("4 posts per user touch {:.1}% of users", 100.0 * covered);
    assert!(covered > 0.95, "only {:.1}% of users touched", 100.0 * covered);
}

#[test]
fn zipf_draws_follow_one_over_rank() {
    let mut rng = SplitMix64::new(3);
    let (n, draws) = (10u32, 400_000);
    let mut counts = [0u32; 11];
    for _ in 0..draws {
        counts[zipf(&mut rng, n) as usize] += 1;
    }
    let harmonic: f64 = (1..=n).map(|r| 1.0 / f64::from(r)).sum();
    for r in 1..=n {
        let expected = draws as f64 / (f64::from(r) * harmonic);
        let got = f64::from(counts[r as usize]);
        assert!((got - expected).abs() < 0.03 * expected, "rank {r}: {got} draws, expected {expected:.0}");
    }
    assert_eq!(counts[0], 0);
    assert_eq!(zipf(&mut rng, 1), 1);
}

#[test]
fn usernames_are_valid_unique_and_stable() {
    for id in [1, 9, 10, 12_345, 999_999_999, 1_000_000_000, u32::MAX] {
        let name = username(id);
        assert!(name.len() <= 15, "{name} is too long");
        assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{name}");
        assert!(name.ends_with(&id.to_string()), "{name} does not end with its id");
        assert!(name.as_bytes()[0].is_ascii_lowercase(), "{name}");
        assert!(!display_name(id).is_empty());
    }
    let unique: HashSet<String> = (1..=100_000).map(username).collect();
    assert_eq!(unique.len(), 100_000);
    assert_eq!(display_name(17), display_name(17));
}

#[test]
fn name_tables_hold_nothing_to_escape() {
    // `write_display_name` copies them into JSON verbatim.
    let pieces = FIRST_NAMES.iter().map(|f| f.0).chain(LAST_NAMES);
    for piece in pieces {
        let mut out = Vec::new();
        escape_into(&mut out, piece);
        assert_eq!(out, piece.as_bytes(), "{piece} needs escaping");
    }
}

#[test]
fn text_is_escaped_into_valid_json() {
    let raw = "say \"hi\" \\ back\nand\ttab \u{1} é 🦀";
    let mut out = b"\"".to_vec();
    escape_into(&mut out, raw);
    out.push(b'"');
    let back: String = serde_json::from_slice(&out).expect("valid JSON string");
    assert_eq!(back, raw);
}

#[test]
fn a_degenerate_config_still_produces_valid_lines() {
    let config = DemoConfig {
        users: 0,
        hashtags: vec![String::new(), "#".into()],
        seconds_per_post: f64::NAN,
        start: i64::MIN,
        ..DemoConfig::default()
    };
    let mut g = DemoGenerator::new(config);
    for n in 0..1_000 {
        let line = g.next_line();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("line {n}: {e}: {line}"));
        assert!(matches!(text_at(&v, "/data/author_id"), "1" | "2"), "line {n}");
    }
    let custom =
        DemoGenerator::new(DemoConfig { hashtags: vec!["#Rust\"lang".into()], ..DemoConfig::default() })
            .next_line();
    let v: Value = serde_json::from_str(&custom).expect("json with a quote in the tag");
    assert_eq!(text_at(&v, "/data/entities/hashtags/0/tag"), "Rust\"lang");
}
