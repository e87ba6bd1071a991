//! One error type for the whole service and its one mapping to gRPC.
//!
//! Handlers return [`AppError`]; `From<AppError> for Status` is the only
//! place that decides codes and google.rpc details. Internal causes are
//! logged (inside the request's span, so with its request id) and replaced
//! by a plain "internal error" for the caller.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `domain` of every ErrorInfo debrief sends.
pub const ERROR_DOMAIN: &str = "debrief";

/// Shorthand for results of the service's own operations.
pub type AppResult<T> = Result<T, AppError>;

/// Everything that can go wrong in a request.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request itself is wrong: one violation per bad field.
    #[error("{}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The resource does not exist, or belongs to someone else.
    #[error("{resource} not found")]
    NotFound {
        /// What was looked for, e.g. `meeting`.
        resource: &'static str,
    },
    /// The resource existed but is gone for good (e.g. an expired upload).
    #[error("{message}")]
    Gone {
        /// Stable reason code, e.g. `UPLOAD_EXPIRED`.
        reason: &'static str,
        /// Explanation for the caller.
        message: String,
    },
    /// The content sent was refused (wrong type, corrupt, malware).
    #[error("{message}")]
    Rejected {
        /// Stable reason code, e.g. `UNSUPPORTED_FORMAT`.
        reason: &'static str,
        /// Explanation for the caller.
        message: String,
    },
    /// A resource with the same identity exists.
    #[error("{message}")]
    AlreadyExists {
        /// Stable reason code, e.g. `EMAIL_TAKEN`.
        reason: &'static str,
        /// Explanation for the caller.
        message: String,
    },
    /// The request is valid but the resource is not in a state that allows it.
    #[error("{message}")]
    FailedPrecondition {
        /// Stable reason code, e.g. `TRANSCRIPT_NOT_READY`.
        reason: &'static str,
        /// Explanation for the caller.
        message: String,
        /// Extra facts for clients, e.g. the upload in the way.
        metadata: HashMap<String, String>,
    },
    /// A concurrent change won; retrying the whole operation may succeed.
    #[error("{message}")]
    Aborted {
        /// Stable reason code, e.g. `OFFSET_MISMATCH`.
        reason: &'static str,
        /// Explanation for the caller.
        message: String,
        /// Extra facts for clients, e.g. the committed offset.
        metadata: HashMap<String, String>,
    },
    /// No valid credentials.
    #[error("{message}")]
    Unauthenticated {
        /// Stable reason code, e.g. `TOKEN_EXPIRED`.
        reason: &'static str,
        /// Explanation for the caller.
        message: String,
    },
    /// Valid credentials without the needed role or scope.
    #[error("{message}")]
    PermissionDenied {
        /// Stable reason code, e.g. `ADMIN_ONLY`.
        reason: &'static str,
        /// Explanation for the caller.
        message: String,
    },
    /// A plan limit would be exceeded.
    #[error("{}", .0.message)]
    QuotaExceeded(Box<QuotaExceeded>),
    /// Too many requests; try again after `retry_after`.
    #[error("{message}")]
    RateLimited {
        /// When to try again.
        retry_after: Duration,
        /// Explanation for the caller.
        message: String,
    },
    /// The service cannot answer now (shutting down, dependency down).
    #[error("{message}")]
    Unavailable {
        /// Stable reason code, e.g. `SCANNER_UNAVAILABLE`.
        reason: &'static str,
        /// When to try again, if known.
        retry_after: Option<Duration>,
        /// Explanation for the caller.
        message: String,
        /// Extra facts for clients, e.g. where to resume a stream.
        metadata: HashMap<String, String>,
    },
    /// A database failure. Never shown to the caller.
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// Any other failure of ours. Never shown to the caller.
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// One bad field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field, e.g. `meeting.title`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

/// Why a plan limit refused a request, with what the caller needs to act.
#[derive(Debug, Clone)]
pub struct QuotaExceeded {
    /// The usage category, e.g. `analysis_minutes`.
    pub category: &'static str,
    /// The caller's plan, e.g. `free`.
    pub plan: String,
    /// The limit in the category's unit.
    pub limit: i64,
    /// Usage so far in the period.
    pub used: i64,
    /// When the counter resets, for periodic limits.
    pub resets_at: Option<DateTime<Utc>>,
    /// Plain-language explanation, e.g. "Your Free plan includes ...".
    pub message: String,
    /// Where to upgrade.
    pub upgrade_url: String,
}

impl AppError {
    /// A single invalid field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation {
            field: field.into(),
            description: description.into(),
        }])
    }

    /// A missing (or someone else's) resource.
    pub fn not_found(resource: &'static str) -> Self {
        Self::NotFound { resource }
    }

    /// Wraps an unexpected failure.
    pub fn internal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(error.into())
    }
}

/// The message of an InvalidArgument: every violation as a sentence for a
/// person ("email must be an email address; password is too weak"). The
/// code is already in the status, so the message does not repeat it.
fn describe(violations: &[FieldViolation]) -> String {
    let mut message = String::new();
    for (i, v) in violations.iter().enumerate() {
        let sep = if i == 0 { "" } else { "; " };
        let _ = write!(message, "{sep}{} {}", v.field, v.description);
    }
    message
}

