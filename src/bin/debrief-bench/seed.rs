//! A population for the `progress` and `analytics` scenarios: accounts
//! created over the last 60 days, each with skill scores spread over the
//! same days, written straight into the in-process server's database in
//! batches.

use chrono::{Duration, Utc};
use debrief::auth::entity::user;
use debrief::progress::entity as score;
use debrief::skills::Skill;
use sea_orm::ActiveValue::Set;
use uuid::Uuid;

/// Rows written per statement.
const BATCH: usize = 1000;

/// A cheap deterministic sequence (xorshift), so every run seeds the same.
struct Sequence(u64);

impl Sequence {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn failed(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("seeding: {e}")
}

/// Adds `users` accounts and `scores` skill scores spread over them, plus
/// `scores / users` scores for `caller` (the account the scenarios call
/// as), all within the last 60 days.
pub async fn population(
    db: &debrief::db::Db,
    caller: Uuid,
    users: usize,
    scores: usize,
) -> anyhow::Result<()> {
    let now = Utc::now();
    let mut sequence = Sequence(0x9e37_79b9_7f4a_7c15);
    let mut ids = Vec::with_capacity(users);
    let mut left = users;
    while left > 0 {
        let size = left.min(BATCH);
        left -= size;
        let rows: Vec<user::ActiveModel> = (0..size)
            .map(|_| {
                let id = Uuid::now_v7();
                ids.push(id);
                let created =
                    now - Duration::minutes(i64::try_from(sequence.below(60 * 24 * 60)).unwrap_or(0));
                let plan = ["free", "free", "free", "pro", "team"][sequence.below(5) as usize];
                user::ActiveModel {
                    id: Set(id),
                    email: Set(format!("seed-{id}@example.com")),
                    password_hash: Set(None),
                    role: Set(user::Role::User),
                    email_verified_at: Set(None),
                    plan_id: Set(plan.into()),
                    plan_started_at: Set(created),
                    last_sign_in_at: Set(None),
                    deleted_at: Set(None),
                    created_at: Set(created),
                    updated_at: Set(created),
                }
            })
            .collect();
        let scoped = db.as_service().await.map_err(failed)?;
        scoped.insert_many(rows).await.map_err(failed)?;
        scoped.commit().await.map_err(failed)?;
    }
    let per_user = (scores / users.max(1)).max(1);
    let owners: Vec<Uuid> = ids
        .iter()
        .flat_map(|id| std::iter::repeat_n(*id, per_user))
        .chain(std::iter::repeat_n(caller, per_user))
        .collect();
    for batch in owners.chunks(BATCH) {
        let rows: Vec<score::ActiveModel> = batch
            .iter()
            .map(|owner| {
                let at = now - Duration::minutes(i64::try_from(sequence.below(60 * 24 * 60)).unwrap_or(0));
                let skill = Skill::ALL[sequence.below(Skill::ALL.len() as u64) as usize];
                score::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    user_id: Set(*owner),
                    skill: Set(skill.name().to_owned()),
                    score: Set(40.0 + sequence.below(600) as f64 / 10.0),
                    source: Set(format!("meetings/{}", Uuid::now_v7())),
                    import_key: Set(None),
                    duration_ms: Set(None),
                    recorded_at: Set(at),
                    module_id: Set(None),
                    created_at: Set(at),
                    updated_at: Set(at),
                }
            })
            .collect();
        let scoped = db.as_service().await.map_err(failed)?;
        scoped.insert_many(rows).await.map_err(failed)?;
        scoped.commit().await.map_err(failed)?;
    }
    Ok(())
}
