//! Configuration from environment variables.
//!
//! Every setting has a default, so `debrief serve` runs with none. A value
//! that does not parse stops start-up with an error naming the variable.
//! Secrets come only from the environment, either directly (`DATABASE_URL`)
//! or from a file named by `<NAME>_FILE` (`DATABASE_URL_FILE`), and are
//! never logged or shown in errors.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use http::HeaderValue;

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
    /// `DEBRIEF_DB_MAX_CONNECTIONS`: pool size (Postgres; SQLite uses one
    /// connection unless this is set).
    pub db_max_connections: Option<u32>,
    /// `DEBRIEF_DB_ACQUIRE_TIMEOUT`: how long a call waits for a database
    /// connection (the database down, or every connection busy) before it
    /// fails with UNAVAILABLE.
    pub db_acquire_timeout: Duration,
    /// `DEBRIEF_LOG_FORMAT`: `pretty` or `json`.
    pub log_format: LogFormat,
    /// `DEBRIEF_LOG`: a tracing filter such as `info` or `debrief=debug,info`.
    pub log_filter: String,
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

/// Settings of the processing pipeline.
#[derive(Debug, Clone)]
pub struct ProcessingConfig {
    /// `DEBRIEF_WORKERS`: meetings processed at once by this process; 0 runs
    /// no worker (as `serve --no-worker` does).
    pub workers: usize,
    /// `DEBRIEF_JOB_MAX_ATTEMPTS`: attempts before a job is dead.
    pub max_attempts: i32,
    /// `DEBRIEF_JOB_BACKOFF`: the wait after a first failure; it doubles
    /// with each further one, with jitter.
    pub backoff: Duration,
    /// `DEBRIEF_JOB_BACKOFF_MAX`: the longest wait between attempts.
    pub backoff_max: Duration,
    /// `DEBRIEF_JOB_LEASE`: how long a job stays with a worker that stops
    /// renewing it (a worker renews every third of it while alive).
    pub lease: Duration,
    /// `DEBRIEF_JOB_POLL`: how often an idle worker looks for work queued
    /// by other processes.
    pub poll: Duration,
    /// `DEBRIEF_TRANSCRIPTION_PRICE`: price per transcribed minute, in
    /// millionths of a US dollar, for estimates and the AI cost ledger.
    pub price_per_minute_micros: i64,
    /// `DEBRIEF_ORIGINAL_RETENTION`: how long a processed meeting's
    /// original recording is kept; None: for as long as the meeting.
    pub original_retention: Option<Duration>,
    /// `DEBRIEF_FILLER_WORDS`: comma-separated filler words and phrases.
    pub filler_words: Vec<String>,
    /// `DEBRIEF_PROGRESS_INTERVAL`: the shortest time between two progress
    /// events of a long stage.
    pub progress_interval: Duration,
    /// The transcription provider.
    pub transcriber: TranscriberConfig,
}

/// Which transcription provider runs, and how it is called.
#[derive(Debug, Clone)]
pub enum TranscriberConfig {
    /// `DEBRIEF_TRANSCRIBER=disabled`: meetings wait at
    /// `awaiting_transcription`.
    Disabled,
    /// `DEBRIEF_TRANSCRIBER=openai`: an OpenAI-compatible
    /// `/v1/audio/transcriptions` endpoint.
    OpenAi {
        /// `DEBRIEF_TRANSCRIBER_URL`: the base URL.
        base_url: String,
        /// `DEBRIEF_TRANSCRIBER_API_KEY` (or `_FILE`, or `OPENAI_API_KEY`).
        api_key: Secret,
        /// `DEBRIEF_TRANSCRIBER_MODEL`.
        model: String,
        /// `DEBRIEF_TRANSCRIBER_RATE_LIMIT`: requests per minute.
        requests_per_minute: u32,
        /// `DEBRIEF_TRANSCRIBER_RETRIES`: retries of a request answered 429
        /// or 5xx, before the stage fails.
        retries: u32,
        /// `DEBRIEF_TRANSCRIBER_TIMEOUT`: longest wait for one answer.
        timeout: Duration,
    },
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

/// Settings of accounts, tokens and sign-in protection.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `DEBRIEF_JWT_SIGNING_KEY` (or `_FILE`): the Ed25519 private key (PKCS#8
    /// PEM) that signs access tokens. Unset with the default SQLite setup: a
    /// key generated once into the data directory.
    pub signing_key: Option<Secret>,
    /// `DEBRIEF_JWT_VERIFY_KEYS` (or `_FILE`): further Ed25519 public keys
    /// (PEM) accepted for verification, e.g. the previous signing key.
    pub verify_keys: Option<String>,
    /// `DEBRIEF_JWT_ISSUER`: the `iss` claim.
    pub issuer: String,
    /// `DEBRIEF_ACCESS_TOKEN_TTL`: lifetime of an access token.
    pub access_token_ttl: Duration,
    /// `DEBRIEF_SESSION_TTL`: how long a session lasts without a refresh.
    pub session_ttl: Duration,
    /// `DEBRIEF_REFRESH_REUSE_GRACE`: how long a rotated refresh token still
    /// returns its successor (concurrent refreshes from two tabs).
    pub refresh_reuse_grace: Duration,
    /// `DEBRIEF_SESSION_RECHECK`: how often an instance re-reads whether a
    /// session or API key was revoked (at most 30s).
    pub session_recheck: Duration,
    /// `DEBRIEF_AUTH_RATE_LIMIT`: requests per minute per IP address to the
    /// SignUp, SignIn, RefreshSession and RequestPasswordReset RPCs.
    pub rate_limit_per_minute: u32,
    /// `DEBRIEF_AUTH_FAILURE_LIMIT`: requests with a wrong token or API key
    /// per minute per IP address before the address is refused for a while.
    pub failed_auth_per_minute: u32,
    /// `DEBRIEF_RATE_LIMIT_READS`, `_WRITES`, `_UPLOADS`: calls per minute
    /// per user to reading RPCs, to changing ones, and to UploadService.
    pub user_limits: UserLimits,
    /// `DEBRIEF_SIGN_IN_MAX_FAILURES`: consecutive failures for one email
    /// before it is locked (an IP address gets four times as many).
    pub max_sign_in_failures: u32,
    /// `DEBRIEF_SIGN_IN_LOCKOUT`: the first lockout; each further failure
    /// doubles it, up to an hour.
    pub lockout: Duration,
    /// `DEBRIEF_APP_URL`: the web app, for links in emails.
    pub app_url: String,
    /// How email is delivered.
    pub mail: MailConfig,
}

