//! The joined plan: a group's events joined to every (entity, cutoff) row of the spine, kept
//! where `keep` holds (before the cutoff for features, inside the horizon for the label),
//! ordered by time and aggregated per row. Min, Max and DistinctCount always take this path;
//! [`Plan::Joined`](super::Plan::Joined) takes it for everything.

use super::*;

/// One row per (entity, cutoff) with `aggs` over the events `keep` selects.
pub(super) fn grouped(
    spine: &LazyFrame,
    events: LazyFrame,
    key: &str,
    keep: Expr,
    aggs: Vec<Expr>,
) -> LazyFrame {
    spine
        .clone()
        .join(
            events,
            [col(key)],
            [col(key)],
            JoinArgs::new(JoinType::Inner),
        )
        .filter(keep)
        .sort(
            [TS],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .group_by([col(key), col(CUTOFF)])
        .agg(aggs)
}

/// `part`'s columns added to the rows of `table` (null where `part` has no row).
pub(super) fn add_to_rows(table: LazyFrame, part: LazyFrame, key: &str) -> LazyFrame {
    table.join(
        part,
        [col(key), col(CUTOFF)],
        [col(key), col(CUTOFF)],
        JoinArgs::new(JoinType::Left),
    )
}
