//! The words of the demo's posts: hashtags, the languages' vocabularies, and composing a text with
//! its mentions and hashtags as X's entities count them.

use super::json::push_u64;
use super::json::{escape_into, Span};
use super::names::UserText;
use super::names::UserTexts;
use super::{Population, EMOJI, SECOND_TAG};
use crate::rng::SplitMix64;

/// A configured hashtag, escaped once, with the filtered-stream rule that matches it.
#[derive(Debug, Clone)]
pub(super) struct Tag {
    pub(super) json: Vec<u8>,
    pub(super) chars: u32,
    /// `{"id":"...","tag":"..."}` as it appears in `matching_rules`.
    pub(super) rule: Vec<u8>,
}

impl Tag {
    pub(super) fn new(name: &str) -> Tag {
        let mut json = Vec::new();
        escape_into(&mut json, name);
        // A stable rule id per tag (FNV-1a of the name), snowflake-sized like real rule ids.
        let hash = name
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        let mut rule = b"{\"id\":\"".to_vec();
        push_u64(&mut rule, 1_500_000_000_000_000_000 + hash % 100_000_000_000_000_000);
        rule.extend_from_slice(b"\",\"tag\":\"");
        rule.extend_from_slice(&json);
        rule.extend_from_slice(b"\"}");
        Tag { json, chars: name.chars().count() as u32 + 1, rule }
    }
}

/// A fixed piece of text, escaped once, with its length in characters.
#[derive(Debug, Clone)]
pub(super) struct Piece {
    pub(super) json: Vec<u8>,
    pub(super) chars: u32,
}

