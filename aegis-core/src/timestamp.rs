//! UTC timestamps that travel as RFC 3339 strings ending in `Z`.
//!
//! The API promises `2025-03-24T05:56:31.511798Z`-style values: UTC, microsecond precision,
//! a `Z` suffix. Storing microseconds (not nanoseconds) keeps a value equal to itself after a
//! round trip through SQLite or JSON, which the restart tests rely on.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::{OffsetDateTime, UtcOffset, format_description::well_known::Rfc3339};

/// A UTC instant with microsecond precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// Returns the current time, truncated to microseconds.
    pub fn now() -> Timestamp {
        Timestamp::from_datetime(OffsetDateTime::now_utc())
    }

    /// Converts any offset date-time to UTC, truncated to microseconds.
    pub fn from_datetime(value: OffsetDateTime) -> Timestamp {
        let utc = value.to_offset(UtcOffset::UTC);
        let micros = utc.microsecond();
        // Truncation cannot fail: the microsecond value came from the same instant.
        let truncated = utc.replace_microsecond(micros).unwrap_or(utc);
        Timestamp(truncated)
    }

    /// Builds a timestamp from microseconds since the Unix epoch.
    pub fn from_unix_micros(micros: i64) -> Option<Timestamp> {
        let nanos = i128::from(micros) * 1_000;
        OffsetDateTime::from_unix_timestamp_nanos(nanos).ok().map(Timestamp)
    }

    /// Returns microseconds since the Unix epoch, the form the stores keep.
    pub fn unix_micros(self) -> i64 {
        let micros = self.0.unix_timestamp_nanos() / 1_000;
        i64::try_from(micros).unwrap_or(i64::MAX)
    }

    /// Parses an RFC 3339 string with any offset.
    pub fn parse(text: &str) -> Result<Timestamp, time::error::Parse> {
        OffsetDateTime::parse(text, &Rfc3339).map(Timestamp::from_datetime)
    }

    /// Returns the wrapped `time` value.
    pub fn as_datetime(self) -> OffsetDateTime {
        self.0
    }

    /// Returns this instant moved forward by `duration`, saturating at the far future.
    pub fn saturating_add(self, duration: std::time::Duration) -> Timestamp {
        let delta = time::Duration::try_from(duration).unwrap_or(time::Duration::MAX);
        Timestamp(self.0.saturating_add(delta))
    }

    /// Returns the time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn duration_since(self, earlier: Timestamp) -> std::time::Duration {
        std::time::Duration::try_from(self.0 - earlier.0).unwrap_or(std::time::Duration::ZERO)
    }

    /// Returns the seconds elapsed from `earlier` to `self` (negative if `earlier` is later).
    pub fn seconds_since(self, earlier: Timestamp) -> f64 {
        (self.0 - earlier.0).as_seconds_f64()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.format(&Rfc3339) {
            Ok(text) => f.write_str(&text),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_uses_z_and_micros() {
        let ts = Timestamp::parse("2025-03-24T07:56:31.511798123+02:00").unwrap();
        assert_eq!(ts.to_string(), "2025-03-24T05:56:31.511798Z");
    }

    #[test]
    fn unix_micros_round_trip() {
        let ts = Timestamp::now();
        assert_eq!(Timestamp::from_unix_micros(ts.unix_micros()), Some(ts));
    }
}
