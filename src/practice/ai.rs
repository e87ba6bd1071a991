//! AI feedback and scenarios: the [`AiProvider`] trait, its
//! OpenAI-compatible chat-completions client, and what practice asks of it.
//!
//! Every call holds one AI feedback request from the person's plan first
//! (refused past the limit), commits it and records its cost as AI spend
//! when the provider answers, and gives it back when it does not. The
//! answer must be JSON of the shape asked for, checked before use; whatever
//! goes wrong, the rule-based feedback (or the template's scenario) stands.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::Deserialize;
use uuid::Uuid;

use super::model::SessionExercise;
use super::scoring::{Feedback, Item, Metrics, Tone};
use crate::config::{AiConfig, Secret};
use crate::db::Db;
use crate::error::AppError;
use crate::provider::{CallError, Provider};
use crate::skills::Skill;
use crate::usage::ledger;
use crate::usage::model::Category;

/// A chat model's JSON answer and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The answer, a JSON object.
    pub content: serde_json::Value,
    /// Its cost, in millionths of a dollar.
    pub cost_micros: i64,
}

/// An AI provider.
#[tonic::async_trait]
pub trait AiProvider: Send + Sync + std::fmt::Debug {
    /// Provider and model, e.g. `openai/gpt-4o-mini`; None when turned off.
    fn model(&self) -> Option<String>;

    /// Asks the model, answering with a JSON object.
    async fn complete_json(&self, system: &str, user: &str) -> Result<Completion, CallError>;
}

/// The provider the configuration names.
pub fn from_config(config: &AiConfig) -> Arc<dyn AiProvider> {
    match config {
        AiConfig::Disabled => Arc::new(Disabled),
        AiConfig::OpenAi {
            base_url,
            api_key,
            model,
            requests_per_minute,
            retries,
            timeout,
            input_price_micros_per_million,
            output_price_micros_per_million,
        } => Arc::new(OpenAiChat {
            provider: Provider::new("AI feedback", *timeout, *requests_per_minute, *retries),
            url: format!("{base_url}/v1/chat/completions"),
            api_key: api_key.clone(),
            model: model.clone(),
            prices: (*input_price_micros_per_million, *output_price_micros_per_million),
        }),
    }
}

/// AI turned off.
#[derive(Debug)]
pub struct Disabled;

#[tonic::async_trait]
impl AiProvider for Disabled {
    fn model(&self) -> Option<String> {
        None
    }

    async fn complete_json(&self, _system: &str, _user: &str) -> Result<Completion, CallError> {
        Err(CallError::Permanent("AI feedback is turned off".into()))
    }
}

/// An OpenAI-compatible `/v1/chat/completions` endpoint.
#[derive(Debug)]
pub struct OpenAiChat {
    provider: Provider,
    url: String,
    api_key: Secret,
    model: String,
    /// Millionths of a dollar per million prompt and completion tokens.
    prices: (i64, i64),
}

#[derive(Deserialize)]
struct ChatAnswer {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: i64,
    #[serde(default)]
    completion_tokens: i64,
}

#[tonic::async_trait]
impl AiProvider for OpenAiChat {
    fn model(&self) -> Option<String> {
        Some(format!("openai/{}", self.model))
    }

    async fn complete_json(&self, system: &str, user: &str) -> Result<Completion, CallError> {
        let body = serde_json::json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "response_format": {"type": "json_object"},
            "temperature": 0.4,
        });
        let response = self
            .provider
            .send(|client| {
                Ok(client
                    .post(&self.url)
                    .bearer_auth(self.api_key.expose())
                    .json(&body))
            })
            .await?;
        let answer: ChatAnswer = response
            .json()
            .await
            .map_err(|e| CallError::Transient(format!("unreadable answer: {e}")))?;
        let content = answer
            .choices
            .first()
            .and_then(|c| c.message.content.as_deref())
            .ok_or_else(|| CallError::Transient("the answer had no message".into()))?;
        let content: serde_json::Value = serde_json::from_str(content)
            .map_err(|_| CallError::Transient("the answer was not the JSON asked for".into()))?;
        let usage = answer.usage.unwrap_or(Usage {
            prompt_tokens: 0,
            completion_tokens: 0,
        });
        let cost =
            (usage.prompt_tokens * self.prices.0 + usage.completion_tokens * self.prices.1) / 1_000_000;
        Ok(Completion {
            content,
            cost_micros: cost,
        })
    }
}

