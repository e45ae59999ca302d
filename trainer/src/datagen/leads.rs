//! B2B leads: firmographics, web and e-mail activity, and conversions.
//!
//! Each lead has a latent intent drawn from a normal distribution and shifted by industry and
//! company size. Intent raises page views, the share of views on the pricing page and e-mail
//! opens. The daily conversion probability is
//! `sigmoid(BASE + INTENT·intent + PRICING·min(pricing views in the last 7 days, 3))`, so
//! recent pricing-page visits cause conversions (the effect a lead-scoring model should find).

use chrono::{Duration, NaiveDate, NaiveDateTime, NaiveTime};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde::Serialize;

use super::{Error, normal, pick, poisson, sigmoid};

/// Log-odds of converting on a given day for an average lead with no recent pricing views.
pub const BASE_LOG_ODDS: f64 = -6.8;
/// Log-odds added per unit of latent intent.
pub const INTENT_EFFECT: f64 = 0.9;
/// Log-odds added per pricing-page view in the previous 7 days (at most 3 count).
pub const PRICING_VIEW_EFFECT: f64 = 0.9;
/// Days a lead stays active after it is created.
pub const ACTIVE_DAYS: i64 = 120;

/// Industries with their share of leads and their shift of intent.
pub const INDUSTRIES: [(&str, f64, f64); 6] = [
    ("software", 0.30, 0.6),
    ("finance", 0.15, 0.3),
    ("retail", 0.20, 0.0),
    ("manufacturing", 0.15, -0.2),
    ("healthcare", 0.10, -0.1),
    ("education", 0.10, -0.6),
];

const COUNTRIES: [(&str, f64); 5] = [
    ("DE", 0.35),
    ("US", 0.25),
    ("GB", 0.15),
    ("FR", 0.15),
    ("NL", 0.10),
];
const SOURCES: [(&str, f64); 4] = [
    ("organic", 0.4),
    ("paid", 0.3),
    ("referral", 0.2),
    ("event", 0.1),
];
const PAGES: [(&str, f64); 4] = [
    ("/", 0.4),
    ("/product", 0.3),
    ("/blog", 0.2),
    ("/docs", 0.1),
];

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadsSpec {
    /// Seed of the random generator.
    pub seed: u64,
    /// Number of leads.
    pub leads: usize,
    /// First day of the period.
    pub start: NaiveDate,
    /// Length of the period in days.
    pub days: i64,
}

/// One lead (`leads.csv`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lead {
    /// Lead id, e.g. `L000042`.
    pub lead_id: String,
    /// When the lead was created (also the time of its static columns).
    pub ts: NaiveDateTime,
    /// Employees of the lead's company.
    pub employees: u32,
    /// Industry.
    pub industry: String,
    /// Country (ISO 3166 alpha-2).
    pub country: String,
    /// Acquisition channel.
    pub source: String,
}

/// One event (`events.csv`): `page_view`, `email_open` or `conversion`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Lead id.
    pub lead_id: String,
    /// Event time.
    pub ts: NaiveDateTime,
    /// Event type.
    pub event_type: String,
    /// Page path for page views, empty otherwise.
    pub path: String,
    /// Session length in minutes for page views, 0 otherwise.
    pub duration_min: f64,
}

/// The generated tables.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Leads {
    /// One row per lead.
    pub leads: Vec<Lead>,
    /// Events ordered by lead, then time.
    pub events: Vec<Event>,
}

/// Generates leads and writes `leads.csv` and `events.csv` into `dir` (which must exist).
pub fn write(spec: &LeadsSpec, dir: &std::path::Path) -> Result<Leads, Error> {
    let data = generate(spec)?;
    super::write_csv(&dir.join("leads.csv"), &data.leads)?;
    super::write_csv(&dir.join("events.csv"), &data.events)?;
    Ok(data)
}

