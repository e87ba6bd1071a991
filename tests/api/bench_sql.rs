//! The statements `debrief-bench --compare` gives pgbench are the ones
//! debrief sends: each RPC is called against a cluster that logs every
//! statement, and the logged sequence of one call must equal the script.

use std::time::Duration;

use debrief::pb::v1 as pb;
use debrief::pb::v1::meeting_service_client::MeetingServiceClient;
use debrief::pb::v1::profile_service_client::ProfileServiceClient;
use sea_orm::{ConnectionTrait, Database};

use crate::helpers::postgres::Cluster;

#[path = "../../src/bin/debrief-bench/script.rs"]
#[allow(dead_code)]
mod script;

/// One logged statement: its text and its parameters' values.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    sql: String,
    parameters: Vec<String>,
}

/// The statements logged after byte `from`, by backend process.
fn logged(cluster: &Cluster, from: usize) -> Vec<(String, Sent)> {
    let log = std::fs::read_to_string(cluster.log()).unwrap();
    let mut sent: Vec<(String, Sent)> = Vec::new();
    for line in log[from..].lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        if let Some(message) = rest.strip_prefix("LOG:  statement: ") {
            sent.extend(
                message
                    .split("; ")
                    .map(|sql| (pid.to_owned(), with_parameters(sql))),
            );
        } else if let Some(sql) = rest
            .strip_prefix("LOG:  execute ")
            .and_then(|r| r.split_once(": ").map(|(_, s)| s))
        {
            sent.push((
                pid.to_owned(),
                Sent {
                    sql: sql.to_owned(),
                    parameters: Vec::new(),
                },
            ));
        } else if let Some(values) = rest.strip_prefix("DETAIL:  parameters: ")
            && let Some((_, last)) = sent.iter_mut().rev().find(|(p, _)| p == pid)
        {
            last.parameters = values
                .split(", $")
                .map(|v| v.split_once(" = ").map_or(v, |(_, v)| v).to_owned())
                .collect();
        }
    }
    sent
}

/// One statement of a simple query (several in one message, no
/// parameters) in the form of a prepared one: every value written as a
/// literal becomes a parameter, all but the name a `set_config` sets.
fn with_parameters(sql: &str) -> Sent {
    let (mut out, mut parameters) = (String::new(), Vec::new());
    let mut parts = sql.split('\'');
    out.push_str(parts.next().unwrap_or_default());
    while let (Some(literal), Some(after)) = (parts.next(), parts.next()) {
        if out.ends_with("set_config(") {
            out.push_str(&format!("'{literal}'"));
        } else {
            parameters.push(format!("'{literal}'"));
            out.push_str(&format!("${}", parameters.len()));
        }
        out.push_str(after);
    }
    Sent { sql: out, parameters }
}

