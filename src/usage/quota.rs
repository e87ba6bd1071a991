//! Refusals that teach: what the plan includes, what was used, when it
//! resets and what a bigger plan offers, in one plain sentence.

use chrono::{DateTime, Utc};

use super::model::Category;

/// An amount in a category's unit, for people: "600 minutes", "1 GiB".
pub fn amount(category: Category, value: i64) -> String {
    match category {
        Category::AnalysisMinutes => plural(value, "minute"),
        Category::PracticeSessions => plural(value, "practice session"),
        Category::AiFeedbackRequests => plural(value, "AI feedback request"),
        Category::StorageBytes | Category::MaxUploadBytes => bytes(value),
        Category::ConcurrentJobs => plural(value, "processing job"),
        Category::AiCostMicros => format!("${:.2}", value as f64 / 1_000_000.0),
    }
}

fn plural(value: i64, noun: &str) -> String {
    if value == 1 {
        format!("1 {noun}")
    } else {
        format!("{value} {noun}s")
    }
}

fn bytes(value: i64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut size = value as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit < UNITS.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 || size.fract() == 0.0 {
        format!("{size:.0} {}", UNITS[unit])
    } else {
        format!("{size:.1} {}", UNITS[unit])
    }
}

/// What the limit covers: "120 minutes of meeting analysis a month".
fn allowance(category: Category, limit: i64) -> String {
    let value = amount(category, limit);
    match category {
        Category::AnalysisMinutes => format!("{value} of meeting analysis a month"),
        Category::PracticeSessions | Category::AiFeedbackRequests => format!("{value} a month"),
        Category::AiCostMicros => format!("{value} of AI processing a month"),
        Category::StorageBytes => format!("{value} of storage"),
        Category::MaxUploadBytes => format!("uploads of up to {value}"),
        Category::ConcurrentJobs => format!("{value} at a time"),
    }
}

/// The facts of one refusal.
#[derive(Debug, Clone)]
pub struct Refusal<'a> {
    /// The category.
    pub category: Category,
    /// The user's plan's display name.
    pub plan_name: &'a str,
    /// The limit.
    pub limit: i64,
    /// Used and held so far.
    pub used: i64,
    /// What was asked for.
    pub requested: i64,
    /// When the counter resets.
    pub resets_at: Option<DateTime<Utc>>,
    /// A plan that allows more: its name and limit (None: unlimited).
    pub better: Option<(&'a str, Option<i64>)>,
}

/// "Your Free plan includes 120 minutes of meeting analysis a month; you
/// have used 118. It resets on 1 December. Pro includes 600 minutes."
pub fn explain(refusal: &Refusal<'_>) -> String {
    let Refusal {
        category,
        plan_name,
        limit,
        used,
        requested,
        resets_at,
        better,
    } = *refusal;
    let mut text = format!("Your {plan_name} plan includes {}", allowance(category, limit));
    match category {
        Category::MaxUploadBytes => {
            text.push_str(&format!("; this file is {}.", amount(category, requested)))
        }
        Category::ConcurrentJobs => text.push_str(&format!("; {} already running.", amount(category, used))),
        Category::StorageBytes => text.push_str(&format!(
            "; you are using {} and this needs {} more.",
            amount(category, used),
            amount(category, requested)
        )),
        _ => text.push_str(&format!(
            "; you have used {}{}.",
            used,
            if requested > 1 {
                format!(" and this needs {requested} more")
            } else {
                String::new()
            }
        )),
    }
    if let Some(resets_at) = resets_at {
        text.push_str(&format!(" It resets on {}.", resets_at.format("%-d %B")));
    }
    match better {
        Some((name, Some(their))) => text.push_str(&format!(" {name} includes {}.", amount(category, their))),
        Some((name, None)) => text.push_str(&format!(" {name} has no limit.")),
        None => {}
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_as_plain_sentences() {
        let resets = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let text = explain(&Refusal {
            category: Category::AnalysisMinutes,
            plan_name: "Free",
            limit: 120,
            used: 118,
            requested: 1,
            resets_at: Some(resets),
            better: Some(("Pro", Some(600))),
        });
        assert_eq!(
            text,
            "Your Free plan includes 120 minutes of meeting analysis a month; you have used 118. \
             It resets on 1 December. Pro includes 600 minutes."
        );
        let text = explain(&Refusal {
            category: Category::StorageBytes,
            plan_name: "Free",
            limit: 1 << 30,
            used: 1000 << 20,
            requested: 50 << 20,
            resets_at: None,
            better: Some(("Team", None)),
        });
        assert_eq!(
            text,
            "Your Free plan includes 1 GiB of storage; you are using 1000 MiB and this needs 50 MiB more. \
             Team has no limit."
        );
    }
}
