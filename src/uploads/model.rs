//! Rules for uploads: file names and chunk sizes.

use super::entity::{State, upload};
use crate::pb::v1 as pb;
use crate::timestamps;

/// Smallest chunk accepted, except the last one.
pub const MIN_CHUNK: i64 = 256 << 10;
/// Largest chunk accepted (further bounded by the message size limit).
/// A chunk is in memory while it arrives, so this bounds what each upload
/// in progress holds: 8 concurrent uploads peak at 19–41 MiB above idle
/// with 4 MiB chunks against 59–65 MiB with 8 MiB, and the hashing and
/// copying of the bytes, not the per-chunk commits, bound the throughput
/// (within 5 % of each other).
pub const MAX_CHUNK: i64 = 4 << 20;

/// A file name safe to store and show: the last path component, without
/// control characters or leading dots, at most 255 bytes (keeping the
/// extension). Never used as a storage key.
pub fn sanitise_file_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '<' | '>' | '|' | ':' | '*' | '?'))
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim().to_owned();
    if cleaned.is_empty() {
        return "recording".to_owned();
    }
    if cleaned.len() <= 255 {
        return cleaned;
    }
    let (stem, extension) = match cleaned.rsplit_once('.') {
        Some((stem, ext)) if ext.len() <= 10 => (stem, format!(".{ext}")),
        _ => (cleaned.as_str(), String::new()),
    };
    let mut stem = stem.to_owned();
    while stem.len() + extension.len() > 255 {
        stem.pop();
    }
    format!("{stem}{extension}")
}

/// The largest chunk for a message size limit (leaving room for framing).
pub fn max_chunk(max_message_bytes: usize) -> i64 {
    let room = i64::try_from(max_message_bytes)
        .unwrap_or(i64::MAX)
        .saturating_sub(64 << 10);
    MAX_CHUNK.min(room).max(MIN_CHUNK)
}

impl From<State> for pb::UploadState {
    fn from(state: State) -> Self {
        match state {
            State::Active => Self::Active,
            State::Completed => Self::Completed,
            State::Cancelled => Self::Cancelled,
            State::Rejected => Self::Rejected,
            State::Expired => Self::Expired,
        }
    }
}

/// The chunk sizes this server accepts, shown on every upload.
#[derive(Debug, Clone, Copy)]
pub struct ChunkSizes {
    /// Smallest chunk but the last.
    pub min: i64,
    /// Largest chunk.
    pub max: i64,
}

impl ChunkSizes {
    /// The sizes under a message size limit of `max_message_bytes`.
    pub fn within(max_message_bytes: usize) -> Self {
        Self {
            min: MIN_CHUNK,
            max: max_chunk(max_message_bytes),
        }
    }
}

/// An upload as the API shows it, with the chunk sizes it may send.
impl From<(&upload::Model, ChunkSizes)> for pb::Upload {
    fn from((upload, chunks): (&upload::Model, ChunkSizes)) -> Self {
        let upload::Model {
            id,
            meeting_id,
            file_name,
            content_type,
            size_bytes,
            sha256,
            committed_bytes,
            state,
            rejection_reason,
            expires_at,
            completed_at,
            created_at,
            updated_at,
            // The owner is the caller; the rest is bookkeeping of the
            // chunks, the quota hold, the completion claim, cleanup and the
            // running digest.
            user_id: _,
            chunk_count: _,
            request_id: _,
            reservation_id: _,
            completion_token: _,
            completing_until: _,
            cleaned_at: _,
            digest_state: _,
        } = upload;
        Self {
            name: format!("uploads/{id}"),
            meeting: format!("meetings/{meeting_id}"),
            file_name: file_name.clone(),
            content_type: content_type.clone(),
            size_bytes: *size_bytes,
            sha256: sha256.clone().unwrap_or_default(),
            committed_bytes: *committed_bytes,
            state: pb::UploadState::from(*state).into(),
            min_chunk_bytes: chunks.min,
            max_chunk_bytes: chunks.max,
            rejection_reason: rejection_reason.clone().unwrap_or_default(),
            expire_time: Some(timestamps::to_proto(*expires_at)),
            create_time: Some(timestamps::to_proto(*created_at)),
            update_time: Some(timestamps::to_proto(*updated_at)),
            complete_time: timestamps::opt_to_proto(*completed_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_lose_paths_and_control_characters() {
        assert_eq!(sanitise_file_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitise_file_name("C:\\Users\\me\\standup.m4a"), "standup.m4a");
        assert_eq!(sanitise_file_name("we\u{0}ird\nname.wav"), "weirdname.wav");
        assert_eq!(sanitise_file_name(".hidden.mp3"), "hidden.mp3");
        assert_eq!(sanitise_file_name("   "), "recording");
        let long = format!("{}.mp3", "a".repeat(400));
        let short = sanitise_file_name(&long);
        assert!(short.len() <= 255 && short.ends_with(".mp3"));
    }
}
