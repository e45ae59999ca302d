//! Windowed aggregations from running totals.
//!
//! Joining every event to every (entity, cutoff) row it precedes and grouping again costs
//! events × cutoffs rows. Count, Sum, Mean and Last need less: each event carries its
//! entity's running totals up to and including it (rows, the sum and the count of non-null
//! values of each summed column), and an as-of join finds, for every (entity, cutoff) row,
//! the entity's last event strictly before a point in time. The count in `[cutoff − w,
//! cutoff)` is then the running count as of the cutoff minus the one as of `cutoff − w`; a
//! sum likewise; a mean is a windowed sum over a windowed count; a last value is the value
//! of the event found as of the cutoff, if that event is inside the window. Each lookup is
//! one as-of join, linear in events plus table rows.
//!
//! Ties (several events of one entity at the same millisecond) are kept in file order, and the
//! as-of join finds the last of them, so the running totals include every tied event.

use std::collections::BTreeSet;

use super::*;

/// Whether an aggregation can be computed from running totals.
pub(super) fn by_running_totals(agg: Aggregation) -> bool {
    matches!(
        agg,
        Aggregation::Count
            | Aggregation::Sum
            | Aggregation::Mean
            | Aggregation::Last
            | Aggregation::Static
    )
}

/// The running totals of one group of events (one source and filter) and the points in time,
/// relative to the cutoff, at which they are looked up.
pub(super) struct RunningTotals {
    /// Prefix of the helper columns, unique per group.
    prefix: String,
    /// Columns summed (for Sum and Mean).
    sums: BTreeSet<String>,
    /// Columns whose last value is read (for Last and Static).
    lasts: BTreeSet<String>,
    /// Offsets from the cutoff (ms) of the lookups: as of `cutoff + offset`, exclusive.
    offsets: BTreeSet<i64>,
}

impl RunningTotals {
    pub(super) fn new(prefix: impl Into<String>) -> RunningTotals {
        RunningTotals {
            prefix: prefix.into(),
            sums: BTreeSet::new(),
            lasts: BTreeSet::new(),
            offsets: BTreeSet::new(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    fn name(&self, what: &str, column: Option<&str>, offset: i64) -> String {
        match column {
            Some(c) => format!("{}{what}[{c}]@{offset}", self.prefix),
            None => format!("{}{what}@{offset}", self.prefix),
        }
    }

    /// The expression of `agg` over `[cutoff + from, cutoff + to)`, or over everything before
    /// `cutoff + to` when `from` is None; records the lookups it needs.
    pub(super) fn aggregate(
        &mut self,
        agg: Aggregation,
        column: Option<&str>,
        from: Option<i64>,
        to: i64,
    ) -> Expr {
        self.offsets.insert(to);
        if let Some(from) = from {
            self.offsets.insert(from);
        }
        let total = |me: &RunningTotals, what: &str, c: Option<&str>| {
            let at = |o: i64| {
                col(me.name(what, c, o))
                    .cast(DataType::Float64)
                    .fill_null(lit(0.0))
            };
            match from {
                Some(from) => at(to) - at(from),
                None => at(to),
            }
        };
        match (agg, column) {
            (Aggregation::Count, _) | (_, None) => total(self, "n", None),
            (Aggregation::Sum, Some(c)) => {
                self.sums.insert(c.to_string());
                total(self, "s", Some(c))
            }
            (Aggregation::Mean, Some(c)) => {
                self.sums.insert(c.to_string());
                let k = total(self, "k", Some(c));
                when(k.clone().gt(lit(0.0)))
                    .then(total(self, "s", Some(c)) / k)
                    .otherwise(lit(NULL).cast(DataType::Float64))
            }
            (_, Some(c)) => {
                self.lasts.insert(c.to_string());
                let value = col(self.name("v", Some(c), to));
                match from {
                    Some(from) => {
                        when(col(self.name("t", None, to)).gt_eq(col(CUTOFF) + lit(from)))
                            .then(value)
                            .otherwise(lit(NULL))
                    }
                    None => value,
                }
            }
        }
    }

    /// Joins the running totals of `events`, as of every recorded offset, onto `table`: one
    /// as-of join per offset. `table` must be sorted by the cutoff and carry the entity
    /// numbers of `ids` (key, `__id`); the joins keep its order.
    pub(super) fn join(
        &self,
        table: LazyFrame,
        events: LazyFrame,
        key: &str,
        ids: &LazyFrame,
    ) -> Result<LazyFrame, MaterializeError> {
        if self.is_empty() {
            return Ok(table);
        }
        let by = || vec![col(ID)];
        let mut totals = vec![
            col(ID),
            col(TS),
            col(TS).cum_count(false).over(by())?.alias("__n"),
        ];
        for c in &self.sums {
            let value = col(c.as_str()).cast(DataType::Float64);
            totals.push(
                value
                    .clone()
                    .fill_null(lit(0.0))
                    .cum_sum(false)
                    .over(by())?
                    .alias(format!("__s[{c}]")),
            );
            totals.push(
                value
                    .cum_count(false)
                    .over(by())?
                    .alias(format!("__k[{c}]")),
            );
        }
        totals.extend(self.lasts.iter().map(|c| col(c.as_str())));
        // Sorted by entity, then time: each entity's rows are contiguous, which the windows
        // (`over`) and the as-of joins' scans within an entity read fastest.
        let totals = events
            .filter(col(TS).is_not_null())
            .join(
                ids.clone(),
                [col(key)],
                [col(key)],
                JoinArgs::new(JoinType::Inner),
            )
            .sort(
                [ID, TS],
                SortMultipleOptions::default().with_maintain_order(true),
            )
            .select(totals)
            // Computed once and read by every lookup: a lazy frame would be recomputed for
            // each of them.
            .collect()?
            .lazy();
        let mut table = table;
        for &offset in &self.offsets {
            let mut right = vec![
                col(ID),
                col(TS).alias(self.name("t", None, offset)),
                col("__n").alias(self.name("n", None, offset)),
            ];
            for c in &self.sums {
                right.push(col(format!("__s[{c}]")).alias(self.name("s", Some(c), offset)));
                right.push(col(format!("__k[{c}]")).alias(self.name("k", Some(c), offset)));
            }
            for c in &self.lasts {
                right.push(col(c.as_str()).alias(self.name("v", Some(c), offset)));
            }
            let options = AsOfOptions {
                strategy: AsofStrategy::Backward,
                left_by: Some(vec![ID.into()]),
                right_by: Some(vec![ID.into()]),
                allow_eq: false,
                check_sortedness: false,
                ..AsOfOptions::default()
            };
            table = table
                .with_column((col(CUTOFF) + lit(offset)).alias("__at"))
                .join(
                    totals.clone().select(right),
                    [col("__at")],
                    [col(self.name("t", None, offset))],
                    JoinArgs::new(JoinType::AsOf(Box::new(options))),
                );
        }
        Ok(table)
    }
}