/// Why an AI call gave nothing usable, in words for the person.
#[derive(Debug)]
pub enum Unavailable {
    /// AI is turned off on this server.
    Off,
    /// The plan's AI feedback requests are used up (the quota's message).
    Quota(String),
    /// The provider failed or answered with something unusable.
    Failed(String),
}

impl Unavailable {
    /// What the person is told.
    pub fn explain(&self) -> String {
        match self {
            Self::Off => "AI feedback is turned off on this server; this is the rule-based feedback.".into(),
            Self::Quota(message) => format!("{message} The rule-based feedback below still applies."),
            Self::Failed(_) => {
                "AI feedback was not available this time; the rule-based feedback stands, and you can \
                 ask again with your next attempt."
                    .into()
            }
        }
    }
}

/// What AI calls for practice need: the provider, and the database and
/// upgrade link to count them against the person's plan.
#[derive(Debug, Clone)]
pub struct Ai {
    /// The database.
    pub db: Db,
    /// The provider.
    pub provider: Arc<dyn AiProvider>,
    /// Where quota refusals send people.
    pub upgrade_url: String,
}

impl Ai {
    /// Makes one call for `user_id`: holds an AI feedback request, asks, then
    /// counts it and its cost (or gives it back).
    pub async fn call(
        &self,
        user_id: Uuid,
        system: &str,
        user: &str,
    ) -> Result<serde_json::Value, Unavailable> {
        let (db, provider, upgrade_url) = (&self.db, &self.provider, self.upgrade_url.as_str());
        if provider.model().is_none() {
            return Err(Unavailable::Off);
        }
        let failed = |e: AppError| Unavailable::Failed(e.to_string());
        let scoped = db.as_user(user_id).await.map_err(failed)?;
        let held = ledger::reserve(
            &scoped,
            user_id,
            Category::AiFeedbackRequests,
            1,
            Duration::from_secs(600),
            upgrade_url,
            Utc::now(),
        )
        .await;
        let reservation = match held {
            Ok(reservation) => reservation,
            Err(AppError::QuotaExceeded(quota)) => return Err(Unavailable::Quota(quota.message)),
            Err(error) => return Err(failed(error)),
        };
        scoped.commit().await.map_err(failed)?;
        let answer = provider.complete_json(system, user).await;
        let scoped = db.as_user(user_id).await.map_err(failed)?;
        let now = Utc::now();
        let result = match answer {
            Ok(completion) => {
                reservation.commit(&scoped, 1, None, now).await.map_err(failed)?;
                ledger::record(
                    &scoped,
                    user_id,
                    Category::AiCostMicros,
                    completion.cost_micros,
                    None,
                    crate::usage::entity::metric::Kind::Actual,
                    now,
                )
                .await
                .map_err(failed)?;
                Ok(completion.content)
            }
            Err(error) => {
                tracing::warn!(%error, "the AI provider gave no answer");
                reservation.release(&scoped, now).await.map_err(failed)?;
                Err(Unavailable::Failed(error.to_string()))
            }
        };
        scoped.commit().await.map_err(failed)?;
        result
    }

    /// Adds the AI's feedback on an answer to `feedback`, or, when there is
    /// none to add, an item saying why; the rule-based items always stay.
    pub async fn add_feedback(
        &self,
        user_id: Uuid,
        exercise: &SessionExercise,
        answer: &str,
        metrics: &Metrics,
        feedback: &mut Feedback,
    ) {
        let user = serde_json::json!({
            "exercise": {"title": exercise.title, "prompt": exercise.prompt, "targets": exercise.rubric},
            "answer": answer,
            "measured": metrics,
            "rule_based_feedback": feedback.items.iter().map(|i| &i.message).collect::<Vec<_>>(),
        })
        .to_string();
        let outcome = self
            .call(user_id, FEEDBACK_SYSTEM, &user)
            .await
            .and_then(|content| parse_feedback(content).map_err(Unavailable::Failed));
        match outcome {
            Ok((summary, items)) => {
                feedback.summary = summary;
                feedback.items.extend(items);
                feedback.ai_generated = true;
            }
            Err(why) => {
                if let Unavailable::Failed(reason) = &why {
                    tracing::warn!(%reason, "AI feedback unusable; keeping the rule-based feedback");
                }
                feedback.items.push(Item {
                    skill: feedback.items.first().map_or(Skill::Clarity, |i| i.skill),
                    tone: Tone::Suggestion,
                    message: why.explain(),
                });
            }
        }
    }

