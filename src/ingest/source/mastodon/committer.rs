//! The committer: the only task that builds mutations and commits them, with the cursors, the
//! id -> uri aliases and the boosters of each post that must stay consistent with the graph.

use super::*;

/// The fields of a status the decoder does not keep: its instance-local id and boost count.
#[derive(Debug, Default)]
pub(super) struct Meta {
    pub(super) id: Option<String>,
    pub(super) reblogs: u64,
}

impl Meta {
    pub(super) fn of(status: &[u8]) -> Meta {
        /// Mastodon sends ids as strings; forks have sent numbers. Anything else is ignored.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Loose {
            Text(String),
            Number(u64),
            Other(serde::de::IgnoredAny),
        }
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            id: Option<Loose>,
            #[serde(default)]
            reblogs_count: Option<Loose>,
        }
        let Ok(raw) = serde_json::from_slice::<Raw>(status) else { return Meta::default() };
        let id = match raw.id {
            Some(Loose::Text(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(Loose::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let reblogs = match raw.reblogs_count {
            Some(Loose::Number(n)) => n,
            Some(Loose::Text(s)) => s.trim().parse().unwrap_or(0),
            _ => 0,
        };
        Meta { id, reblogs }
    }
}

// ------------------------------------------------------------------------------------ committer

/// An alias's state: the uri of a local id, or that its post was retracted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Alias {
    Live(String),
    Deleted,
}

/// The single writer of the source (see the module doc).
pub(super) struct Committer {
    pub(super) shared: Arc<Shared>,
    pub(super) newest: Vec<Option<String>>,
    pub(super) newest_dirty: Vec<bool>,
    pub(super) aliases: HashMap<String, Alias>,
    pub(super) boosters: HashMap<String, Vec<String>>,
    pub(super) pending: Vec<Mutation>,
    pub(super) jobs: Vec<BoostJob>,
    /// Backfills waiting for their last page to be durable.
    pub(super) caught: Vec<oneshot::Sender<()>>,
    pub(super) boost_tx: mpsc::Sender<BoostJob>,
}

impl Committer {
    pub(super) fn new(shared: Arc<Shared>, boost_tx: mpsc::Sender<BoostJob>) -> Committer {
        let tags = shared.options.tags.len();
        let newest = (0..tags)
            .map(|idx| {
                shared
                    .store
                    .cursor(&shared.newest_key(idx))
                    .ok()
                    .flatten()
                    .and_then(|v| String::from_utf8(v).ok())
            })
            .collect();
        Committer {
            shared,
            newest,
            newest_dirty: vec![false; tags],
            aliases: HashMap::new(),
            boosters: HashMap::new(),
            pending: Vec::new(),
            jobs: Vec::new(),
            caught: Vec::new(),
            boost_tx,
        }
    }

    /// Commits whatever has arrived, as soon as it arrives: one commit per stream chunk when the
    /// stream is calm, larger group commits when messages queue up behind a commit. Returns once every
    /// reader and the fetcher are gone and the last batch is durable.
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        while let Some(msg) = rx.recv().await {
            self.take(msg);
            while self.pending.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(msg) => self.take(msg),
                    Err(_) => break,
                }
            }
            if !self.flush().await {
                return;
            }
        }
        self.flush().await;
    }

    pub(super) fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Items { idx, items, live } => {
                for item in items {
                    match item {
                        Item::Post { post, edit, local_id, reblogs } => {
                            self.post(idx, *post, edit, local_id, reblogs, live)
                        }
                        Item::Delete { local_id } => self.delete(&local_id),
                    }
                }
            }
            Msg::Caught { idx, newest, done } => {
                if let Some(id) = newest {
                    self.advance(idx, id);
                }
                self.caught.push(done);
            }
            Msg::Boosts { job, boosters } => self.boosts(job, boosters),
        }
    }

    pub(super) fn post(
        &mut self,
        idx: usize,
        post: Post,
        edit: bool,
        local_id: Option<String>,
        reblogs: u64,
        live: bool,
    ) {
        if let Some(id) = local_id {
            let alias = self.alias(&id);
            match &alias {
                // A late copy of a deleted post: the store keeps it deleted; keep the alias so.
                Some(Alias::Deleted) => {}
                Some(Alias::Live(uri)) if *uri == post.id => {}
                _ => {
                    self.pending.push(Mutation::SetCursor {
                        name: self.shared.alias_key(&id),
                        value: post.id.clone().into_bytes(),
                    });
                    self.remember(id.clone(), Alias::Live(post.id.clone()));
                }
            }
            if reblogs > 0 && alias != Some(Alias::Deleted) {
                self.jobs.push(BoostJob {
                    local_id: id.clone(),
                    uri: post.id.clone(),
                    author: post.author.clone(),
                    tags: post.tags.clone(),
                    reblogs,
                });
            }
            if live {
                self.advance(idx, id);
            }
        }
        self.pending.push(if edit { Mutation::EditPost(post) } else { Mutation::ApplyPost(post) });
    }

    /// Translates a `delete` (an instance-local id) to its post and the boosts of it. Ids never seen
    /// (a post from before tagflow watched, or of another tag) change nothing.
    pub(super) fn delete(&mut self, local_id: &str) {
        match self.alias(local_id) {
            Some(Alias::Live(uri)) => {
                self.pending.push(Mutation::RetractPost { platform: Platform::Mastodon, id: uri.clone() });
                for booster in self.boosters_of(&uri) {
                    let id = boost_id(&uri, &booster);
                    self.pending.push(Mutation::RetractPost { platform: Platform::Mastodon, id });
                }
                self.pending.push(Mutation::SetCursor {
                    name: self.shared.alias_key(local_id),
                    value: format!("{DELETED_PREFIX}{uri}").into_bytes(),
                });
                self.remember(local_id.to_string(), Alias::Deleted);
            }
            Some(Alias::Deleted) => {}
            None => log::debug!("source mastodon: delete of status id={local_id} never seen"),
        }
    }

    /// Each booster becomes a repost of the post's author, as a post of its own whose id is stable
    /// (`<uri>#reblogged_by/<booster key>`), so that fetching the boosters again counts nothing twice.
    pub(super) fn boosts(&mut self, job: BoostJob, boosters: Vec<UserRef>) {
        if self.alias(&job.local_id) == Some(Alias::Deleted) {
            return;
        }
        let mut known = self.boosters_of(&job.uri);
        let before = known.len();
        for booster in boosters {
            // A boost of one's own post is a self-loop: nothing to record.
            if booster.key == job.author.key {
                continue;
            }
            let mut post = Post::new(Platform::Mastodon, boost_id(&job.uri, &booster.key), booster.clone());
            post.interact(Kind::Repost, &job.author.key);
            post.see_user(job.author.clone());
            post.tags.clone_from(&job.tags);
            post.refs.push(job.uri.clone());
            self.pending.push(Mutation::ApplyPost(post));
            if !known.contains(&booster.key) {
                known.push(booster.key);
            }
        }
        if known.len() != before {
            self.pending.push(Mutation::SetCursor {
                name: boosts_key(&job.uri),
                value: known.join("\n").into_bytes(),
            });
        }
        if self.boosters.len() >= MAX_CACHE {
            self.boosters.clear();
        }
        self.boosters.insert(job.uri, known);
    }

    pub(super) fn advance(&mut self, idx: usize, id: String) {
        let (Some(newest), Some(dirty)) = (self.newest.get_mut(idx), self.newest_dirty.get_mut(idx)) else {
            return;
        };
        if newest.as_deref().is_none_or(|n| cmp_ids(&id, n) == Ordering::Greater) {
            *newest = Some(id);
            *dirty = true;
        }
    }

    /// A local id's alias: from memory, else from the store.
    pub(super) fn alias(&mut self, local_id: &str) -> Option<Alias> {
        if let Some(a) = self.aliases.get(local_id) {
            return Some(a.clone());
        }
        let stored = match self.shared.store.cursor(&self.shared.alias_key(local_id)) {
            Ok(v) => v?,
            Err(e) => {
                log::warn!("source mastodon: reading alias id={local_id}: {e}");
                return None;
            }
        };
        let value = String::from_utf8(stored).ok()?;
        let alias = if value.starts_with(DELETED_PREFIX) { Alias::Deleted } else { Alias::Live(value) };
        self.remember(local_id.to_string(), alias.clone());
        Some(alias)
    }

    pub(super) fn remember(&mut self, local_id: String, alias: Alias) {
        if self.aliases.len() >= MAX_CACHE {
            self.aliases.clear();
        }
        self.aliases.insert(local_id, alias);
    }

    pub(super) fn boosters_of(&mut self, uri: &str) -> Vec<String> {
        if let Some(b) = self.boosters.get(uri) {
            return b.clone();
        }
        match self.shared.store.cursor(&boosts_key(uri)) {
            Ok(Some(v)) => {
                String::from_utf8_lossy(&v).lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
            }
            Ok(None) => Vec::new(),
            Err(e) => {
                log::warn!("source mastodon: reading boosters of {uri}: {e}");
                Vec::new()
            }
        }
    }

    /// Commits the pending mutations with the cursors that moved; false if the store failed (the
    /// source then stops: nothing it holds could be made durable).
    pub(super) async fn flush(&mut self) -> bool {
        for (idx, dirty) in self.newest_dirty.iter_mut().enumerate() {
            if std::mem::take(dirty) {
                if let Some(id) = &self.newest[idx] {
                    self.pending.push(Mutation::SetCursor {
                        name: self.shared.newest_key(idx),
                        value: id.clone().into_bytes(),
                    });
                }
            }
        }
        if self.pending.is_empty() {
            self.caught.drain(..).for_each(|done| {
                let _ = done.send(());
            });
            return true;
        }
        let mutations = std::mem::take(&mut self.pending);
        match commit(&self.shared.store, &self.shared.status, mutations).await {
            Ok(_) => {
                self.caught.drain(..).for_each(|done| {
                    let _ = done.send(());
                });
                for job in self.jobs.drain(..) {
                    if let Err(e) = self.boost_tx.try_send(job) {
                        log::debug!("source mastodon: boost fetch not queued: {e}");
                    }
                }
                true
            }
            Err(e) => {
                let reason = format!("store: {e}");
                log::error!("source mastodon: commit failed: {reason}");
                self.shared.status.set_error(reason.clone());
                let tags = self.shared.options.tags.len();
                for idx in 0..tags {
                    self.shared.set_state(idx, SourceState::Failed { reason: reason.clone() });
                }
                false
            }
        }
    }
}

pub(super) fn boost_id(uri: &str, booster_key: &str) -> String {
    format!("{uri}#reblogged_by/{booster_key}")
}

pub(super) fn boosts_key(uri: &str) -> String {
    format!("mastodon:boosts:{uri}")
}

// ------------------------------------------------------------------------------------ boosts
