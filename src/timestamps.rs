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
