//! `SetUserPlan`: moving a user to a plan, with per-user overrides.

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::entity::{limit_override, plan};
use super::model::{Category, parse_limits};
use crate::audit::{self, Entry};
use crate::auth::entity::user;
use crate::auth::store;
use crate::context::RequestMeta;
use crate::db::Scoped;
use crate::error::{AppError, AppResult, FieldViolation};
use crate::names::parse_name;
use crate::pb::v1 as pb;
use crate::text::plain_text;

/// A validated plan change.
#[derive(Debug)]
pub struct PlanChange {
    /// The user.
    pub user_id: Uuid,
    /// The new plan's id.
    pub plan_id: String,
    /// Overrides: category and limit (None: unlimited).
    pub overrides: Vec<(Category, Option<i64>)>,
    /// Why, for the audit log.
    pub reason: String,
}

impl PlanChange {
    /// Validates a request, reporting every bad field.
    pub fn parse(request: pb::SetUserPlanRequest) -> AppResult<Self> {
        let pb::SetUserPlanRequest {
            user,
            plan,
            limit_overrides,
            reason,
        } = request;
        let mut violations = Vec::new();
        let mut bad = |field: String, description: &str| {
            violations.push(FieldViolation {
                field,
                description: description.to_owned(),
            });
        };
        let user_id = parse_name("user", &user, "users").ok();
        if user_id.is_none() {
            bad("user".into(), "must be `users/{id}`");
        }
        let plan_id = plan.strip_prefix("plans/").unwrap_or_default().to_owned();
        if plan_id.is_empty() || plan_id.contains('/') {
            bad("plan".into(), "must be `plans/{plan}`, e.g. plans/pro");
        }
        let (overrides, bad_limits) = parse_limits("limit_overrides", &limit_overrides);
        violations.extend(bad_limits);
        let reason = match plain_text("reason", &reason, 500) {
            Ok(reason) => reason,
            Err(AppError::InvalidArgument(v)) => {
                violations.extend(v);
                String::new()
            }
            Err(other) => return Err(other),
        };
        match user_id {
            Some(user_id) if violations.is_empty() => Ok(Self {
                user_id,
                plan_id,
                overrides,
                reason,
            }),
            _ => Err(AppError::InvalidArgument(violations)),
        }
    }
}

/// Applies `change` (service scope: it writes another user's rows; the
/// admin check is the caller's). The user's new period starts now.
pub async fn apply(
    scoped: &Scoped,
    meta: &RequestMeta,
    admin_id: Uuid,
    change: PlanChange,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let PlanChange {
        user_id,
        plan_id,
        overrides,
        reason,
    } = change;
    let before = store::get_user(scoped, user_id).await?;
    plan::Entity::find_by_id(plan_id.clone())
        .one(scoped.txn())
        .await?
        .ok_or_else(|| AppError::not_found("plan"))?;
    store::update_user(scoped, user_id, |u| {
        u.col_expr(user::Column::PlanId, Expr::value(plan_id.as_str()))
            .col_expr(user::Column::PlanStartedAt, Expr::value(now))
    })
    .await?;
    scoped
        .delete_many::<limit_override::Entity>()
        .filter(limit_override::Column::UserId.eq(user_id))
        .exec()
        .await?;
    for (category, limit) in &overrides {
        scoped
            .insert(limit_override::ActiveModel {
                user_id: Set(user_id),
                category: Set(*category),
                limit_value: Set(*limit),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .await?;
    }
    let overrides: serde_json::Map<String, serde_json::Value> = overrides
        .iter()
        .map(|(category, limit)| (category.name().to_owned(), serde_json::json!(limit)))
        .collect();
    audit::record(
        scoped,
        meta,
        Entry {
            action: "admin.set_plan",
            actor: Some(admin_id),
            subject: Some(user_id),
            target: Some(format!("users/{user_id}")),
            details: serde_json::json!({
                "from": before.plan_id,
                "to": plan_id,
                "overrides": overrides,
                "reason": reason,
            }),
        },
    )
    .await
}
