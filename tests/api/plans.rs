//! UsageService.ListPlans: the seeded plans, paged.

use debrief::pb::v1::{LimitPeriod, ListPlansRequest, UsageCategory};
use tonic::Code;

use crate::helpers::{Backend, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    list_plans_pages_through_the_seeded_plans,
    list_plans_refuses_bad_paging
);

async fn list_plans_pages_through_the_seeded_plans(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app
        .usage()
        .list_plans(ListPlansRequest {
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .expect("first page")
        .into_inner();
    let names: Vec<_> = first.plans.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["plans/free", "plans/pro"]);
    assert!(!first.next_page_token.is_empty());

    let second = app
        .usage()
        .list_plans(ListPlansRequest {
            page_size: 2,
            page_token: first.next_page_token,
        })
        .await
        .expect("second page")
        .into_inner();
    let names: Vec<_> = second.plans.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["plans/team"]);
    assert!(second.next_page_token.is_empty());

    let free = &first.plans[0];
    assert_eq!(free.display_name, "Free");
    assert_eq!(free.monthly_price_cents, 0);
    assert_eq!(free.limits.len(), 7, "one limit per category");
    let minutes = free
        .limits
        .iter()
        .find(|l| l.category() == UsageCategory::AnalysisMinutes)
        .expect("analysis minutes");
    assert_eq!((minutes.limit, minutes.unlimited), (120, false));
    assert_eq!(minutes.period(), LimitPeriod::Monthly);
    assert_eq!(minutes.unit, "minutes");
    let storage = free
        .limits
        .iter()
        .find(|l| l.category() == UsageCategory::StorageBytes)
        .unwrap();
    assert_eq!(storage.period(), LimitPeriod::Total);

    let team = &second.plans[0];
    let sessions = team
        .limits
        .iter()
        .find(|l| l.category() == UsageCategory::PracticeSessions)
        .expect("practice sessions");
    assert!(sessions.unlimited);
}

async fn list_plans_refuses_bad_paging(backend: Backend) {
    let app = spawn_app(backend).await;
    for (page_size, page_token, field) in [(-1, "", "page_size"), (10, "garbage!", "page_token")] {
        let status = app
            .usage()
            .list_plans(ListPlansRequest {
                page_size,
                page_token: page_token.into(),
            })
            .await
            .expect_err("invalid");
        assert_eq!(status.code(), Code::InvalidArgument);
        use tonic_types::StatusExt;
        let details = status.get_error_details();
        assert_eq!(
            details.bad_request().expect("BadRequest").field_violations[0].field,
            field
        );
    }
}
