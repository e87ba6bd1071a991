//! The export's skill scores, oldest recorded first.

use uuid::Uuid;

use super::entity;
use crate::db::Scoped;
use crate::error::AppResult;
use crate::export::{Page, Part, Record, rows_after};
use crate::pb::v1 as pb;

/// Skill scores, for the export.
#[derive(Debug)]
pub struct Exported;

#[tonic::async_trait]
impl Part for Exported {
    fn kinds(&self) -> &'static [&'static str] {
        &["skill_score"]
    }

    async fn page(&self, scoped: &Scoped, _user_id: Uuid, after: Option<Uuid>) -> AppResult<Page> {
        let query = scoped.find::<entity::Entity>();
        let (rows, next) = rows_after(scoped, query, (entity::Column::Id, |row| row.id), after, 500).await?;
        let records = rows
            .into_iter()
            .map(|row| Record::SkillScore(pb::SkillScorePoint::from(row)))
            .collect();
        Ok((records, next))
    }
}
