//! The operator's own counts of reconciles and API requests, read from its `/metrics`.

use std::collections::BTreeMap;

use leitwerk_testkit::metric_sum;

/// The operator's counters: reconciles, and API requests by verb (lease requests apart).
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Reconciles of every controller.
    pub reconciles: f64,
    /// Requests by `"<verb> <resource>"`.
    pub by_resource: BTreeMap<String, f64>,
    /// Requests by verb, lease requests apart.
    pub requests: BTreeMap<String, f64>,
    /// Lease requests (leader election).
    pub leases: f64,
}

impl Counts {
    /// Requests other than watches.
    pub fn non_watch(&self) -> f64 {
        self.requests
            .iter()
            .filter(|(v, _)| v.as_str() != "watch")
            .map(|(_, n)| n)
            .sum()
    }

    /// What was counted since `before`.
    pub fn minus(&self, before: &Counts) -> Counts {
        let since = |now: &BTreeMap<String, f64>, then: &BTreeMap<String, f64>| {
            now.iter()
                .map(|(k, n)| (k.clone(), n - then.get(k).copied().unwrap_or(0.0)))
                .collect()
        };
        Counts {
            reconciles: self.reconciles - before.reconciles,
            by_resource: since(&self.by_resource, &before.by_resource),
            requests: since(&self.requests, &before.requests),
            leases: self.leases - before.leases,
        }
    }

    /// The counters in the operator's `/metrics` text.
    pub fn from_metrics(text: &str) -> Counts {
        let mut requests = BTreeMap::new();
        for verb in [
            "get", "list", "watch", "create", "update", "patch", "delete", "other",
        ] {
            let all = metric_sum(
                text,
                "leitwerk_api_requests_total",
                &[&format!("verb=\"{verb}\"")],
            );
            let leases = metric_sum(
                text,
                "leitwerk_api_requests_total",
                &[&format!("verb=\"{verb}\""), "resource=\"leases\""],
            );
            requests.insert(verb.to_string(), all - leases);
        }
        let mut by_resource = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("leitwerk_api_requests_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            let label = |key: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                    .map(|v| v.trim_end_matches('"').to_string())
                    .unwrap_or_default()
            };
            by_resource.insert(
                format!("{} {}", label("verb"), label("resource")),
                value.trim().parse().unwrap_or(0.0),
            );
        }
        Counts {
            by_resource,
            reconciles: metric_sum(text, "leitwerk_reconcile_total", &[]),
            requests,
            leases: metric_sum(
                text,
                "leitwerk_api_requests_total",
                &["resource=\"leases\""],
            ),
        }
    }

    /// The verbs with their counts, as one line.
    pub fn verbs(&self) -> String {
        self.requests
            .iter()
            .filter(|(_, n)| **n > 0.0)
            .map(|(v, n)| format!("{v} {n:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = r#"# TYPE leitwerk_api_requests_total counter
leitwerk_api_requests_total{verb="get",resource="deployments"} 3
leitwerk_api_requests_total{verb="get",resource="leases"} 2
leitwerk_api_requests_total{verb="patch",resource="models"} 5
leitwerk_api_requests_total{verb="watch",resource="models"} 1
leitwerk_reconcile_total{kind="Model",result="ok"} 7
"#;

    #[test]
    fn counts_leave_leases_apart_and_subtract_what_came_before() {
        let counts = Counts::from_metrics(METRICS);
        assert_eq!(counts.requests["get"], 3.0);
        assert_eq!(counts.leases, 2.0);
        assert_eq!(counts.reconciles, 7.0);
        assert_eq!(counts.non_watch(), 8.0);
        assert_eq!(counts.by_resource["patch models"], 5.0);
        assert_eq!(counts.verbs(), "get 3, patch 5, watch 1");
        let later = Counts::from_metrics(&METRICS.replace("} 5", "} 9"));
        let since = later.minus(&counts);
        assert_eq!(since.requests["patch"], 4.0);
        assert_eq!(since.non_watch(), 4.0);
        assert_eq!(since.reconciles, 0.0);
    }
}
