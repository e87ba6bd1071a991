//! Practice through the real server: versioned modules with personalised
//! prompts, the seed modules, sessions, attempts and their feedback,
//! recommendations and adaptive difficulty.

use debrief::pb::v1 as pb;
use debrief::pb::v1::practice_service_client::PracticeServiceClient;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::{Backend, TestApp, bearer, spawn_app, violation_fields};
use crate::on_both_backends;
use crate::usage::admin;

on_both_backends!(
    an_admin_writes_versions_and_people_see_only_what_is_published,
    a_module_with_a_bad_template_or_field_is_refused_naming_each_one,
    the_seed_modules_load_once_and_an_admins_edit_survives_a_restart,
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
