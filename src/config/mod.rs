//! Configuration from environment variables.
//!
//! Every setting has a default, so `debrief serve` runs with none. A value
//! that does not parse stops start-up with an error naming the variable.
//! Secrets come only from the environment, either directly (`DATABASE_URL`)
//! or from a file named by `<NAME>_FILE` (`DATABASE_URL_FILE`), and are
//! never logged or shown in errors.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderValue;

mod auth;
mod parse;
mod practice;
mod processing;

pub use auth::{AuthConfig, MailConfig, SmtpConfig};
use parse::{Vars, cors_origins, invalid, positive, trusted_proxies};
pub use parse::{parse_duration, parse_size};
pub use practice::{AiConfig, PracticeConfig};
pub use processing::{ProcessingConfig, TranscriberConfig};

/// Settings for one debrief process.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DEBRIEF_ADDR`: where gRPC, gRPC-Web and HTTP are served.
    pub addr: SocketAddr,
    /// `DEBRIEF_METRICS_ADDR`: a separate address for `/metrics`; unset:
    /// served on `DEBRIEF_ADDR` with everything else.
    pub metrics_addr: Option<SocketAddr>,
    /// `DEBRIEF_DATA_DIR`: the SQLite database and local objects.
    pub data_dir: PathBuf,
    /// `DATABASE_URL`: a `postgres://` or `sqlite:` URL; unset for SQLite in
    /// the data directory.
    pub database_url: Option<Secret>,
    /// `DATABASE_MIGRATION_URL`: Postgres only, the URL of the role that
    /// owns the schema, for migrations; the server itself connects with
    /// `DATABASE_URL` as a role that owns nothing, so no statement it runs
    /// can turn Row Level Security off.
    pub database_migration_url: Option<Secret>,
    /// `DEBRIEF_DB_MAX_CONNECTIONS`: on Postgres the connections of scoped
    /// transactions (beside at most 4 for the rest); on SQLite the size of
    /// the pool reads run on, beside its one writer connection.
    pub db_max_connections: Option<u32>,
    /// `DEBRIEF_DB_ACQUIRE_TIMEOUT`: how long a call waits for a database
    /// connection (the database down, or every connection busy) before it
    /// fails with UNAVAILABLE.
    pub db_acquire_timeout: Duration,
    /// `DEBRIEF_LOG_FORMAT`: `pretty` or `json`.
    pub log_format: LogFormat,
    /// `DEBRIEF_LOG`: a tracing filter such as `info` or `debrief=debug,info`.
    pub log_filter: String,
    /// `DEBRIEF_LOG_SAMPLE`: one successful call in this many is logged at
    /// `info` (the rest at `debug`); failures and slow calls always are.
    pub log_sample: u64,
    /// `DEBRIEF_TRUSTED_PROXIES`: comma-separated networks (`10.0.0.0/8`)
    /// or addresses of proxies whose `Forwarded` / `X-Forwarded-For` is
    /// believed to name the client. Empty: none, the TCP peer is the client.
    pub trusted_proxies: crate::context::TrustedProxies,
    /// `DEBRIEF_CORS_ORIGINS`: comma-separated browser origins allowed to
    /// call the API, e.g. `https://app.example.com`. Empty: none.
    pub cors_origins: Vec<HeaderValue>,
    /// `DEBRIEF_MAX_MESSAGE_SIZE`: largest gRPC message accepted or sent.
    pub max_message_bytes: usize,
    /// `DEBRIEF_REQUEST_TIMEOUT`: longest a call may take to answer (a
    /// stream: to start); HTTP gets 504, gRPC CANCELLED ("Timeout expired").
    pub request_timeout: Duration,
    /// `DEBRIEF_MAX_CONCURRENT_PER_CONNECTION`: calls in progress at once
    /// on one connection; more wait their turn.
    pub max_concurrent_per_connection: usize,
    /// `DEBRIEF_SHUTDOWN_GRACE`: how long shutdown waits for calls in flight.
    pub shutdown_grace: Duration,
    /// Sign-in, tokens and throttling.
    pub auth: AuthConfig,
    /// `DEBRIEF_UPGRADE_URL`: where quota errors send people to upgrade.
    pub upgrade_url: String,
    /// `DEBRIEF_STORAGE_URL`: `s3://bucket[/prefix]` for S3-compatible
    /// storage; unset for local files under the data directory.
    pub storage_url: Option<String>,
    /// `DEBRIEF_CLAMD_ADDR`: `host:port` of a ClamAV daemon that scans every
    /// upload as well; unset for the built-in scanner only.
    pub clamd_addr: Option<String>,
    /// `AWS_*`: settings of S3-compatible storage (keys, region, endpoint,
    /// `AWS_ALLOW_HTTP`), read like the AWS tools do.
    pub s3_settings: Vec<(String, Secret)>,
    /// `DEBRIEF_UPLOAD_EXPIRY`: how long an unfinished upload may sit idle.
    pub upload_expiry: Duration,
    /// Live event streams.
    pub events: EventsConfig,
    /// `DEBRIEF_DELETED_RETENTION`: how long a deleted meeting's data is
    /// kept before it is purged.
    pub deleted_retention: Duration,
    /// `DEBRIEF_HOUSEKEEPING_INTERVAL`: how often periodic clean-up runs.
    pub housekeeping_interval: Duration,
    /// The processing pipeline and its workers.
    pub processing: ProcessingConfig,
    /// Practice sessions and AI feedback.
    pub practice: PracticeConfig,
    /// `DEBRIEF_ANALYTICS_MIN_GROUP`: the fewest people an analytics figure
    /// may count (more than none); smaller groups are withheld.
    pub analytics_min_group: u32,
}

