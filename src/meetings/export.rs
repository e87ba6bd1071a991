//! The export's meetings (practice recordings included, deleted ones not),
//! each followed by its transcript and analysis when it has them.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::entity;
use super::results::{analysis, transcript, transcript_segment};
use crate::db::Scoped;
use crate::error::AppResult;
use crate::export::{Page, Part, Record, rows_after};
use crate::pb::v1 as pb;

/// Meetings a page: their transcripts can be long.
const PAGE: u64 = 10;

/// Meetings with their transcripts and analyses, for the export.
#[derive(Debug)]
pub struct Exported;

#[tonic::async_trait]
impl Part for Exported {
    fn kinds(&self) -> &'static [&'static str] {
        &["meeting", "transcript", "analysis"]
    }

    /// A page of meetings with their results, in four queries.
    async fn page(&self, scoped: &Scoped, _user_id: Uuid, after: Option<Uuid>) -> AppResult<Page> {
        let query = scoped
            .find::<entity::Entity>()
            .filter(entity::Column::DeletedAt.is_null());
        let (meetings, next) = rows_after(scoped, query, (entity::Column::Id, |m| m.id), after, PAGE).await?;
        let ids: Vec<Uuid> = meetings.iter().map(|m| m.id).collect();
        let mut transcripts: HashMap<Uuid, transcript::Model> = scoped
            .find::<transcript::Entity>()
            .filter(transcript::Column::MeetingId.is_in(ids.clone()))
            .all(scoped.txn())
            .await?
            .into_iter()
            .map(|t| (t.meeting_id, t))
            .collect();
        let mut lines: HashMap<Uuid, Vec<transcript_segment::Model>> = HashMap::new();
        for line in scoped
            .find::<transcript_segment::Entity>()
            .filter(transcript_segment::Column::MeetingId.is_in(ids.clone()))
            .order_by_asc(transcript_segment::Column::Position)
            .all(scoped.txn())
            .await?
        {
            lines.entry(line.meeting_id).or_default().push(line);
        }
        let mut analyses: HashMap<Uuid, analysis::Model> = scoped
            .find::<analysis::Entity>()
            .filter(analysis::Column::MeetingId.is_in(ids))
            .all(scoped.txn())
            .await?
            .into_iter()
            .map(|a| (a.meeting_id, a))
            .collect();
        let mut records = Vec::new();
        for meeting in &meetings {
            records.push(Record::Meeting(pb::Meeting::from(meeting)));
            if let Some(header) = transcripts.remove(&meeting.id) {
                let lines = lines.remove(&meeting.id).unwrap_or_default();
                records.push(Record::Transcript(pb::Transcript::from((header, lines))));
            }
            if let Some(analysis) = analyses.remove(&meeting.id) {
                records.push(Record::Analysis(pb::Analysis::from(analysis)));
            }
        }
        Ok((records, next))
    }
}
