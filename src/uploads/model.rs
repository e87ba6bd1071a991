//! Rules for uploads: file names and chunk sizes.

use super::entity::{State, upload};
use crate::pb::v1 as pb;
use crate::timestamps;

/// Smallest chunk accepted, except the last one.
pub const MIN_CHUNK: i64 = 256 << 10;
/// Largest chunk accepted (further bounded by the message size limit).
pub const MAX_CHUNK: i64 = 8 << 20;

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

fn state_to_proto(state: State) -> pb::UploadState {
    match state {
        State::Active => pb::UploadState::Active,
        State::Completed => pb::UploadState::Completed,
        State::Cancelled => pb::UploadState::Cancelled,
        State::Rejected => pb::UploadState::Rejected,
        State::Expired => pb::UploadState::Expired,
    }
}

/// The API message of an upload.
pub fn to_proto(upload: &upload::Model, max_message_bytes: usize) -> pb::Upload {
    pb::Upload {
        name: format!("uploads/{}", upload.id),
        meeting: format!("meetings/{}", upload.meeting_id),
        file_name: upload.file_name.clone(),
        content_type: upload.content_type.clone(),
        size_bytes: upload.size_bytes,
        sha256: upload.sha256.clone().unwrap_or_default(),
        committed_bytes: upload.committed_bytes,
        state: state_to_proto(upload.state).into(),
        min_chunk_bytes: MIN_CHUNK,
        max_chunk_bytes: max_chunk(max_message_bytes),
        rejection_reason: upload.rejection_reason.clone().unwrap_or_default(),
        expire_time: Some(timestamps::to_proto(upload.expires_at)),
        create_time: Some(timestamps::to_proto(upload.created_at)),
        update_time: Some(timestamps::to_proto(upload.updated_at)),
        complete_time: timestamps::opt_to_proto(upload.completed_at),
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
