//! The demo and benchmark workload: a seeded generator of realistic posts, written as X API v2
//! filtered-stream lines.
//!
//! `tagflow serve --demo` feeds these lines through the real X v2 decoder and the real write path, so
//! a newcomer without credentials watches a graph grow; at scale the same generator is the benchmark
//! workload. It does no I/O and uses of the crate only its random numbers, the calendar its times are
//! written with, and [`Kind`] (to state, in tests, what each line should decode to); it must never be
//! the bottleneck of an import.
//!
//! # Determinism
//!
//! All randomness comes from the crate's SplitMix64 (`crate::rng`), and every draw uses integers only
//! (no `f64` `powf`/`exp`/`ln`, whose last bit may differ between libm versions), so a seed gives the
//! same stream on every platform and across crate upgrades. Changing the model below changes the
//! stream: do it on purpose, update the pinned hash in the tests, and say so in the commit.
//!
//! # The model
//!
//! - **Users** are ids `1..=users` (user key `x:<id>`). Their username and display name are pure
//!   functions of the id ([`username`], [`display_name`]), independent of the seed.
//! - **Communities**: `users / 64`, between 1 and 8. User `u` belongs to community `(u - 1) % n` and is
//!   its `((u - 1) / n + 1)`-th most popular member, so each community has its own celebrities (the
//!   lowest ids: `x:1` is a hub), its home hashtag (round robin over the configured ones) and a language.
//! - **Who acts** (the author) is broad: 85% uniform over all users, 15% Zipf within a random community.
//!   The uniform majority is what makes a run touch nearly every user.
//! - **Who is acted upon** is heavy-tailed: the target of a retweet, reply or quote is Zipf within the
//!   author's community 90% of the time (uniform within it otherwise); a mentioned user 60% of the time.
//!   8% of targets and mentions bridge to another community. The Zipf exponent is 1.0, sampled exactly
//!   with integers (see `zipf`).
//! - **Kinds** per post: 55% retweets, 12% replies, 8% quotes, 25% originals, in line with hashtag
//!   traffic (the recorded `brexit`/`kpop` pages in `shared/fixtures/x-v2` have 67-78% retweets, about 10%
//!   replies and 11% quotes).
//! - **Mentions**: originals, quotes and retweeted originals mention 0-3 users (mean 1.75); a reply
//!   starts with `@target` (a mention too, as the decoder counts it) and adds 0-2 more. A retweet's
//!   text is `RT @author: <original text>` and its `entities.mentions` starts with that author at offset
//!   3, as on X; the decoder does not count that one, but does count the mentions of the original.
//!   Mentions are set above recorded traffic (about 1.2 per post) so that a post carries about 2.5
//!   interactions and 10M interactions take about 4M posts.
//! - **Referenced posts** are the target's post of the previous hour, whose id, time and text are a pure
//!   function of `(seed, target, hour)`: many retweets and replies of a popular user point at the same
//!   post, as on X. They appear in `includes.tweets` only, never as lines of their own.
//! - **Ids** are snowflakes (`(ms since 2010-11-04) << 22 | worker << 12 | sequence`), strictly
//!   increasing within a generator even when the caller's clock goes backwards.
//!
//! # Layout
//!
//! This file holds the model (who acts, on whom, how); `text.rs` the words of the posts, `names.rs`
//! the people's names, `json.rs` writing a post as X's filtered stream does; `tests.rs` the model's
//! figures and what each line decodes to.
//!
//! # Measured
//!
//! At the benchmark scale, 4M posts over 1M users (default config otherwise; the ignored test
//! `demo_at_benchmark_scale`): 2.53 interactions per post, 10.1M interactions between 9.3M distinct
//! (from, to) pairs, 99.9% of users touched, and the top 1% of users receive 44% of the interactions.
//! Coverage depends on posts per user only (authors are mostly uniform), so the unit test checks it at
//! the same ratio on 40k posts over 10k users (99.9%). Concentration grows with the community size
//! (Zipf with exponent 1 puts `H(k) / H(n)` of the draws on the top `k` of `n`): 29% at 10k users.
//! Throughput (`cargo test --release -- --ignored demo_throughput --nocapture`): about 1.4M lines of
//! about 980 bytes per CPU second on one core.

