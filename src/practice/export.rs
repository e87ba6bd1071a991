//! The export's practice sessions, each with its attempts and their
//! feedback.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::entity::{attempt, session};
use crate::db::Scoped;
use crate::error::AppResult;
use crate::export::{Page, Part, Record, rows_after};

/// Practice sessions, for the export.
#[derive(Debug)]
pub struct Exported;

#[tonic::async_trait]
impl Part for Exported {
    fn kinds(&self) -> &'static [&'static str] {
        &["practice_session"]
    }

    /// A page of sessions with their attempts, in two queries.
    async fn page(&self, scoped: &Scoped, _user_id: Uuid, after: Option<Uuid>) -> AppResult<Page> {
        let query = scoped.find::<session::Entity>();
        let (sessions, next) = rows_after(scoped, query, (session::Column::Id, |s| s.id), after, 50).await?;
        let mut attempts: HashMap<Uuid, Vec<attempt::Model>> = HashMap::new();
        for row in scoped
            .find::<attempt::Entity>()
            .filter(attempt::Column::SessionId.is_in(sessions.iter().map(|s| s.id)))
            .order_by_asc(attempt::Column::Id)
            .all(scoped.txn())
            .await?
        {
            attempts.entry(row.session_id).or_default().push(row);
        }
        let records = sessions
            .iter()
            .map(|s| {
                let attempts = attempts.remove(&s.id).unwrap_or_default();
                super::convert::session(s, &attempts).map(Record::PracticeSession)
            })
            .collect::<AppResult<_>>()?;
        Ok((records, next))
    }
}