/// How email (verification and password reset links) is delivered.
#[derive(Debug, Clone)]
pub enum MailConfig {
    /// `DEBRIEF_MAILER=log` (the default without `DEBRIEF_SMTP_URL`): not
    /// delivered but written to the log, links included. Development only.
    Log,
    /// `DEBRIEF_MAILER=smtp`: through an SMTP server, always encrypted.
    Smtp(SmtpConfig),
}

/// An SMTP server to send through.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Host name (checked against the server's certificate).
    pub host: String,
    /// Port: 587 (STARTTLS) or 465 (TLS) unless given.
    pub port: u16,
    /// `smtps://`: TLS from the start; else STARTTLS, required.
    pub implicit_tls: bool,
    /// User name and password, when the server wants them.
    pub credentials: Option<(String, Secret)>,
    /// `DEBRIEF_MAIL_FROM`: the sender, e.g. `debrief <no-reply@example.com>`.
    pub from: String,
    /// `DEBRIEF_SMTP_CA_FILE`: PEM of further roots to trust (a private CA).
    pub extra_roots: Option<Vec<u8>>,
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

impl AuthConfig {
    fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let session_recheck = vars.duration("DEBRIEF_SESSION_RECHECK", "15s")?;
        if session_recheck > Duration::from_secs(30) {
            return Err(ConfigError {
                var: "DEBRIEF_SESSION_RECHECK",
                reason: "must be at most 30s, so revocations apply within 30 seconds".into(),
            });
        }
        Ok(Self {
            signing_key: vars.secret("DEBRIEF_JWT_SIGNING_KEY", "DEBRIEF_JWT_SIGNING_KEY_FILE")?,
            verify_keys: vars
                .secret("DEBRIEF_JWT_VERIFY_KEYS", "DEBRIEF_JWT_VERIFY_KEYS_FILE")?
                .map(|keys| keys.expose().to_owned()),
            issuer: vars.get("DEBRIEF_JWT_ISSUER").unwrap_or("debrief").to_owned(),
            access_token_ttl: positive(
                vars.duration("DEBRIEF_ACCESS_TOKEN_TTL", "15m")?,
                "DEBRIEF_ACCESS_TOKEN_TTL",
            )?,
            session_ttl: positive(
                vars.duration("DEBRIEF_SESSION_TTL", "30d")?,
                "DEBRIEF_SESSION_TTL",
            )?,
            refresh_reuse_grace: vars.duration("DEBRIEF_REFRESH_REUSE_GRACE", "10s")?,
            session_recheck,
            rate_limit_per_minute: positive(
                vars.parse(
                    "DEBRIEF_AUTH_RATE_LIMIT",
                    "20",
                    "a whole number of requests per minute",
                )?,
                "DEBRIEF_AUTH_RATE_LIMIT",
            )?,
            failed_auth_per_minute: positive(
                vars.parse(
                    "DEBRIEF_AUTH_FAILURE_LIMIT",
                    "60",
                    "a whole number of failures per minute",
                )?,
                "DEBRIEF_AUTH_FAILURE_LIMIT",
            )?,
            user_limits: UserLimits {
                reads: positive(
                    vars.parse(
                        "DEBRIEF_RATE_LIMIT_READS",
                        "1200",
                        "a whole number of calls per minute",
                    )?,
                    "DEBRIEF_RATE_LIMIT_READS",
                )?,
                writes: positive(
                    vars.parse(
                        "DEBRIEF_RATE_LIMIT_WRITES",
                        "300",
                        "a whole number of calls per minute",
                    )?,
                    "DEBRIEF_RATE_LIMIT_WRITES",
                )?,
                uploads: positive(
                    vars.parse(
                        "DEBRIEF_RATE_LIMIT_UPLOADS",
                        "600",
                        "a whole number of calls per minute",
                    )?,
                    "DEBRIEF_RATE_LIMIT_UPLOADS",
                )?,
            },
            max_sign_in_failures: positive(
                vars.parse("DEBRIEF_SIGN_IN_MAX_FAILURES", "5", "a whole number")?,
                "DEBRIEF_SIGN_IN_MAX_FAILURES",
            )?,
            lockout: positive(
                vars.duration("DEBRIEF_SIGN_IN_LOCKOUT", "30s")?,
                "DEBRIEF_SIGN_IN_LOCKOUT",
            )?,
            app_url: vars
                .get("DEBRIEF_APP_URL")
                .unwrap_or("http://localhost:3000")
                .trim_end_matches('/')
                .to_owned(),
            mail: MailConfig::from_vars(vars)?,
        })
    }
}

