//! The catalog's RPCs of PracticeService: admins write modules; everyone
//! reads the published versions, with prompts rendered for them.

use tonic::{Request, Response};

use super::{PracticeApi, Reply};
use crate::audit::{self, Entry};
use crate::caller::{Caller, Role};
use crate::context::RequestMeta;
use crate::db::Scoped;
use crate::error::{AppError, AppResult, Violations};
use crate::pagination::PageRequest;
use crate::pb::v1 as pb;
use crate::practice::catalog::{self, AfterId, ListFilter, Loaded, Which};
use crate::practice::convert;
use crate::practice::entity::ModuleState;
use crate::practice::model::{self, ModuleFields, is_slug};
use crate::practice::personal::Person;
use crate::skills::Skill;

/// A module reference: `modules/{id}`, `modules/{id}@draft` or
/// `modules/{id}@{version}`.
fn parse_module(field: &str, name: &str) -> AppResult<(String, Option<Which>)> {
    let invalid = || {
        AppError::invalid(
            field,
            "must be `modules/{module}`, optionally with `@draft` or `@{version}`",
        )
    };
    let rest = name.strip_prefix("modules/").ok_or_else(invalid)?;
    let (id, which) = match rest.split_once('@') {
        None => (rest, None),
        Some((id, "draft")) => (id, Some(Which::Draft)),
        Some((id, number)) => {
            let number: i32 = number.parse().ok().filter(|n| *n > 0).ok_or_else(invalid)?;
            (id, Some(Which::Version(number)))
        }
    };
    if !is_slug(id) {
        return Err(invalid());
    }
    Ok((id.to_owned(), which))
}

/// The id of a plain `modules/{id}` (the admin RPCs act on the module).
pub(super) fn module_id(field: &str, name: &str) -> AppResult<String> {
    match parse_module(field, name)? {
        (id, None) => Ok(id),
        _ => Err(AppError::invalid(field, "must be `modules/{module}`")),
    }
}

/// The version `which` of module `id` as `caller` may see it: admins see
/// everything; others the published version, or any version once published.
async fn visible(scoped: &Scoped, caller: &Caller, id: &str, which: Option<Which>) -> AppResult<Loaded> {
    let admin = caller.role == Role::Admin;
    let loaded = catalog::get(scoped.txn(), id, which.unwrap_or(Which::Listed)).await?;
    let hidden = !admin
        && (!loaded.is_published() || (which.is_none() && loaded.head.state != ModuleState::Published));
    if hidden {
        return Err(AppError::not_found("module"));
    }
    Ok(loaded)
}

/// `loaded` as `caller` sees it, with every prompt rendered for them.
async fn module_view(scoped: &Scoped, caller: &Caller, loaded: &Loaded) -> AppResult<pb::Module> {
    let person = Person::load(scoped, caller.user_id, None).await?;
    let prompts = loaded
        .fields()?
        .exercises
        .iter()
        .map(|exercise| person.render(exercise).map(|rendered| rendered.prompt))
        .collect::<AppResult<Vec<_>>>()?;
    convert::version(loaded, caller.role == Role::Admin, prompts)
}

#[tracing::instrument(skip_all)]
pub(super) async fn list(
    api: &PracticeApi,
    request: Request<pb::ListModulesRequest>,
) -> Reply<pb::ListModulesResponse> {
    let caller = Caller::of(&request)?.clone();
    let pb::ListModulesRequest {
        page_size,
        page_token,
        skill,
        show_unpublished,
    } = request.into_inner();
    let mut bad = Violations::default();
    let page = bad.check(PageRequest::<AfterId>::parse(page_size, &page_token, 50, 200))?;
    let skill = match pb::Skill::try_from(skill) {
        Ok(pb::Skill::Unspecified) => None,
        Ok(skill) => Skill::from_proto(skill),
        Err(_) => {
            bad.add("skill", "must be a skill");
            None
        }
    };
    let page = bad.finish(|| page)?;
    let admin = caller.role == Role::Admin;
    if show_unpublished {
        caller.require_admin()?;
    }
    let scoped = api.state.db.read_as_user(caller.user_id).await?;
    let filter = ListFilter {
        skill,
        unpublished: show_unpublished,
    };
    let (modules, next) = catalog::list(scoped.txn(), filter, &page).await?;
    Ok(Response::new(pb::ListModulesResponse {
        modules: modules
            .iter()
            .map(|m| convert::listed(m, admin))
            .collect::<AppResult<_>>()?,
        next_page_token: PageRequest::token(next.as_ref()),
    }))
}

#[tracing::instrument(skip_all)]
pub(super) async fn get(
    api: &PracticeApi,
    request: Request<pb::GetModuleRequest>,
) -> Reply<pb::GetModuleResponse> {
    let caller = Caller::of(&request)?.clone();
    let (id, which) = parse_module("name", &request.get_ref().name)?;
    let scoped = api.state.db.read_as_user(caller.user_id).await?;
    let loaded = visible(&scoped, &caller, &id, which).await?;
    Ok(Response::new(pb::GetModuleResponse {
        module: Some(module_view(&scoped, &caller, &loaded).await?),
    }))
}