/// Collects the bad fields of a request, so that one InvalidArgument names
/// every one of them rather than only the first.
///
/// ```text
/// let mut bad = Violations::default();
/// let email = bad.check(normalise_email("email", &email))?;
/// let name = bad.check(display_name("display_name", &name))?;
/// let (email, name) = bad.finish(|| Some((email?, name?)))?;
/// ```
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// Records one bad field.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// The value of a parse, or None after recording its violations. Any
    /// other error (a failure of ours) is returned at once.
    pub fn check<T>(&mut self, parsed: AppResult<T>) -> AppResult<Option<T>> {
        match parsed {
            Ok(value) => Ok(Some(value)),
            Err(AppError::InvalidArgument(violations)) => {
                self.0.extend(violations);
                Ok(None)
            }
            Err(other) => Err(other),
        }
    }

    /// Whether nothing is wrong so far.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every violation as one error, or the value `build` makes from the
    /// parsed fields when there was none.
    pub fn finish<T>(self, build: impl FnOnce() -> Option<T>) -> AppResult<T> {
        if !self.0.is_empty() {
            return Err(AppError::InvalidArgument(self.0));
        }
        build().ok_or_else(|| AppError::internal("a field failed to parse without a violation"))
    }
}

fn info(details: &mut ErrorDetails, reason: &str, metadata: HashMap<String, String>) {
    details.set_error_info(reason, ERROR_DOMAIN, metadata);
}

impl From<AppError> for Status {
    fn from(error: AppError) -> Self {
        let mut details = ErrorDetails::new();
        let message = error.to_string();
        let code = match error {
            AppError::InvalidArgument(violations) => {
                for v in violations {
                    details.add_bad_request_violation(v.field, v.description);
                }
                info(&mut details, "INVALID_ARGUMENT", HashMap::new());
                Code::InvalidArgument
            }
            AppError::NotFound { resource } => {
                info(
                    &mut details,
                    "NOT_FOUND",
                    HashMap::from([("resource".into(), resource.into())]),
                );
                Code::NotFound
            }
            AppError::Gone { reason, .. } => {
                info(&mut details, reason, HashMap::new());
                Code::NotFound
            }
            AppError::Rejected { reason, .. } => {
                info(&mut details, reason, HashMap::new());
                Code::InvalidArgument
            }
            AppError::AlreadyExists { reason, .. } => {
                info(&mut details, reason, HashMap::new());
                Code::AlreadyExists
            }
            AppError::FailedPrecondition { reason, metadata, .. } => {
                info(&mut details, reason, metadata);
                Code::FailedPrecondition
            }
            AppError::Aborted { reason, metadata, .. } => {
                info(&mut details, reason, metadata);
                Code::Aborted
            }
            AppError::Unauthenticated { reason, .. } => {
                info(&mut details, reason, HashMap::new());
                Code::Unauthenticated
            }
            AppError::PermissionDenied { reason, .. } => {
                info(&mut details, reason, HashMap::new());
                Code::PermissionDenied
            }
            AppError::QuotaExceeded(quota) => {
                let QuotaExceeded {
                    category,
                    plan,
                    limit,
                    used,
                    resets_at,
                    message,
                    upgrade_url,
                } = *quota;
                details.add_quota_failure_violation(format!("users/quota/{category}"), message);
                let mut metadata = HashMap::from([
                    ("category".to_owned(), category.to_owned()),
                    ("limit".to_owned(), limit.to_string()),
                    ("used".to_owned(), used.to_string()),
                    ("plan".to_owned(), plan),
                ]);
                if let Some(resets_at) = resets_at {
                    metadata.insert("resets_at".to_owned(), resets_at.to_rfc3339());
                }
                info(&mut details, "QUOTA_EXCEEDED", metadata);
                details.add_help_link("Upgrade your plan", upgrade_url);
                Code::ResourceExhausted
            }
            AppError::RateLimited { retry_after, .. } => {
                details.set_retry_info(Some(retry_after));
                info(&mut details, "RATE_LIMITED", HashMap::new());
                Code::ResourceExhausted
            }
            AppError::Unavailable {
                reason,
                retry_after,
                metadata,
                ..
            } => {
                details.set_retry_info(retry_after);
                info(&mut details, reason, metadata);
                Code::Unavailable
            }
            AppError::Database(db) if database_unavailable(&db) => {
                tracing::warn!(cause = %chain(&db), "the database cannot be used now");
                details.set_retry_info(Some(DATABASE_RETRY));
                info(&mut details, "DATABASE_UNAVAILABLE", HashMap::new());
                return Status::with_error_details(
                    Code::Unavailable,
                    "the service cannot reach its database right now; try again in a moment",
                    details,
                );
            }
            AppError::Database(_) | AppError::Internal(_) => {
                tracing::error!(error = %message, cause = %chain(&error), "internal error");
                return Status::internal("internal error");
            }
        };
        Status::with_error_details(code, message, details)
    }
}

