//! Queries over modules: shared content, not user data, so they run on the
//! transaction of any scope.
//!
//! A module is a head row and its versions. Version `n` holds every field
//! and exercise as it was when published (or, for the draft, as it is being
//! written); the draft is always `version + 1`, and there is at most one.
//! The head carries the fields of the version it is listed with (the
//! published one, or the draft of a module never published), and
//! `module_skills` the skills of that version, so lists and the skill
//! filter read one table each.

use chrono::Utc;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::entity::{ModuleState, exercise, module, module_skill, version};
use super::model::{ExerciseFields, ModuleFields};
use super::rubric::Rubric;
use crate::db::Txn;
use crate::error::{AppError, AppResult};
use crate::pagination::PageRequest;
use crate::skills::Skill;
use crate::timestamps;

/// Which version of a module to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The published version, or the draft of a module never published.
    Listed,
    /// The draft.
    Draft,
    /// A version by number.
    Version(i32),
}

/// A module version with its head and exercises.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The head.
    pub head: module::Model,
    /// The version read.
    pub version: version::Model,
    /// Its exercises, in order.
    pub exercises: Vec<exercise::Model>,
}

impl Loaded {
    /// Whether the version read is a published one.
    pub fn is_published(&self) -> bool {
        self.version.published_at.is_some()
    }

    /// The version's fields (as stored, so not checked again).
    pub fn fields(&self) -> AppResult<ModuleFields> {
        let version = &self.version;
        Ok(ModuleFields {
            title: version.title.clone(),
            description: version.description.clone(),
            skills: skills_of(&version.skills)?,
            difficulty: version.difficulty,
            estimated_duration_ms: version.estimated_duration_ms,
            exercises: self
                .exercises
                .iter()
                .map(exercise_fields)
                .collect::<AppResult<_>>()?,
        })
    }
}

/// The stored skill names of a module or version.
pub fn skills_of(json: &serde_json::Value) -> AppResult<Vec<Skill>> {
    serde_json::from_value(json.clone()).map_err(AppError::internal)
}

/// An exercise row's fields.
pub fn exercise_fields(row: &exercise::Model) -> AppResult<ExerciseFields> {
    Ok(ExerciseFields {
        id: row.exercise_id.clone(),
        title: row.title.clone(),
        kind: row.kind,
        prompt_template: row.prompt_template.clone(),
        difficulty: row.difficulty,
        rubric: serde_json::from_value::<Rubric>(row.rubric.clone()).map_err(AppError::internal)?,
    })
}

fn not_found() -> AppError {
    AppError::not_found("module")
}

/// The head of module `id`; locked for the rest of the transaction on
/// Postgres (SQLite transactions hold the write lock from their start).
async fn head_for_update(txn: &Txn, id: &str) -> AppResult<module::Model> {
    let mut query = module::Entity::find_by_id(id);
    if txn.get_database_backend() == DbBackend::Postgres {
        query = query.lock_exclusive();
    }
    query.one(txn).await?.ok_or_else(not_found)
}

/// Reads a version of module `id`.
pub async fn get(txn: &Txn, id: &str, which: Which) -> AppResult<Loaded> {
    let head = module::Entity::find_by_id(id)
        .one(txn)
        .await?
        .ok_or_else(not_found)?;
    let number = match which {
        Which::Listed if head.version > 0 => head.version,
        Which::Listed => head.draft_version.ok_or_else(not_found)?,
        Which::Draft => head.draft_version.ok_or_else(not_found)?,
        Which::Version(n) => n,
    };
    let version = version::Entity::find_by_id((id.to_owned(), number))
        .one(txn)
        .await?
        .ok_or_else(not_found)?;
    let exercises = exercise::Entity::find()
        .filter(exercise::Column::ModuleId.eq(id))
        .filter(exercise::Column::ModuleVersion.eq(number))
        .order_by_asc(exercise::Column::Position)
        .all(txn)
        .await?;
    Ok(Loaded {
        head,
        version,
        exercises,
    })
}

