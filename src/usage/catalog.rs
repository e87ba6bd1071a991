//! `UpdatePlan`: admins change a plan; its users get the new limits at once.

use chrono::Utc;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::entity::{plan, plan_limit};
use super::limits::plan_with_limits;
use super::model::{Category, parse_limits};
use crate::audit::{self, Entry};
use crate::context::RequestMeta;
use crate::db::Scoped;
use crate::error::{AppError, AppResult, FieldViolation, Violations};
use crate::pb::v1 as pb;
use crate::text::plain_text;

/// A validated change to a plan.
#[derive(Debug, Default)]
struct PlanEdit {
    display_name: Option<String>,
    description: Option<String>,
    monthly_price_cents: Option<i64>,
    limits: Vec<(Category, Option<i64>)>,
}

fn parse(plan: &pb::Plan, paths: &[String]) -> AppResult<PlanEdit> {
    let mut violations = Vec::new();
    let mut bad = |field: String, description: String| violations.push(FieldViolation { field, description });
    let all = paths.is_empty() || paths.iter().any(|p| p == "*");
    let wanted = |field: &str, set: bool| {
        if all {
            set
        } else {
            paths.iter().any(|p| p == field)
        }
    };
    for path in paths {
        if !matches!(
            path.as_str(),
            "*" | "display_name" | "description" | "monthly_price_cents" | "limits"
        ) {
            bad(
                "update_mask".into(),
                format!("`{path}` is not a field of a plan that can be changed"),
            );
        }
    }
    let mut edit = PlanEdit::default();
    if wanted("display_name", !plan.display_name.is_empty()) {
        match plain_text("plan.display_name", &plan.display_name, 50) {
            Ok(name) if !name.is_empty() => edit.display_name = Some(name),
            Ok(_) => bad("plan.display_name".into(), "must not be empty".into()),
            Err(_) => bad(
                "plan.display_name".into(),
                "must be at most 50 characters without control characters".into(),
            ),
        }
    }
    if wanted("description", !plan.description.is_empty()) {
        match plain_text("plan.description", &plan.description, 500) {
            Ok(text) => edit.description = Some(text),
            Err(_) => bad(
                "plan.description".into(),
                "must be at most 500 characters without control characters".into(),
            ),
        }
    }
    if wanted("monthly_price_cents", plan.monthly_price_cents != 0) {
        if plan.monthly_price_cents < 0 {
            bad("plan.monthly_price_cents".into(), "must not be negative".into());
        }
        edit.monthly_price_cents = Some(plan.monthly_price_cents);
    }
    if wanted("limits", !plan.limits.is_empty()) {
        let (limits, bad_limits) = parse_limits("plan.limits", &plan.limits);
        edit.limits = limits;
        violations.extend(bad_limits);
    }
    if violations.is_empty() {
        Ok(edit)
    } else {
        Err(AppError::InvalidArgument(violations))
    }
}

/// Applies an `UpdatePlan` request (service scope; the admin check is the
/// caller's) and returns the plan as it is now.
pub async fn update(
    scoped: &Scoped,
    meta: &RequestMeta,
    admin_id: Uuid,
    request: pb::UpdatePlanRequest,
) -> AppResult<pb::Plan> {
    let pb::UpdatePlanRequest { plan, update_mask } = request;
    let plan = plan.ok_or_else(|| AppError::invalid("plan", "is required"))?;
    let mut bad = Violations::default();
    let plan_id = plan
        .name
        .strip_prefix("plans/")
        .filter(|id| !id.is_empty() && !id.contains('/'))
        .map(str::to_owned);
    if plan_id.is_none() {
        bad.add("plan.name", "must be `plans/{plan}`, e.g. plans/pro");
    }
    let edit = bad.check(parse(&plan, &update_mask.map(|m| m.paths).unwrap_or_default()))?;
    let (plan_id, edit) = bad.finish(|| Some((plan_id?, edit?)))?;
    plan_with_limits(scoped, &plan_id).await?;

    let now = Utc::now();
    let mut update = plan::Entity::update_many()
        .col_expr(plan::Column::UpdatedAt, Expr::value(now))
        .filter(plan::Column::Id.eq(plan_id.as_str()));
    if let Some(name) = &edit.display_name {
        update = update.col_expr(plan::Column::DisplayName, Expr::value(name.as_str()));
    }
    if let Some(description) = &edit.description {
        update = update.col_expr(plan::Column::Description, Expr::value(description.as_str()));
    }
    if let Some(price) = edit.monthly_price_cents {
        update = update.col_expr(plan::Column::MonthlyPriceCents, Expr::value(price));
    }
    update.exec(scoped.txn()).await?;
    for (category, limit) in &edit.limits {
        let changed = plan_limit::Entity::update_many()
            .col_expr(plan_limit::Column::LimitValue, Expr::value(*limit))
            .col_expr(plan_limit::Column::UpdatedAt, Expr::value(now))
            .filter(plan_limit::Column::PlanId.eq(plan_id.as_str()))
            .filter(plan_limit::Column::Category.eq(*category))
            .exec(scoped.txn())
            .await?;
        if changed.rows_affected == 0 {
            plan_limit::Entity::insert(plan_limit::ActiveModel {
                plan_id: Set(plan_id.clone()),
                category: Set(*category),
                limit_value: Set(*limit),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .exec(scoped.txn())
            .await?;
        }
    }
    let limits: serde_json::Map<String, serde_json::Value> = edit
        .limits
        .iter()
        .map(|(category, limit)| (category.name().to_owned(), serde_json::json!(limit)))
        .collect();
    audit::record(
        scoped,
        meta,
        Entry {
            action: "admin.update_plan",
            actor: Some(admin_id),
            subject: None,
            target: Some(format!("plans/{plan_id}")),
            details: serde_json::json!({
                "display_name": edit.display_name,
                "description_changed": edit.description.is_some(),
                "monthly_price_cents": edit.monthly_price_cents,
                "limits": limits,
            }),
        },
    )
    .await?;
    let (plan, limits) = plan_with_limits(scoped, &plan_id).await?;
    Ok(pb::Plan::from((plan, limits)))
}