impl Piece {
    pub(super) fn new(raw: &str) -> Piece {
        let mut json = Vec::with_capacity(raw.len());
        escape_into(&mut json, raw);
        Piece { json, chars: raw.chars().count() as u32 }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Language {
    pub(super) code: &'static str,
    pub(super) phrases: Vec<Piece>,
}

/// Everything a text is made of, escaped once when the generator is built.
#[derive(Debug, Clone)]
pub(super) struct Vocab {
    pub(super) tags: Vec<Tag>,
    pub(super) languages: Vec<Language>,
    pub(super) emojis: Vec<Piece>,
}

impl Vocab {
    pub(super) fn new(tags: &[String]) -> Vocab {
        Vocab {
            tags: tags.iter().map(|name| Tag::new(name)).collect(),
            languages: LANGUAGES
                .iter()
                .map(|&(code, phrases)| Language {
                    code,
                    phrases: phrases.iter().map(|p| Piece::new(p)).collect(),
                })
                .collect(),
            emojis: EMOJIS.iter().map(|e| Piece::new(e)).collect(),
        }
    }

    pub(super) fn language(&self, community: u32) -> &Language {
        &self.languages[community as usize % self.languages.len()]
    }
}

/// The language and phrases of each community, round robin.
pub(super) const LANGUAGES: [(&str, &[&str]); 8] =
    [("en", EN), ("en", EN), ("es", ES), ("en", EN), ("de", DE), ("en", EN), ("fr", FR), ("pt", PT)];

pub(super) const EN: &[&str] = &[
    "Just shipped a new release",
    "This thread is gold",
    "Hot take: tests are documentation",
    "Anyone else seeing this?",
    "Great talk today, slides below",
    "We are hiring!",
    "Finally fixed that bug after three days",
    "Reading the \"zero-cost abstractions\" post again",
    "Benchmarks are in and they look good",
    "TIL something new about lifetimes",
    "Weekend project: a tiny HTTP server",
    "Who is going to the meetup next week?",
    "New blog post:\nwhat we learned migrating to async",
    "Unpopular opinion: YAML is fine",
    "Pairing session with the team, 10/10",
    "Huge thanks to everyone who contributed",
];
pub(super) const ES: &[&str] = &[
    "Acabamos de publicar una nueva versión",
    "Gran charla hoy",
    "¿Alguien más ve esto?",
    "Por fin arreglé ese bug",
    "¡Estamos contratando!",
    "Hilo imprescindible",
];
pub(super) const DE: &[&str] = &[
    "Gerade eine neue Version veröffentlicht",
    "Toller Vortrag heute",
    "Wer kommt zum Meetup?",
    "Endlich den Bug gefunden",
    "Lesenswert",
    "Wir stellen ein!",
];
pub(super) const FR: &[&str] = &[
    "Nouvelle version publiée aujourd'hui",
    "Super conférence ce matin",
    "Qui vient au meetup ?",
    "Enfin corrigé ce bug",
    "À lire absolument",
    "On recrute !",
];
pub(super) const PT: &[&str] = &[
    "Acabamos de lançar uma nova versão",
    "Ótima palestra hoje",
    "Quem vai ao meetup?",
    "Finalmente corrigi esse bug",
    "Vale a leitura",
    "Estamos contratando!",
];

pub(super) const EMOJIS: [&str; 8] = ["🦀", "🚀", "🎉", "👀", "✨", "🔥", "💯", "🙌"];
/// A post text being built: its JSON-escaped bytes, its length in characters and its entities.
#[derive(Debug, Clone, Default)]
pub(super) struct Text {
    pub(super) json: Vec<u8>,
    pub(super) chars: u32,
    pub(super) mentions: Vec<Span>,
    pub(super) tags: Vec<Span>,
}

impl Text {
    pub(super) fn clear(&mut self) {
        self.json.clear();
        self.chars = 0;
        self.mentions.clear();
        self.tags.clear();
    }

    /// ASCII with nothing to escape.
    pub(super) fn ascii(&mut self, s: &[u8]) {
        self.json.extend_from_slice(s);
        self.chars += s.len() as u32;
    }

    pub(super) fn piece(&mut self, piece: &Piece) {
        self.json.extend_from_slice(&piece.json);
        self.chars += piece.chars;
    }

    pub(super) fn mention(&mut self, user: &UserText) {
        let start = self.chars;
        self.json.push(b'@');
        user.push_username(&mut self.json);
        self.chars += 1 + user.username_len as u32;
        self.mentions.push(Span { start, end: self.chars, what: user.id });
    }

    pub(super) fn tag(&mut self, index: usize, tag: &Tag) {
        let start = self.chars;
        self.json.push(b'#');
        self.json.extend_from_slice(&tag.json);
        self.chars += tag.chars;
        self.tags.push(Span { start, end: self.chars, what: index as u32 });
    }

    /// Appends `other`, shifting its entities by the characters already written.
    pub(super) fn append(&mut self, other: &Text) {
        let shift = self.chars;
        self.json.extend_from_slice(&other.json);
        self.chars += other.chars;
        let moved = |s: &Span| Span { start: s.start + shift, end: s.end + shift, what: s.what };
        self.mentions.extend(other.mentions.iter().map(moved));
        self.tags.extend(other.tags.iter().map(moved));
    }
}

/// What a post body holds: the community whose language and home hashtag it takes, how many users
/// it mentions, and whether the mentions come before the phrase (replies) or after it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Body {
    pub(super) community: u32,
    pub(super) mentions: u32,
    pub(super) mentions_first: bool,
}

/// Writes a post body: a phrase in `body.community`'s language, `body.mentions` users not in
/// `excluded` (each one added to it), the community's home hashtag and maybe a second one, maybe
/// an emoji.
pub(super) fn compose(
    text: &mut Text,
    rng: &mut SplitMix64,
    pop: Population,
    vocab: &Vocab,
    body: Body,
    excluded: &mut Vec<u32>,
    names: &mut UserTexts,
) {
    let Body { community, mentions, mentions_first } = body;
    let phrases = &vocab.language(community).phrases;
    let phrase = &phrases[rng.below(phrases.len() as u64) as usize];
    if !mentions_first {
        text.piece(phrase);
    }
    for _ in 0..mentions {
        if let Some(user) = pop.mention(rng, community, excluded) {
            excluded.push(user);
            if !mentions_first {
                text.ascii(b" ");
            }
            text.mention(&names.get(user));
            if mentions_first {
                text.ascii(b" ");
            }
        }
    }
    if mentions_first {
        text.piece(phrase);
    }
    let tags = &vocab.tags;
    let home = community as usize % tags.len();
    text.ascii(b" ");
    text.tag(home, &tags[home]);
    if tags.len() > 1 && rng.chance(SECOND_TAG) {
        let other = (home + 1 + rng.below(tags.len() as u64 - 1) as usize) % tags.len();
        text.ascii(b" ");
        text.tag(other, &tags[other]);
    }
    if rng.chance(EMOJI) {
        text.ascii(b" ");
        text.piece(&vocab.emojis[rng.below(vocab.emojis.len() as u64) as usize]);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    Original,
    Retweet,
    Reply,
    Quote,
}