/// The one transaction of a call: the statements from the `BEGIN` of the
/// backend that ran `marker` to its `COMMIT` or `ROLLBACK`, waiting for the
/// end (a read's `ROLLBACK` goes with its connection's next transaction, or
/// from the pool within a fraction of a second).
async fn transaction_of(cluster: &Cluster, from: usize, marker: &str) -> (Vec<Sent>, bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let sent = logged(cluster, from);
        if let Some((pid, _)) = sent.iter().find(|(_, s)| s.sql.contains(marker)) {
            let mine: Vec<Sent> = sent
                .iter()
                .filter(|(p, _)| p == pid)
                .map(|(_, s)| s.clone())
                .collect();
            let begin = mine.iter().position(|s| s.sql == "BEGIN").expect("a BEGIN");
            let end = mine[begin..]
                .iter()
                .position(|s| s.sql == "COMMIT" || s.sql == "ROLLBACK");
            if let Some(end) = end {
                let commits = mine[begin + end].sql == "COMMIT";
                return (mine[begin + 1..begin + end].to_vec(), commits);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no whole transaction with {marker} in the log"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A logged statement in the script's form: NULL parameters written NULL,
/// the others numbered `$1`… in order, with their values.
fn normalized(sent: &Sent) -> (String, Vec<String>) {
    let mut sql = sent.sql.clone();
    let mut values = Vec::new();
    // Highest first, so `$1` does not match the start of `$10`.
    let mut numbered = Vec::new();
    for (i, value) in sent.parameters.iter().enumerate().rev() {
        let placeholder = format!("${}", i + 1);
        if value == "NULL" {
            sql = sql.replace(&placeholder, "NULL");
        } else {
            sql = sql.replace(&placeholder, &format!("${{{i}}}"));
            numbered.push(i);
        }
    }
    numbered.reverse();
    for (n, i) in numbered.iter().enumerate() {
        sql = sql.replace(&format!("${{{i}}}"), &format!("${}", n + 1));
        values.push(sent.parameters[*i].trim_matches('\'').to_owned());
    }
    (sql, values)
}

/// The scripts of `debrief-bench --compare` are, statement by statement
/// and parameter by parameter, what debrief sends to Postgres for one call
/// of their RPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmarks_sql_scripts_are_what_debrief_sends() {
    let cluster = Cluster::start(false).unwrap();
    let admin = Database::connect(cluster.admin_url().as_str()).await.unwrap();
    for sql in [
        "ALTER SYSTEM SET log_statement = 'all'",
        "ALTER SYSTEM SET log_line_prefix = '%p '",
        "SELECT pg_reload_conf()",
    ] {
        admin.execute_unprepared(sql).await.unwrap();
    }
    let app = crate::helpers::spawn_app_on(&cluster).await;
    let ann = app.sign_up("ann").await;
    let meeting = crate::uploads::new_meeting(&app, &ann).await;
    let meeting_id = meeting.trim_start_matches("meetings/").to_owned();
    let mut profiles = ProfileServiceClient::new(app.channel.clone());
    let mut meetings = MeetingServiceClient::new(app.channel.clone());
    // The first call checks the session; later ones find it cached.
    profiles
        .get_profile(ann.request(pb::GetProfileRequest {}))
        .await
        .unwrap();

    // What the benchmark binds for each variable (`compare::Vars`).
    let title = "Weekly engineering sync (moved)";
    let expected = |name: &str, value: &str| match name {
        "user_id" => value == ann.id.to_string(),
        "meeting_id" => value == meeting_id,
        "role" => value == "user",
        "limit" => value == "1",
        "title" => value == title,
        "description" => value.is_empty(),
        "tags" => value == "[]",
        "now" => chrono::DateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S%.f%#z").is_ok(),
        _ => false,
    };
    let scripts = [
        (
            "get_profile",
            include_str!("../../src/bin/debrief-bench/sql/get_profile.sql"),
            "FROM \"profiles\"",
        ),
        (
            "get_meeting",
            include_str!("../../src/bin/debrief-bench/sql/get_meeting.sql"),
            "FROM \"meetings\"",
        ),
        (
            "update_meeting",
            include_str!("../../src/bin/debrief-bench/sql/update_meeting.sql"),
            "UPDATE \"meetings\"",
        ),
    ];
    for (name, text, marker) in scripts {
        let script = script::parse(text).unwrap_or_else(|e| panic!("{name}.sql: {e}"));
        let from = std::fs::metadata(cluster.log()).unwrap().len() as usize;
        match name {
            "get_profile" => drop(
                profiles
                    .get_profile(ann.request(pb::GetProfileRequest {}))
                    .await
                    .unwrap(),
            ),
            "get_meeting" => drop(
                meetings
                    .get_meeting(ann.request(pb::GetMeetingRequest {
                        name: meeting.clone(),
                    }))
                    .await
                    .unwrap(),
            ),
            _ => drop(
                meetings
                    .update_meeting(ann.request(pb::UpdateMeetingRequest {
                        meeting: Some(pb::Meeting {
                            name: meeting.clone(),
                            title: title.into(),
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["title".into()],
                        }),
                    }))
                    .await
                    .unwrap(),
            ),
        }
        let (sent, commits) = transaction_of(&cluster, from, marker).await;
        assert_eq!(commits, script.commits, "{name}.sql: how the transaction ends");
        let sent: Vec<(String, Vec<String>)> = sent.iter().map(normalized).collect();
        let scripted: Vec<&str> = script.statements.iter().map(|s| s.sql.as_str()).collect();
        let actual: Vec<&str> = sent.iter().map(|(sql, _)| sql.as_str()).collect();
        assert_eq!(actual, scripted, "{name}.sql differs from what debrief sends");
        for (statement, (_, values)) in script.statements.iter().zip(&sent) {
            for (variable, value) in statement.names.iter().zip(values) {
                assert!(
                    expected(variable, value),
                    "{name}.sql: :{variable} was sent as {value:?}"
                );
            }
        }
    }
}