impl MailConfig {
    fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let url = vars.secret("DEBRIEF_SMTP_URL", "DEBRIEF_SMTP_URL_FILE")?;
        let default = if url.is_some() { "smtp" } else { "log" };
        match vars.get("DEBRIEF_MAILER").unwrap_or(default) {
            "log" => Ok(Self::Log),
            "smtp" => {
                let url = url.ok_or_else(|| ConfigError {
                    var: "DEBRIEF_SMTP_URL",
                    reason:
                        "DEBRIEF_MAILER=smtp needs the server, e.g. smtp://user:password@mail.example.com"
                            .into(),
                })?;
                SmtpConfig::parse(&url, vars).map(Self::Smtp)
            }
            other => Err(invalid("DEBRIEF_MAILER", other, "expected `smtp` or `log`")),
        }
    }
}

impl SmtpConfig {
    fn parse(url: &Secret, vars: &Vars) -> Result<Self, ConfigError> {
        // The URL holds a password: errors name the variable, not the value.
        let bad = |reason: &str| ConfigError {
            var: "DEBRIEF_SMTP_URL",
            reason: reason.to_owned(),
        };
        let parsed = url::Url::parse(url.expose()).map_err(|_| bad("is not a URL"))?;
        let implicit_tls = match parsed.scheme() {
            "smtp" => false,
            "smtps" => true,
            _ => return Err(bad("must start with smtp:// (STARTTLS) or smtps:// (TLS)")),
        };
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("names no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8_lossy()
                .into_owned()
        };
        let credentials = (!parsed.username().is_empty()).then(|| {
            (
                decode(parsed.username()),
                Secret::new(decode(parsed.password().unwrap_or_default())),
            )
        });
        let from = vars
            .get("DEBRIEF_MAIL_FROM")
            .unwrap_or_default()
            .trim()
            .to_owned();
        if from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(ConfigError {
                var: "DEBRIEF_MAIL_FROM",
                reason: "the sender of email, e.g. \"debrief <no-reply@example.com>\", is needed with SMTP"
                    .into(),
            });
        }
        let extra_roots = match vars.get("DEBRIEF_SMTP_CA_FILE").filter(|p| !p.is_empty()) {
            None => None,
            Some(path) => Some(std::fs::read(path).map_err(|e| ConfigError {
                var: "DEBRIEF_SMTP_CA_FILE",
                reason: format!("cannot read {path:?}: {e}"),
            })?),
        };
        Ok(Self {
            port: parsed.port().unwrap_or(if implicit_tls { 465 } else { 587 }),
            host,
            implicit_tls,
            credentials,
            from,
            extra_roots,
        })
    }
}