    /// A scenario written from `brief` for `user_id`, or why there is none.
    pub async fn scenario(
        &self,
        user_id: Uuid,
        brief: &str,
        person: &serde_json::Value,
    ) -> Result<String, Unavailable> {
        let user = serde_json::json!({"brief": brief, "person": person}).to_string();
        let content = self.call(user_id, SCENARIO_SYSTEM, &user).await?;
        let answer: AiScenario = serde_json::from_value(content)
            .map_err(|e| Unavailable::Failed(format!("the answer was not a scenario: {e}")))?;
        let text = answer.scenario.trim().to_owned();
        if text.is_empty() || text.chars().count() > 1500 {
            return Err(Unavailable::Failed("the scenario was empty or too long".into()));
        }
        Ok(text)
    }
}

const FEEDBACK_SYSTEM: &str = "You are a speaking coach for working professionals. You get a practice \
exercise, the person's answer (written, or transcribed from speech), what was measured, and the rule-based \
feedback they already have. Add what the rules cannot see: structure, tone, word choice, how the answer \
would land with its audience. Be specific, quote their own words or numbers, and say what to do next time. \
Answer with a JSON object: {\"summary\": \"one or two sentences naming the one or two things to change\", \
\"items\": [{\"skill\": \"pacing|filler_words|pauses|conciseness|questioning|clarity|listening\", \
\"tone\": \"praise|suggestion|warning\", \"message\": \"under 300 characters\"}]} with one to four items.";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AiFeedback {
    summary: String,
    items: Vec<AiItem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AiItem {
    skill: Skill,
    tone: Tone,
    message: String,
}

/// Checks an AI feedback answer; the items and summary it gives.
fn parse_feedback(content: serde_json::Value) -> Result<(String, Vec<Item>), String> {
    let answer: AiFeedback =
        serde_json::from_value(content).map_err(|e| format!("the answer was not feedback: {e}"))?;
    let summary = answer.summary.trim().to_owned();
    if summary.is_empty() || summary.chars().count() > 500 {
        return Err("the summary was empty or too long".into());
    }
    if answer.items.is_empty() || answer.items.len() > 4 {
        return Err(format!("{} items instead of one to four", answer.items.len()));
    }
    let mut items = Vec::with_capacity(answer.items.len());
    for item in answer.items {
        let message = item.message.trim().to_owned();
        if message.is_empty() || message.chars().count() > 500 {
            return Err("an item was empty or too long".into());
        }
        items.push(Item {
            skill: item.skill,
            tone: item.tone,
            message,
        });
    }
    Ok((summary, items))
}

const SCENARIO_SYSTEM: &str = "You write role-play scenarios for speaking practice for working \
professionals. You get a brief (the situation, who the listener is, what the person must get across) and \
facts about the person. Write the scenario they will answer aloud: set the scene in two or three \
sentences, say who they are talking to and what that person cares about, and end with what they must say \
and the time they have. Use the person's own role and meeting where given; invent no numbers they would \
have to know. Answer with a JSON object: {\"scenario\": \"under 1200 characters\"}.";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AiScenario {
    scenario: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feedback_answers_are_checked_before_use() {
        let good = serde_json::json!({
            "summary": "Lead with the decision.",
            "items": [{"skill": "conciseness", "tone": "suggestion", "message": "Open with “We ship on 14 March”."}]
        });
        let (summary, items) = parse_feedback(good).unwrap();
        assert_eq!(summary, "Lead with the decision.");
        assert_eq!(items[0].skill, Skill::Conciseness);
        for bad in [
            serde_json::json!({"summary": "x", "items": []}),
            serde_json::json!({"summary": "", "items": [{"skill": "pacing", "tone": "praise", "message": "ok"}]}),
            serde_json::json!({"summary": "x", "items": [{"skill": "charisma", "tone": "praise", "message": "ok"}]}),
            serde_json::json!({"summary": "x", "items": [{"skill": "pacing", "tone": "loud", "message": "ok"}]}),
            serde_json::json!({"text": "free prose"}),
        ] {
            assert!(parse_feedback(bad.clone()).is_err(), "{bad}");
        }
    }
}
