//! Backfill: the gap of an outage filled from recent search, page after page, the cursor moved only
//! once the last page is in (see the module notes of `x`).

use super::*;

#[derive(Debug, Deserialize)]
pub(super) struct Page {
    pub(super) meta: Option<PageMeta>,
}

#[derive(Debug, Deserialize)]
pub(super) struct PageMeta {
    pub(super) next_token: Option<String>,
}

impl XSource {
    /// Pages through recent search from `since`; the cursor moves only once the last page is in.
    pub(super) async fn backfill(&mut self, since: u128) -> Result<(), End> {
        let url = format!("{}/2/tweets/search/recent", self.base);
        let query = search_query(&self.track);
        let since_text = since.to_string();
        let mut next_token: Option<String> = None;
        let mut pages = 0usize;
        let posts_before = self.status.posts.load(Ordering::Relaxed);
        loop {
            let mut params: Vec<(&str, &str)> = vec![
                ("query", &query),
                ("since_id", &since_text),
                ("max_results", "100"),
                ("expansions", EXPANSIONS),
                ("tweet.fields", TWEET_FIELDS),
                ("user.fields", USER_FIELDS),
            ];
            if let Some(t) = &next_token {
                params.push(("next_token", t));
            }
            let response = self.send_any(self.client.get(&url).query(&params), "search").await?;
            let code = response.status();
            if !code.is_success() {
                let failure = self.failure_of(response, "search").await;
                if code.is_client_error() && code != StatusCode::TOO_MANY_REQUESTS {
                    // Asking again cannot help: no search access on this tier (401/403), or a cursor
                    // older than the 7 days recent search covers (400).
                    self.backfill_since = None;
                    if matches!(code, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                        self.backfill_enabled = false;
                    }
                }
                return Err(failure);
            }
            let body = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(End::Cancelled),
                b = http::read_body(response, MAX_PAGE_BYTES, REQUEST_TIMEOUT) => b,
            };
            let body = body.map_err(|reason| End::retry(Failure::Network, format!("search: {reason}")))?;
            match x_v2::decode(&body) {
                Ok(records) => records
                    .into_iter()
                    .filter(|r| !matches!(r, Record::Disconnect { .. }))
                    .for_each(|r| self.push(r)),
                Err(e) => {
                    self.skip(&format!("search: malformed page: {e}"), &body);
                    return Err(End::retry(Failure::Http, format!("search: malformed page: {e}")));
                }
            }
            self.commit_pending(false).await?;
            pages += 1;
            let token = serde_json::from_slice::<Page>(&body).ok().and_then(|p| p.meta?.next_token);
            match token {
                Some(t) if pages < MAX_BACKFILL_PAGES && next_token.as_deref() != Some(t.as_str()) => {
                    next_token = Some(t)
                }
                Some(_) => {
                    log::warn!(
                        "source x: backfill stopped after {pages} pages (limit or repeated next_token)"
                    );
                    break;
                }
                None => break,
            }
        }
        self.commit_pending(true).await?;
        self.backfill_since = None;
        let posts = self.status.posts.load(Ordering::Relaxed) - posts_before;
        log::info!(
            "source x: backfilled since_id={since} pages={pages} new_posts={posts} cursor={:?}",
            self.saved
        );
        Ok(())
    }

    // ---- reporting ----
}