/// Creates module `id` as a draft (version 1); false if the id is taken.
pub async fn create(txn: &Txn, id: &str, fields: &ModuleFields, admin: Option<Uuid>) -> AppResult<bool> {
    let now = Utc::now();
    let inserted = module::Entity::insert(module::ActiveModel {
        id: Set(id.to_owned()),
        state: Set(ModuleState::Draft),
        version: Set(0),
        draft_version: Set(Some(1)),
        title: Set(fields.title.clone()),
        description: Set(fields.description.clone()),
        skills: Set(serde_json::json!(fields.skills)),
        difficulty: Set(fields.difficulty),
        estimated_duration_ms: Set(fields.estimated_duration_ms),
        created_by: Set(admin),
        published_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .on_conflict(OnConflict::column(module::Column::Id).do_nothing().to_owned())
    .exec_without_returning(txn)
    .await?;
    if inserted == 0 {
        return Ok(false);
    }
    write_version(txn, id, 1, fields, admin).await?;
    set_listed_skills(txn, id, &fields.skills).await?;
    Ok(true)
}

/// Saves `fields` as module `id`'s draft, starting one after the published
/// version if there is none.
pub async fn update(txn: &Txn, id: &str, fields: &ModuleFields, admin: Uuid) -> AppResult<()> {
    let head = head_for_update(txn, id).await?;
    let number = match head.draft_version {
        Some(number) => {
            version::Entity::delete_by_id((id.to_owned(), number))
                .exec(txn)
                .await?;
            exercise::Entity::delete_many()
                .filter(exercise::Column::ModuleId.eq(id))
                .filter(exercise::Column::ModuleVersion.eq(number))
                .exec(txn)
                .await?;
            number
        }
        None => head.version + 1,
    };
    write_version(txn, id, number, fields, Some(admin)).await?;
    let mut update = module::Entity::update_many()
        .col_expr(module::Column::DraftVersion, Expr::value(number))
        .col_expr(module::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(module::Column::Id.eq(id));
    if head.version == 0 {
        // Never published: the draft is what lists show.
        update = set_listed(update, fields);
        set_listed_skills(txn, id, &fields.skills).await?;
    }
    update.exec(txn).await?;
    Ok(())
}

/// Publishes module `id`'s draft as its new version, or offers an
/// archived module without a draft again. `check` vets the draft first
/// (its templates may have been written before a rule changed).
pub async fn publish(txn: &Txn, id: &str, check: impl FnOnce(&Loaded) -> AppResult<()>) -> AppResult<()> {
    let head = head_for_update(txn, id).await?;
    let now = Utc::now();
    let Some(number) = head.draft_version else {
        if head.state == ModuleState::Archived {
            return set_state(txn, id, ModuleState::Published).await;
        }
        return Err(AppError::FailedPrecondition {
            reason: "NOTHING_TO_PUBLISH",
            message: format!(
                "modules/{id} has no draft: version {} is published; edit the module to start a new draft",
                head.version
            ),
            metadata: Default::default(),
        });
    };
    let draft = get(txn, id, Which::Draft).await?;
    check(&draft)?;
    let fields = draft.fields()?;
    version::Entity::update_many()
        .col_expr(version::Column::PublishedAt, Expr::value(now))
        .col_expr(version::Column::UpdatedAt, Expr::value(now))
        .filter(version::Column::ModuleId.eq(id))
        .filter(version::Column::Version.eq(number))
        .exec(txn)
        .await?;
    set_listed(module::Entity::update_many(), &fields)
        .col_expr(module::Column::Version, Expr::value(number))
        .col_expr(module::Column::DraftVersion, Expr::value(None::<i32>))
        .col_expr(module::Column::State, Expr::value(ModuleState::Published))
        .col_expr(module::Column::PublishedAt, Expr::value(now))
        .col_expr(module::Column::UpdatedAt, Expr::value(now))
        .filter(module::Column::Id.eq(id))
        .exec(txn)
        .await?;
    set_listed_skills(txn, id, &fields.skills).await
}

/// Stops offering module `id`; its versions stay readable.
pub async fn archive(txn: &Txn, id: &str) -> AppResult<()> {
    head_for_update(txn, id).await?;
    set_state(txn, id, ModuleState::Archived).await
}

async fn set_state(txn: &Txn, id: &str, state: ModuleState) -> AppResult<()> {
    module::Entity::update_many()
        .col_expr(module::Column::State, Expr::value(state))
        .col_expr(module::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(module::Column::Id.eq(id))
        .exec(txn)
        .await?;
    Ok(())
}

fn set_listed(
    update: sea_orm::UpdateMany<module::Entity>,
    fields: &ModuleFields,
) -> sea_orm::UpdateMany<module::Entity> {
    update
        .col_expr(module::Column::Title, Expr::value(fields.title.as_str()))
        .col_expr(
            module::Column::Description,
            Expr::value(fields.description.as_str()),
        )
        .col_expr(
            module::Column::Skills,
            Expr::value(serde_json::json!(fields.skills)),
        )
        .col_expr(module::Column::Difficulty, Expr::value(fields.difficulty))
        .col_expr(
            module::Column::EstimatedDurationMs,
            Expr::value(fields.estimated_duration_ms),
        )
}

async fn set_listed_skills(txn: &Txn, id: &str, skills: &[Skill]) -> AppResult<()> {
    module_skill::Entity::delete_many()
        .filter(module_skill::Column::ModuleId.eq(id))
        .exec(txn)
        .await?;
    let now = Utc::now();
    module_skill::Entity::insert_many(skills.iter().map(|skill| module_skill::ActiveModel {
        module_id: Set(id.to_owned()),
        skill: Set(*skill),
        created_at: Set(now),
        updated_at: Set(now),
    }))
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

async fn write_version(
    txn: &Txn,
    id: &str,
    number: i32,
    fields: &ModuleFields,
    admin: Option<Uuid>,
) -> AppResult<()> {
    let now = Utc::now();
    version::Entity::insert(version::ActiveModel {
        module_id: Set(id.to_owned()),
        version: Set(number),
        title: Set(fields.title.clone()),
        description: Set(fields.description.clone()),
        skills: Set(serde_json::json!(fields.skills)),
        difficulty: Set(fields.difficulty),
        estimated_duration_ms: Set(fields.estimated_duration_ms),
        published_at: Set(None),
        edited_by: Set(admin),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(txn)
    .await?;
    if fields.exercises.is_empty() {
        return Ok(());
    }
    let rows = fields
        .exercises
        .iter()
        .enumerate()
        .map(|(position, e)| {
            Ok(exercise::ActiveModel {
                module_id: Set(id.to_owned()),
                module_version: Set(number),
                exercise_id: Set(e.id.clone()),
                position: Set(i32::try_from(position).map_err(AppError::internal)?),
                title: Set(e.title.clone()),
                kind: Set(e.kind),
                prompt_template: Set(e.prompt_template.clone()),
                difficulty: Set(e.difficulty),
                rubric: Set(serde_json::to_value(&e.rubric).map_err(AppError::internal)?),
                created_at: Set(now),
                updated_at: Set(now),
            })
        })
        .collect::<AppResult<Vec<_>>>()?;
    exercise::Entity::insert_many(rows)
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// A cursor for module lists, ordered by id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AfterId {
    /// The next page holds ids after this one.
    pub after: String,
}

/// Filters of `ListModules`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListFilter {
    /// Only modules training this skill.
    pub skill: Option<Skill>,
    /// Drafts and archived modules too (admins).
    pub unpublished: bool,
}

/// One page of modules by id, in one query.
pub async fn list(
    txn: &Txn,
    filter: ListFilter,
    page: &PageRequest<AfterId>,
) -> AppResult<(Vec<module::Model>, Option<AfterId>)> {
    let mut query = module::Entity::find()
        .order_by_asc(module::Column::Id)
        .limit(page.size + 1);
    if !filter.unpublished {
        query = query.filter(module::Column::State.eq(ModuleState::Published));
    }
    if let Some(skill) = filter.skill {
        query = query.filter(
            module::Column::Id.in_subquery(
                Query::select()
                    .column(module_skill::Column::ModuleId)
                    .from(module_skill::Entity)
                    .and_where(module_skill::Column::Skill.eq(skill))
                    .to_owned(),
            ),
        );
    }
    if let Some(cursor) = &page.after {
        query = query.filter(module::Column::Id.gt(cursor.after.as_str()));
    }
    let rows = query.all(txn).await?;
    Ok(page.page(rows, |last| AfterId {
        after: last.id.clone(),
    }))
}

/// Every published module (for recommendations), in one query.
pub async fn published(txn: &Txn) -> AppResult<Vec<module::Model>> {
    Ok(module::Entity::find()
        .filter(module::Column::State.eq(ModuleState::Published))
        .order_by_asc(module::Column::Id)
        .all(txn)
        .await?)
}

/// The estimated duration of a module as an API duration.
pub fn estimated(ms: i64) -> Option<prost_types::Duration> {
    (ms > 0).then(|| timestamps::ms_to_duration(ms))
}
