//! Practice through the real server: versioned modules with personalised
//! prompts, the seed modules, sessions, attempts and their feedback,
//! recommendations and adaptive difficulty.

use debrief::pb::v1 as pb;
use debrief::pb::v1::practice_service_client::PracticeServiceClient;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

use crate::events::{next_event, subscribe};
use crate::helpers::{
    Backend, TestApp, TestUser, bearer, details, spawn_app, spawn_app_with, violation_fields,
};
use crate::on_both_backends;
use crate::usage::{admin, category, set_plan, usage_of};

on_both_backends!(
    an_admin_writes_versions_and_people_see_only_what_is_published,
    a_module_with_a_bad_template_or_field_is_refused_naming_each_one,
    the_seed_modules_load_once_and_an_admins_edit_survives_a_restart,
    a_session_pins_its_version_and_written_attempts_get_rubric_feedback,
    the_sixth_session_on_a_plan_of_five_is_refused_and_an_abandoned_one_is_given_back,
    difficulty_rises_after_two_strong_sessions_and_falls_after_two_weak_ones,
    recommendations_quote_the_meetings_numbers_and_a_new_person_gets_a_starter_set,
    a_spoken_attempt_is_scored_from_its_recording_and_its_feedback_arrives_on_the_stream,
    with_a_transcriber_a_spoken_attempts_filler_words_are_counted,
    ai_feedback_is_counted_and_costed_and_a_failing_provider_leaves_the_rule_based_feedback,
    scenario_exercises_are_generated_by_a_job_and_pending_until_ready,
);

/// A PracticeService client over gRPC.
pub fn practice(app: &TestApp) -> PracticeServiceClient<Channel> {
    PracticeServiceClient::new(app.channel.clone())
}

