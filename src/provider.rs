//! Calls to an external AI provider's HTTP API (transcription, chat
//! completions): a client with a timeout, a client-side rate limit, and
//! retries of 429 and 5xx answers (and of requests that never arrived)
//! that honour `Retry-After`.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Worth trying again later (rate limits, provider errors, network).
    #[error("{0}")]
    Transient(String),
    /// Trying again will not help (a refused request, bad credentials).
    #[error("{0}")]
    Permanent(String),
}

/// A provider's API.
pub struct Provider {
    client: reqwest::Client,
    limiter: DefaultDirectRateLimiter,
    retries: u32,
    /// What it is, for log lines (`transcription`, `AI feedback`).
    what: &'static str,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("what", &self.what)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// A provider answering within `timeout`, called at most
    /// `requests_per_minute` times a minute, retried `retries` times.
    pub fn new(what: &'static str, timeout: Duration, requests_per_minute: u32, retries: u32) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .unwrap_or_default(),
            limiter: RateLimiter::direct(Quota::per_minute(
                NonZeroU32::new(requests_per_minute).unwrap_or(NonZeroU32::MIN),
            )),
            retries,
            what,
        }
    }

    /// Sends the request `build` makes (made again for each retry) and
    /// returns the first successful answer.
    pub async fn send(
        &self,
        build: impl Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder, CallError>,
    ) -> Result<reqwest::Response, CallError> {
        let mut attempt = 0;
        loop {
            self.limiter.until_ready().await;
            let response = match build(&self.client)?.send().await {
                Ok(response) => response,
                Err(e) if attempt < self.retries => {
                    tracing::warn!(error = %e.without_url(), attempt, what = self.what, "provider request failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1 << attempt.min(6))).await;
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(CallError::Transient(e.without_url().to_string())),
            };
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let retryable = status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
            if retryable && attempt < self.retries {
                let wait = wait_before_retry(&response, attempt);
                tracing::warn!(%status, attempt, ?wait, what = self.what, "provider asked to wait; retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            let detail = response.text().await.unwrap_or_default();
            let detail: String = detail.chars().take(300).collect();
            let message = format!("{status}: {detail}");
            return Err(if retryable {
                CallError::Transient(message)
            } else {
                CallError::Permanent(message)
            });
        }
    }
}

/// The wait a 429 or 503 asks for (`Retry-After` in seconds), else
/// exponential from one second.
fn wait_before_retry(response: &reqwest::Response, attempt: u32) -> Duration {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(300.0)))
        .unwrap_or_else(|| Duration::from_secs(1 << attempt.min(6)))
}
