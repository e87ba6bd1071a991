//! Plans, accounts, profiles, sign-in sessions, API keys and one-time tokens.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::rls;
use crate::util::{cascade, create, drop, index, one_of, restrict, table, unique};

#[derive(DeriveMigrationName)]
pub struct Migration;

const ROLES: &[&str] = &["user", "admin", "service"];
const CATEGORIES: &[&str] = &[
    "analysis_minutes",
    "practice_sessions",
    "ai_feedback_requests",
    "storage_bytes",
    "max_upload_bytes",
    "concurrent_jobs",
    "ai_cost_micros",
];

const MIB: i64 = 1024 * 1024;
const GIB: i64 = 1024 * MIB;

/// A plan every installation starts with.
struct SeedPlan {
    id: &'static str,
    name: &'static str,
    description: &'static str,
    monthly_price_cents: i64,
    /// Limits in `CATEGORIES` order; None is unlimited.
    limits: [Option<i64>; 7],
}

const PLANS: &[SeedPlan] = &[
    SeedPlan {
        id: "free",
        name: "Free",
        description: "Try debrief on a few meetings a month.",
        monthly_price_cents: 0,
        limits: [
            Some(120),
            Some(20),
            Some(10),
            Some(GIB),
            Some(200 * MIB),
            Some(1),
            Some(2_000_000),
        ],
    },
    SeedPlan {
        id: "pro",
        name: "Pro",
        description: "For people who want feedback on most of their meetings.",
        monthly_price_cents: 1_500,
        limits: [
            Some(600),
            Some(200),
            Some(200),
            Some(20 * GIB),
            Some(GIB),
            Some(3),
            Some(20_000_000),
        ],
    },
    SeedPlan {
        id: "team",
        name: "Team",
        description: "For teams that review many meetings together.",
        monthly_price_cents: 4_900,
        limits: [
            Some(3_000),
            None,
            Some(1_000),
            Some(200 * GIB),
            Some(2 * GIB),
            Some(10),
            Some(100_000_000),
        ],
    },
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rls::create_scope_functions(manager).await?;
        create(
            manager,
            vec![
                table("plans")
                    .col(string("id").primary_key())
                    .col(string("display_name"))
                    .col(text("description"))
                    .col(big_integer("monthly_price_cents"))
                    .col(integer("position"))
                    .take(),
                table("plan_limits")
                    .col(string("plan_id"))
                    .col(string("category").check(one_of("category", CATEGORIES)))
                    // NULL means unlimited.
                    .col(big_integer_null("limit_value"))
                    .primary_key(Index::create().col("plan_id").col("category"))
                    .foreign_key(&mut cascade("plan_limits", "plan_id", "plans", "id"))
                    .take(),
                table("users")
                    .col(pk_uuid("id"))
                    .col(string("email"))
                    .col(string_null("password_hash"))
                    .col(string("role").check(one_of("role", ROLES)))
                    .col(timestamp_with_time_zone_null("email_verified_at"))
                    .col(string("plan_id"))
                    .col(timestamp_with_time_zone("plan_started_at"))
                    .col(timestamp_with_time_zone_null("last_sign_in_at"))
                    .foreign_key(&mut restrict("users", "plan_id", "plans", "id"))
                    .take(),
                table("profiles")
                    .col(pk_uuid("user_id"))
                    .col(string("display_name"))
                    .col(string("job_title"))
                    .col(string("time_zone"))
                    .col(string("language"))
                    .col(json("focus_skills"))
                    .col(json("onboarding"))
                    .foreign_key(&mut cascade("profiles", "user_id", "users", "id"))
                    .take(),
                table("user_limit_overrides")
                    .col(uuid("user_id"))
                    .col(string("category").check(one_of("category", CATEGORIES)))
                    .col(big_integer_null("limit_value"))
                    .primary_key(Index::create().col("user_id").col("category"))
                    .foreign_key(&mut cascade("user_limit_overrides", "user_id", "users", "id"))
                    .take(),
                table("auth_sessions")
                    .col(pk_uuid("id"))
                    .col(uuid("user_id"))
                    .col(string("user_agent"))
                    .col(string("ip_address"))
                    .col(timestamp_with_time_zone("last_used_at"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(timestamp_with_time_zone_null("revoked_at"))
                    .col(string_null("revoke_reason"))
                    .foreign_key(&mut cascade("auth_sessions", "user_id", "users", "id"))
                    .take(),
                table("refresh_tokens")
                    .col(pk_uuid("id"))
                    .col(uuid("session_id"))
                    .col(uuid("user_id"))
                    .col(string("token_hash"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(timestamp_with_time_zone_null("used_at"))
                    .col(uuid_null("replaced_by"))
                    .foreign_key(&mut cascade(
                        "refresh_tokens",
                        "session_id",
                        "auth_sessions",
                        "id",
                    ))
                    .foreign_key(&mut cascade("refresh_tokens", "user_id", "users", "id"))
                    .take(),
                table("api_keys")
                    .col(pk_uuid("id"))
                    .col(uuid("user_id"))
                    .col(string("display_name"))
                    .col(string("prefix"))
                    .col(string("key_hash"))
                    .col(json("scopes"))
                    .col(timestamp_with_time_zone_null("expires_at"))
                    .col(timestamp_with_time_zone_null("last_used_at"))
                    .col(timestamp_with_time_zone_null("revoked_at"))
                    .col(string_null("request_id"))
                    .foreign_key(&mut cascade("api_keys", "user_id", "users", "id"))
                    .take(),
                table("user_tokens")
                    .col(pk_uuid("id"))
                    .col(uuid("user_id"))
                    .col(string("purpose").check(one_of("purpose", &["verify_email", "reset_password"])))
                    .col(string("token_hash"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(timestamp_with_time_zone_null("used_at"))
                    .foreign_key(&mut cascade("user_tokens", "user_id", "users", "id"))
                    .take(),
            ],
            vec![
                unique("users", &["email"]),
                index("users", &["created_at"]),
                index("users", &["role"]),
                index("users", &["plan_id"]),
                index("auth_sessions", &["user_id", "created_at"]),
                unique("refresh_tokens", &["token_hash"]),
                index("refresh_tokens", &["session_id"]),
                unique("api_keys", &["key_hash"]),
                index("api_keys", &["user_id", "created_at"]),
                unique("api_keys", &["user_id", "request_id"]),
                unique("user_tokens", &["token_hash"]),
                index("user_tokens", &["user_id", "purpose"]),
            ],
        )
        .await?;
        seed_plans(manager).await?;
        rls::protect(
            manager,
            &[
                "users",
                "profiles",
                "user_limit_overrides",
                "auth_sessions",
                "refresh_tokens",
                "api_keys",
                "user_tokens",
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop(
            manager,
            &[
                "user_tokens",
                "api_keys",
                "refresh_tokens",
                "auth_sessions",
                "user_limit_overrides",
                "profiles",
                "users",
                "plan_limits",
                "plans",
            ],
        )
        .await?;
        rls::drop_scope_functions(manager).await
    }
}

async fn seed_plans(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    for (position, plan) in PLANS.iter().enumerate() {
        let SeedPlan {
            id,
            name,
            description,
            monthly_price_cents: price,
            limits,
        } = plan;
        let position: i32 = position
            .try_into()
            .map_err(|e: std::num::TryFromIntError| DbErr::Migration(e.to_string()))?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table("plans")
                    .columns([
                        "id",
                        "display_name",
                        "description",
                        "monthly_price_cents",
                        "position",
                    ])
                    .values_panic([
                        (*id).into(),
                        (*name).into(),
                        (*description).into(),
                        (*price).into(),
                        position.into(),
                    ])
                    .take(),
            )
            .await?;
        for (category, limit) in CATEGORIES.iter().zip(limits) {
            manager
                .exec_stmt(
                    Query::insert()
                        .into_table("plan_limits")
                        .columns(["plan_id", "category", "limit_value"])
                        .values_panic([(*id).into(), (*category).into(), (*limit).into()])
                        .take(),
                )
                .await?;
        }
    }
    Ok(())
}
