//! The stream's rules: kept in step with the tracked terms, touching only the rules tagged
//! `tagflow:` (see the module notes of `x`).

use super::*;

#[derive(Debug, Deserialize)]
pub(super) struct RulesList {
    pub(super) data: Option<Vec<Rule>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Rule {
    /// A string per the spec; a number is accepted too (never through f64).
    #[serde(default)]
    pub(super) id: Value,
    pub(super) value: Option<String>,
    pub(super) tag: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RulesAnswer {
    pub(super) data: Option<Vec<Value>>,
    #[serde(default)]
    pub(super) errors: Vec<RuleProblem>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RuleProblem {
    pub(super) value: Option<String>,
    pub(super) title: Option<String>,
    pub(super) detail: Option<String>,
}

impl XSource {
    pub(super) fn rules_url(&self) -> String {
        format!("{}/2/tweets/search/stream/rules", self.base)
    }

    pub(super) async fn sync_rules(&mut self) -> Result<(), End> {
        let response = self.send(self.client.get(self.rules_url()), "rules").await?;
        let list: RulesList = self.json_of(response, "rules").await?;
        let tracked: BTreeSet<&str> = self.track.iter().map(String::as_str).collect();
        let mut present = BTreeSet::new();
        let mut stale = Vec::new();
        for rule in list.data.unwrap_or_default() {
            let ours = rule.tag.as_deref().is_some_and(|t| t.starts_with(RULE_TAG_PREFIX));
            if !ours {
                continue;
            }
            match rule.value.as_deref() {
                Some(v) if tracked.contains(v) => {
                    present.insert(v.to_string());
                }
                _ => stale.extend(id_text(&rule.id)),
            }
        }
        if !stale.is_empty() {
            let body = json!({ "delete": { "ids": stale } });
            let response = self.send(self.client.post(self.rules_url()).json(&body), "rules delete").await?;
            let answer: RulesAnswer = self.json_of(response, "rules delete").await?;
            log::info!("source x: deleted stale rules ids={stale:?} errors={}", answer.errors.len());
        }
        let missing: Vec<&String> = self.track.iter().filter(|t| !present.contains(t.as_str())).collect();
        if missing.is_empty() {
            log::info!("source x: rules in sync ({} tracked)", self.track.len());
            return Ok(());
        }
        let add: Vec<Value> =
            missing.iter().map(|t| json!({ "value": t, "tag": format!("{RULE_TAG_PREFIX}{t}") })).collect();
        let body = json!({ "add": add });
        let response = self.client.post(self.rules_url()).json(&body);
        let response = self.send_any(response, "rules add").await?;
        let code = response.status();
        if code == StatusCode::BAD_REQUEST || code == StatusCode::UNPROCESSABLE_ENTITY {
            // The platform refuses the rules themselves (syntax, length): retrying cannot help.
            let detail = problem_text(&http::read_prefix(response, 16 << 10).await);
            let reason = self.redact(format!("rules add refused (HTTP {code}): {detail}"));
            log::warn!("source x: {reason}; streaming with the rules that exist");
            self.status.set_error(reason);
            return Ok(());
        }
        if !code.is_success() {
            return Err(self.failure_of(response, "rules add").await);
        }
        let answer: RulesAnswer = self.json_of(response, "rules add").await?;
        let mut refused = Vec::new();
        for e in &answer.errors {
            if e.title.as_deref() == Some("DuplicateRule") {
                log::info!(
                    "source x: rule {:?} already exists (another tool's): counted as present",
                    e.value
                );
            } else {
                refused.push(format!(
                    "{:?}: {}",
                    e.value.as_deref().unwrap_or(""),
                    e.title.as_deref().or(e.detail.as_deref()).unwrap_or("refused")
                ));
            }
        }
        log::info!("source x: added rules created={} values={missing:?}", answer.data.map_or(0, |d| d.len()));
        if !refused.is_empty() {
            let reason = self.redact(format!("rules not created: {}", refused.join("; ")));
            log::warn!("source x: {reason}");
            self.status.set_error(reason);
        }
        Ok(())
    }

    // ---- requests ----
}