fn speaking(id: &str, template: &str) -> pb::Exercise {
    pb::Exercise {
        id: id.into(),
        title: "Open the meeting".into(),
        kind: pb::ExerciseKind::Speaking as i32,
        prompt_template: template.into(),
        difficulty: 2,
        rubric: Some(pb::Rubric {
            min_words_per_minute: 130.0,
            max_words_per_minute: 160.0,
            target_duration: Some(prost_types::Duration {
                seconds: 60,
                nanos: 0,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn module(title: &str, exercises: Vec<pb::Exercise>) -> pb::Module {
    pb::Module {
        title: title.into(),
        description: "Open meetings with a clear purpose.".into(),
        skills: vec![pb::Skill::Clarity as i32, pb::Skill::Pacing as i32],
        difficulty: 2,
        exercises,
        ..Default::default()
    }
}

async fn get_module(app: &TestApp, token: &str, name: &str) -> Result<pb::Module, tonic::Status> {
    practice(app)
        .get_module(bearer(token, pb::GetModuleRequest { name: name.into() }))
        .await
        .map(|r| r.into_inner().module.expect("module"))
}

async fn listed(app: &TestApp, token: &str, show_unpublished: bool) -> Vec<String> {
    practice(app)
        .list_modules(bearer(
            token,
            pb::ListModulesRequest {
                page_size: 200,
                show_unpublished,
                ..Default::default()
            },
        ))
        .await
        .expect("list modules")
        .into_inner()
        .modules
        .into_iter()
        .map(|m| m.name)
        .collect()
}

async fn publish(app: &TestApp, token: &str, name: &str) -> pb::Module {
    practice(app)
        .publish_module(bearer(token, pb::PublishModuleRequest { name: name.into() }))
        .await
        .expect("publish")
        .into_inner()
        .module
        .expect("module")
}

async fn an_admin_writes_versions_and_people_see_only_what_is_published(backend: Backend) {
    let app = spawn_app(backend).await;
    let boss = admin(&app).await;
    let ann = app.sign_up("ann").await;
    let ann_token = ann.tokens.access_token.clone();

    // A non-admin may not write modules.
    let refused = practice(&app)
        .create_module(ann.request(pb::CreateModuleRequest {
            module: Some(module("Openers", vec![speaking("open-well", "Open it.")])),
            module_id: "openers".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    let draft = practice(&app)
        .create_module(bearer(
            &boss,
            pb::CreateModuleRequest {
                module: Some(module(
                    "Openers",
                    vec![speaking(
                        "open-well",
                        "{{ user.first_name }}, open {% if meeting.available %}{{ meeting.title }}{% else %}your next meeting{% endif %} in {{ targets.target_seconds }} seconds.",
                    )],
                )),
                module_id: "openers".into(),
            },
        ))
        .await
        .expect("create")
        .into_inner()
        .module
        .unwrap();
    assert_eq!(draft.name, "modules/openers");
    assert_eq!(draft.state(), pb::ModuleState::Draft);
    assert_eq!((draft.version, draft.has_draft), (0, true));
    assert!(
        draft.exercises[0]
            .prompt_template
            .contains("{{ user.first_name }}")
    );

    // A draft is the admins' alone.
    assert!(!listed(&app, &ann_token, false).await.contains(&draft.name));
    assert!(listed(&app, &boss, true).await.contains(&draft.name));
    let hidden = get_module(&app, &ann_token, "modules/openers").await.unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    let peek = practice(&app)
        .list_modules(ann.request(pb::ListModulesRequest {
            show_unpublished: true,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(peek.code(), Code::PermissionDenied);

    // Published, everyone sees version 1, with the prompt rendered for them
    // and no template.
    let v1 = publish(&app, &boss, "modules/openers").await;
    assert_eq!(
        (v1.state(), v1.version, v1.has_draft),
        (pb::ModuleState::Published, 1, false)
    );
    let seen = get_module(&app, &ann_token, "modules/openers").await.unwrap();
    assert_eq!(seen.version, 1);
    assert_eq!(
        seen.exercises[0].prompt,
        "ann, open your next meeting in 60 seconds."
    );
    assert_eq!(seen.exercises[0].prompt_template, "");
    assert!(!seen.has_draft);

    // Editing the published module edits a draft: people keep seeing v1.
    let edited = practice(&app)
        .update_module(bearer(
            &boss,
            pb::UpdateModuleRequest {
                module: Some(pb::Module {
                    name: "modules/openers".into(),
                    title: "Openers that land".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["title".into()],
                }),
            },
        ))
        .await
        .expect("update")
        .into_inner()
        .module
        .unwrap();
    assert_eq!(
        (edited.title.as_str(), edited.has_draft),
        ("Openers that land", true)
    );
    assert_eq!(edited.exercises.len(), 1, "the mask kept the exercises");
    assert_eq!(
        get_module(&app, &ann_token, "modules/openers")
            .await
            .unwrap()
            .title,
        "Openers"
    );
    assert_eq!(
        get_module(&app, &boss, "modules/openers@draft")
            .await
            .unwrap()
            .title,
        "Openers that land"
    );
    let no_draft = get_module(&app, &ann_token, "modules/openers@draft")
        .await
        .unwrap_err();
    assert_eq!(no_draft.code(), Code::NotFound);

    // Publishing snapshots it as version 2; version 1 stays readable.
    let v2 = publish(&app, &boss, "modules/openers").await;
    assert_eq!((v2.version, v2.title.as_str()), (2, "Openers that land"));
    assert_eq!(
        get_module(&app, &ann_token, "modules/openers")
            .await
            .unwrap()
            .version,
        2
    );
    assert_eq!(
        get_module(&app, &ann_token, "modules/openers@1")
            .await
            .unwrap()
            .title,
        "Openers"
    );
    let nothing = practice(&app)
        .publish_module(bearer(
            &boss,
            pb::PublishModuleRequest {
                name: "modules/openers".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(nothing.code(), Code::FailedPrecondition);

    // Archived: no longer offered, its versions still readable; publishing
    // offers it again.
    let archived = practice(&app)
        .archive_module(bearer(
            &boss,
            pb::ArchiveModuleRequest {
                name: "modules/openers".into(),
            },
        ))
        .await
        .expect("archive")
        .into_inner()
        .module
        .unwrap();
    assert_eq!(archived.state(), pb::ModuleState::Archived);
    assert!(!listed(&app, &ann_token, false).await.contains(&draft.name));
    assert_eq!(
        get_module(&app, &ann_token, "modules/openers")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        get_module(&app, &ann_token, "modules/openers@2")
            .await
            .unwrap()
            .version,
        2
    );
    assert_eq!(
        publish(&app, &boss, "modules/openers").await.state(),
        pb::ModuleState::Published
    );

    // Over HTTP too, filtered by skill.
    let http = reqwest::Client::new();
    let response = http
        .get(format!(
            "{}/v1/modules?skill=SKILL_CLARITY&pageSize=200",
            app.url()
        ))
        .bearer_auth(&ann_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let names: Vec<&str> = body["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"modules/openers"), "{names:?}");
    assert!(
        !names.contains(&"modules/pacing-a-pace-people-can-follow"),
        "the pacing module does not train clarity: {names:?}"
    );
    let response = http
        .post(format!("{}/v1/modules", app.url()))
        .bearer_auth(&ann_token)
        .json(&json!({"title": "Mine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // Every change is in the audit log.
    let boss_id = app
        .auth()
        .sign_in(pb::SignInRequest {
            email: "boss@example.com".into(),
            password: crate::helpers::PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap()
        .name
        .trim_start_matches("users/")
        .parse()
        .unwrap();
    let actions = app.audit_actions(boss_id).await;
    for action in [
        "module.create",
        "module.update",
        "module.publish",
        "module.archive",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} missing from {actions:?}"
        );
    }
}

async fn a_module_with_a_bad_template_or_field_is_refused_naming_each_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let boss = admin(&app).await;
    let mut bad_rubric = speaking("say-it", "Say it.");
    bad_rubric.rubric = Some(pb::Rubric {
        min_words: 80,
        max_words: 20,
        max_words_per_minute: 900.0,
        ..Default::default()
    });
    let refused = practice(&app)
        .create_module(bearer(
            &boss,
            pb::CreateModuleRequest {
                module: Some(pb::Module {
                    skills: vec![],
                    difficulty: 9,
                    ..module(
                        "",
                        vec![
                            speaking(
                                "open-well",
                                "Hello {{ user.first_name }}.\nOpen {{ meting.title }} now.",
                            ),
                            speaking("open-well", "Fine."),
                            bad_rubric,
                        ],
                    )
                }),
                module_id: "Not A Slug".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let fields = violation_fields(&refused);
    for field in [
        "module_id",
        "module.title",
        "module.skills",
        "module.difficulty",
        "module.exercises[0].prompt_template",
        "module.exercises[1].id",
        "module.exercises[2].rubric.min_words",
        "module.exercises[2].rubric.max_words_per_minute",
    ] {
        assert!(
            fields.iter().any(|f| f == field),
            "{field} missing from {fields:?}"
        );
    }
    // The template's violation names the variable and its line.
    let template = crate::helpers::details(&refused)
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .find(|v| v.field == "module.exercises[0].prompt_template")
        .unwrap()
        .description
        .clone();
    assert!(template.starts_with("line 2:"), "{template}");
    assert!(template.contains("`meting.title`"), "{template}");

    // Nothing was stored, and an update is checked the same way.
    assert!(!listed(&app, &boss, true).await.iter().any(|n| n.contains("slug")));
    practice(&app)
        .create_module(bearer(
            &boss,
            pb::CreateModuleRequest {
                module: Some(module("Openers", vec![speaking("open-well", "Open it.")])),
                module_id: "openers".into(),
            },
        ))
        .await
        .expect("create");
    let refused = practice(&app)
        .update_module(bearer(
            &boss,
            pb::UpdateModuleRequest {
                module: Some(pb::Module {
                    name: "modules/openers".into(),
                    exercises: vec![speaking(
                        "open-well",
                        "{% for x in signals.nothing %}{{ x }}{% endfor %}",
                    )],
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["exercises".into()],
                }),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violation_fields(&refused),
        ["module.exercises[0].prompt_template"]
    );
    let duplicate = practice(&app)
        .create_module(bearer(
            &boss,
            pb::CreateModuleRequest {
                module: Some(module("Again", vec![speaking("open-well", "Open it.")])),
                module_id: "openers".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);
}

async fn the_seed_modules_load_once_and_an_admins_edit_survives_a_restart(backend: Backend) {
    let app = spawn_app(backend).await;
    let boss = admin(&app).await;
    let ann = app.sign_up("ann").await;
    let seeded = listed(&app, &ann.tokens.access_token, false).await;
    assert_eq!(seeded.len(), 6, "{seeded:?}");
    // Each skill has its module, published, with exercises of rising
    // difficulty rendered for the person.
    for name in &seeded {
        let module = get_module(&app, &ann.tokens.access_token, name).await.unwrap();
        assert_eq!((module.state(), module.version), (pb::ModuleState::Published, 1));
        assert!(module.exercises.len() >= 3);
        assert!(
            module
                .exercises
                .iter()
                .all(|e| !e.prompt.is_empty() && e.prompt_template.is_empty())
        );
    }
    // Pages of two walk the six without gaps or repeats.
    let (mut paged, mut token) = (Vec::new(), String::new());
    loop {
        let page = practice(&app)
            .list_modules(ann.request(pb::ListModulesRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(page.modules.len() <= 2);
        paged.extend(page.modules.into_iter().map(|m| m.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, seeded);
    // Loading again adds nothing.
    assert_eq!(debrief::practice::seed::load(&app.db).await.unwrap(), 0);
    assert_eq!(listed(&app, &boss, true).await.len(), 6);

    // An admin's edit, published, survives a restart, which loads the seed
    // again.
    let name = "modules/pacing-a-pace-people-can-follow";
    practice(&app)
        .update_module(bearer(
            &boss,
            pb::UpdateModuleRequest {
                module: Some(pb::Module {
                    name: name.into(),
                    title: "Pace for our sales team".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["title".into()],
                }),
            },
        ))
        .await
        .expect("update");
    publish(&app, &boss, name).await;
    let data_dir = app.data_dir().display().to_string();
    let restarted = app
        .spawn_replica_with(|vars| {
            vars.insert("DEBRIEF_DATA_DIR".into(), data_dir);
        })
        .await;
    let module = get_module(&restarted, &boss, name).await.unwrap();
    assert_eq!(
        (module.title.as_str(), module.version),
        ("Pace for our sales team", 2)
    );
    assert_eq!(listed(&restarted, &boss, true).await.len(), 6);
}

/// An admin's module for session tests: a rewrite, a reflection and a
/// spoken exercise, published as version 1.
async fn memo_module(app: &TestApp, boss: &str) {
    let rewrite = pb::Exercise {
        id: "decision-first".into(),
        title: "Decision first".into(),
        kind: pb::ExerciseKind::Rewrite as i32,
        prompt_template:
            "{{ user.first_name }}, put the decision first in at most {{ targets.max_words }} words.".into(),
        difficulty: 1,
        rubric: Some(pb::Rubric {
            max_words: 30,
            required_phrases: vec!["14 March".into()],
            avoid_words: vec!["probably".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let reflection = pb::Exercise {
        id: "ask-the-room".into(),
        title: "Ask the room".into(),
        kind: pb::ExerciseKind::Reflection as i32,
        prompt_template: "Write the question you will ask next.".into(),
        difficulty: 2,
        rubric: Some(pb::Rubric {
            min_words: 5,
            max_words: 60,
            expect_question: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    let aloud = pb::Exercise {
        id: "status-aloud".into(),
        difficulty: 3,
        ..speaking(
            "status-aloud",
            "Give your status in {{ targets.target_seconds }} seconds.",
        )
    };
    practice(app)
        .create_module(bearer(
            boss,
            pb::CreateModuleRequest {
                module: Some(pb::Module {
                    skills: vec![pb::Skill::Conciseness as i32, pb::Skill::Clarity as i32],
                    ..module("Memos that decide", vec![rewrite, reflection, aloud])
                }),
                module_id: "memos".into(),
            },
        ))
        .await
        .expect("create");
    publish(app, boss, "modules/memos").await;
}

async fn session_of(
    app: &TestApp,
    user: &TestUser,
    name: &str,
) -> Result<pb::PracticeSession, tonic::Status> {
    practice(app)
        .get_session(user.request(pb::GetSessionRequest { name: name.into() }))
        .await
        .map(|r| r.into_inner().session.expect("session"))
}

pub(crate) async fn start(
    app: &TestApp,
    user: &TestUser,
    module: &str,
) -> Result<pb::PracticeSession, tonic::Status> {
    practice(app)
        .start_session(user.request(pb::StartSessionRequest {
            module: module.into(),
            ..Default::default()
        }))
        .await
        .map(|r| r.into_inner().session.expect("session"))
}

pub(crate) async fn attempt(
    app: &TestApp,
    user: &TestUser,
    session: &str,
    exercise: &str,
    text: &str,
) -> pb::Attempt {
    practice(app)
        .submit_attempt(user.request(pb::SubmitAttemptRequest {
            session: session.into(),
            exercise_id: exercise.into(),
            response_text: text.into(),
            ..Default::default()
        }))
        .await
        .expect("attempt")
        .into_inner()
        .attempt
        .expect("attempt")
}

pub(crate) async fn complete(app: &TestApp, user: &TestUser, session: &str) -> pb::PracticeSession {
    practice(app)
        .complete_session(user.request(pb::CompleteSessionRequest { name: session.into() }))
        .await
        .expect("complete")
        .into_inner()
        .session
        .expect("session")
}

/// The item of `feedback` whose message says `words`.
fn said<'a>(feedback: &'a pb::Feedback, words: &str) -> &'a pb::FeedbackItem {
    feedback
        .items
        .iter()
        .find(|i| i.message.contains(words))
        .unwrap_or_else(|| panic!("no item saying {words:?} in {feedback:#?}"))
}

fn item<'a>(feedback: &'a pb::Feedback, skill: pb::Skill, words: &str) -> &'a pb::FeedbackItem {
    feedback
        .items
        .iter()
        .find(|i| i.skill() == skill && i.message.contains(words))
        .unwrap_or_else(|| panic!("no {skill:?} item saying {words:?} in {feedback:#?}"))
}

async fn a_session_pins_its_version_and_written_attempts_get_rubric_feedback(backend: Backend) {
    let app = spawn_app(backend).await;
    let boss = admin(&app).await;
    memo_module(&app, &boss).await;
    let ann = app.sign_up("ann").await;
    let mut events = subscribe(&app, &ann, None).await;

    let session = start(&app, &ann, "modules/memos").await.unwrap();
    assert_eq!((session.module_version, session.difficulty), (1, 2));
    assert_eq!(session.state(), pb::SessionState::Active);
    let ids: Vec<&str> = session.exercises.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["decision-first", "ask-the-room", "status-aloud"]);
    assert_eq!(
        session.exercises[0].prompt,
        "ann, put the decision first in at most 30 words."
    );
    assert!(
        session
            .exercises
            .iter()
            .all(|e| e.state() == pb::ExerciseState::Ready && e.prompt_template.is_empty())
    );

    // A new version does not change a session under way.
    practice(&app)
        .update_module(bearer(
            &boss,
            pb::UpdateModuleRequest {
                module: Some(pb::Module {
                    name: "modules/memos".into(),
                    title: "Memos, version two".into(),
                    exercises: vec![speaking("status-aloud", "Something else entirely.")],
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["title".into(), "exercises".into()],
                }),
            },
        ))
        .await
        .expect("update");
    publish(&app, &boss, "modules/memos").await;
    let kept = session_of(&app, &ann, &session.name).await.unwrap();
    assert_eq!((kept.module_version, kept.exercises.len()), (1, 3));
    assert_eq!(kept.exercises[0].prompt, session.exercises[0].prompt);

    // Each rubric check gives its item, and the score follows the weights:
    // 12 words of at most 30 (length 1, weight 20), "14 march" missing (0,
    // 15), "um", "basically" and the hedge "probably": 3 in 12 words (0,
    // 20), "probably" to avoid used once (0.5, 10), sentences of 7 and 5
    // words (1, 10): 35 / 75.
    let first = attempt(
        &app,
        &ann,
        &session.name,
        "decision-first",
        "Um, we will probably move the launch. Basically the vendor is late.",
    )
    .await;
    assert_eq!(first.state(), pb::AttemptState::Scored);
    assert!((first.score - 46.7).abs() < 0.05, "{}", first.score);
    let feedback = first.feedback.clone().unwrap();
    assert!(!feedback.ai_generated);
    assert_eq!(
        item(&feedback, pb::Skill::Conciseness, "12 words").tone(),
        pb::FeedbackTone::Praise
    );
    assert_eq!(
        item(&feedback, pb::Skill::Clarity, "Missing: “14 march”").tone(),
        pb::FeedbackTone::Warning
    );
    assert_eq!(
        item(&feedback, pb::Skill::FillerWords, "25.0 per 100").tone(),
        pb::FeedbackTone::Warning
    );
    assert_eq!(
        item(&feedback, pb::Skill::Clarity, "“probably”").tone(),
        pb::FeedbackTone::Suggestion
    );
    assert_eq!(
        item(&feedback, pb::Skill::Conciseness, "averaged 6 words").tone(),
        pb::FeedbackTone::Praise
    );
    assert!(
        feedback.summary.starts_with("Score 47. Next time:"),
        "{}",
        feedback.summary
    );
    let metrics = first.metrics.clone().unwrap();
    assert_eq!(
        (metrics.word_count, metrics.fillers_per_100_words),
        (Some(12), Some(25.0))
    );

    // The feedback arrives as an event too.
    let event = next_event(&mut events).await.unwrap();
    assert_eq!(event.r#type(), pb::EventType::PracticeFeedback);
    let Some(pb::event::Payload::PracticeFeedback(sent)) = event.payload else {
        panic!("{event:?}")
    };
    assert_eq!(
        (sent.attempt.as_str(), sent.score),
        (first.name.as_str(), first.score)
    );
    assert_eq!(sent.feedback, first.feedback);

    // A retry with the same request id is the same attempt.
    let submit = |key: &str| {
        let request = ann.request(pb::SubmitAttemptRequest {
            session: session.name.clone(),
            exercise_id: "decision-first".into(),
            response_text: "We are moving the launch to 14 March. The vendor needs two more weeks.".into(),
            request_id: key.into(),
            ..Default::default()
        });
        let mut client = practice(&app);
        async move {
            client
                .submit_attempt(request)
                .await
                .unwrap()
                .into_inner()
                .attempt
                .unwrap()
        }
    };
    let better = submit("retry-1").await;
    assert_eq!(better.score, 100.0, "{:#?}", better.feedback);
    assert_eq!(submit("retry-1").await.name, better.name);
    // Spoken, sent as a transcript with its duration: 150 words in 60 s.
    let spoken = practice(&app)
        .submit_attempt(ann.request(pb::SubmitAttemptRequest {
            session: session.name.clone(),
            exercise_id: "status-aloud".into(),
            response_text: "We shipped the release on time. ".repeat(25),
            duration: Some(prost_types::Duration {
                seconds: 60,
                nanos: 0,
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .attempt
        .unwrap();
    assert_eq!(spoken.metrics.as_ref().unwrap().words_per_minute, Some(150.0));
    item(
        spoken.feedback.as_ref().unwrap(),
        pb::Skill::Pacing,
        "150 words per minute",
    );

    // Another person sees none of it, over gRPC or HTTP.
    let bob = app.sign_up("bob").await;
    let theirs = session_of(&app, &bob, &session.name).await.unwrap_err();
    assert_eq!(theirs.code(), Code::NotFound);
    let theirs = practice(&app)
        .submit_attempt(bob.request(pb::SubmitAttemptRequest {
            session: session.name.clone(),
            exercise_id: "decision-first".into(),
            response_text: "Mine now.".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(theirs.code(), Code::NotFound);
    let theirs = practice(&app)
        .complete_session(bob.request(pb::CompleteSessionRequest {
            name: session.name.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(theirs.code(), Code::NotFound);
    let listed = practice(&app)
        .list_sessions(bob.request(pb::PracticeServiceListSessionsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.sessions.is_empty());
    let http = reqwest::Client::new();
    let base = app.url();
    for request in [
        http.get(format!("{base}/v1/{}", session.name)),
        http.post(format!("{base}/v1/{}/attempts", session.name))
            .json(&json!({"exerciseId": "decision-first", "responseText": "Mine."})),
        http.post(format!("{base}/v1/{}:complete", session.name))
            .json(&json!({})),
    ] {
        let response = request
            .bearer_auth(&bob.tokens.access_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    // The owner reads it over HTTP.
    let response = http
        .get(format!("{base}/v1/{}", session.name))
        .bearer_auth(&ann.tokens.access_token)
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["attempts"].as_array().unwrap().len(), 3, "{body}");

    // Completing scores each exercise by its best attempt, counts the
    // session and records its skills.
    let done = complete(&app, &ann, &session.name).await;
    assert_eq!(done.state(), pb::SessionState::Completed);
    let expected = (100.0 + spoken.score) / 2.0;
    assert!(
        (done.score - expected).abs() < 0.1,
        "{} vs {expected}",
        done.score
    );
    assert!(done.complete_time.is_some());
    assert_eq!(
        complete(&app, &ann, &session.name).await.score,
        done.score,
        "a retry changes nothing"
    );
    let sessions = category(&usage_of(&app, &ann).await, pb::UsageCategory::PracticeSessions);
    assert_eq!((sessions.used, sessions.reserved), (1, 0));
    let scores = skill_scores(&app, &ann, &session.name).await;
    assert_eq!(scores.len(), 2, "conciseness and clarity: {scores:?}");
    let refused = practice(&app)
        .submit_attempt(ann.request(pb::SubmitAttemptRequest {
            session: session.name.clone(),
            exercise_id: "decision-first".into(),
            response_text: "Late.".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
}

/// The skill scores recorded from `source`, as (skill, score).
async fn skill_scores(app: &TestApp, user: &TestUser, source: &str) -> Vec<(String, f64)> {
    use debrief::progress::entity as score;
    use sea_orm::{ColumnTrait, QueryFilter};
    let scoped = app.db.as_user(user.id).await.unwrap();
    scoped
        .find::<score::Entity>()
        .filter(score::Column::Source.eq(source))
        .all(scoped.txn())
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.skill, s.score))
        .collect()
}

async fn the_sixth_session_on_a_plan_of_five_is_refused_and_an_abandoned_one_is_given_back(backend: Backend) {
    let app = spawn_app(backend).await;
    let boss = admin(&app).await;
    let ann = app.sign_up("ann").await;
    set_plan(
        &app,
        &boss,
        &ann,
        "free",
        &[(pb::UsageCategory::PracticeSessions, 5)],
    )
    .await;
    let module = "modules/questioning-bring-people-in";
    let mut started = Vec::new();
    for _ in 0..5 {
        started.push(start(&app, &ann, module).await.expect("within the plan"));
    }
    let refused = start(&app, &ann, module).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let details = details(&refused);
    let quota = details.quota_failure().expect("QuotaFailure");
    assert!(
        quota.violations[0]
            .description
            .contains("5 practice sessions a month"),
        "{quota:?}"
    );
    let sessions = category(&usage_of(&app, &ann).await, pb::UsageCategory::PracticeSessions);
    assert_eq!((sessions.used, sessions.reserved), (0, 5));

    // Left unfinished past the timeout, they are abandoned and given back.
    let later = chrono::Utc::now() + chrono::Duration::hours(25);
    debrief::housekeeping::run_once(&app.state.shared, later).await;
    let abandoned = session_of(&app, &ann, &started[0].name).await.unwrap();
    assert_eq!(abandoned.state(), pb::SessionState::Abandoned);
    let sessions = category(&usage_of(&app, &ann).await, pb::UsageCategory::PracticeSessions);
    assert_eq!((sessions.used, sessions.reserved), (0, 0));
    start(&app, &ann, module).await.expect("room again");
    let listed = practice(&app)
        .list_sessions(ann.request(pb::PracticeServiceListSessionsRequest {
            state: pb::SessionState::Abandoned as i32,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.sessions.len(), 5);
}

async fn difficulty_rises_after_two_strong_sessions_and_falls_after_two_weak_ones(backend: Backend) {
    let app = spawn_app(backend).await;
    let boss = admin(&app).await;
    // Five rewrite exercises, one per difficulty.
    let exercises = (1..=5)
        .map(|d| pb::Exercise {
            id: format!("level-{d}"),
            title: format!("Level {d}"),
            kind: pb::ExerciseKind::Rewrite as i32,
            prompt_template: "State the decision in at most {{ targets.max_words }} words.".into(),
            difficulty: d,
            rubric: Some(pb::Rubric {
                max_words: 12,
                required_phrases: vec!["decision".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    practice(&app)
        .create_module(bearer(
            &boss,
            pb::CreateModuleRequest {
                module: Some(pb::Module {
                    skills: vec![pb::Skill::Conciseness as i32],
                    ..module("Ladder", exercises)
                }),
                module_id: "ladder".into(),
            },
        ))
        .await
        .expect("create");
    publish(&app, &boss, "modules/ladder").await;
    let ann = app.sign_up("ann").await;
    let strong = "The decision is made.";
    let weak = "Um, so, basically, like, we kind of maybe think that possibly the thing might be, you know, \
                sort of decided at some point later on perhaps, um, if everyone is basically okay with it";
    let session_at = |answer: &'static str| {
        let (app, ann) = (&app, &ann);
        async move {
            let session = start(app, ann, "modules/ladder").await.unwrap();
            let first = session.exercises[0].id.clone();
            attempt(app, ann, &session.name, &first, answer).await;
            let done = complete(app, ann, &session.name).await;
            (session.difficulty, done.score)
        }
    };
    let (level, score) = session_at(strong).await;
    assert_eq!(level, 2);
    assert!(score >= 80.0, "{score}");
    assert_eq!(session_at(strong).await.0, 2, "one strong session is not a run");
    let (level, _) = session_at(weak).await;
    assert_eq!(level, 3, "two strong sessions raised the level");
    let third = start(&app, &ann, "modules/ladder").await.unwrap();
    let difficulties: Vec<i32> = third.exercises.iter().map(|e| e.difficulty).collect();
    assert_eq!(difficulties, [2, 3, 4], "exercises closest to level 3");
    // That session was weak; one more weak one brings the level down.
    let (_, score) = session_at(weak).await;
    assert!(score < 50.0, "{score}");
    assert_eq!(
        session_at(strong).await.0,
        2,
        "two weak sessions lowered the level"
    );
    let recommended = practice(&app)
        .list_recommendations(ann.request(pb::ListRecommendationsRequest { page_size: 50 }))
        .await
        .unwrap()
        .into_inner()
        .recommendations;
    let ladder = recommended
        .iter()
        .find(|r| r.module.as_ref().unwrap().name == "modules/ladder")
        .unwrap();
    assert_eq!(ladder.suggested_difficulty, 2);
}

/// A meeting of `user` analysed at these signals, recorded directly: the
/// pipeline's own tests cover how analyses are made.
pub(crate) async fn analysed_meeting(
    app: &TestApp,
    user: &TestUser,
    title: &str,
    wpm: f64,
    fillers_per_100: f64,
) -> String {
    use debrief::meetings::entity::Kind;
    use debrief::meetings::model::MeetingFields;
    use debrief::meetings::results::{self, analysis};
    use sea_orm::ActiveValue::Set;
    let scoped = app.db.as_user(user.id).await.unwrap();
    let fields = MeetingFields {
        title: title.into(),
        ..MeetingFields::default()
    };
    let meeting = debrief::meetings::store::create(&scoped, user.id, Kind::Meeting, fields, None)
        .await
        .unwrap();
    debrief::meetings::store::set_processed(&scoped, meeting.id, chrono::Utc::now())
        .await
        .unwrap();
    let words = 3000;
    results::replace_analysis(
        &scoped,
        analysis::ActiveModel {
            meeting_id: Set(meeting.id),
            user_id: Set(user.id),
            total_ms: Set(30 * 60_000),
            speech_ms: Set(20 * 60_000),
            speech_ratio: Set(2.0 / 3.0),
            pause_count: Set(120),
            average_pause_ms: Set(700),
            longest_pause_ms: Set(1800),
            longest_monologue_ms: Set(50_000),
            words_per_minute: Set(Some(wpm)),
            filler_word_count: Set(Some((fillers_per_100 * f64::from(words) / 100.0) as i32)),
            filler_words: Set(json!([{"word": "um", "count": 150}, {"word": "like", "count": 90}])),
            question_count: Set(Some(9)),
            skill_scores: Set(json!([])),
            longest_monologue_words: Set(Some(140)),
            word_count: Set(Some(words)),
            estimated_words_per_minute: Set(None),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    scoped.commit().await.unwrap();
    format!("meetings/{}", meeting.id)
}

async fn recommendations_quote_the_meetings_numbers_and_a_new_person_gets_a_starter_set(backend: Backend) {
    let app = spawn_app(backend).await;
    let ann = app.sign_up("ann").await;
    let meeting = analysed_meeting(&app, &ann, "Quarterly planning", 185.0, 9.0).await;
    let recommended = practice(&app)
        .list_recommendations(ann.request(pb::ListRecommendationsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .recommendations;
    assert_eq!(recommended.len(), 5, "five by default");
    let first_two: Vec<pb::Skill> = recommended[..2].iter().map(|r| r.skill()).collect();
    assert!(
        first_two.contains(&pb::Skill::Pacing) && first_two.contains(&pb::Skill::FillerWords),
        "{recommended:#?}"
    );
    let reason_of = |skill: pb::Skill| recommended.iter().find(|r| r.skill() == skill).unwrap();
    let pacing = reason_of(pb::Skill::Pacing);
    assert!(
        pacing.reasons[0].contains("185 words per minute") && pacing.reasons[0].contains("130–160"),
        "{:?}",
        pacing.reasons
    );
    assert_eq!(pacing.meeting, meeting);
    let fillers = reason_of(pb::Skill::FillerWords);
    assert!(
        fillers.reasons[0].contains("9.0 filler words per 100 words") && fillers.reasons[0].contains("“um”"),
        "{:?}",
        fillers.reasons
    );
    assert!(recommended.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(recommended.iter().all(|r| r.suggested_difficulty == 2));

    // Someone new, who asked to work on questions, starts there; Ann's
    // meeting is not theirs to practise on.
    let bob = app.sign_up("bob").await;
    let theirs = practice(&app)
        .start_session(bob.request(pb::StartSessionRequest {
            module: "modules/questioning-bring-people-in".into(),
            meeting: meeting.clone(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(theirs.code(), Code::NotFound);
    app.profiles()
        .update_profile(bob.request(pb::UpdateProfileRequest {
            profile: Some(pb::Profile {
                focus_skills: vec![pb::Skill::Questioning as i32],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["focus_skills".into()],
            }),
        }))
        .await
        .unwrap();
    let starter = practice(&app)
        .list_recommendations(bob.request(pb::ListRecommendationsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .recommendations;
    assert_eq!(starter[0].skill(), pb::Skill::Questioning, "{starter:#?}");
    assert!(starter[0].reasons[0].contains("You chose questioning as a focus"));
    assert!(starter.iter().all(|r| r.meeting.is_empty()));
    assert!(
        starter[1..].iter().all(|r| r.reasons[0].contains("baseline")),
        "{starter:#?}"
    );
}

/// A 16 kHz mono WAV of `seconds`, speaking at `rate` syllables a second
/// in phrases of four seconds with 0.6 s pauses between them: noise whose
/// loudness rises and falls once per syllable.
fn spoken(seconds: f64, rate: f64) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = std::io::Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut out, spec).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..(seconds * 16_000.0) as usize {
        let t = i as f64 / 16_000.0;
        let in_phrase = t % 4.6 < 4.0;
        let value = if in_phrase {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let noise = (seed >> 40) as f64 / f64::from(1u32 << 24) * 2.0 - 1.0;
            let envelope = 0.15 + 0.85 * (std::f64::consts::PI * rate * (t % 4.6)).sin().abs();
            noise * envelope * 0.5 * f64::from(i16::MAX)
        } else {
            0.0
        };
        writer.write_sample(value as i16).unwrap();
    }
    writer.finalize().unwrap();
    out.into_inner()
}

/// A module with one speaking exercise (130–160 wpm, 30 seconds), one
/// written one, and one scenario, published.
async fn spoken_module(app: &TestApp, boss: &str) {
    let aloud = pb::Exercise {
        difficulty: 1,
        rubric: Some(pb::Rubric {
            min_words_per_minute: 130.0,
            max_words_per_minute: 160.0,
            target_duration: Some(prost_types::Duration {
                seconds: 30,
                nanos: 0,
            }),
            ..Default::default()
        }),
        ..speaking(
            "say-it",
            "Give your update in {{ targets.target_seconds }} seconds.",
        )
    };
    let written = pb::Exercise {
        id: "write-it".into(),
        title: "Write it".into(),
        kind: pb::ExerciseKind::Rewrite as i32,
        prompt_template: "Write your update in at most {{ targets.max_words }} words.".into(),
        difficulty: 2,
        rubric: Some(pb::Rubric {
            max_words: 40,
            ..Default::default()
        }),
        ..Default::default()
    };
    let scenario = pb::Exercise {
        id: "brief-your-manager".into(),
        title: "Brief your manager".into(),
        kind: pb::ExerciseKind::Scenario as i32,
        prompt_template: "Your manager asks for the results of {{ meeting.title if meeting.available else 'your latest project' }}. \
                          Give them in {{ targets.target_seconds }} seconds."
            .into(),
        difficulty: 3,
        rubric: Some(pb::Rubric {
            target_duration: Some(prost_types::Duration { seconds: 45, nanos: 0 }),
            ..Default::default()
        }),
        ..Default::default()
    };
    practice(app)
        .create_module(bearer(
            boss,
            pb::CreateModuleRequest {
                module: Some(module("Say it aloud", vec![aloud, written, scenario])),
                module_id: "aloud".into(),
            },
        ))
        .await
        .expect("create");
    publish(app, boss, "modules/aloud").await;
}

/// Sends `file` to the upload of a spoken attempt and completes it.
async fn send_recording(app: &TestApp, user: &TestUser, attempt: &pb::Attempt, file: &[u8]) {
    let mut uploads = debrief::pb::v1::upload_service_client::UploadServiceClient::new(app.channel.clone());
    uploads
        .append_chunk(user.request(crate::uploads::append(&attempt.upload, 0, file)))
        .await
        .expect("append");
    uploads
        .complete_upload(user.request(pb::CompleteUploadRequest {
            name: attempt.upload.clone(),
        }))
        .await
        .expect("complete");
}

/// Submits a recording of `file` for exercise `exercise`.
async fn record(
    app: &TestApp,
    user: &TestUser,
    session: &str,
    exercise: &str,
    file: &[u8],
    ai: bool,
) -> pb::Attempt {
    let attempt = practice(app)
        .submit_attempt(user.request(pb::SubmitAttemptRequest {
            session: session.into(),
            exercise_id: exercise.into(),
            request_ai_feedback: ai,
            recording: Some(pb::AttemptRecording {
                file_name: "answer.wav".into(),
                content_type: "audio/wav".into(),
                size_bytes: file.len() as i64,
                sha256: String::new(),
            }),
            ..Default::default()
        }))
        .await
        .expect("attempt")
        .into_inner()
        .attempt
        .unwrap();
    assert_eq!(attempt.state(), pb::AttemptState::AwaitingRecording);
    assert!(attempt.upload.starts_with("uploads/") && attempt.recording.starts_with("meetings/"));
    send_recording(app, user, &attempt, file).await;
    attempt
}

/// The next PRACTICE_FEEDBACK event of a stream.
async fn feedback_event(events: &mut tonic::Streaming<pb::SubscribeResponse>) -> pb::PracticeFeedback {
    loop {
        let event = next_event(events).await.expect("an event");
        if let Some(pb::event::Payload::PracticeFeedback(feedback)) = event.payload {
            return feedback;
        }
    }
}

async fn a_spoken_attempt_is_scored_from_its_recording_and_its_feedback_arrives_on_the_stream(
    backend: Backend,
) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("DEBRIEF_WORKERS".into(), "1".into());
    })
    .await;
    let boss = admin(&app).await;
    spoken_module(&app, &boss).await;
    let ann = app.sign_up("ann").await;
    let session = start(&app, &ann, "modules/aloud").await.unwrap();
    let mut events = subscribe(&app, &ann, None).await;

    // Recordings are checked like any upload, reported under `recording`,
    // and only spoken exercises take one.
    let bad = practice(&app)
        .submit_attempt(ann.request(pb::SubmitAttemptRequest {
            session: session.name.clone(),
            exercise_id: "say-it".into(),
            recording: Some(pb::AttemptRecording {
                file_name: "answer.ogg".into(),
                content_type: "audio/ogg".into(),
                size_bytes: 0,
                sha256: String::new(),
            }),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(
        violation_fields(&bad),
        ["recording.content_type", "recording.size_bytes"]
    );
    let written = practice(&app)
        .submit_attempt(ann.request(pb::SubmitAttemptRequest {
            session: session.name.clone(),
            exercise_id: "write-it".into(),
            recording: Some(pb::AttemptRecording {
                file_name: "answer.wav".into(),
                content_type: "audio/wav".into(),
                size_bytes: 1000,
                sha256: String::new(),
            }),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(violation_fields(&written), ["recording"]);

    // 3.5 syllables a second is 140 words per minute (1.5 syllables a word).
    let file = spoken(30.0, 3.5);
    let attempt = record(&app, &ann, &session.name, "say-it", &file, false).await;
    let feedback = feedback_event(&mut events).await;
    assert_eq!(feedback.attempt, attempt.name);
    assert_eq!(feedback.state(), pb::AttemptState::Scored);
    let metrics = feedback.metrics.clone().unwrap();
    assert!(metrics.pace_estimated);
    let wpm = metrics.words_per_minute.unwrap();
    assert!(
        (wpm - 140.0).abs() <= 14.0,
        "estimated {wpm} for 140 (within 10%)"
    );
    assert_eq!(
        metrics.fillers_per_100_words, None,
        "no transcript, no filler count"
    );
    let shown = feedback.feedback.clone().unwrap();
    let pace = item(&shown, pb::Skill::Pacing, "estimated from the audio");
    assert_eq!(pace.tone(), pb::FeedbackTone::Praise, "{}", pace.message);
    item(&shown, pb::Skill::FillerWords, "need a transcript");
    item(&shown, pb::Skill::Conciseness, "30-second target");

    // The session shows it scored, with the recording's length.
    let kept = session_of(&app, &ann, &session.name).await.unwrap();
    let scored = &kept.attempts[0];
    assert_eq!(
        (scored.state(), scored.score),
        (pb::AttemptState::Scored, feedback.score)
    );
    assert_eq!(scored.duration.as_ref().unwrap().seconds, 30);
    // A practice recording is not a meeting in the list.
    let meetings = debrief::pb::v1::meeting_service_client::MeetingServiceClient::new(app.channel.clone())
        .list_meetings(ann.request(pb::ListMeetingsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .meetings;
    assert!(meetings.is_empty(), "{meetings:?}");
    // Nor does it spend analysis minutes.
    let minutes = category(&usage_of(&app, &ann).await, pb::UsageCategory::AnalysisMinutes);
    assert_eq!((minutes.used, minutes.reserved), (0, 0));
}

async fn with_a_transcriber_a_spoken_attempts_filler_words_are_counted(backend: Backend) {
    let url = crate::processing::fake_transcriber().await;
    let app = crate::processing::app_with_provider(backend, &url, &[]).await;
    let boss = admin(&app).await;
    spoken_module(&app, &boss).await;
    let ann = app.sign_up("ann").await;
    let session = start(&app, &ann, "modules/aloud").await.unwrap();
    let mut events = subscribe(&app, &ann, None).await;
    let attempt = record(&app, &ann, &session.name, "say-it", &spoken(20.0, 3.5), false).await;
    let feedback = feedback_event(&mut events).await;
    assert_eq!(feedback.attempt, attempt.name);
    let metrics = feedback.metrics.unwrap();
    assert!(!metrics.pace_estimated);
    let found: Vec<(&str, i32)> = metrics
        .fillers
        .iter()
        .map(|f| (f.word.as_str(), f.count))
        .collect();
    assert!(
        found.contains(&("um", 1)) && found.contains(&("i mean", 1)),
        "{found:?}"
    );
    assert_eq!(metrics.word_count, Some(12));
    item(
        feedback.feedback.as_ref().unwrap(),
        pb::Skill::FillerWords,
        "“um”",
    );
    let kept = session_of(&app, &ann, &session.name).await.unwrap();
    assert_eq!(kept.attempts[0].response_text, crate::processing::SPOKEN);
}

/// How the fake chat-completions server answers.
#[derive(Default)]
struct Chat {
    broken: bool,
    /// Hold every request without answering while set.
    stalled: bool,
    /// Request bodies seen.
    requests: Vec<Value>,
}

type ChatState = std::sync::Arc<std::sync::Mutex<Chat>>;

async fn chat_completions(
    axum::extract::State(chat): axum::extract::State<ChatState>,
    headers: axum::http::HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    assert_eq!(
        headers.get("authorization").and_then(|v| v.to_str().ok()),
        Some("Bearer sk-chat-key")
    );
    let system = body["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    while chat.lock().unwrap().stalled {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let broken = {
        let mut chat = chat.lock().unwrap();
        chat.requests.push(body);
        chat.broken
    };
    if broken {
        return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "model overloaded").into_response();
    }
    let content = if system.contains("role-play") {
        json!({"scenario": "Your manager, Priya, has five minutes before her budget review and wants one number."})
    } else {
        json!({
            "summary": "Lead with the decision, then the reason.",
            "items": [{"skill": "clarity", "tone": "suggestion", "message": "Open with “We ship on 14 March” before the why."}]
        })
    };
    axum::Json(json!({
        "choices": [{"message": {"role": "assistant", "content": content.to_string()}}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 500}
    }))
    .into_response()
}

/// A server with one worker and AI feedback from a fake chat server.
async fn app_with_chat(backend: Backend) -> (TestApp, ChatState) {
    let chat: ChatState = std::sync::Arc::default();
    let router = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(chat_completions))
        .with_state(chat.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let app = spawn_app_with(backend, |vars| {
        vars.insert("DEBRIEF_WORKERS".into(), "1".into());
        vars.insert("DEBRIEF_AI_FEEDBACK".into(), "openai".into());
        vars.insert("DEBRIEF_AI_URL".into(), url);
        vars.insert("DEBRIEF_AI_API_KEY".into(), "sk-chat-key".into());
        vars.insert("DEBRIEF_AI_RETRIES".into(), "0".into());
        vars.insert("DEBRIEF_JOB_BACKOFF".into(), "100ms".into());
    })
    .await;
    (app, chat)
}

async fn ai_feedback_is_counted_and_costed_and_a_failing_provider_leaves_the_rule_based_feedback(
    backend: Backend,
) {
    let (app, chat) = app_with_chat(backend).await;
    let boss = admin(&app).await;
    memo_module(&app, &boss).await;
    let ann = app.sign_up("ann").await;
    set_plan(
        &app,
        &boss,
        &ann,
        "free",
        &[(pb::UsageCategory::AiFeedbackRequests, 1)],
    )
    .await;
    let session = start(&app, &ann, "modules/memos").await.unwrap();
    let mut events = subscribe(&app, &ann, None).await;
    let ask = |text: &str| {
        let request = ann.request(pb::SubmitAttemptRequest {
            session: session.name.clone(),
            exercise_id: "decision-first".into(),
            response_text: text.into(),
            request_ai_feedback: true,
            ..Default::default()
        });
        let mut client = practice(&app);
        async move {
            client
                .submit_attempt(request)
                .await
                .unwrap()
                .into_inner()
                .attempt
                .unwrap()
        }
    };

    // A provider failing answers nothing: the attempt keeps its rule-based
    // feedback, with a word about it, and the request is given back.
    chat.lock().unwrap().broken = true;
    let failed = ask("We will probably move the launch to 14 March.").await;
    let rule_based = failed.feedback.as_ref().unwrap().items.len();
    let feedback = feedback_event(&mut events).await;
    assert_eq!(feedback.attempt, failed.name);
    assert_eq!(feedback.state(), pb::AttemptState::Scored);
    let shown = feedback.feedback.unwrap();
    assert!(!shown.ai_generated);
    assert_eq!(
        (feedback.score, shown.items.len()),
        (failed.score, rule_based + 1)
    );
    said(&shown, "AI feedback was not available");
    let usage = usage_of(&app, &ann).await;
    assert_eq!(category(&usage, pb::UsageCategory::AiFeedbackRequests).used, 0);
    assert_eq!(category(&usage, pb::UsageCategory::AiCostMicros).used, 0);

    // The answer comes back with the rule-based feedback at once; the AI's
    // arrives on the stream.
    chat.lock().unwrap().broken = false;
    let first = ask("We will probably move the launch to 14 March.").await;
    assert!(!first.feedback.as_ref().unwrap().ai_generated);
    let feedback = feedback_event(&mut events).await;
    assert_eq!(feedback.attempt, first.name);
    let shown = feedback.feedback.unwrap();
    assert!(shown.ai_generated);
    assert_eq!(shown.summary, "Lead with the decision, then the reason.");
    assert_eq!(shown.items.len(), rule_based + 1, "the rule-based items stay");
    item(&shown, pb::Skill::Clarity, "We ship on 14 March");
    assert_eq!(feedback.score, first.score, "the score stays the rule-based one");
    {
        let chat = chat.lock().unwrap();
        assert_eq!(chat.requests.len(), 2);
        let request = &chat.requests[1];
        assert_eq!(request["model"], "gpt-4o-mini");
        assert_eq!(request["response_format"]["type"], "json_object");
        assert!(
            request["messages"][1]["content"]
                .as_str()
                .unwrap()
                .contains("14 March")
        );
    }
    // Counted, and costed: 1000 prompt tokens at $0.15 and 500 completion
    // tokens at $0.60 a million is 450 millionths of a dollar.
    let usage = usage_of(&app, &ann).await;
    assert_eq!(category(&usage, pb::UsageCategory::AiFeedbackRequests).used, 1);
    assert_eq!(category(&usage, pb::UsageCategory::AiCostMicros).used, 450);

    // Past the plan's AI feedback requests the answer says so.
    let third = ask("We move the launch to 14 March.").await;
    let feedback = feedback_event(&mut events).await;
    assert_eq!(feedback.attempt, third.name);
    let shown = feedback.feedback.unwrap();
    assert!(!shown.ai_generated);
    let quota = said(&shown, "1 AI feedback request");
    assert!(
        quota.message.contains("rule-based feedback below still applies"),
        "{}",
        quota.message
    );
    assert_eq!(
        chat.lock().unwrap().requests.len(),
        2,
        "the refused request never reached the provider"
    );
}

async fn scenario_exercises_are_generated_by_a_job_and_pending_until_ready(backend: Backend) {
    let (app, chat) = app_with_chat(backend).await;
    let boss = admin(&app).await;
    spoken_module(&app, &boss).await;
    let ann = app.sign_up("ann").await;
    // Level 3, so the session takes the scenario.
    let advanced = pb::Profile {
        onboarding: Some(pb::Onboarding {
            experience_level: "advanced".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    app.profiles()
        .update_profile(ann.request(pb::UpdateProfileRequest {
            profile: Some(advanced),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["onboarding.experience_level".into()],
            }),
        }))
        .await
        .unwrap();
    let mut events = subscribe(&app, &ann, None).await;
    // The provider takes its time, so the exercise is seen generating.
    chat.lock().unwrap().stalled = true;
    let exercise_event = |event: pb::Event| match event.payload {
        Some(pb::event::Payload::PracticeExercise(exercise)) => Some(exercise),
        _ => None,
    };
    let session = start(&app, &ann, "modules/aloud").await.unwrap();
    assert_eq!(session.difficulty, 3);
    let scenario = session
        .exercises
        .iter()
        .find(|e| e.id == "brief-your-manager")
        .unwrap();
    assert_eq!(scenario.state(), pb::ExerciseState::Generating);
    assert_eq!(
        scenario.prompt,
        "Your manager asks for the results of your latest project. Give them in 45 seconds."
    );
    let early = practice(&app)
        .submit_attempt(ann.request(pb::SubmitAttemptRequest {
            session: session.name.clone(),
            exercise_id: scenario.id.clone(),
            response_text: "Too soon.".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition);
    assert_eq!(details(&early).error_info().unwrap().reason, "EXERCISE_NOT_READY");
    chat.lock().unwrap().stalled = false;

    let mut states = Vec::new();
    while states.last() != Some(&pb::ExerciseState::Ready) {
        if let Some(exercise) = exercise_event(next_event(&mut events).await.unwrap()) {
            assert_eq!(
                (exercise.session.as_str(), exercise.exercise_id.as_str()),
                (session.name.as_str(), "brief-your-manager")
            );
            states.push(exercise.state());
        }
    }
    assert_eq!(states, [pb::ExerciseState::Generating, pb::ExerciseState::Ready]);
    let ready = session_of(&app, &ann, &session.name).await.unwrap();
    let written = ready
        .exercises
        .iter()
        .find(|e| e.id == "brief-your-manager")
        .unwrap();
    assert_eq!(written.state(), pb::ExerciseState::Ready);
    assert!(
        written.prompt.contains("Priya"),
        "the AI's scenario: {}",
        written.prompt
    );
    assert_eq!(
        category(&usage_of(&app, &ann).await, pb::UsageCategory::AiFeedbackRequests).used,
        1
    );
    let request = chat.lock().unwrap().requests[0].clone();
    let asked = request["messages"][1]["content"].as_str().unwrap().to_owned();
    assert!(
        asked.contains("your latest project") && !asked.contains("ann@example.com"),
        "{asked}"
    );

    // Without an answer from the provider, the template is the scenario.
    chat.lock().unwrap().broken = true;
    let second = start(&app, &ann, "modules/aloud").await.unwrap();
    loop {
        if let Some(exercise) = exercise_event(next_event(&mut events).await.unwrap())
            && exercise.session == second.name
            && exercise.state() == pb::ExerciseState::Ready
        {
            break;
        }
    }
    let fallback = session_of(&app, &ann, &second.name).await.unwrap();
    let written = fallback
        .exercises
        .iter()
        .find(|e| e.id == "brief-your-manager")
        .unwrap();
    assert_eq!(
        (written.state(), written.prompt.as_str()),
        (
            pb::ExerciseState::Ready,
            "Your manager asks for the results of your latest project. Give them in 45 seconds."
        )
    );
    attempt(
        &app,
        &ann,
        &second.name,
        "brief-your-manager",
        "Revenue is up nine percent and we hit the launch date.",
    )
    .await;
}
