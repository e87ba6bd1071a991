//! `DownloadRecording`: a meeting's original recording back to its owner,
//! streamed from storage in pieces, whole or a byte range.
//!
//! Over gRPC the range is `offset` and `length`; over HTTP the edge passes
//! the `Range` header on as metadata, and the answer's metadata carries
//! what the edge turns into HTTP headers: `x-content-length`,
//! `x-accept-ranges` and, for a range, `x-content-range` (a 206).

use std::ops::Range;

use futures::StreamExt;
use tonic::metadata::MetadataValue;
use tonic::{Response, Status};

use super::entity;
use crate::error::{AppError, AppResult};
use crate::events::service::FrameStream;
use crate::pb::google::api::HttpBody;
use crate::storage::Storage;

/// Largest piece sent in one message.
const PIECE: usize = 1 << 20;

/// The bytes asked for: `offset` and `length` (0: the rest), or else a
/// `Range` header (`bytes=a-b`, `bytes=a-`, `bytes=-n`; one range), within
/// a recording of `size` bytes. None: the whole recording, not as a range.
pub fn requested(offset: i64, length: i64, range: Option<&str>, size: u64) -> AppResult<Option<Range<u64>>> {
    let unsatisfiable = || AppError::invalid("range", format!("is outside the recording's {size} bytes"));
    if offset < 0 || length < 0 {
        return Err(AppError::invalid(
            "offset",
            "offset and length must not be negative",
        ));
    }
    let (offset, length) = (offset.unsigned_abs(), length.unsigned_abs());
    if offset > 0 || length > 0 {
        if offset >= size {
            return Err(unsatisfiable());
        }
        let end = if length == 0 {
            size
        } else {
            (offset + length).min(size)
        };
        return Ok(Some(offset..end));
    }
    let Some(header) = range else {
        return Ok(None);
    };
    let spec = header
        .trim()
        .strip_prefix("bytes=")
        .filter(|spec| !spec.contains(','))
        .and_then(|spec| spec.split_once('-'))
        .ok_or_else(|| AppError::invalid("range", "must be one range of bytes, e.g. `bytes=0-1023`"))?;
    let number = |text: &str| text.trim().parse::<u64>().map_err(|_| unsatisfiable());
    let range = match spec {
        ("", suffix) => size.saturating_sub(number(suffix)?)..size,
        (start, "") => number(start)?..size,
        (start, end) => number(start)?..number(end)?.saturating_add(1).min(size),
    };
    if range.start >= range.end || range.start >= size {
        return Err(unsatisfiable());
    }
    Ok(Some(range))
}

/// The recording of `meeting` (its owner's, checked by the caller) as a
/// stream of pieces, with the metadata of its size and range.
pub async fn stream(
    storage: &Storage,
    meeting: &entity::Model,
    offset: i64,
    length: i64,
    range_header: Option<&str>,
) -> AppResult<Response<FrameStream<HttpBody>>> {
    let (Some(key), Some(size)) = (&meeting.original_object, meeting.size_bytes) else {
        return Err(AppError::FailedPrecondition {
            reason: "RECORDING_NOT_KEPT",
            message: "this meeting has no recording to download: none was uploaded, or it was deleted \
                      after its retention period (its transcript and analysis remain)"
                .into(),
            metadata: Default::default(),
        });
    };
    let size = size.unsigned_abs();
    let asked = requested(offset, length, range_header, size)?;
    let range = asked.clone().unwrap_or(0..size);
    let content_type = meeting
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    let pieces = if range.is_empty() {
        futures::stream::empty().boxed()
    } else {
        storage.get_range(key, range.clone()).await?
    };
    let mut first = true;
    let messages = pieces.flat_map(move |piece| {
        let parts: Vec<Result<HttpBody, Status>> = match piece {
            Ok(bytes) => (0..bytes.len())
                .step_by(PIECE)
                .map(|start| {
                    let chunk = bytes.slice(start..bytes.len().min(start + PIECE));
                    let content_type = if std::mem::take(&mut first) {
                        content_type.clone()
                    } else {
                        String::new()
                    };
                    Ok(HttpBody {
                        content_type,
                        data: chunk,
                        extensions: Vec::new(),
                    })
                })
                .collect(),
            Err(error) => vec![Err(Status::from(error))],
        };
        futures::stream::iter(parts)
    });
    let mut response = Response::new(Box::pin(messages) as FrameStream<HttpBody>);
    let metadata = response.metadata_mut();
    let value = |text: String| MetadataValue::try_from(text).map_err(AppError::internal);
    metadata.insert("x-content-length", value((range.end - range.start).to_string())?);
    metadata.insert("x-accept-ranges", value("bytes".into())?);
    if asked.is_some() {
        metadata.insert(
            "x-content-range",
            value(format!("bytes {}-{}/{size}", range.start, range.end - 1))?,
        );
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_come_from_fields_or_the_range_header() {
        assert_eq!(requested(0, 0, None, 100).unwrap(), None);
        assert_eq!(requested(10, 20, None, 100).unwrap(), Some(10..30));
        assert_eq!(requested(90, 0, None, 100).unwrap(), Some(90..100));
        assert_eq!(requested(0, 0, Some("bytes=0-9"), 100).unwrap(), Some(0..10));
        assert_eq!(requested(0, 0, Some("bytes=50-"), 100).unwrap(), Some(50..100));
        assert_eq!(requested(0, 0, Some("bytes=-10"), 100).unwrap(), Some(90..100));
        assert_eq!(requested(0, 0, Some("bytes=90-500"), 100).unwrap(), Some(90..100));
        for bad in [
            "bytes=100-",
            "bytes=5-2",
            "items=0-1",
            "bytes=0-1,5-6",
            "bytes=x-",
        ] {
            assert!(requested(0, 0, Some(bad), 100).is_err(), "{bad}");
        }
        assert!(requested(100, 0, None, 100).is_err());
        assert!(requested(-1, 0, None, 100).is_err());
    }
}
