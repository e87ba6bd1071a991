//! A meeting's skill scores: the scoring model (`skills::scoring`) applied
//! to its analysis when the analysis is stored, kept on the analysis and in
//! the owner's skill history. Practice recordings are not scored as
//! meetings; their attempts are.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::db::{Db, Scoped};
use crate::error::AppResult;
use crate::meetings::entity::{self as meeting, Kind};
use crate::meetings::results::{self, analysis};
use crate::progress::store::{self as progress, Source};
use crate::skills::scoring::{self, Measured};

/// Scores `stored`, the analysis of `meeting` just written in `scoped`.
pub async fn score(scoped: &Scoped, meeting: &meeting::Model, stored: &analysis::Model) -> AppResult<()> {
    if meeting.kind != Kind::Meeting {
        return Ok(());
    }
    let scores = scoring::meeting(&Measured::from(stored));
    results::set_skill_scores(scoped, meeting.id, &scores).await?;
    let source = Source {
        name: format!("meetings/{}", meeting.id),
        module_id: None,
        duration_ms: Some(stored.total_ms),
        recorded_at: meeting.occurred_at.unwrap_or(meeting.created_at),
    };
    progress::record(scoped, meeting.user_id, source, &scores).await
}

/// Scores the analyses stored before the scoring model existed (their
/// scores are `[]`), once, in batches; returns how many it scored.
pub async fn backfill(db: &Db) -> AppResult<usize> {
    let mut scored = 0;
    let mut after = None;
    loop {
        let scoped = db.as_service().await?;
        let mut query = scoped
            .find::<analysis::Entity>()
            .filter(Expr::cust("CAST(skill_scores AS TEXT) = '[]'"))
            .order_by_asc(analysis::Column::MeetingId)
            .limit(200);
        if let Some(after) = after {
            query = query.filter(analysis::Column::MeetingId.gt(after));
        }
        let batch = query.all(scoped.txn()).await?;
        let Some(last) = batch.last().map(|a| a.meeting_id) else {
            return Ok(scored);
        };
        for stored in &batch {
            let meeting = scoped
                .find::<meeting::Entity>()
                .filter(meeting::Column::Id.eq(stored.meeting_id))
                .one(scoped.txn())
                .await?;
            if let Some(meeting) = meeting.filter(|m| m.deleted_at.is_none()) {
                score(&scoped, &meeting, stored).await?;
                scored += 1;
            }
        }
        scoped.commit().await?;
        after = Some(last);
    }
}