/// How long a caller is told to wait when the database cannot be used.
const DATABASE_RETRY: Duration = Duration::from_secs(1);

/// Whether a database error means the database cannot be reached or used
/// right now (down, restarting, out of connections, locked by another
/// process), so the same call may succeed when tried again.
pub fn database_unavailable(error: &sea_orm::DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    use sea_orm::{DbErr, RuntimeErr};
    let runtime = match error {
        DbErr::ConnectionAcquire(_) => return true,
        DbErr::Conn(runtime) | DbErr::Exec(runtime) | DbErr::Query(runtime) => runtime,
        _ => return false,
    };
    let RuntimeErr::SqlxError(error) = runtime else {
        return false;
    };
    match &**error {
        Sqlx::Io(_) | Sqlx::Tls(_) | Sqlx::PoolTimedOut | Sqlx::PoolClosed | Sqlx::WorkerCrashed => true,
        Sqlx::Database(error) => error.code().is_some_and(|code| {
            // Postgres: connection exceptions (08), operator intervention
            // such as a shutdown or restart (57P), too many connections.
            // SQLite: busy and locked, with their extended codes.
            code.starts_with("08")
                || code.starts_with("57P")
                || code == "53300"
                || matches!(&*code, "5" | "6" | "261" | "262" | "517" | "773")
        }),
        _ => false,
    }
}

/// An error with all its sources, for the log.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_field_violations() {
        let status = Status::from(AppError::InvalidArgument(vec![
            FieldViolation {
                field: "email".into(),
                description: "must be an email address".into(),
            },
            FieldViolation {
                field: "password".into(),
                description: "is too weak".into(),
            },
        ]));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "email must be an email address; password is too weak"
        );
        let details = status.get_error_details();
        let violations = &details.bad_request().expect("BadRequest").field_violations;
        assert_eq!(violations.len(), 2);
        assert_eq!(violations[1].field, "password");
        assert_eq!(
            details.error_info().expect("ErrorInfo").reason,
            "INVALID_ARGUMENT"
        );
    }

    #[test]
    fn violations_collect_every_bad_field() {
        let mut bad = Violations::default();
        let email = bad
            .check::<String>(Err(AppError::invalid("email", "is required")))
            .unwrap();
        let size = bad.check(Ok(5)).unwrap();
        bad.add("password", "is too short");
        let Err(AppError::InvalidArgument(violations)) = bad.finish(|| Some((email?, size?))) else {
            panic!("expected every violation");
        };
        assert_eq!(violations.len(), 2);
        assert_eq!(Violations::default().finish(|| Some(7)).unwrap(), 7);
        let mut bad = Violations::default();
        assert!(bad.check::<()>(Err(AppError::not_found("meeting"))).is_err());
    }

    #[test]
    fn quota_exceeded_teaches() {
        let status = Status::from(AppError::QuotaExceeded(Box::new(QuotaExceeded {
            category: "analysis_minutes",
            plan: "free".into(),
            limit: 120,
            used: 118,
            resets_at: Some(DateTime::from_timestamp(1_798_761_600, 0).unwrap()),
            message: "Your Free plan includes 120 minutes a month; you have used 118.".into(),
            upgrade_url: "https://example.com/upgrade".into(),
        })));
        assert_eq!(status.code(), Code::ResourceExhausted);
        let details = status.get_error_details();
        let info = details.error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "QUOTA_EXCEEDED");
        assert_eq!(info.domain, ERROR_DOMAIN);
        assert_eq!(info.metadata["limit"], "120");
        assert_eq!(info.metadata["used"], "118");
        assert_eq!(info.metadata["plan"], "free");
        assert!(info.metadata["resets_at"].starts_with("2027-01-01"));
        assert_eq!(details.quota_failure().expect("QuotaFailure").violations.len(), 1);
        assert_eq!(
            details.help().expect("Help").links[0].url,
            "https://example.com/upgrade"
        );
    }

    #[test]
    fn rate_limited_says_when_to_retry() {
        let status = Status::from(AppError::RateLimited {
            retry_after: Duration::from_secs(3),
            message: "too many sign-in attempts".into(),
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
        let retry = status
            .get_error_details()
            .retry_info()
            .cloned()
            .expect("RetryInfo");
        assert_eq!(retry.retry_delay, Some(Duration::from_secs(3)));
    }

    #[test]
    fn an_unreachable_database_is_unavailable_with_a_retry_hint() {
        let status = Status::from(AppError::Database(sea_orm::DbErr::ConnectionAcquire(
            sea_orm::ConnAcquireErr::Timeout,
        )));
        assert_eq!(status.code(), Code::Unavailable);
        let details = status.get_error_details();
        assert_eq!(details.retry_info().unwrap().retry_delay, Some(DATABASE_RETRY));
        assert_eq!(details.error_info().unwrap().reason, "DATABASE_UNAVAILABLE");
        assert!(!database_unavailable(&sea_orm::DbErr::RecordNotInserted));
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let status = Status::from(AppError::Database(sea_orm::DbErr::Custom(
            "relation \"meetings\" does not exist".into(),
        )));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
        assert!(status.details().is_empty());
    }
}