mod json;
mod names;
mod text;

use crate::graph::Kind;
use crate::rng::{mix64, SplitMix64};
use json::{emit, Head, Referenced, Scratch};
use names::{write_display_name, UserText};
use text::{compose, Body, Shape, Vocab};

/// Twitter's snowflake epoch (2010-11-04T01:42:54.657Z) in unix milliseconds.
const TWEPOCH_MS: i64 = 1_288_834_974_657;
/// Snowflakes keep 41 bits of milliseconds (until 2080), so that ids fit X's 63 bits.
const SNOWFLAKE_MAX_MS: i64 = (1 << 41) - 1;
/// The last millisecond RFC 3339 can write with a four-digit year (9999-12-31T23:59:59.999Z).
const MAX_MS: i64 = 253_402_300_799_999;
/// Referenced posts are drawn from the previous window of this length.
const WINDOW_MS: i64 = 3_600_000;

/// At most this many communities, however many users.
const MAX_COMMUNITIES: u32 = 8;
/// One community per this many users, up to [`MAX_COMMUNITIES`].
const USERS_PER_COMMUNITY: u32 = 64;

/// Kind mix, cumulative per mille: retweets, then replies, then quotes, the rest original posts.
const RETWEET_UNTIL: u64 = 550;
const REPLY_UNTIL: u64 = 670;
const QUOTE_UNTIL: u64 = 750;

/// Authors drawn uniformly over all users, per mille (the rest are Zipf-popular users).
const AUTHOR_UNIFORM: u64 = 850;
/// Targets of retweets, replies and quotes drawn Zipf within a community, per mille.
const TARGET_ZIPF: u64 = 900;
/// Mentioned users drawn Zipf within a community, per mille.
const MENTION_ZIPF: u64 = 600;
/// Targets and mentions taken from another community, per mille.
const BRIDGE: u64 = 80;
/// Posts adding a second hashtag, per mille.
const SECOND_TAG: u64 = 300;
/// Posts ending with an emoji, per mille.
const EMOJI: u64 = 200;
/// Number of mentions of an original, quote or retweeted post: cumulative per mille for 0, 1, 2 (else 3).
const MENTIONS_CDF: [u64; 3] = [100, 400, 750];
/// Extra mentions of a reply after the leading `@target`: cumulative per mille for 0, 1 (else 2).
const REPLY_MENTIONS_CDF: [u64; 2] = [300, 700];
/// Attempts to find a user outside an exclusion list before giving the draw up.
const MAX_ATTEMPTS: u32 = 16;

/// X usernames are at most 15 characters.
const MAX_USERNAME: usize = 15;

/// The demo hashtags used when a configuration names none.
const DEFAULT_HASHTAGS: [&str; 4] = ["rustlang", "opensource", "webdev", "devops"];

/// What to generate. The simulated clock starts at `start` and advances `seconds_per_post` per post.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoConfig {
    /// Number of users, ids `1..=users`. Values below 2 are raised to 2 (an interaction needs two users).
    pub users: u32,
    /// The seed: the same configuration always produces the same lines.
    pub seed: u64,
    /// Unix seconds of the first post on the simulated clock.
    pub start: i64,
    /// Simulated seconds between two posts (negative or non-finite means 0). Ignored by the `_at`
    /// methods, which stamp the caller's time instead (the live demo stamps real time).
    pub seconds_per_post: f64,
    /// Hashtags to post under, without `#`; each community gets one as its home tag, round robin.
    /// A leading `#` is stripped, empty and repeated entries dropped; none at all means the defaults.
    pub hashtags: Vec<String>,
}

impl Default for DemoConfig {
    /// 5,000 users, seed 42, starting 2025-01-01T00:00:00Z at 4 posts per simulated second, under
    /// `#rustlang`, `#opensource`, `#webdev` and `#devops`.
    fn default() -> Self {
        DemoConfig {
            users: 5_000,
            seed: 42,
            start: 1_735_689_600,
            seconds_per_post: 0.25,
            hashtags: DEFAULT_HASHTAGS.iter().map(|t| t.to_string()).collect(),
        }
    }
}

