//! The demo's people: display names and usernames as pure functions of a user's id, formatted
//! once per line.

use super::json::{decimal_len, format_decimal, Decimal};
use super::MAX_USERNAME;
use crate::rng::mix64;

/// Display first names and the ASCII stems of the usernames derived from them.
pub(super) const FIRST_NAMES: [(&str, &str); 32] = [
    ("Alex", "alex"),
    ("María", "maria"),
    ("José", "jose"),
    ("Wei", "wei"),
    ("Aisha", "aisha"),
    ("Lukas", "lukas"),
    ("Sofia", "sofia"),
    ("Kenji", "kenji"),
    ("Chidi", "chidi"),
    ("Priya", "priya"),
    ("Mateo", "mateo"),
    ("Zoë", "zoe"),
    ("Ingrid", "ingrid"),
    ("Søren", "soren"),
    ("Fatima", "fatima"),
    ("Diego", "diego"),
    ("Hana", "hana"),
    ("Omar", "omar"),
    ("Léa", "lea"),
    ("Nikolai", "nikolai"),
    ("Amara", "amara"),
    ("Yuki", "yuki"),
    ("Carlos", "carlos"),
    ("Emma", "emma"),
    ("Ravi", "ravi"),
    ("Chloé", "chloe"),
    ("Tomás", "tomas"),
    ("Ayşe", "ayse"),
    ("Kwame", "kwame"),
    ("Freya", "freya"),
    ("Łukasz", "lukasz"),
    ("Nadia", "nadia"),
];

pub(super) const LAST_NAMES: [&str; 32] = [
    "Smith",
    "García",
    "Müller",
    "Chen",
    "Okafor",
    "Kowalski",
    "Rossi",
    "Tanaka",
    "Silva",
    "Patel",
    "Nguyen",
    "Johansson",
    "O'Brien",
    "Dubois",
    "Kim",
    "Haddad",
    "Novak",
    "Fernández",
    "Ivanova",
    "Mensah",
    "Larsen",
    "Costa",
    "Yılmaz",
    "Schmidt",
    "Hughes",
    "Moreau",
    "Sato",
    "Rahman",
    "López",
    "Andersen",
    "Park",
    "Wright",
];

/// Seed-independent hash of a user id, for names.
pub(super) fn name_hash(user: u32) -> u64 {
    mix64(u64::from(user) ^ 0x6e61_6d65_5f73_616c)
}

/// The username stems of [`FIRST_NAMES`], zero-padded to 8 bytes, with their lengths.
pub(super) const STEMS: [([u8; 8], usize); FIRST_NAMES.len()] = {
    let mut stems = [([0u8; 8], 0); FIRST_NAMES.len()];
    let mut i = 0;
    while i < FIRST_NAMES.len() {
        let stem = FIRST_NAMES[i].1.as_bytes();
        assert!(stem.len() <= 8, "username stems fit 8 bytes");
        let mut j = 0;
        while j < stem.len() {
            stems[i].0[j] = stem[j];
            j += 1;
        }
        stems[i].1 = stem.len();
        i += 1;
    }
    stems
};

/// Writes the display name of `user`, JSON-escaped if `json`. Only the nickname template holds
/// characters to escape (a test checks that the name tables hold none).
pub(super) fn write_display_name(out: &mut Vec<u8>, user: u32, json: bool) {
    let h = name_hash(user);
    let first = FIRST_NAMES[(h % FIRST_NAMES.len() as u64) as usize].0.as_bytes();
    let last = LAST_NAMES[((h >> 16) % LAST_NAMES.len() as u64) as usize].as_bytes();
    let (prefix, middle, suffix): (&[u8], &[u8], &[u8]) = match (h >> 40) % 16 {
        0..=9 => (b"", b" ", b""),
        10 | 11 => (b"", b"", b""),
        12 => (b"Dr. ", b" ", b""),
        13 if json => (b"", b" \\\"Codes\\\" ", b""),
        13 => (b"", b" \"Codes\" ", b""),
        14 => (b"", b" ", b" (they/them)"),
        _ => (b"", b" ", " 🦀".as_bytes()),
    };
    out.extend_from_slice(prefix);
    out.extend_from_slice(first);
    if !middle.is_empty() {
        out.extend_from_slice(middle);
        out.extend_from_slice(last);
    }
    out.extend_from_slice(suffix);
}
/// A user's id and username, formatted once per line (a mentioned user appears five times in one).
#[derive(Debug, Clone, Copy)]
pub(super) struct UserText {
    pub(super) id: u32,
    pub(super) digits: Decimal,
    pub(super) username: [u8; 24],
    pub(super) username_len: usize,
}

impl UserText {
    pub(super) fn new(id: u32) -> UserText {
        let mut username = [0u8; 24];
        let (stem, stem_len) = STEMS[(name_hash(id) % FIRST_NAMES.len() as u64) as usize];
        let digits = decimal_len(u64::from(id));
        let keep = stem_len.min(MAX_USERNAME - digits);
        username[..8].copy_from_slice(&stem);
        format_decimal(&mut username[keep..], u64::from(id), digits);
        UserText { id, digits: Decimal::new(u64::from(id)), username, username_len: keep + digits }
    }

    pub(super) fn push_id(&self, out: &mut Vec<u8>) {
        self.digits.push(out);
    }

    /// Fixed-size copy, then truncate (see `push_u64`).
    pub(super) fn push_username(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&self.username);
        out.truncate(at + self.username_len);
    }
}

/// The [`UserText`]s of the current line; a handful, so a linear search.
#[derive(Debug, Clone, Default)]
pub(super) struct UserTexts(pub(super) Vec<UserText>);

impl UserTexts {
    pub(super) fn get(&mut self, id: u32) -> UserText {
        if let Some(user) = self.0.iter().find(|u| u.id == id) {
            return *user;
        }
        let user = UserText::new(id);
        self.0.push(user);
        user
    }
}