impl ProcessingConfig {
    fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let backoff = positive(
            vars.duration("DEBRIEF_JOB_BACKOFF", "10s")?,
            "DEBRIEF_JOB_BACKOFF",
        )?;
        let lease = vars.duration("DEBRIEF_JOB_LEASE", "60s")?;
        if lease < Duration::from_secs(1) {
            return Err(invalid(
                "DEBRIEF_JOB_LEASE",
                &format!("{lease:?}"),
                "must be at least 1s",
            ));
        }
        Ok(Self {
            workers: vars.parse("DEBRIEF_WORKERS", "2", "a whole number")?,
            max_attempts: positive(
                vars.parse("DEBRIEF_JOB_MAX_ATTEMPTS", "5", "a whole number")?,
                "DEBRIEF_JOB_MAX_ATTEMPTS",
            )?,
            backoff,
            backoff_max: vars.duration("DEBRIEF_JOB_BACKOFF_MAX", "10m")?.max(backoff),
            lease,
            poll: positive(vars.duration("DEBRIEF_JOB_POLL", "1s")?, "DEBRIEF_JOB_POLL")?,
            price_per_minute_micros: vars.parse(
                "DEBRIEF_TRANSCRIPTION_PRICE",
                "6000",
                "a whole number of millionths of a dollar",
            )?,
            original_retention: vars
                .get("DEBRIEF_ORIGINAL_RETENTION")
                .filter(|v| !v.is_empty())
                .map(|_| vars.duration("DEBRIEF_ORIGINAL_RETENTION", ""))
                .transpose()?,
            filler_words: vars
                .get("DEBRIEF_FILLER_WORDS")
                .unwrap_or("um,uh,er,ah,hmm,like,you know,i mean,sort of,kind of,basically,actually")
                .split(',')
                .map(|w| w.trim().to_lowercase())
                .filter(|w| !w.is_empty())
                .collect(),
            progress_interval: vars.duration("DEBRIEF_PROGRESS_INTERVAL", "250ms")?,
            transcriber: TranscriberConfig::from_vars(vars)?,
        })
    }
}

impl TranscriberConfig {
    fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let api_key = vars
            .secret("DEBRIEF_TRANSCRIBER_API_KEY", "DEBRIEF_TRANSCRIBER_API_KEY_FILE")?
            .or_else(|| vars.get("OPENAI_API_KEY").map(Secret::new));
        let default = if api_key.is_some() { "openai" } else { "disabled" };
        match vars.get("DEBRIEF_TRANSCRIBER").unwrap_or(default) {
            "disabled" => Ok(Self::Disabled),
            "openai" => Ok(Self::OpenAi {
                base_url: vars
                    .get("DEBRIEF_TRANSCRIBER_URL")
                    .unwrap_or("https://api.openai.com")
                    .trim_end_matches('/')
                    .to_owned(),
                api_key: api_key.ok_or_else(|| ConfigError {
                    var: "DEBRIEF_TRANSCRIBER_API_KEY",
                    reason: "the openai transcriber needs an API key".into(),
                })?,
                model: vars
                    .get("DEBRIEF_TRANSCRIBER_MODEL")
                    .unwrap_or("whisper-1")
                    .to_owned(),
                requests_per_minute: positive(
                    vars.parse("DEBRIEF_TRANSCRIBER_RATE_LIMIT", "50", "a whole number")?,
                    "DEBRIEF_TRANSCRIBER_RATE_LIMIT",
                )?,
                retries: vars.parse("DEBRIEF_TRANSCRIBER_RETRIES", "3", "a whole number")?,
                timeout: positive(
                    vars.duration("DEBRIEF_TRANSCRIBER_TIMEOUT", "5m")?,
                    "DEBRIEF_TRANSCRIBER_TIMEOUT",
                )?,
            }),
            other => Err(invalid(
                "DEBRIEF_TRANSCRIBER",
                other,
                "expected `openai` or `disabled`",
            )),
        }
    }
}

struct Vars(HashMap<String, String>);

impl Vars {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn parse<T: FromStr>(&self, var: &'static str, default: &str, expected: &str) -> Result<T, ConfigError> {
        parse_value(var, self.get(var).unwrap_or(default), expected)
    }

    fn parse_opt<T: FromStr>(&self, var: &'static str, expected: &str) -> Result<Option<T>, ConfigError> {
        self.get(var)
            .map(|value| parse_value(var, value, expected))
            .transpose()
    }

    fn duration(&self, var: &'static str, default: &str) -> Result<Duration, ConfigError> {
        let value = self.get(var).unwrap_or(default);
        parse_duration(value).ok_or_else(|| invalid(var, value, "expected a duration such as 10s"))
    }

    /// `var`, or the contents of the file named by `file_var`.
    fn secret(&self, var: &'static str, file_var: &'static str) -> Result<Option<Secret>, ConfigError> {
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

fn invalid(var: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError {
        var,
        reason: format!("{value:?} is not valid: {reason}"),
    }
}

fn positive<T: PartialOrd + Default>(value: T, var: &'static str) -> Result<T, ConfigError> {
    if value > T::default() {
        Ok(value)
    } else {
        Err(ConfigError {
            var,
            reason: "must be greater than zero".into(),
        })
    }
}

fn trusted_proxies(value: &str) -> Result<crate::context::TrustedProxies, ConfigError> {
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

fn cors_origins(value: &str) -> Result<Vec<HeaderValue>, ConfigError> {
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