/// An endless, deterministic stream of X API v2 filtered-stream lines (see the module doc).
///
/// Each call costs well under a microsecond and allocates nothing once the internal buffers have
/// grown (the `String` conveniences allocate the returned line).
#[derive(Debug, Clone)]
pub struct DemoGenerator {
    rng: SplitMix64,
    seed: u64,
    pop: Population,
    vocab: Vocab,
    start_ms: i64,
    /// Simulated microseconds per post.
    step_us: i64,
    /// Snowflake worker bits, from the seed.
    worker: u64,
    posts: u64,
    last_id: u64,
    scratch: Scratch,
}

impl DemoGenerator {
    /// Builds a generator; see [`DemoConfig`] for how out-of-range values are normalised.
    pub fn new(config: DemoConfig) -> Self {
        let users = config.users.max(2);
        let communities = (users / USERS_PER_COMMUNITY).clamp(1, MAX_COMMUNITIES);
        let mut names: Vec<String> = Vec::new();
        for tag in &config.hashtags {
            let tag = tag.trim().trim_start_matches('#');
            if !tag.is_empty() && !names.iter().any(|t| t == tag) {
                names.push(tag.to_string());
            }
        }
        if names.is_empty() {
            names = DEFAULT_HASHTAGS.iter().map(|t| t.to_string()).collect();
        }
        let seconds = config.seconds_per_post;
        let step_us = if seconds.is_finite() && seconds > 0.0 {
            // `as` saturates, so absurd steps stay finite; only basic IEEE operations, so deterministic.
            (seconds * 1e6).round() as i64
        } else {
            0
        };
        DemoGenerator {
            rng: SplitMix64::new(config.seed),
            seed: config.seed,
            pop: Population { users, communities },
            vocab: Vocab::new(&names),
            start_ms: config.start.saturating_mul(1000),
            step_us,
            worker: mix64(config.seed ^ 0x776f_726b_6572) & 0x3ff,
            posts: 0,
            last_id: 0,
            scratch: Scratch::default(),
        }
    }

    /// Appends the next line (one JSON object, no trailing newline) to `out`, stamped with the
    /// simulated clock: `start + posts_generated() * seconds_per_post`.
    pub fn write_next(&mut self, out: &mut Vec<u8>) {
        let offset_ms = (self.posts as i128 * self.step_us as i128) / 1000;
        let now_ms = (self.start_ms as i128 + offset_ms).clamp(0, MAX_MS as i128) as i64;
        self.generate(out, now_ms);
    }

    /// Appends the next line to `out` like [`DemoGenerator::write_next`], stamped `unix_ms` instead
    /// of the simulated clock (the live demo passes the current time). Ids still increase if the
    /// clock goes backwards. Times outside year 0..=9999 are clamped.
    pub(crate) fn write_next_at(&mut self, out: &mut Vec<u8>, unix_ms: i64) {
        self.generate(out, unix_ms.clamp(0, MAX_MS));
    }

    /// The next line as a `String`, on the simulated clock.
    pub fn next_line(&mut self) -> String {
        let mut out = Vec::with_capacity(1536);
        self.write_next(&mut out);
        into_string(out)
    }

    #[cfg(test)]
    /// The next line as a `String`, stamped `unix_ms` (see [`DemoGenerator::write_next_at`]).
    pub(crate) fn next_line_at(&mut self, unix_ms: i64) -> String {
        let mut out = Vec::with_capacity(1536);
        self.write_next_at(&mut out, unix_ms);
        into_string(out)
    }

    #[cfg(test)]
    /// How many lines this generator has produced.
    pub(crate) fn posts_generated(&self) -> u64 {
        self.posts
    }

    /// The interactions the last line carries, as the decoder should find them: its author and
    /// `(kind, target)` pairs (the automatic `RT @author` mention excluded).
    #[cfg(test)]
    fn intended(&self) -> (u32, &[(Kind, u32)]) {
        (self.scratch.author, &self.scratch.intended)
    }