/// Calls per minute each user may make, by class of RPC.
#[derive(Debug, Clone, Copy)]
pub struct UserLimits {
    /// Get, List, Watch, Subscribe and Export calls.
    pub reads: u32,
    /// Every other call outside UploadService.
    pub writes: u32,
    /// UploadService calls (chunks, mostly).
    pub uploads: u32,
}

/// Settings of the event log and its streams.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// `DEBRIEF_EVENT_HEARTBEAT`: how often an idle stream gets a heartbeat
    /// (and re-reads the log, catching any missed wake-up).
    pub heartbeat: Duration,
    /// `DEBRIEF_MAX_STREAMS_PER_USER`: open event streams per user and
    /// instance; the next one is refused.
    pub max_streams_per_user: usize,
    /// `DEBRIEF_STREAM_SLOW_TIMEOUT`: how long a stream may stay unable to
    /// take more events before it is ended as too slow.
    pub slow_timeout: Duration,
    /// `DEBRIEF_EVENT_RETENTION`: how long events are kept.
    pub retention: Duration,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// A value that must not be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// A setting that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub var: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads settings from `(name, value)` pairs.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let vars = Vars(vars.into_iter().collect());
        Ok(Self {
            addr: vars.parse(
                "DEBRIEF_ADDR",
                "127.0.0.1:8080",
                "an address such as 127.0.0.1:8080",
            )?,
            metrics_addr: vars.parse_opt("DEBRIEF_METRICS_ADDR", "an address such as 127.0.0.1:9090")?,
            data_dir: PathBuf::from(vars.get("DEBRIEF_DATA_DIR").unwrap_or("./debrief-data")),
            database_url: vars.secret("DATABASE_URL", "DATABASE_URL_FILE")?,
            database_migration_url: vars.secret("DATABASE_MIGRATION_URL", "DATABASE_MIGRATION_URL_FILE")?,
            db_max_connections: vars
                .parse_opt("DEBRIEF_DB_MAX_CONNECTIONS", "a whole number")?
                .map(|n| positive(n, "DEBRIEF_DB_MAX_CONNECTIONS"))
                .transpose()?,
            db_acquire_timeout: positive(
                vars.duration("DEBRIEF_DB_ACQUIRE_TIMEOUT", "5s")?,
                "DEBRIEF_DB_ACQUIRE_TIMEOUT",
            )?,
            log_format: match vars.get("DEBRIEF_LOG_FORMAT").unwrap_or("pretty") {
                "pretty" => LogFormat::Pretty,
                "json" => LogFormat::Json,
                other => {
                    return Err(invalid(
                        "DEBRIEF_LOG_FORMAT",
                        other,
                        "expected `pretty` or `json`",
                    ));
                }
            },
            log_filter: {
                let filter = vars.get("DEBRIEF_LOG").unwrap_or("info");
                tracing_subscriber::EnvFilter::try_new(filter)
                    .map_err(|e| invalid("DEBRIEF_LOG", filter, &e.to_string()))?;
                filter.to_owned()
            },
            log_sample: positive(
                vars.parse("DEBRIEF_LOG_SAMPLE", "100", "a whole number of calls")?,
                "DEBRIEF_LOG_SAMPLE",
            )?,
            cors_origins: cors_origins(vars.get("DEBRIEF_CORS_ORIGINS").unwrap_or(""))?,
            trusted_proxies: trusted_proxies(vars.get("DEBRIEF_TRUSTED_PROXIES").unwrap_or(""))?,
            max_message_bytes: {
                let value = vars.get("DEBRIEF_MAX_MESSAGE_SIZE").unwrap_or("16MiB");
                let bytes = parse_size(value).ok_or_else(|| {
                    invalid("DEBRIEF_MAX_MESSAGE_SIZE", value, "expected a size such as 16MiB")
                })?;
                positive(bytes, "DEBRIEF_MAX_MESSAGE_SIZE")?
            },
            shutdown_grace: vars.duration("DEBRIEF_SHUTDOWN_GRACE", "10s")?,
            request_timeout: positive(
                vars.duration("DEBRIEF_REQUEST_TIMEOUT", "60s")?,
                "DEBRIEF_REQUEST_TIMEOUT",
            )?,
            max_concurrent_per_connection: positive(
                vars.parse("DEBRIEF_MAX_CONCURRENT_PER_CONNECTION", "256", "a whole number")?,
                "DEBRIEF_MAX_CONCURRENT_PER_CONNECTION",
            )?,
            auth: AuthConfig::from_vars(&vars)?,
            upgrade_url: vars
                .get("DEBRIEF_UPGRADE_URL")
                .unwrap_or("http://localhost:3000/settings/plan")
                .to_owned(),
            deleted_retention: vars.duration("DEBRIEF_DELETED_RETENTION", "30d")?,
            housekeeping_interval: positive(
                vars.duration("DEBRIEF_HOUSEKEEPING_INTERVAL", "5m")?,
                "DEBRIEF_HOUSEKEEPING_INTERVAL",
            )?,
            processing: ProcessingConfig::from_vars(&vars)?,
            practice: PracticeConfig::from_vars(&vars)?,
            analytics_min_group: positive(
                vars.parse("DEBRIEF_ANALYTICS_MIN_GROUP", "5", "a whole number")?,
                "DEBRIEF_ANALYTICS_MIN_GROUP",
            )?,
            events: EventsConfig {
                heartbeat: positive(
                    vars.duration("DEBRIEF_EVENT_HEARTBEAT", "15s")?,
                    "DEBRIEF_EVENT_HEARTBEAT",
                )?,
                max_streams_per_user: positive(
                    vars.parse("DEBRIEF_MAX_STREAMS_PER_USER", "10", "a whole number")?,
                    "DEBRIEF_MAX_STREAMS_PER_USER",
                )?,
                slow_timeout: positive(
                    vars.duration("DEBRIEF_STREAM_SLOW_TIMEOUT", "10s")?,
                    "DEBRIEF_STREAM_SLOW_TIMEOUT",
                )?,
                retention: positive(
                    vars.duration("DEBRIEF_EVENT_RETENTION", "7d")?,
                    "DEBRIEF_EVENT_RETENTION",
                )?,
            },
            storage_url: vars
                .get("DEBRIEF_STORAGE_URL")
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            clamd_addr: vars
                .get("DEBRIEF_CLAMD_ADDR")
                .filter(|a| !a.is_empty())
                .map(str::to_owned),
            s3_settings: {
                let mut settings: Vec<(String, Secret)> = vars
                    .0
                    .iter()
                    .filter(|(key, _)| key.starts_with("AWS_"))
                    .map(|(key, value)| (key.clone(), Secret::new(value.clone())))
                    .collect();
                settings.sort_by(|a, b| a.0.cmp(&b.0));
                settings
            },
            upload_expiry: positive(
                vars.duration("DEBRIEF_UPLOAD_EXPIRY", "24h")?,
                "DEBRIEF_UPLOAD_EXPIRY",
            )?,
        })
    }

    /// The database URL: `DATABASE_URL`, or the SQLite file in the data
    /// directory.
    pub fn database_url(&self) -> Secret {
        match &self.database_url {
            Some(url) => url.clone(),
            None => Secret::new(format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("debrief.db").display()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_need_no_variables() {
        let config = config(&[]).expect("defaults are valid");
        assert_eq!(config.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.max_message_bytes, 16 << 20);
        assert_eq!(config.shutdown_grace, Duration::from_secs(10));
        assert!(config.cors_origins.is_empty());
        assert!(config.database_url().expose().starts_with("sqlite://"));
    }

    #[test]
    fn a_malformed_value_names_its_variable() {
        for (var, value) in [
            ("DEBRIEF_ADDR", "not-an-address"),
            ("DEBRIEF_LOG_FORMAT", "xml"),
            ("DEBRIEF_MAX_MESSAGE_SIZE", "lots"),
            ("DEBRIEF_MAX_MESSAGE_SIZE", "0"),
            ("DEBRIEF_SHUTDOWN_GRACE", "10 parsecs"),
            ("DEBRIEF_CORS_ORIGINS", "https://ok.example, ftp://nope"),
            ("DEBRIEF_CORS_ORIGINS", "https://app.example.com/path"),
            ("DEBRIEF_DB_MAX_CONNECTIONS", "-3"),
            ("DEBRIEF_LOG", "debrief=loud"),
            ("DEBRIEF_SESSION_RECHECK", "5m"),
            ("DEBRIEF_ACCESS_TOKEN_TTL", "0s"),
            ("DEBRIEF_AUTH_RATE_LIMIT", "many"),
            ("DEBRIEF_TRUSTED_PROXIES", "10.0.0.0/8, the-load-balancer"),
            ("DEBRIEF_MAILER", "pigeon"),
            ("DEBRIEF_SMTP_URL", "http://mail.example.com"),
            ("DEBRIEF_AI_FEEDBACK", "gpt"),
            ("DEBRIEF_PRACTICE_SESSION_TIMEOUT", "0s"),
        ] {
            let err = config(&[(var, value)]).expect_err(value);
            assert_eq!(err.var, var, "{err}");
            assert!(err.to_string().contains(var), "{err}");
        }
    }

    #[test]
    fn cors_origins_are_a_comma_separated_list() {
        let config = config(&[(
            "DEBRIEF_CORS_ORIGINS",
            "https://app.example.com, http://localhost:5173,",
        )])
        .unwrap();
        assert_eq!(
            config.cors_origins,
            ["https://app.example.com", "http://localhost:5173"]
        );
        for bad in ["https://app.example.com/", "app.example.com", "https://"] {
            assert!(
                config_err_var(&[("DEBRIEF_CORS_ORIGINS", bad)]) == "DEBRIEF_CORS_ORIGINS",
                "{bad}"
            );
        }
    }

    fn config_err_var(vars: &[(&str, &str)]) -> &'static str {
        config(vars).expect_err("invalid").var
    }

    #[test]
    fn secrets_are_never_shown() {
        let config = config(&[("DATABASE_URL", "postgres://app:hunter2@db/debrief")]).unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(
            config.database_url().expose(),
            "postgres://app:hunter2@db/debrief"
        );
    }

    #[test]
    fn a_secret_can_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("url");
        std::fs::write(&path, "postgres://from-file/db\n").unwrap();
        let config = config(&[("DATABASE_URL_FILE", path.to_str().unwrap())]).unwrap();
        assert_eq!(config.database_url().expose(), "postgres://from-file/db");
        let err =
            super::Config::from_vars([("DATABASE_URL_FILE".to_string(), "/nonexistent/url".to_string())])
                .expect_err("missing file");
        assert_eq!(err.var, "DATABASE_URL_FILE");
    }

    #[test]
    fn an_smtp_url_gives_server_tls_and_credentials_without_showing_the_password() {
        let config = config(&[
            (
                "DEBRIEF_SMTP_URL",
                "smtp://mailer%40example.com:s3cr%3At+1@mail.example.com",
            ),
            ("DEBRIEF_MAIL_FROM", "debrief <no-reply@example.com>"),
        ])
        .unwrap();
        let MailConfig::Smtp(smtp) = &config.auth.mail else {
            panic!("SMTP when a URL is given");
        };
        assert_eq!(
            (smtp.host.as_str(), smtp.port, smtp.implicit_tls),
            ("mail.example.com", 587, false)
        );
        let (user, password) = smtp.credentials.as_ref().unwrap();
        assert_eq!(
            (user.as_str(), password.expose()),
            ("mailer@example.com", "s3cr:t+1")
        );
        assert!(!format!("{config:?}").contains("s3cr"));
        assert!(matches!(self::config(&[]).unwrap().auth.mail, MailConfig::Log));
        let missing_from = self::config(&[("DEBRIEF_SMTP_URL", "smtps://mail.example.com")]).unwrap_err();
        assert_eq!(missing_from.var, "DEBRIEF_MAIL_FROM");
    }

    #[test]
    fn durations_and_sizes_parse() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_size("4MiB"), Some(4 << 20));
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("1TB"), None);
    }
}
