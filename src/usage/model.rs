//! Usage categories and how each is measured.

use sea_orm::entity::prelude::*;

use crate::pb::v1::{LimitPeriod, UsageCategory};

/// Something a plan limits or usage counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum Category {
    /// Minutes of meeting audio analysed per period.
    #[sea_orm(string_value = "analysis_minutes")]
    AnalysisMinutes,
    /// Practice sessions started per period.
    #[sea_orm(string_value = "practice_sessions")]
    PracticeSessions,
    /// AI feedback requests per period.
    #[sea_orm(string_value = "ai_feedback_requests")]
    AiFeedbackRequests,
    /// Bytes of recordings stored, over all time.
    #[sea_orm(string_value = "storage_bytes")]
    StorageBytes,
    /// Largest single upload.
    #[sea_orm(string_value = "max_upload_bytes")]
    MaxUploadBytes,
    /// Processing jobs at once.
    #[sea_orm(string_value = "concurrent_jobs")]
    ConcurrentJobs,
    /// AI spend per period, in millionths of a US dollar.
    #[sea_orm(string_value = "ai_cost_micros")]
    AiCostMicros,
}

impl Category {
    /// How the limit is measured over time.
    pub fn period(self) -> LimitPeriod {
        match self {
            Self::AnalysisMinutes
            | Self::PracticeSessions
            | Self::AiFeedbackRequests
            | Self::AiCostMicros => LimitPeriod::Monthly,
            Self::StorageBytes => LimitPeriod::Total,
            Self::MaxUploadBytes | Self::ConcurrentJobs => LimitPeriod::Instant,
        }
    }

    /// The category stored as `name`.
    pub fn parse(name: &str) -> Option<Self> {
        <Self as sea_orm::Iterable>::iter().find(|c| c.name() == name)
    }

    /// The stored name, e.g. `analysis_minutes`.
    pub fn name(self) -> &'static str {
        match self {
            Self::AnalysisMinutes => "analysis_minutes",
            Self::PracticeSessions => "practice_sessions",
            Self::AiFeedbackRequests => "ai_feedback_requests",
            Self::StorageBytes => "storage_bytes",
            Self::MaxUploadBytes => "max_upload_bytes",
            Self::ConcurrentJobs => "concurrent_jobs",
            Self::AiCostMicros => "ai_cost_micros",
        }
    }

    /// The unit amounts are counted in.
    pub fn unit(self) -> &'static str {
        match self {
            Self::AnalysisMinutes => "minutes",
            Self::PracticeSessions => "sessions",
            Self::AiFeedbackRequests => "requests",
            Self::StorageBytes | Self::MaxUploadBytes => "bytes",
            Self::ConcurrentJobs => "jobs",
            Self::AiCostMicros => "micro_usd",
        }
    }
}

impl Category {
    /// The category of an API enum; None for UNSPECIFIED.
    pub fn from_proto(category: UsageCategory) -> Option<Self> {
        match category {
            UsageCategory::Unspecified => None,
            UsageCategory::AnalysisMinutes => Some(Self::AnalysisMinutes),
            UsageCategory::PracticeSessions => Some(Self::PracticeSessions),
            UsageCategory::AiFeedbackRequests => Some(Self::AiFeedbackRequests),
            UsageCategory::StorageBytes => Some(Self::StorageBytes),
            UsageCategory::MaxUploadBytes => Some(Self::MaxUploadBytes),
            UsageCategory::ConcurrentJobs => Some(Self::ConcurrentJobs),
            UsageCategory::AiCostMicros => Some(Self::AiCostMicros),
        }
    }
}

/// Validates a list of API limits (`field` is its path, e.g.
/// `plan.limits`): each a known category listed once, not negative.
/// Returns the category and limit (None: unlimited) of each good entry,
/// with a violation for each bad one.
pub fn parse_limits(
    field: &str,
    limits: &[crate::pb::v1::PlanLimit],
) -> (Vec<(Category, Option<i64>)>, Vec<crate::error::FieldViolation>) {
    let mut parsed: Vec<(Category, Option<i64>)> = Vec::new();
    let mut violations = Vec::new();
    let mut bad = |path: String, description: &str| {
        violations.push(crate::error::FieldViolation {
            field: path,
            description: description.to_owned(),
        });
    };
    for (i, limit) in limits.iter().enumerate() {
        let category = UsageCategory::try_from(limit.category)
            .ok()
            .and_then(Category::from_proto);
        match category {
            None => bad(format!("{field}[{i}].category"), "must be a usage category"),
            Some(category) if parsed.iter().any(|(c, _)| *c == category) => {
                bad(format!("{field}[{i}].category"), "is listed twice");
            }
            Some(category) => {
                if !limit.unlimited && limit.limit < 0 {
                    bad(format!("{field}[{i}].limit"), "must not be negative");
                }
                parsed.push((category, (!limit.unlimited).then_some(limit.limit)));
            }
        }
    }
    (parsed, violations)
}

impl From<Category> for UsageCategory {
    fn from(category: Category) -> Self {
        match category {
            Category::AnalysisMinutes => Self::AnalysisMinutes,
            Category::PracticeSessions => Self::PracticeSessions,
            Category::AiFeedbackRequests => Self::AiFeedbackRequests,
            Category::StorageBytes => Self::StorageBytes,
            Category::MaxUploadBytes => Self::MaxUploadBytes,
            Category::ConcurrentJobs => Self::ConcurrentJobs,
            Category::AiCostMicros => Self::AiCostMicros,
        }
    }
}