    fn next_id(&mut self, now_ms: i64) -> u64 {
        let candidate = snowflake_time(now_ms) | (self.worker << 12);
        // Several posts in one millisecond (or a clock going backwards) take the next free id.
        self.last_id = candidate.max(self.last_id + 1);
        self.last_id
    }

    fn generate(&mut self, out: &mut Vec<u8>, now_ms: i64) {
        let id = self.next_id(now_ms);
        self.posts += 1;
        let DemoGenerator { rng, seed, pop, vocab, scratch: s, .. } = self;
        let (pop, seed) = (*pop, *seed);
        s.clear();

        let author = pop.author(rng);
        let community = pop.community(author);
        s.author = author;
        let roll = rng.below(1000);
        let shape = if roll < RETWEET_UNTIL {
            Shape::Retweet
        } else if roll < REPLY_UNTIL {
            Shape::Reply
        } else if roll < QUOTE_UNTIL {
            Shape::Quote
        } else {
            Shape::Original
        };

        let mut reference = None;
        // The language of the text: a retweet's is the original's.
        let mut lang_community = community;
        if shape == Shape::Original {
            s.excluded.push(author);
            let mentions = draw_count(rng, &MENTIONS_CDF);
            let body = Body { community, mentions, mentions_first: false };
            compose(&mut s.own, rng, pop, vocab, body, &mut s.excluded, &mut s.names);
        } else {
            let target = pop.target(rng, community, author);
            let r = Referenced::new(seed, target, now_ms, id);
            // The referenced post never mentions the author of this one: nobody mentions themselves.
            let mut orig_rng = SplitMix64::new(r.seed);
            s.excluded.extend([target, author]);
            let mentions = draw_count(&mut orig_rng, &MENTIONS_CDF);
            let target_community = pop.community(target);
            let body = Body { community: target_community, mentions, mentions_first: false };
            compose(&mut s.orig, &mut orig_rng, pop, vocab, body, &mut s.excluded, &mut s.names);
            s.excluded.clear();
            s.excluded.extend([target, author]);
            match shape {
                Shape::Retweet => {
                    s.own.ascii(b"RT ");
                    s.own.mention(&s.names.get(target));
                    s.own.ascii(b": ");
                    s.own.append(&s.orig);
                    s.intended.push((Kind::Repost, target));
                    lang_community = target_community;
                }
                Shape::Reply => {
                    s.own.mention(&s.names.get(target));
                    s.own.ascii(b" ");
                    s.intended.push((Kind::Reply, target));
                    let mentions = draw_count(rng, &REPLY_MENTIONS_CDF);
                    let body = Body { community, mentions, mentions_first: true };
                    compose(&mut s.own, rng, pop, vocab, body, &mut s.excluded, &mut s.names);
                }
                _ => {
                    s.intended.push((Kind::Quote, target));
                    let mentions = draw_count(rng, &MENTIONS_CDF);
                    let body = Body { community, mentions, mentions_first: false };
                    compose(&mut s.own, rng, pop, vocab, body, &mut s.excluded, &mut s.names);
                }
            }
            reference = Some(r);
        }
        let auto_mention = usize::from(shape == Shape::Retweet);
        for span in &s.own.mentions[auto_mention..] {
            s.intended.push((Kind::Mention, span.what));
        }
        let lang = vocab.language(lang_community).code;
        let head = Head { id, now_ms, shape, reference: reference.as_ref() };
        emit(out, head, s, &vocab.tags, lang);
    }
}

/// An endless iterator of lines on the simulated clock (never returns `None`).
impl Iterator for DemoGenerator {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        Some(self.next_line())
    }
}

/// The stable X username of demo user `user`: an ASCII first-name stem and the id, at most 15
/// characters of `[a-z0-9]` (e.g. `maria17`). Unique per id: the stem has no digit.
pub fn username(user: u32) -> String {
    let mut out = Vec::with_capacity(24);
    UserText::new(user).push_username(&mut out);
    into_string(out)
}

/// The stable display name of demo user `user` (e.g. `María Okafor`); may hold non-ASCII letters,
/// an emoji or quotes.
pub fn display_name(user: u32) -> String {
    let mut out = Vec::new();
    write_display_name(&mut out, user, false);
    into_string(out)
}

