//! A reader per hashtag: the stream of server-sent events, and the backfill of the tag timeline
//! after every (re)connect, turned into items for the committer.

use super::*;

/// What a reader hands the committer.
#[derive(Debug)]
pub(super) enum Msg {
    /// Statuses and deletes, in stream or page order. `live` ones advance the tag's newest cursor; a
    /// backfill advances it only once it has reached the newest post seen before ([`Msg::Caught`]).
    Items { idx: usize, items: Vec<Item>, live: bool },
    /// A backfill is complete down to what was seen before: `newest` is the newest id it found. `done`
    /// is answered once that, and everything handed over before it, is durable.
    Caught { idx: usize, newest: Option<String>, done: oneshot::Sender<()> },
    /// The accounts that boosted a post.
    Boosts { job: BoostJob, boosters: Vec<UserRef> },
}

#[derive(Debug)]
pub(super) enum Item {
    Post {
        post: Box<Post>,
        edit: bool,
        local_id: Option<String>,
        reblogs: u64,
    },
    /// A `delete` event: the instance-local id, to be translated to the post's uri.
    Delete {
        local_id: String,
    },
}

/// One hashtag's stream, reconnected on the published schedule until cancelled or refused.
pub(super) async fn read_tag(
    shared: Arc<Shared>,
    idx: usize,
    tx: mpsc::Sender<Msg>,
    cancel: CancellationToken,
) {
    let tag = shared.tag(idx).to_string();
    let mut backoff = Backoff::new();
    let mut first = true;
    loop {
        if !first {
            shared.status.reconnects.fetch_add(1, AtomicOrdering::Relaxed);
        }
        first = false;
        shared.set_state(idx, SourceState::Connecting);
        let verdict = match connection(&shared, idx, &tx, &cancel, &mut backoff).await {
            End::Cancelled => Verdict::Stop,
            End::Fatal(reason) => Verdict::Fail(reason),
            // The stream resets the schedule itself once it is healthy; a drop is only ever a
            // healthy stream's.
            End::Retry { failure, reason, stalled } => {
                Verdict::Retry { failure, reason, stalled, healthy: failure == Failure::Dropped }
            }
        };
        let shown = TagShown { shared: &shared, idx, tag: &tag };
        match settle(&format!("mastodon #{tag}"), &shown, &mut backoff, &cancel, verdict).await {
            Next::Again => {}
            Next::Stop => break,
            Next::Failed => return,
        }
    }
    shared.set_state(idx, SourceState::Stopped);
    log::info!("source mastodon: tag={tag} stopped");
}

/// One hashtag's stream as the source shows it: its state folded into the source's (the worst of its
/// streams), its errors prefixed with the tag.
struct TagShown<'a> {
    shared: &'a Shared,
    idx: usize,
    tag: &'a str,
}

impl Shown for TagShown<'_> {
    fn state(&self, state: SourceState) {
        self.shared.set_state(self.idx, state);
    }
    fn error(&self, message: &str) {
        self.shared.status.set_error(format!("#{}: {message}", self.tag));
    }
}

