//! `users`: one row per account.

use sea_orm::entity::prelude::*;

use crate::db::Owned;

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

/// An account.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    /// Account id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Normalised email address.
    pub email: String,
    /// argon2id PHC string; None for accounts that cannot sign in.
    pub password_hash: Option<String>,
    /// The account's role.
    pub role: Role,
    /// When the email address was verified.
    pub email_verified_at: Option<DateTimeUtc>,
    /// The plan, `plans.id`.
    pub plan_id: String,
    /// Start of the current plan; usage periods are anchored to it.
    pub plan_started_at: DateTimeUtc,
    /// Last successful sign-in.
    pub last_sign_in_at: Option<DateTimeUtc>,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

/// No relations are navigated from users yet.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Owned for Entity {
    fn owner_column() -> Column {
        Column::Id
    }
}