fn into_string(out: Vec<u8>) -> String {
    // Every piece written is valid UTF-8 (ASCII, escaped JSON of `&str`s, digits).
    String::from_utf8(out).expect("demo lines are built from UTF-8 pieces only")
}

/// The time bits of a snowflake id: milliseconds since [`TWEPOCH_MS`], clamped to 41 bits, shifted.
fn snowflake_time(unix_ms: i64) -> u64 {
    ((unix_ms - TWEPOCH_MS).clamp(0, SNOWFLAKE_MAX_MS) as u64) << 22
}

/// Draws `0..=cdf.len()` from cumulative per-mille bounds.
fn draw_count(rng: &mut SplitMix64, cdf: &[u64]) -> u32 {
    let roll = rng.below(1000);
    cdf.iter().take_while(|&&bound| roll >= bound).count() as u32
}

/// Users, communities and the popularity draws over them.
#[derive(Debug, Clone, Copy)]
struct Population {
    users: u32,
    communities: u32,
}

impl Population {
    fn community(self, user: u32) -> u32 {
        (user - 1) % self.communities
    }

    fn size(self, community: u32) -> u32 {
        (self.users - 1 - community) / self.communities + 1
    }

    /// The `rank`-th most popular member (`1..=size`) of `community`.
    fn member(self, community: u32, rank: u32) -> u32 {
        (rank - 1) * self.communities + community + 1
    }

    fn author(self, rng: &mut SplitMix64) -> u32 {
        if rng.chance(AUTHOR_UNIFORM) {
            1 + rng.below(self.users as u64) as u32
        } else {
            let community = rng.below(self.communities as u64) as u32;
            self.member(community, zipf(rng, self.size(community)))
        }
    }

    /// A user of `home` (or, for bridges, of another community), Zipf `zipf_per_mille` of the time.
    fn pick(self, rng: &mut SplitMix64, home: u32, zipf_per_mille: u64) -> u32 {
        let mut community = home;
        if self.communities > 1 && rng.chance(BRIDGE) {
            let step = 1 + rng.below(self.communities as u64 - 1) as u32;
            community = (home + step) % self.communities;
        }
        let size = self.size(community);
        let rank =
            if rng.chance(zipf_per_mille) { zipf(rng, size) } else { 1 + rng.below(size as u64) as u32 };
        self.member(community, rank)
    }

    /// The user acted upon by a retweet, reply or quote of `author`: never `author`.
    fn target(self, rng: &mut SplitMix64, home: u32, author: u32) -> u32 {
        for _ in 0..MAX_ATTEMPTS {
            let user = self.pick(rng, home, TARGET_ZIPF);
            if user != author {
                return user;
            }
        }
        // Only a tiny community gets here: any other user will do.
        author % self.users + 1
    }

    /// A user to mention who is not in `excluded`, or `None` when the draws keep hitting it.
    fn mention(self, rng: &mut SplitMix64, home: u32, excluded: &[u32]) -> Option<u32> {
        (0..MAX_ATTEMPTS).map(|_| self.pick(rng, home, MENTION_ZIPF)).find(|user| !excluded.contains(user))
    }
}

/// Zipf with exponent 1 over ranks `1..=n` (`n >= 1`): `P(r) = 1 / (r H_n)`, exact up to the `2^-64`
/// bias of `below`, in integers.
///
/// Rejection from a log-uniform proposal: draw an octave `j` (ranks `2^j..2^(j+1)`) uniformly, a rank
/// `r` uniformly in it, and accept with probability `2^j / r`. A proposal of `r` then has probability
/// `1 / (octaves r)`, proportional to `1 / r`; ranks above `n` are rejected. About 1.4 proposals per
/// draw, no floating point, so the stream is identical on every platform.
fn zipf(rng: &mut SplitMix64, n: u32) -> u32 {
    let octaves = u64::from(32 - n.leading_zeros());
    loop {
        let low = 1u64 << rng.below(octaves);
        let rank = low + rng.below(low);
        if rank <= u64::from(n) && rng.below(rank) < low {
            return rank as u32;
        }
    }
}

#[cfg(test)]
mod tests;