/// One connection: open the stream, backfill while the server holds our events, then read.
pub(super) async fn connection(
    shared: &Shared,
    idx: usize,
    tx: &mpsc::Sender<Msg>,
    cancel: &CancellationToken,
    backoff: &mut Backoff,
) -> End {
    let instance = match shared.instance(cancel).await {
        Ok(i) => i.clone(),
        Err(end) => return end,
    };
    let tag = shared.tag(idx);
    let mut url = join(&instance.streaming, &["api", "v1", "streaming", "hashtag"]);
    url.query_pairs_mut().append_pair("tag", tag);
    let request = shared.client.get(url).header(ACCEPT, "text/event-stream").send();
    let idle = shared.options.idle_timeout;
    // No total timeout on the stream (it never ends); the response head must come within the idle time.
    let response = tokio::select! {
        _ = cancel.cancelled() => return End::Cancelled,
        r = tokio::time::timeout(idle, request) => match r {
            Err(_) => return End::retry(Failure::Network, "stream: no response head in time"),
            Ok(Err(e)) => return End::retry(Failure::Network, format!("stream: {}", http::request_error(e))),
            Ok(Ok(r)) => r,
        },
    };
    let response = match shared.judge("stream", response) {
        Ok(r) if r.status() == StatusCode::OK => r,
        Ok(r) => return End::retry(Failure::Http, format!("stream: {}", r.status())),
        Err(end) => return end,
    };
    let is_sse = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("text/event-stream"));
    if !is_sse {
        return End::retry(Failure::Http, "stream: the streaming url did not answer with text/event-stream");
    }
    if let Err(end) = backfill(shared, idx, instance.domain.as_deref(), tx, cancel).await {
        return end;
    }
    shared.set_state(idx, SourceState::Streaming);
    log::info!("source mastodon: tag={tag} streaming");

    let domain = instance.domain.as_deref();
    let mut body = response.bytes_stream();
    let mut parser = SseParser::new(shared.options.max_event_bytes);
    let opened = Instant::now();
    let mut events = 0u64;
    let mut healthy = false;
    let mut idle_at = Instant::now() + idle;
    loop {
        let chunk = tokio::select! {
            biased;
            _ = cancel.cancelled() => return End::Cancelled,
            _ = tokio::time::sleep_until(idle_at) => {
                return End::Retry {
                    failure: Failure::Network,
                    reason: format!("stream stalled: no data for {:.1}s", idle.as_secs_f64()),
                    stalled: true,
                };
            }
            chunk = body.next() => chunk,
        };
        let bytes = match chunk {
            None if events > 0 || opened.elapsed() >= HEALTHY_AFTER => {
                return End::retry(Failure::Dropped, "the server closed the stream")
            }
            // Closing at once, again and again, is a broken server: do not reconnect in a tight loop.
            None => return End::retry(Failure::Network, "the server closed the stream without an event"),
            Some(Err(e)) => {
                return End::retry(Failure::Network, format!("stream read: {}", http::request_error(e)))
            }
            Some(Ok(bytes)) => bytes,
        };
        idle_at = Instant::now() + idle;
        let (parsed, overflow) = match parser.push(&bytes) {
            Ok(parsed) => (parsed, None),
            Err(mut e) => (std::mem::take(&mut e.completed), Some(e)),
        };
        events += parsed.len() as u64;
        let items = items_of(shared, &parsed, domain);
        if !items.is_empty() && tx.send(Msg::Items { idx, items, live: true }).await.is_err() {
            return End::Fatal("the committer stopped".into());
        }
        if let Some(e) = overflow {
            shared.skip("an over-long stream line", &e);
            return End::retry(Failure::Network, format!("stream: {e}"));
        }
        if !healthy && (events > 0 || opened.elapsed() >= HEALTHY_AFTER) {
            healthy = true;
            backoff.reset();
        }
    }
}

/// The items of parsed events; undecodable payloads are counted and skipped, unknown events ignored.
pub(super) fn items_of(shared: &Shared, events: &[SseEvent], domain: Option<&str>) -> Vec<Item> {
    let mut items = Vec::new();
    for event in events {
        match decode_event(&event.event, event.data.as_bytes(), domain) {
            Ok(records) => {
                for record in records {
                    match record {
                        Record::Post(post) | Record::Edit(post) => {
                            let edit = event.event == "status.update";
                            let meta = Meta::of(event.data.as_bytes());
                            items.push(Item::Post {
                                post: Box::new(post),
                                edit,
                                local_id: meta.id,
                                reblogs: meta.reblogs,
                            });
                        }
                        Record::Delete { id, .. } => items.push(Item::Delete { local_id: id }),
                        Record::Profile(_) | Record::Disconnect { .. } | Record::Ignored => {}
                    }
                }
            }
            Err(e) => shared.skip(&format!("a {:?} event", event.event), &e),
        }
    }
    items
}