/// Generates leads and their events.
/// One simulation loop on purpose: each lead's attributes, events and conversion are drawn in
/// sequence from one seeded generator, so that the same seed gives the same data.
pub fn generate(spec: &LeadsSpec) -> Result<Leads, Error> {
    if spec.days < 30 {
        return Err(Error::Invalid {
            field: "--days",
            problem: format!("{} is fewer than 30 days", spec.days),
        });
    }
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut out = Leads::default();
    let industries: Vec<(&str, f64)> = INDUSTRIES
        .iter()
        .map(|(name, share, _)| (*name, *share))
        .collect();
    for i in 0..spec.leads {
        let lead_id = format!("L{:06}", i + 1);
        let created_day = rng.random_range(0..spec.days - 30);
        let created = spec.start.and_time(NaiveTime::MIN)
            + Duration::days(created_day)
            + Duration::minutes(rng.random_range(0..1440));
        let industry = pick(&mut rng, &industries).to_string();
        let industry_shift = INDUSTRIES
            .iter()
            .find(|(name, _, _)| *name == industry)
            .map(|(_, _, s)| *s)
            .unwrap_or(0.0);
        let employees = (10f64.powf(1.0 + 1.2 * rng.random::<f64>() + 0.5 * normal(&mut rng).abs()))
            .round()
            .clamp(1.0, 500_000.0) as u32;
        let intent =
            normal(&mut rng) + industry_shift + 0.15 * (f64::from(employees).log10() - 2.0);
        out.leads.push(Lead {
            lead_id: lead_id.clone(),
            ts: created,
            employees,
            industry,
            country: pick(&mut rng, &COUNTRIES).to_string(),
            source: pick(&mut rng, &SOURCES).to_string(),
        });
        let mut recent_pricing: Vec<i64> = Vec::new();
        let last_day = (created_day + ACTIVE_DAYS).min(spec.days - 1);
        for day in created_day..=last_day {
            // Activity starts when the lead is created, never earlier on its first day.
            let day_end = spec.start.and_time(NaiveTime::MIN) + Duration::days(day + 1);
            let day_start = if day == created_day {
                created
            } else {
                day_end - Duration::days(1)
            };
            let span = (day_end - day_start).num_seconds().max(1);
            let views = poisson(&mut rng, 0.12 * (0.6 * intent).exp());
            for _ in 0..views {
                let pricing = rng.random_bool(sigmoid(intent - 1.0));
                let path = if pricing {
                    "/pricing"
                } else {
                    pick(&mut rng, &PAGES)
                };
                if pricing {
                    recent_pricing.push(day);
                }
                let ts = day_start + Duration::seconds(rng.random_range(0..span));
                let duration_min =
                    ((1.0 + 0.5 * intent.max(-1.5)) * (2.0 + 3.0 * rng.random::<f64>())).max(0.1);
                out.events.push(Event {
                    lead_id: lead_id.clone(),
                    ts,
                    event_type: "page_view".into(),
                    path: path.into(),
                    duration_min: (duration_min * 10.0).round() / 10.0,
                });
            }
            if rng.random_bool((0.05 * (0.3 * intent).exp()).min(1.0)) {
                let ts = day_start + Duration::seconds(rng.random_range(0..span));
                out.events.push(Event {
                    lead_id: lead_id.clone(),
                    ts,
                    event_type: "email_open".into(),
                    path: String::new(),
                    duration_min: 0.0,
                });
            }
            recent_pricing.retain(|d| day - d < 7);
            let pricing_views = recent_pricing.len().min(3) as f64;
            if rng.random_bool(sigmoid(
                BASE_LOG_ODDS + INTENT_EFFECT * intent + PRICING_VIEW_EFFECT * pricing_views,
            )) {
                let ts = day_end - Duration::seconds(1);
                out.events.push(Event {
                    lead_id: lead_id.clone(),
                    ts,
                    event_type: "conversion".into(),
                    path: String::new(),
                    duration_min: 0.0,
                });
                break;
            }
        }
        let first = out
            .events
            .iter()
            .rposition(|e| e.lead_id != lead_id)
            .map_or(0, |p| p + 1);
        out.events[first..].sort_by_key(|e| e.ts);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    fn spec(seed: u64) -> LeadsSpec {
        LeadsSpec {
            seed,
            leads: 3000,
            start: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            days: 240,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_data_and_another_seed_does_not() {
        let a = generate(&spec(7)).unwrap();
        assert_eq!(a, generate(&spec(7)).unwrap());
        assert_ne!(a.events, generate(&spec(8)).unwrap().events);
    }

    #[test]
    fn events_belong_to_known_leads_fall_in_their_active_window_and_stop_at_conversion() {
        let data = generate(&spec(1)).unwrap();
        let created: HashMap<&str, NaiveDateTime> = data
            .leads
            .iter()
            .map(|l| (l.lead_id.as_str(), l.ts))
            .collect();
        let end = spec(1).start.and_time(NaiveTime::MIN) + Duration::days(240);
        let mut converted = HashSet::new();
        for e in &data.events {
            let start = created[e.lead_id.as_str()];
            assert!(e.ts >= start && e.ts < end, "{e:?}");
            assert!(
                !converted.contains(&e.lead_id),
                "event after conversion: {e:?}"
            );
            if e.event_type == "conversion" {
                converted.insert(e.lead_id.clone());
            }
        }
        let rate = converted.len() as f64 / data.leads.len() as f64;
        assert!((0.05..0.5).contains(&rate), "conversion rate {rate}");
    }

    #[test]
    fn pricing_page_visits_and_industry_drive_conversion_as_documented() {
        let data = generate(&spec(3)).unwrap();
        let converted: HashSet<&str> = data
            .events
            .iter()
            .filter(|e| e.event_type == "conversion")
            .map(|e| e.lead_id.as_str())
            .collect();
        let pricing: HashSet<&str> = data
            .events
            .iter()
            .filter(|e| e.path == "/pricing")
            .map(|e| e.lead_id.as_str())
            .collect();
        let rate = |ids: &mut dyn Iterator<Item = &str>| {
            let ids: Vec<&str> = ids.collect();
            ids.iter().filter(|id| converted.contains(*id)).count() as f64 / ids.len().max(1) as f64
        };
        let with = rate(
            &mut data
                .leads
                .iter()
                .map(|l| l.lead_id.as_str())
                .filter(|id| pricing.contains(id)),
        );
        let without = rate(
            &mut data
                .leads
                .iter()
                .map(|l| l.lead_id.as_str())
                .filter(|id| !pricing.contains(id)),
        );
        assert!(
            with > 1.5 * without,
            "with pricing views {with}, without {without}"
        );
        let by_industry = |name: &str| {
            rate(
                &mut data
                    .leads
                    .iter()
                    .filter(|l| l.industry == name)
                    .map(|l| l.lead_id.as_str()),
            )
        };
        assert!(
            by_industry("software") > by_industry("education"),
            "software {} education {}",
            by_industry("software"),
            by_industry("education")
        );
    }

    #[test]
    fn a_too_short_period_is_refused_naming_the_flag() {
        let err = generate(&LeadsSpec {
            days: 10,
            ..spec(1)
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("--days"), "{err}");
    }
}
