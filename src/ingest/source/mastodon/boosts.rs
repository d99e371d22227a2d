//! The boost fetcher: `reblogged_by` for posts with boosts, within the rate budget, the boosters
//! handed to the committer.

use super::*;

/// A post whose boosters should be asked for.
#[derive(Debug, Clone)]
pub(super) struct BoostJob {
    pub(super) local_id: String,
    pub(super) uri: String,
    pub(super) author: UserRef,
    pub(super) tags: Vec<String>,
    pub(super) reblogs: u64,
}

/// Fetches `reblogged_by` for the posts the committer queues, within the per-minute budget and the
/// shared rate limit. A post is asked again in this run only when its boost count grew.
pub(super) async fn fetch_boosts(
    shared: Arc<Shared>,
    mut jobs: mpsc::Receiver<BoostJob>,
    tx: mpsc::Sender<Msg>,
    cancel: CancellationToken,
) {
    let budget = RateLimiter::new(shared.options.boost_fetches_per_minute, Duration::from_secs(60));
    let mut asked: HashMap<String, u64> = HashMap::new();
    loop {
        let job = tokio::select! {
            _ = cancel.cancelled() => return,
            job = jobs.recv() => match job {
                Some(job) => job,
                None => return,
            },
        };
        if asked.get(&job.uri).is_some_and(|&n| n >= job.reblogs) {
            continue;
        }
        // A 429 blocks the shared limiter until the reset; try the same post again after it.
        for _attempt in 0..3 {
            match boosters(&shared, &budget, &job, &cancel).await {
                Ok(users) => {
                    if asked.len() >= MAX_CACHE {
                        asked.clear();
                    }
                    asked.insert(job.uri.clone(), job.reblogs);
                    if tx.send(Msg::Boosts { job, boosters: users }).await.is_err() {
                        return;
                    }
                    break;
                }
                Err(End::Cancelled) => return,
                Err(End::Retry { failure: Failure::RateLimited { .. }, .. }) => continue,
                Err(End::Retry { reason, .. } | End::Fatal(reason)) => {
                    log::warn!("source mastodon: boosters of {} not fetched: {reason}", job.uri);
                    break;
                }
            }
        }
    }
}

/// Every page of `GET /api/v1/statuses/:id/reblogged_by`, up to [`MAX_BOOST_PAGES`].
pub(super) async fn boosters(
    shared: &Shared,
    budget: &RateLimiter,
    job: &BoostJob,
    cancel: &CancellationToken,
) -> Result<Vec<UserRef>, End> {
    let domain = shared.instance.get().and_then(|i| i.domain.clone());
    let mut url = join(&shared.api, &["api", "v1", "statuses", &job.local_id, "reblogged_by"]);
    url.query_pairs_mut().append_pair("limit", &ACCOUNTS_LIMIT.to_string());
    let mut users = Vec::new();
    for _ in 0..MAX_BOOST_PAGES {
        if !budget.acquire(cancel).await {
            return Err(End::Cancelled);
        }
        let response = shared.rest_get(url.clone(), cancel).await?;
        if response.status() == StatusCode::NOT_FOUND {
            // Deleted (or made private) since: its delete, if we may see it, comes on the stream.
            break;
        }
        if !response.status().is_success() {
            return Err(End::retry(Failure::Http, format!("GET {}: {}", url.path(), response.status())));
        }
        let next = link_next(response.headers(), &shared.api);
        let body = http::read_body(response, MAX_BODY, REST_TIMEOUT)
            .await
            .map_err(|e| End::retry(Failure::Network, e))?;
        match decode_accounts(&body, domain.as_deref()) {
            Ok(page) if page.is_empty() => break,
            Ok(page) => users.extend(page),
            Err(e) => {
                shared.skip("a reblogged_by page", &e);
                break;
            }
        }
        match next {
            Some(n) => url = n,
            None => break,
        }
    }
    Ok(users)
}

// ------------------------------------------------------------------------------------ helpers