/// Walks the tag timeline from the newest page back to the newest post seen before (or an empty page,
/// or the page budget), handing each page to the committer. The tag's cursor moves only once the walk
/// is complete, so that an interrupted backfill is redone rather than leaving a gap.
pub(super) async fn backfill(
    shared: &Shared,
    idx: usize,
    domain: Option<&str>,
    tx: &mpsc::Sender<Msg>,
    cancel: &CancellationToken,
) -> Result<(), End> {
    let tag = shared.tag(idx);
    let seen = match shared.store.cursor(&shared.newest_key(idx)) {
        Ok(v) => v.and_then(|v| String::from_utf8(v).ok()),
        Err(e) => return Err(End::Fatal(format!("store: {e}"))),
    };
    let mut url = join(&shared.api, &["api", "v1", "timelines", "tag", tag]);
    url.query_pairs_mut().append_pair("limit", &PAGE_LIMIT.to_string());
    let mut top: Option<String> = None;
    let mut pages = 0usize;
    let mut fetched = 0usize;
    loop {
        let response = shared.rest_get(url.clone(), cancel).await?;
        if !response.status().is_success() {
            return Err(End::retry(
                Failure::Http,
                format!("backfill: GET {}: {}", url.path(), response.status()),
            ));
        }
        let next = link_next(response.headers(), &shared.api);
        let body = http::read_body(response, MAX_BODY, REST_TIMEOUT)
            .await
            .map_err(|e| End::retry(Failure::Network, e))?;
        pages += 1;
        let statuses: Vec<&RawValue> = match serde_json::from_slice(&body) {
            Ok(s) => s,
            Err(e) => {
                shared.skip("a tag timeline page", &e);
                break;
            }
        };
        if statuses.is_empty() {
            break;
        }
        let mut reached = false;
        let mut items = Vec::with_capacity(statuses.len());
        for raw in statuses {
            let meta = Meta::of(raw.get().as_bytes());
            if let (Some(id), Some(seen)) = (&meta.id, &seen) {
                if cmp_ids(id, seen) != Ordering::Greater {
                    // Pages are newest first: everything from here on was seen before.
                    reached = true;
                    continue;
                }
            }
            match decode_status(raw.get().as_bytes(), domain) {
                Ok(records) => {
                    for record in records {
                        if let Record::Post(post) = record {
                            items.push(Item::Post {
                                post: Box::new(post),
                                edit: false,
                                local_id: meta.id.clone(),
                                reblogs: meta.reblogs,
                            });
                        }
                    }
                    if let Some(id) = meta.id {
                        if top.as_deref().is_none_or(|t| cmp_ids(&id, t) == Ordering::Greater) {
                            top = Some(id);
                        }
                    }
                }
                Err(e) => shared.skip("a status of the tag timeline", &e),
            }
        }
        fetched += items.len();
        if !items.is_empty() && tx.send(Msg::Items { idx, items, live: false }).await.is_err() {
            return Err(End::Fatal("the committer stopped".into()));
        }
        match next {
            Some(n) if !reached && pages < shared.options.max_backfill_pages => url = n,
            Some(_) if !reached => {
                log::warn!(
                    "source mastodon: tag={tag} backfill stopped after {pages} pages; older posts are not fetched"
                );
                break;
            }
            _ => break,
        }
    }
    log::info!("source mastodon: tag={tag} backfill fetched={fetched} pages={pages}");
    // Streaming starts once the backfill is durable: `/status` says `streaming` only when caught up.
    let (done, committed) = oneshot::channel();
    if tx.send(Msg::Caught { idx, newest: top, done }).await.is_err() {
        return Err(End::Fatal("the committer stopped".into()));
    }
    tokio::select! {
        _ = cancel.cancelled() => Err(End::Cancelled),
        r = committed => r.map_err(|_| End::Fatal("the committer stopped".into())),
    }
}
