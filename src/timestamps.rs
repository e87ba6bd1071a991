//! `google.protobuf.Timestamp` ↔ `chrono`.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use crate::error::{AppError, AppResult};

/// A time as a protobuf timestamp.
pub fn to_proto(time: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// An optional time as an optional protobuf timestamp.
pub fn opt_to_proto(time: Option<DateTime<Utc>>) -> Option<Timestamp> {
    time.map(to_proto)
}

/// A protobuf timestamp from a request, validated.
pub fn from_proto(field: &str, timestamp: &Timestamp) -> AppResult<DateTime<Utc>> {
    u32::try_from(timestamp.nanos)
        .ok()
        .and_then(|nanos| DateTime::from_timestamp(timestamp.seconds, nanos))
        .ok_or_else(|| AppError::invalid(field, "is not a valid timestamp"))
}

/// A length in milliseconds as a `google.protobuf.Duration`.
pub fn ms_to_duration(ms: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

/// A `google.protobuf.Duration` in whole milliseconds; `field` names it in
/// the error when it is negative or out of range.
pub fn duration_to_ms(field: &str, duration: &prost_types::Duration) -> AppResult<i64> {
    let ms = i128::from(duration.seconds) * 1000 + i128::from(duration.nanos) / 1_000_000;
    if ms < 0 || duration.nanos.abs() >= 1_000_000_000 {
        return Err(AppError::invalid(field, "must be a positive duration"));
    }
    i64::try_from(ms).map_err(|_| AppError::invalid(field, "is too long"))
}
