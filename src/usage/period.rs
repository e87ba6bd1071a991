//! Usage periods: monthly, anchored to the start of the user's plan (UTC).
//!
//! A period is derived from the time alone, so a counter "resets" at the
//! boundary by being a different row: no job has to run.

use chrono::{DateTime, Datelike, Months, Utc};

/// The period start of counters kept over all time (storage, jobs).
pub const ALL_TIME: DateTime<Utc> = DateTime::UNIX_EPOCH;

/// One monthly period, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// First instant.
    pub start: DateTime<Utc>,
    /// First instant of the next period.
    pub end: DateTime<Utc>,
}

/// The `index`-th period after `anchor` (0 is the one starting at it).
/// Months are added to the anchor itself, so an anchor on the 31st gives
/// periods starting on the last day of shorter months and back on the 31st.
pub fn nth(anchor: DateTime<Utc>, index: u32) -> Period {
    let at = |months: u32| {
        anchor
            .checked_add_months(Months::new(months))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    };
    Period {
        start: at(index),
        end: at(index.saturating_add(1)),
    }
}

/// The index of the period holding `now` (0 before the anchor).
pub fn index_at(anchor: DateTime<Utc>, now: DateTime<Utc>) -> u32 {
    if now <= anchor {
        return 0;
    }
    let months = (now.year() - anchor.year()) * 12 + now.month0() as i32 - anchor.month0() as i32;
    let mut index = u32::try_from(months).unwrap_or(0);
    while index > 0 && nth(anchor, index).start > now {
        index -= 1;
    }
    while nth(anchor, index).end <= now {
        index += 1;
    }
    index
}

/// The period holding `now`.
pub fn current(anchor: DateTime<Utc>, now: DateTime<Utc>) -> Period {
    nth(anchor, index_at(anchor, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn periods_are_months_from_the_anchor() {
        let anchor = at("2026-01-15T10:00:00Z");
        assert_eq!(current(anchor, at("2026-01-15T10:00:00Z")).start, anchor);
        let p = current(anchor, at("2026-03-01T00:00:00Z"));
        assert_eq!(
            (p.start, p.end),
            (at("2026-02-15T10:00:00Z"), at("2026-03-15T10:00:00Z"))
        );
        // The boundary belongs to the new period.
        assert_eq!(
            current(anchor, at("2026-03-15T10:00:00Z")).start,
            at("2026-03-15T10:00:00Z")
        );
        assert_eq!(
            current(anchor, at("2026-03-15T09:59:59Z")).start,
            at("2026-02-15T10:00:00Z")
        );
        assert_eq!(
            current(anchor, at("2027-01-20T00:00:00Z")).start,
            at("2027-01-15T10:00:00Z")
        );
    }

    #[test]
    fn month_ends_clamp_and_recover() {
        let anchor = at("2026-01-31T00:00:00Z");
        assert_eq!(
            current(anchor, at("2026-02-28T12:00:00Z")).start,
            at("2026-02-28T00:00:00Z")
        );
        let march = current(anchor, at("2026-03-31T00:00:00Z"));
        assert_eq!(march.start, at("2026-03-31T00:00:00Z"));
        assert_eq!(nth(anchor, 1).end, march.start, "periods are contiguous");
    }
}
