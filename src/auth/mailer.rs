//! Outgoing email. The service only needs "send this message"; delivery is
//! pluggable. The default writes messages to the log (development); tests
//! use [`RecordingMailer`].

use std::sync::Mutex;

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