#[tracing::instrument(skip_all)]
pub(super) async fn create(
    api: &PracticeApi,
    request: Request<pb::CreateModuleRequest>,
) -> Reply<pb::CreateModuleResponse> {
    let meta = RequestMeta::of(&request);
    let caller = Caller::of(&request)?.clone();
    caller.require_admin()?;
    let pb::CreateModuleRequest { module, module_id } = request.into_inner();
    let mut bad = Violations::default();
    if !is_slug(&module_id) {
        bad.add(
            "module_id",
            "must be 3 to 64 lower-case letters, digits and dashes, starting with a letter",
        );
    }
    let fields = match &module {
        Some(module) => bad.check(ModuleFields::parse(module, "module"))?,
        None => {
            bad.add("module", "is required");
            None
        }
    };
    let fields = bad.finish(|| fields)?;
    let scoped = api.state.db.as_admin(caller.user_id).await?;
    if !catalog::create(scoped.txn(), &module_id, &fields, Some(caller.user_id)).await? {
        return Err(AppError::AlreadyExists {
            reason: "MODULE_EXISTS",
            message: format!("modules/{module_id} already exists; edit it with UpdateModule"),
        }
        .into());
    }
    audit::record(
        &scoped,
        &meta,
        Entry::own("module.create", caller.user_id).target(format!("modules/{module_id}")),
    )
    .await?;
    let loaded = catalog::get(scoped.txn(), &module_id, Which::Draft).await?;
    let module = module_view(&scoped, &caller, &loaded).await?;
    scoped.commit().await?;
    Ok(Response::new(pb::CreateModuleResponse { module: Some(module) }))
}

#[tracing::instrument(skip_all)]
pub(super) async fn update(
    api: &PracticeApi,
    request: Request<pb::UpdateModuleRequest>,
) -> Reply<pb::UpdateModuleResponse> {
    let meta = RequestMeta::of(&request);
    let caller = Caller::of(&request)?.clone();
    caller.require_admin()?;
    let pb::UpdateModuleRequest { module, update_mask } = request.into_inner();
    let update = module.ok_or_else(|| AppError::invalid("module", "is required"))?;
    let id = module_id("module.name", &update.name)?;
    let paths = update_mask.map(|m| m.paths).unwrap_or_default();
    model::check_mask(&paths)?;
    let scoped = api.state.db.as_admin(caller.user_id).await?;
    let current = catalog::get(scoped.txn(), &id, Which::Listed).await?;
    let base = match current.head.draft_version {
        Some(_) => catalog::get(scoped.txn(), &id, Which::Draft).await?,
        None => current,
    };
    let mut merged = base.fields()?.to_proto();
    model::merge(&mut merged, update, &paths);
    let fields = ModuleFields::parse(&merged, "module")?;
    catalog::update(scoped.txn(), &id, &fields, caller.user_id).await?;
    audit::record(
        &scoped,
        &meta,
        Entry::own("module.update", caller.user_id)
            .target(format!("modules/{id}"))
            .details(serde_json::json!({ "fields": paths })),
    )
    .await?;
    let draft = catalog::get(scoped.txn(), &id, Which::Draft).await?;
    let module = module_view(&scoped, &caller, &draft).await?;
    scoped.commit().await?;
    Ok(Response::new(pb::UpdateModuleResponse { module: Some(module) }))
}

#[tracing::instrument(skip_all)]
pub(super) async fn publish(
    api: &PracticeApi,
    request: Request<pb::PublishModuleRequest>,
) -> Reply<pb::PublishModuleResponse> {
    let meta = RequestMeta::of(&request);
    let caller = Caller::of(&request)?.clone();
    caller.require_admin()?;
    let id = module_id("name", &request.get_ref().name)?;
    let scoped = api.state.db.as_admin(caller.user_id).await?;
    catalog::publish(scoped.txn(), &id, |draft| {
        if draft.exercises.is_empty() {
            return Err(AppError::FailedPrecondition {
                reason: "MODULE_HAS_NO_EXERCISES",
                message: format!("modules/{id} has no exercises to practise; add one before publishing"),
                metadata: Default::default(),
            });
        }
        // The rules (and the prompt context) may have changed since the
        // draft was saved.
        ModuleFields::parse(&draft.fields()?.to_proto(), "module").map(|_| ())
    })
    .await?;
    let published = catalog::get(scoped.txn(), &id, Which::Listed).await?;
    audit::record(
        &scoped,
        &meta,
        Entry::own("module.publish", caller.user_id)
            .target(format!("modules/{id}"))
            .details(serde_json::json!({ "version": published.version.version })),
    )
    .await?;
    let module = module_view(&scoped, &caller, &published).await?;
    scoped.commit().await?;
    Ok(Response::new(pb::PublishModuleResponse { module: Some(module) }))
}

#[tracing::instrument(skip_all)]
pub(super) async fn archive(
    api: &PracticeApi,
    request: Request<pb::ArchiveModuleRequest>,
) -> Reply<pb::ArchiveModuleResponse> {
    let meta = RequestMeta::of(&request);
    let caller = Caller::of(&request)?.clone();
    caller.require_admin()?;
    let id = module_id("name", &request.get_ref().name)?;
    let scoped = api.state.db.as_admin(caller.user_id).await?;
    catalog::archive(scoped.txn(), &id).await?;
    audit::record(
        &scoped,
        &meta,
        Entry::own("module.archive", caller.user_id).target(format!("modules/{id}")),
    )
    .await?;
    let archived = catalog::get(scoped.txn(), &id, Which::Listed).await?;
    let module = module_view(&scoped, &caller, &archived).await?;
    scoped.commit().await?;
    Ok(Response::new(pb::ArchiveModuleResponse { module: Some(module) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_carry_an_optional_version() {
        assert_eq!(
            parse_module("name", "modules/pace-basics").unwrap(),
            ("pace-basics".into(), None)
        );
        assert_eq!(
            parse_module("name", "modules/pace-basics@draft").unwrap().1,
            Some(Which::Draft)
        );
        assert_eq!(
            parse_module("name", "modules/pace-basics@3").unwrap().1,
            Some(Which::Version(3))
        );
        for bad in [
            "pace-basics",
            "modules/Pace",
            "modules/pace-basics@0",
            "modules/pace-basics@x",
            "modules/",
        ] {
            assert!(parse_module("name", bad).is_err(), "{bad}");
        }
    }
}
