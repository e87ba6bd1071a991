//! Who is calling, as resolved once per request by the auth layer, and what
//! their credential allows. Every domain's service reads it; only `auth`
//! produces it.

use std::sync::Arc;

use uuid::Uuid;

use crate::error::{AppError, AppResult};
use sea_orm::sea_query::StringLen;
use sea_orm::{DeriveActiveEnum, EnumIter};

/// The authenticated caller, found in the request extensions of every RPC
/// that needs credentials.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The account.
    pub user_id: Uuid,
    /// The account's role, as currently stored (re-read with revocations).
    pub role: Role,
    /// How the caller authenticated.
    pub credential: Credential,
}

/// The credential a request carried.
#[derive(Debug, Clone)]
pub enum Credential {
    /// An access token of a sign-in session.
    Session {
        /// The session (`sid`).
        session_id: Uuid,
    },
    /// An API key.
    ApiKey {
        /// The key's id.
        key_id: Uuid,
        /// What the key may do.
        scopes: Arc<[String]>,
    },
}

/// What an account may do beyond its own data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum Role {
    /// A person using the product.
    #[sea_orm(string_value = "user")]
    User,
    /// An operator.
    #[sea_orm(string_value = "admin")]
    Admin,
    /// Another service acting for the platform.
    #[sea_orm(string_value = "service")]
    Service,
}

impl Role {
    /// The stored and claimed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
            Self::Service => "service",
        }
    }

    /// Parses a stored or claimed name.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::User, Self::Admin, Self::Service]
            .into_iter()
            .find(|role| role.as_str() == name)
    }
}

impl From<Role> for crate::pb::v1::Role {
    fn from(role: Role) -> Self {
        match role {
            Role::User => Self::User,
            Role::Admin => Self::Admin,
            Role::Service => Self::Service,
        }
    }
}

/// Scope resources by service. A key with `<resource>:write` may also read.
pub const SCOPE_RESOURCES: &[(&str, &str)] = &[
    ("ProfileService", "profile"),
    ("MeetingService", "meetings"),
    ("UploadService", "uploads"),
    ("ProcessingService", "processing"),
    ("PracticeService", "practice"),
    ("ProgressService", "progress"),
    ("UsageService", "usage"),
    ("EventService", "events"),
    ("AdminService", "admin"),
];

/// RPC name prefixes that only read.
const READ_PREFIXES: &[&str] = &["Get", "List", "Watch", "Subscribe", "Export", "Download"];

/// Whether the RPC `method` (e.g. `GetMeeting`) only reads.
pub fn is_read(method: &str) -> bool {
    READ_PREFIXES.iter().any(|prefix| method.starts_with(prefix))
}

impl Caller {
    /// The caller of a request that passed the auth layer.
    pub fn of<T>(request: &tonic::Request<T>) -> AppResult<&Self> {
        request
            .extensions()
            .get::<Self>()
            .ok_or_else(|| AppError::Unauthenticated {
                reason: "CREDENTIALS_MISSING",
                message: "this call needs credentials: send `authorization: Bearer <token>`".into(),
            })
    }

    /// The session, for RPCs that act on the caller's sign-in.
    pub fn session_id(&self) -> Option<Uuid> {
        match self.credential {
            Credential::Session { session_id } => Some(session_id),
            Credential::ApiKey { .. } => None,
        }
    }

    /// Refuses callers that are not admins.
    pub fn require_admin(&self) -> AppResult<()> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(AppError::PermissionDenied {
                reason: "ADMIN_ONLY",
                message: "only administrators may call this".into(),
            })
        }
    }

    /// Checks that the credential allows `path` (`/debrief.v1.Service/Method`).
    /// Session tokens allow everything the role allows; API keys need a scope,
    /// and never manage credentials.
    pub fn authorize(&self, path: &str) -> AppResult<()> {
        let Credential::ApiKey { scopes, .. } = &self.credential else {
            return Ok(());
        };
        let (service, method) = path
            .trim_start_matches('/')
            .strip_prefix("debrief.v1.")
            .and_then(|rest| rest.split_once('/'))
            .unwrap_or_default();
        let Some((_, resource)) = SCOPE_RESOURCES.iter().find(|(name, _)| *name == service) else {
            return Err(AppError::PermissionDenied {
                reason: "API_KEY_NOT_ALLOWED",
                message: "API keys cannot manage sign-in sessions or keys; sign in instead".into(),
            });
        };
        let read = is_read(method);
        let write_scope = format!("{resource}:write");
        let allowed = scopes
            .iter()
            .any(|scope| *scope == write_scope || (read && scope.strip_suffix(":read") == Some(resource)));
        if allowed {
            Ok(())
        } else {
            let needed = if read {
                format!("{resource}:read")
            } else {
                write_scope
            };
            Err(AppError::PermissionDenied {
                reason: "SCOPE_MISSING",
                message: format!("this API key lacks the `{needed}` scope"),
            })
        }
    }
}

/// Whether `scope` is one a key may carry.
pub fn is_known_scope(scope: &str) -> bool {
    scope.split_once(':').is_some_and(|(resource, access)| {
        SCOPE_RESOURCES.iter().any(|(_, r)| *r == resource) && matches!(access, "read" | "write")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(scopes: &[&str]) -> Caller {
        Caller {
            user_id: Uuid::nil(),
            role: Role::User,
            credential: Credential::ApiKey {
                key_id: Uuid::nil(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
            },
        }
    }

    #[test]
    fn scopes_separate_reading_from_writing() {
        let reader = key(&["meetings:read"]);
        assert!(
            reader
                .authorize("/debrief.v1.MeetingService/ListMeetings")
                .is_ok()
        );
        assert!(
            reader
                .authorize("/debrief.v1.MeetingService/WatchMeeting")
                .is_ok()
        );
        assert!(
            reader
                .authorize("/debrief.v1.MeetingService/CreateMeeting")
                .is_err()
        );
        assert!(reader.authorize("/debrief.v1.UploadService/GetUpload").is_err());
        let writer = key(&["uploads:write"]);
        assert!(writer.authorize("/debrief.v1.UploadService/GetUpload").is_ok());
        assert!(writer.authorize("/debrief.v1.UploadService/AppendChunk").is_ok());
        assert!(writer.authorize("/debrief.v1.AuthService/CreateApiKey").is_err());
        assert!(is_known_scope("admin:read") && !is_known_scope("auth:write") && !is_known_scope("meetings"));
    }
}
