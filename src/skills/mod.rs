//! The speaking skills meetings are measured on and practice trains. Stored
//! (modules, scores, levels) by the names below; converted to the API enum
//! exhaustively, so a new skill does not build until it is mapped.
//! [`scoring`] is the one model that turns what was measured into scores.

pub mod scoring;

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::pb::v1 as pb;

/// A speaking skill.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "snake_case")]
pub enum Skill {
    /// Speaking rate.
    #[sea_orm(string_value = "pacing")]
    Pacing,
    /// Few filler words.
    #[sea_orm(string_value = "filler_words")]
    FillerWords,
    /// Deliberate pauses.
    #[sea_orm(string_value = "pauses")]
    Pauses,
    /// Getting to the point.
    #[sea_orm(string_value = "conciseness")]
    Conciseness,
    /// Asking questions.
    #[sea_orm(string_value = "questioning")]
    Questioning,
    /// Clear structure and wording.
    #[sea_orm(string_value = "clarity")]
    Clarity,
    /// Leaving room for others.
    #[sea_orm(string_value = "listening")]
    Listening,
}

impl Skill {
    /// Every skill, in API order.
    pub const ALL: [Skill; 7] = [
        Self::Pacing,
        Self::FillerWords,
        Self::Pauses,
        Self::Conciseness,
        Self::Questioning,
        Self::Clarity,
        Self::Listening,
    ];

    /// The stored name, e.g. `filler_words`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pacing => "pacing",
            Self::FillerWords => "filler_words",
            Self::Pauses => "pauses",
            Self::Conciseness => "conciseness",
            Self::Questioning => "questioning",
            Self::Clarity => "clarity",
            Self::Listening => "listening",
        }
    }

    /// The skill stored as `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|skill| skill.name() == name)
    }

    /// How a person reads it, e.g. "filler words".
    pub fn label(self) -> &'static str {
        match self {
            Self::Pacing => "pacing",
            Self::FillerWords => "filler words",
            Self::Pauses => "pauses",
            Self::Conciseness => "conciseness",
            Self::Questioning => "questioning",
            Self::Clarity => "clarity",
            Self::Listening => "listening",
        }
    }

    /// The skill of an API enum; None for UNSPECIFIED.
    pub fn from_proto(skill: pb::Skill) -> Option<Self> {
        match skill {
            pb::Skill::Unspecified => None,
            pb::Skill::Pacing => Some(Self::Pacing),
            pb::Skill::FillerWords => Some(Self::FillerWords),
            pb::Skill::Pauses => Some(Self::Pauses),
            pb::Skill::Conciseness => Some(Self::Conciseness),
            pb::Skill::Questioning => Some(Self::Questioning),
            pb::Skill::Clarity => Some(Self::Clarity),
            pb::Skill::Listening => Some(Self::Listening),
        }
    }
}

impl From<Skill> for pb::Skill {
    fn from(skill: Skill) -> Self {
        match skill {
            Skill::Pacing => Self::Pacing,
            Skill::FillerWords => Self::FillerWords,
            Skill::Pauses => Self::Pauses,
            Skill::Conciseness => Self::Conciseness,
            Skill::Questioning => Self::Questioning,
            Skill::Clarity => Self::Clarity,
            Skill::Listening => Self::Listening,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_match_the_api_names() {
        for skill in Skill::ALL {
            let api = pb::Skill::from(skill);
            assert_eq!(
                api.as_str_name(),
                format!("SKILL_{}", skill.name().to_uppercase())
            );
            assert_eq!(Skill::from_proto(api), Some(skill));
            assert_eq!(Skill::parse(skill.name()), Some(skill));
        }
    }
}
