//! Reading variables: the environment as a map, values that parse or name
//! their variable, durations and sizes.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use http::HeaderValue;

use super::{ConfigError, Secret};

pub(super) struct Vars(pub(super) HashMap<String, String>);

impl Vars {
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub(super) fn parse<T: FromStr>(
        &self,
        var: &'static str,
        default: &str,
        expected: &str,
    ) -> Result<T, ConfigError> {
        parse_value(var, self.get(var).unwrap_or(default), expected)
    }

    pub(super) fn parse_opt<T: FromStr>(
        &self,
        var: &'static str,
        expected: &str,
    ) -> Result<Option<T>, ConfigError> {
        self.get(var)
            .map(|value| parse_value(var, value, expected))
            .transpose()
    }

    pub(super) fn duration(&self, var: &'static str, default: &str) -> Result<Duration, ConfigError> {
        let value = self.get(var).unwrap_or(default);
        parse_duration(value).ok_or_else(|| invalid(var, value, "expected a duration such as 10s"))
    }

    /// `var`, or the contents of the file named by `file_var`.
    pub(super) fn secret(
        &self,
        var: &'static str,
        file_var: &'static str,
    ) -> Result<Option<Secret>, ConfigError> {
        match (self.get(var), self.get(file_var)) {
            (Some(_), Some(_)) => Err(ConfigError {
                var,
                reason: format!("set either {var} or {file_var}, not both"),
            }),
            (Some(value), None) if value.trim().is_empty() => Ok(None),
            (Some(value), None) => Ok(Some(Secret::new(value.trim()))),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|value| Some(Secret::new(value.trim())))
                .map_err(|e| ConfigError {
                    var: file_var,
                    reason: format!("cannot read {path:?}: {e}"),
                }),
            (None, None) => Ok(None),
        }
    }
}

fn parse_value<T: FromStr>(var: &'static str, value: &str, expected: &str) -> Result<T, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid(var, value, &format!("expected {expected}")))
}

pub(super) fn invalid(var: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError {
        var,
        reason: format!("{value:?} is not valid: {reason}"),
    }
}

pub(super) fn positive<T: PartialOrd + Default>(value: T, var: &'static str) -> Result<T, ConfigError> {
    if value > T::default() {
        Ok(value)
    } else {
        Err(ConfigError {
            var,
            reason: "must be greater than zero".into(),
        })
    }
}

pub(super) fn trusted_proxies(value: &str) -> Result<crate::context::TrustedProxies, ConfigError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|net| !net.is_empty())
        .map(|net| {
            net.parse::<ipnet::IpNet>()
                .or_else(|_| net.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    invalid(
                        "DEBRIEF_TRUSTED_PROXIES",
                        net,
                        "expected a network such as 10.0.0.0/8 or an address",
                    )
                })
        })
        .collect::<Result<_, _>>()
        .map(crate::context::TrustedProxies)
}

pub(super) fn cors_origins(value: &str) -> Result<Vec<HeaderValue>, ConfigError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|origin| !origin.is_empty())
        .map(|origin| {
            let uri: http::Uri = origin.parse().map_err(|_| {
                invalid(
                    "DEBRIEF_CORS_ORIGINS",
                    origin,
                    "expected an origin such as https://app.example.com",
                )
            })?;
            // An origin is scheme://host[:port]: no path, not even "/".
            // http::Uri reports "/" when none was written, so the text decides.
            let is_origin = matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.host().is_some()
                && uri.path() == "/"
                && uri.query().is_none()
                && !origin.ends_with('/');
            if !is_origin {
                return Err(invalid(
                    "DEBRIEF_CORS_ORIGINS",
                    origin,
                    "expected scheme://host[:port] with no path, e.g. https://app.example.com",
                ));
            }
            HeaderValue::from_str(origin)
                .map_err(|_| invalid("DEBRIEF_CORS_ORIGINS", origin, "not a valid header value"))
        })
        .collect()
}

/// Parses `500ms`, `10s`, `5m`, `2h` or `1d`.
pub fn parse_duration(value: &str) -> Option<Duration> {
    let value = value.trim();
    let split = value.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = value.split_at(split);
    let number: u64 = number.parse().ok()?;
    let seconds = match unit {
        "ms" => return Some(Duration::from_millis(number)),
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    number.checked_mul(seconds).map(Duration::from_secs)
}

/// Parses a byte size: `1048576`, `512KiB`, `16MiB`, `1GiB` (or KB/MB/GB,
/// also powers of 1024).
pub fn parse_size(value: &str) -> Option<usize> {
    let value = value.trim();
    let split = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: usize = number.parse().ok()?;
    let multiplier: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "KB" => 1 << 10,
        "MiB" | "MB" => 1 << 20,
        "GiB" | "GB" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(multiplier)
}
