//! The namespace's daily budget (pure): what every ContentPipeline of the namespace spent
//! today (UTC) plus what the runs still going may spend, against the day's limits. A run
//! starts only when that leaves room, and gets what is left as its own budget, so that the
//! day's spend cannot exceed the limit even when several pipelines run at once.

use leitwerk_crds::ContentPipeline;
use leitwerk_crds::content_pipeline::{ContentRun, DailySpend};

/// The fewest tokens a run is started with: an outline and one short section.
pub const MIN_RUN_TOKENS: i64 = 500;

/// What the namespace may still spend today.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Allowance {
    /// Tokens left, when the day has a token limit.
    pub tokens: Option<i64>,
    /// Money left, when the day has a cost limit.
    pub cost: Option<f64>,
    /// Tokens spent or reserved today.
    pub used_tokens: i64,
    /// Money spent or reserved today.
    pub used_cost: f64,
}

/// The day (UTC) of an RFC 3339 time.
pub fn day_of(time: &str) -> &str {
    time.get(..10).unwrap_or(time)
}

/// The allowance of `today` under `pipeline`'s daily limits, counting every pipeline of the
/// namespace (`pipeline` among them); `None` when it sets no daily limit.
pub fn allowance(
    pipeline: &ContentPipeline,
    namespace: &[ContentPipeline],
    today: &str,
) -> Option<Allowance> {
    let budget = &pipeline.spec.budget;
    if budget.max_tokens_per_day.is_none() && budget.max_cost_per_day.is_none() {
        return None;
    }
    let (mut tokens, mut cost) = (0i64, 0.0f64);
    for p in namespace {
        let Some(status) = &p.status else { continue };
        if let Some(spent) = status.spent.as_ref().filter(|s| s.day == today) {
            tokens += spent.tokens;
            cost += spent.cost;
        }
        // A run still going spends up to what it was granted.
        if let Some(run) = status.run.as_ref().filter(|r| {
            r.result.is_none() && r.started_at.as_deref().is_some_and(|t| day_of(t) == today)
        }) {
            tokens += run.granted_tokens.unwrap_or(p.spec.budget.max_tokens);
            cost += run
                .granted_cost
                .or(p.spec.budget.max_cost)
                .unwrap_or_default();
        }
    }
    Some(Allowance {
        tokens: budget.max_tokens_per_day.map(|m| (m - tokens).max(0)),
        cost: budget.max_cost_per_day.map(|m| (m - cost).max(0.0)),
        used_tokens: tokens,
        used_cost: cost,
    })
}

/// The budget a new run gets: the spec's, cut to what the day has left; `Err` with the reason
/// when too little is left to start one.
pub fn grant(
    pipeline: &ContentPipeline,
    allowance: Option<Allowance>,
) -> Result<(i64, Option<f64>), String> {
    let budget = &pipeline.spec.budget;
    let Some(left) = allowance else {
        return Ok((budget.max_tokens, budget.max_cost));
    };
    let tokens = left
        .tokens
        .map_or(budget.max_tokens, |t| t.min(budget.max_tokens));
    let cost = match (budget.max_cost, left.cost) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if tokens < MIN_RUN_TOKENS || cost.is_some_and(|c| c <= 0.0) {
        return Err(format!(
            "the namespace's daily budget is used up: {} tokens and {:.4} {} spent or reserved today (limits: maxTokensPerDay {}, maxCostPerDay {}); the next run starts after 00:00 UTC",
            left.used_tokens,
            left.used_cost,
            budget.currency,
            budget
                .max_tokens_per_day
                .map_or("none".into(), |t| t.to_string()),
            budget
                .max_cost_per_day
                .map_or("none".into(), |c| c.to_string()),
        ));
    }
    Ok((tokens, cost))
}

/// `spent` with `run`'s result counted once, on the day the run started.
pub fn count(spent: Option<DailySpend>, run: &ContentRun) -> Option<DailySpend> {
    let (Some(result), Some(started)) = (&run.result, &run.started_at) else {
        return spent;
    };
    let day = day_of(started).to_string();
    // A run that started before the day already recorded was reserved on its own day.
    if spent.as_ref().is_some_and(|s| s.day > day) {
        return spent;
    }
    let mut spent = spent
        .filter(|s| s.day == day)
        .unwrap_or_else(|| DailySpend {
            day,
            ..DailySpend::default()
        });
    let key = if run.attempt > 0 {
        format!("{}#{}", run.id, run.attempt)
    } else {
        run.id.clone()
    };
    if !spent.runs.contains(&key) {
        spent.tokens += result.tokens;
        spent.cost = ((spent.cost + result.cost) * 1e6).round() / 1e6;
        spent.runs.push(key);
        if spent.runs.len() > 100 {
            spent.runs.remove(0);
        }
    }
    Some(spent)
}
