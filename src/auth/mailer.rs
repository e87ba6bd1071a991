//! Outgoing email. The service only needs "send this message"; delivery is
//! pluggable: [`SmtpMailer`] delivers through an SMTP server, always over
//! TLS (STARTTLS required, or TLS from the start); [`LogMailer`] only writes
//! messages to the log, for development, and says so at start-up; tests use
//! [`RecordingMailer`]. No other log line holds a message's link.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{MailConfig, SmtpConfig};

/// An email to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// The one link the message is about (verification or reset).
    pub link: String,
}

/// Delivers email.
#[tonic::async_trait]
pub trait Mailer: Send + Sync + std::fmt::Debug {
    /// Sends `mail`. Failures are logged by the caller, never shown to users.
    async fn send(&self, mail: Mail) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// Writes each message to the log under the `debrief::mail` target. For
/// development only: the log then holds the message's link.
#[derive(Debug, Default)]
pub struct LogMailer;

#[tonic::async_trait]
impl Mailer for LogMailer {
    async fn send(&self, mail: Mail) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        tracing::info!(target: "debrief::mail", to = %mail.to, subject = %mail.subject, link = %mail.link, "email (log mailer; not delivered)");
        Ok(())
    }
}

/// Keeps every message in memory, for tests.
#[derive(Debug, Default)]
pub struct RecordingMailer {
    sent: Mutex<Vec<Mail>>,
}

impl RecordingMailer {
    /// Every message sent so far.
    pub fn sent(&self) -> Vec<Mail> {
        self.sent.lock().map(|sent| sent.clone()).unwrap_or_default()
    }
}

#[tonic::async_trait]
impl Mailer for RecordingMailer {
    async fn send(&self, mail: Mail) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.sent.lock().map_err(|e| e.to_string())?.push(mail);
        Ok(())
    }
}

/// Why the mailer could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up email delivery: {0}")]
pub struct MailerError(String);

/// The mailer the configuration asks for.
pub fn from_config(config: &MailConfig) -> Result<Arc<dyn Mailer>, MailerError> {
    match config {
        MailConfig::Log => {
            tracing::warn!(
                "DEBRIEF_MAILER=log: email is NOT delivered; every message, with its verification \
                 or password reset link, is written to this log. For development only: set \
                 DEBRIEF_SMTP_URL and DEBRIEF_MAIL_FROM to deliver email"
            );
            Ok(Arc::new(LogMailer))
        }
        MailConfig::Smtp(smtp) => Ok(Arc::new(SmtpMailer::new(smtp)?)),
    }
}

/// Delivers through an SMTP server, encrypted: STARTTLS is required on
/// `smtp://` (no credential or message is sent before it), `smtps://` is
/// TLS from the start.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    server: String,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// A mailer for `config`; nothing is sent until a message is.
    pub fn new(config: &SmtpConfig) -> Result<Self, MailerError> {
        let failed = |e: lettre::transport::smtp::Error| MailerError(e.to_string());
        let mut tls = TlsParameters::builder(config.host.clone());
        if let Some(pem) = &config.extra_roots {
            tls = tls.add_root_certificate(Certificate::from_pem(pem).map_err(failed)?);
        }
        let tls = tls.build_rustls().map_err(failed)?;
        let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.clone())
            .port(config.port)
            .timeout(Some(Duration::from_secs(30)))
            .tls(if config.implicit_tls {
                Tls::Wrapper(tls)
            } else {
                Tls::Required(tls)
            });
        if let Some((user, password)) = &config.credentials {
            transport = transport.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        let from = config
            .from
            .parse()
            .map_err(|e: lettre::address::AddressError| MailerError(format!("DEBRIEF_MAIL_FROM: {e}")))?;
        Ok(Self {
            transport: transport.build(),
            from,
            server: format!("{}:{}", config.host, config.port),
        })
    }
}

#[tonic::async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: Mail) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let message = Message::builder()
            .from(self.from.clone())
            .to(mail.to.parse()?)
            .subject(mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body)?;
        self.transport.send(message).await?;
        Ok(())
    }
}
