//! Pure checks that the CRD schema and CEL cannot express. Each problem names the field and
//! the fix; a reconcile reports all of them at once in the Ready condition.

/// One problem with a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the field, e.g. `spec.kpis[1].query`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Joins problems into one condition message: `field: message; field: message`.
pub fn summarize(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `Ok` when no problem was found, else every problem.
pub fn into_result(errors: Vec<FieldError>) -> Result<(), Vec<FieldError>> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

pub use leitwerk_crds::common::parse_duration;

/// Checks a five-field cron expression (minute hour day-of-month month day-of-week).
pub fn check_cron(expr: &str) -> Result<(), String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "{expr:?} has {} fields; a schedule has five: minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\"",
            fields.len()
        ));
    }
    let ranges = [
        ("minute", 0, 59),
        ("hour", 0, 23),
        ("day-of-month", 1, 31),
        ("month", 1, 12),
        ("day-of-week", 0, 7),
    ];
    for (field, (name, lo, hi)) in fields.iter().zip(ranges) {
        for part in field.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (part, None),
            };
            if let Some(step) = step
                && !matches!(step.parse::<u32>(), Ok(n) if n >= 1 && n <= hi)
            {
                return Err(format!(
                    "{name} step {step:?} must be a number from 1 to {hi}"
                ));
            }
            if range == "*" {
                continue;
            }
            let bounds: Vec<&str> = range.split('-').collect();
            if bounds.is_empty() || bounds.len() > 2 {
                return Err(format!(
                    "{name} {part:?} is not a number, a range a-b, * or a step */n"
                ));
            }
            let mut previous = None;
            for b in bounds {
                let value: u32 = b
                    .parse()
                    .map_err(|_| format!("{name} {b:?} is not a number from {lo} to {hi}"))?;
                if value < lo || value > hi {
                    return Err(format!("{name} {value} is outside {lo}–{hi}"));
                }
                if let Some(p) = previous
                    && value < p
                {
                    return Err(format!("{name} range {part:?} runs backwards"));
                }
                previous = Some(value);
            }
        }
    }
    Ok(())
}

/// Placeholders a KPI query template may use.
pub const KPI_PLACEHOLDERS: [&str; 5] = ["namespace", "experiment", "model", "variant", "interval"];

/// Fills the `{{placeholder}}`s of a checked PromQL template; `values` pairs each name of
/// [`KPI_PLACEHOLDERS`] with its value.
pub fn render_template(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = after[..end].trim();
        match values.iter().find(|(k, _)| *k == name) {
            Some((_, v)) => out.push_str(v),
            None => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Checks the `{{placeholder}}`s of a PromQL template.
pub fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err("has an unclosed {{ placeholder".to_string());
        };
        let name = after[..end].trim();
        if !KPI_PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "uses unknown placeholder {{{{{name}}}}}; known: {{{{namespace}}}}, {{{{experiment}}}}, {{{{model}}}}, {{{{variant}}}}, {{{{interval}}}}"
            ));
        }
        rest = &after[end + 2..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn templates_render_every_placeholder_with_spaces_or_without() {
        let q = r#"sum(x{ns="{{namespace}}",v="{{ variant }}"}[{{interval}}])"#;
        assert_eq!(check_template(q), Ok(()));
        assert_eq!(
            render_template(
                q,
                &[
                    ("namespace", "sales"),
                    ("variant", "canary"),
                    ("interval", "30s")
                ]
            ),
            r#"sum(x{ns="sales",v="canary"}[30s])"#
        );
    }

    #[test]
    fn durations_parse_in_every_unit() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("7w"), None);
        assert_eq!(parse_duration("d"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn cron_accepts_common_schedules() {
        for ok in [
            "0 3 * * *",
            "*/15 * * * *",
            "0 4 * * 1-5",
            "0,30 8-18 * * 1",
        ] {
            assert_eq!(check_cron(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn cron_errors_name_the_broken_field() {
        assert!(
            check_cron("0 3 * *")
                .err()
                .unwrap_or_default()
                .contains("five")
        );
        assert!(
            check_cron("0 25 * * *")
                .err()
                .unwrap_or_default()
                .contains("hour")
        );
        assert!(
            check_cron("61 * * * *")
                .err()
                .unwrap_or_default()
                .contains("minute")
        );
        assert!(
            check_cron("0 0 * * mon")
                .err()
                .unwrap_or_default()
                .contains("day-of-week")
        );
        assert!(
            check_cron("*/0 * * * *")
                .err()
                .unwrap_or_default()
                .contains("step")
        );
    }

    #[test]
    fn templates_with_unknown_placeholders_are_rejected() {
        assert_eq!(
            check_template(
                r#"sum(rate(x{model="{{model}}",variant="{{ variant }}"}[{{interval}}]))"#
            ),
            Ok(())
        );
        let err = check_template(r#"sum(x{version="{{version}}"})"#)
            .err()
            .unwrap_or_default();
        assert!(err.contains("{{version}}"), "{err}");
        assert!(check_template("sum(x{a=\"{{model\"})").is_err());
    }
}
