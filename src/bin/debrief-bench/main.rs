//! `debrief-bench`: drives concurrent clients against a debrief server and
//! prints throughput and latency percentiles per scenario (and writes them
//! as JSON).
//!
//! ```text
//! cargo run --release --bin debrief-bench -- [SCENARIO...] [--addr http://host:port]
//!     [--concurrency 32] [--connections 4] [--duration 10s] [--warmup 2s] [--json PATH]
//!     [--uploads 8] [--upload-size 256MiB] [--compare [--rounds 2]]
//! ```
//!
//! Without `--addr` it starts a server in this process on a temporary SQLite
//! data directory (client and server then share the machine's cores);
//! with `--addr`, `--compare` runs its baselines on `DATABASE_URL`, which
//! must be that server's database. The
//! `upload` scenario, run only when named, starts the `debrief` binary built
//! beside it instead, so the server's peak memory can be measured alone.

/// The allocator of the `debrief` binary, for the server run in-process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod child;
mod compare;
mod events;
mod export;
mod processing;
mod script;
mod seed;
mod upload;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use debrief::pb::v1 as pb;
use debrief::pb::v1::admin_service_client::AdminServiceClient;
use debrief::pb::v1::meeting_service_client::MeetingServiceClient;
use debrief::pb::v1::practice_service_client::PracticeServiceClient;
use debrief::pb::v1::profile_service_client::ProfileServiceClient;
use debrief::pb::v1::progress_service_client::ProgressServiceClient;
use debrief::pb::v1::usage_service_client::UsageServiceClient;
use debrief::pb::v1::{GetProfileRequest, ListPlansRequest};
use debrief::{Application, Config};
use serde::Serialize;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;

/// The `authorization` header of authenticated scenarios.
type Authorization = tonic::metadata::MetadataValue<tonic::metadata::Ascii>;

#[derive(Parser)]
#[command(about = "Benchmark a debrief server")]
struct Args {
    /// Scenarios to run (default: all).
    #[arg(value_enum)]
    scenarios: Vec<Scenario>,
    /// Server to target, e.g. http://127.0.0.1:8080; default: start one here.
    #[arg(long)]
    addr: Option<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// HTTP/2 connections the clients share.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Measured time per scenario, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = duration)]
    duration: Duration,
    /// Unmeasured time before each scenario.
    #[arg(long, default_value = "2s", value_parser = duration)]
    warmup: Duration,
    /// Concurrent uploads in the `upload` scenario.
    #[arg(long, default_value_t = 8)]
    uploads: usize,
    /// Size of each upload in the `upload` scenario, e.g. 256MiB.
    #[arg(long, default_value = "256MiB", value_parser = size)]
    upload_size: usize,
    /// Idle streams open while the `events` scenario measures latency.
    #[arg(long, default_value_t = 1000)]
    idle_streams: usize,
    /// Idle streams the `events` scenario opens to measure memory.
    #[arg(long, default_value_t = 10_000)]
    memory_streams: usize,
    /// Events timed by the `events` scenario.
    #[arg(long, default_value_t = 500)]
    event_samples: usize,
    /// A long MP3 for the `processing` scenario (default: 30 minutes made
    /// with ffmpeg).
    #[arg(long)]
    mp3: Option<std::path::PathBuf>,
    /// Meetings of the small and the large account the `export` scenario
    /// exports.
    #[arg(long, default_values_t = [500, 5000], num_args = 2)]
    export_records: Vec<usize>,
    /// Jobs the `processing` scenario queues.
    #[arg(long, default_value_t = 2000)]
    queue_jobs: usize,
    /// Workers claiming them at once.
    #[arg(long, default_value_t = 4)]
    queue_claimers: usize,
    /// Jobs a worker claims at once (its free slots).
    #[arg(long, default_value_t = 8)]
    queue_batch: usize,
    /// Accounts the queued jobs belong to, in turn. Each runs one job at a
    /// time (the Free plan), so at most this many are in flight.
    #[arg(long, default_value_t = 16)]
    queue_owners: usize,
    /// Accounts seeded for the `progress` and `analytics` scenarios.
    #[arg(long, default_value_t = 10_000)]
    seed_users: usize,
    /// Skill scores seeded across them.
    #[arg(long, default_value_t = 100_000)]
    seed_scores: usize,
    /// Run each scenario that has a script in `sql/` (profile, get-meeting,
    /// update-meeting) alternately through debrief and as the same
    /// statements without it (pgbench on Postgres, a loop over the same
    /// pools on SQLite), and print debrief ÷ that. Needs the in-process
    /// server.
    #[arg(long)]
    compare: bool,
    /// Rounds of each side with `--compare`.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Where to write the JSON results (default: target/bench/<time>.json).
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
enum Scenario {
    /// grpc.health.v1.Health/Check: the transport and tower layers alone.
    Health,
    /// Server reflection v1: ListServices on a new bidirectional stream.
    Reflection,
    /// debrief.v1.UsageService/ListPlans: a database read (two queries).
    Plans,
    /// debrief.v1.ProfileService/GetProfile with a bearer access token: JWT
    /// verification, the cached session check and one scoped read.
    Profile,
    /// Concurrent large uploads (CreateUpload, AppendChunk, CompleteUpload)
    /// against a `debrief serve` child: MB/s and the server's peak RSS.
    /// Runs only when named.
    Upload,
    /// Event publish → receipt latency with many idle streams open, and a
    /// server's memory holding many idle streams. Runs only when named.
    Events,
    /// GET /v1/plans over HTTP/1.1 with JSON: `plans` through the edge.
    PlansHttp,
    /// GET /v1/profile over HTTP/1.1 with a bearer token: `profile` through
    /// the edge.
    ProfileHttp,
    /// Conversion of a 30-minute MP3 to 16 kHz mono WAV against ffmpeg on
    /// the same file, and job queue throughput (claim and finish trivial
    /// jobs). Needs ffmpeg. Runs only when named.
    Processing,
    /// debrief.v1.ProgressService/GetProgress of an account with a typical
    /// history, among seeded accounts and scores (`--seed-users`,
    /// `--seed-scores`). Needs the in-process server.
    Progress,
    /// debrief.v1.AdminService/GetAnalytics over the last 30 days by day,
    /// across the seeded accounts and scores. Needs the in-process server.
    Analytics,
    /// debrief.v1.ProgressService/ExportData of a small and a large account
    /// from a `debrief serve` child, read slowly: the server's resident
    /// memory while it streams. Runs only when named.
    Export,
    /// debrief.v1.MeetingService/GetMeeting of one meeting of the account:
    /// an owner-filtered read by id.
    GetMeeting,
    /// debrief.v1.MeetingService/CreateMeeting: one insert in the owner's
    /// scope.
    CreateMeeting,
    /// debrief.v1.MeetingService/UpdateMeeting of the title of one meeting:
    /// a read and an update in one transaction.
    UpdateMeeting,
    /// debrief.v1.PracticeService/ListSessions of the account (ten): a
    /// practice read.
    PracticeRead,
    /// debrief.v1.PracticeService/StartSession then SubmitAttempt with a
    /// written answer, as one call: a session held from the plan, its
    /// exercises picked and rendered, the answer scored and its feedback
    /// event written. Needs the in-process server (its account's practice
    /// sessions are made unlimited by an admin).
    Practice,
}

impl Scenario {
    /// Whether it needs the server in this process (to set its account up
    /// through the database).
    fn in_process(self) -> bool {
        matches!(self, Self::Practice | Self::Progress | Self::Analytics)
    }

    fn rpc(self) -> &'static str {
        match self {
            Self::Health => "grpc.health.v1.Health/Check",
            Self::Reflection => "grpc.reflection.v1.ServerReflection (ListServices)",
            Self::Plans => "debrief.v1.UsageService/ListPlans",
            Self::Profile => "debrief.v1.ProfileService/GetProfile (bearer)",
            Self::Upload => "debrief.v1.UploadService (resumable upload)",
            Self::Events => "debrief.v1.EventService/Subscribe (latency, memory)",
            Self::Processing => "conversion speed and job queue throughput",
            Self::PlansHttp => "GET /v1/plans (HTTP/JSON edge)",
            Self::ProfileHttp => "GET /v1/profile (HTTP/JSON edge, bearer)",
            Self::Practice => "PracticeService StartSession + SubmitAttempt",
            Self::GetMeeting => "debrief.v1.MeetingService/GetMeeting (bearer)",
            Self::CreateMeeting => "debrief.v1.MeetingService/CreateMeeting (bearer)",
            Self::UpdateMeeting => "debrief.v1.MeetingService/UpdateMeeting (bearer)",
            Self::PracticeRead => "debrief.v1.PracticeService/ListSessions (bearer)",
            Self::Export => "debrief.v1.ProgressService/ExportData (memory)",
            Self::Progress => "debrief.v1.ProgressService/GetProgress (bearer)",
            Self::Analytics => "debrief.v1.AdminService/GetAnalytics (30 days by day)",
        }
    }

    async fn call(self, channel: Channel, fixture: &Fixture, http: &Http) -> Result<(), tonic::Status> {
        let authorization = &fixture.authorization;
        match self {
            Self::PlansHttp | Self::ProfileHttp => {
                let path = if self == Self::PlansHttp {
                    "/v1/plans"
                } else {
                    "/v1/profile"
                };
                let response = http
                    .client
                    .get(format!("{}{path}", http.base))
                    .header("authorization", authorization.as_bytes())
                    .send()
                    .await
                    .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
                let status = response.status();
                response
                    .bytes()
                    .await
                    .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
                if !status.is_success() {
                    return Err(tonic::Status::unknown(format!("HTTP {status}")));
                }
            }
            Self::Health => {
                HealthClient::new(channel)
                    .check(HealthCheckRequest::default())
                    .await?;
            }
            Self::Reflection => {
                let request = ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(MessageRequest::ListServices(String::new())),
                };
                let mut responses = ServerReflectionClient::new(channel)
                    .server_reflection_info(futures::stream::iter([request]))
                    .await?
                    .into_inner();
                responses
                    .message()
                    .await?
                    .ok_or_else(|| tonic::Status::unknown("no reply"))?;
                // Read to the end of the stream, as a well-behaved client
                // does: dropping it early resets the stream, and a flood of
                // resets on one connection makes h2 close it (rapid-reset
                // protection).
                while responses.message().await?.is_some() {}
            }
            Self::Plans => {
                UsageServiceClient::new(channel)
                    .list_plans(ListPlansRequest::default())
                    .await?;
            }
            Self::Profile => {
                let request = authorized(authorization, GetProfileRequest {});
                ProfileServiceClient::new(channel).get_profile(request).await?;
            }
            Self::Practice => {
                let mut practice = PracticeServiceClient::new(channel);
                let request = authorized(
                    authorization,
                    pb::StartSessionRequest {
                        module: PRACTICE_MODULE.into(),
                        ..Default::default()
                    },
                );
                let session = practice
                    .start_session(request)
                    .await?
                    .into_inner()
                    .session
                    .ok_or_else(|| tonic::Status::unknown("no session"))?;
                let request = authorized(
                    authorization,
                    pb::SubmitAttemptRequest {
                        session: session.name,
                        exercise_id: PRACTICE_EXERCISE.into(),
                        response_text: "We are behind on the migration by a week because the vendor changed \
                                    their API; we need one more week and no extra budget."
                            .into(),
                        ..Default::default()
                    },
                );
                practice.submit_attempt(request).await?;
            }
            Self::Progress => {
                let request = authorized(authorization, pb::GetProgressRequest {});
                ProgressServiceClient::new(channel).get_progress(request).await?;
            }
            Self::Analytics => {
                let request = authorized(authorization, pb::GetAnalyticsRequest::default());
                AdminServiceClient::new(channel).get_analytics(request).await?;
            }
            Self::GetMeeting => {
                MeetingServiceClient::new(channel)
                    .get_meeting(authorized(
                        authorization,
                        pb::GetMeetingRequest {
                            name: fixture.meeting.clone(),
                        },
                    ))
                    .await?;
            }
            Self::CreateMeeting => {
                MeetingServiceClient::new(channel)
                    .create_meeting(authorized(
                        authorization,
                        pb::CreateMeetingRequest {
                            meeting: Some(pb::Meeting {
                                title: "Weekly engineering sync".into(),
                                ..Default::default()
                            }),
                            request_id: String::new(),
                        },
                    ))
                    .await?;
            }
            Self::UpdateMeeting => {
                MeetingServiceClient::new(channel)
                    .update_meeting(authorized(
                        authorization,
                        pb::UpdateMeetingRequest {
                            meeting: Some(pb::Meeting {
                                name: fixture.meeting.clone(),
                                title: UPDATED_TITLE.into(),
                                ..Default::default()
                            }),
                            update_mask: Some(prost_types::FieldMask {
                                paths: vec!["title".into()],
                            }),
                        },
                    ))
                    .await?;
            }
            Self::PracticeRead => {
                PracticeServiceClient::new(channel)
                    .list_sessions(authorized(
                        authorization,
                        pb::PracticeServiceListSessionsRequest {
                            page_size: 10,
                            ..Default::default()
                        },
                    ))
                    .await?;
            }
            Self::Upload | Self::Events | Self::Processing | Self::Export => {
                return Err(tonic::Status::unimplemented("this scenario runs on its own"));
            }
        }
        Ok(())
    }
}

/// The title `update-meeting` gives a meeting.
const UPDATED_TITLE: &str = "Weekly engineering sync (moved)";

/// The seed module and its written exercise the `practice` scenario uses.
const PRACTICE_MODULE: &str = "modules/filler-words-say-it-without-fillers";
const PRACTICE_EXERCISE: &str = "strip-the-fillers";

/// `message` with the `authorization` header.
fn authorized<T>(authorization: &Authorization, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", authorization.clone());
    request
}

/// What a client of the authenticated scenarios acts with: the account's
/// token and a meeting of it, its own (clients updating one row would
/// measure the row lock, not the call).
#[derive(Clone)]
struct Fixture {
    authorization: Authorization,
    meeting: String,
}

/// The HTTP client of the edge scenarios.
#[derive(Clone)]
struct Http {
    client: reqwest::Client,
    base: String,
}

#[derive(Debug, Serialize)]
struct Row {
    scenario: Scenario,
    rpc: &'static str,
    concurrency: usize,
    connections: usize,
    seconds: f64,
    calls: u64,
    errors: u64,
    calls_per_second: f64,
    p50_us: u64,
    p95_us: u64,
    p99_us: u64,
    max_us: u64,
    /// The first error seen, if any.
    first_error: Option<String>,
}

fn size(value: &str) -> Result<usize, String> {
    debrief::config::parse_size(value).ok_or_else(|| format!("{value:?}: expected e.g. 256MiB"))
}

fn duration(value: &str) -> Result<Duration, String> {
    debrief::config::parse_duration(value).ok_or_else(|| format!("{value:?}: expected e.g. 10s or 500ms"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let upload = args.scenarios.contains(&Scenario::Upload);
    let events = args.scenarios.contains(&Scenario::Events);
    let processing = args.scenarios.contains(&Scenario::Processing);
    let export = args.scenarios.contains(&Scenario::Export);
    let scenarios: Vec<Scenario> = if args.scenarios.is_empty() {
        Scenario::value_variants()
            .iter()
            .copied()
            // These need the in-process server.
            .filter(|s| !s.in_process() || args.addr.is_none())
            .collect()
    } else {
        args.scenarios.clone()
    }
    .into_iter()
    .filter(|s| {
        !matches!(
            s,
            Scenario::Upload | Scenario::Events | Scenario::Processing | Scenario::Export
        )
    })
    .collect();
    let _data_dir;
    let (addr, shutdown, mut db) = match &args.addr {
        Some(addr) => (addr.clone(), None, None),
        None => {
            let dir = tempfile::tempdir()?;
            let mut vars = vec![
                ("DEBRIEF_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
                ("DEBRIEF_DATA_DIR".to_owned(), dir.path().display().to_string()),
                ("DEBRIEF_LOG".to_owned(), "warn".to_owned()),
                // One account makes every call: lift the per-user limits.
                ("DEBRIEF_RATE_LIMIT_READS".to_owned(), "100000000".to_owned()),
                ("DEBRIEF_RATE_LIMIT_WRITES".to_owned(), "100000000".to_owned()),
                ("DEBRIEF_RATE_LIMIT_UPLOADS".to_owned(), "100000000".to_owned()),
            ];
            if processing {
                // The queue scenario's jobs are for its own claimers.
                vars.push(("DEBRIEF_WORKERS".to_owned(), "0".to_owned()));
            }
            // The database (Postgres when DATABASE_URL is set) comes from
            // the environment, like the server's.
            for name in [
                "DATABASE_URL",
                "DATABASE_MIGRATION_URL",
                "DEBRIEF_JWT_SIGNING_KEY",
            ] {
                if let Ok(value) = std::env::var(name) {
                    vars.push((name.to_owned(), value));
                }
            }
            let app = Application::build(Config::from_vars(vars)?).await?;
            let addr = format!("http://{}", app.local_addr());
            let token = app.shutdown_token();
            let db = app.state().shared.db.clone();
            tokio::spawn(app.run_until_stopped());
            _data_dir = dir;
            (addr, Some(token), Some(db))
        }
    };

    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(
            Channel::from_shared(addr.clone())?
                .connect()
                .await
                .context("connect")?,
        );
    }
    // Authenticated scenarios act as a fresh account.
    let http = Http {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(args.concurrency)
            .build()?,
        base: addr.clone(),
    };
    let authenticated = [
        Scenario::Profile,
        Scenario::ProfileHttp,
        Scenario::Practice,
        Scenario::Progress,
        Scenario::Analytics,
        Scenario::GetMeeting,
        Scenario::CreateMeeting,
        Scenario::UpdateMeeting,
        Scenario::PracticeRead,
    ];
    let (account, token) = if scenarios.iter().any(|s| authenticated.contains(s)) {
        let email = format!("bench-{}@example.com", uuid::Uuid::now_v7());
        let (user, token) = child::sign_up(channels[0].clone(), &email)
            .await
            .context("signing up the benchmark account")?;
        let id: uuid::Uuid = user.trim_start_matches("users/").parse()?;
        if let Some(scenario) = scenarios.iter().find(|s| s.in_process()) {
            let db = db.as_ref().with_context(|| {
                format!("the {scenario:?} scenario needs the in-process server (no --addr)")
            })?;
            child::unlimited_practice(db, channels[0].clone(), &user).await?;
            if scenarios
                .iter()
                .any(|s| matches!(s, Scenario::Progress | Scenario::Analytics))
            {
                let started = Instant::now();
                seed::population(db, id, args.seed_users, args.seed_scores).await?;
                println!(
                    "seeded {} accounts and {} skill scores in {:.1} s",
                    args.seed_users,
                    args.seed_scores,
                    started.elapsed().as_secs_f64()
                );
                // GetAnalytics is for admins: the benchmark account becomes one.
                child::make_admin(db, &email).await?;
            }
        }
        (id, token)
    } else {
        (uuid::Uuid::nil(), String::new())
    };
    let authorization: Authorization = format!("Bearer {token}").parse()?;
    let with_meetings = scenarios
        .iter()
        .any(|s| matches!(s, Scenario::GetMeeting | Scenario::UpdateMeeting));
    let mut fixtures = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let meeting = if with_meetings {
            child::new_meeting(channels[0].clone(), &token).await?
        } else {
            String::new()
        };
        fixtures.push(Fixture {
            authorization: authorization.clone(),
            meeting,
        });
    }
    let mut rows = Vec::new();
    let mut comparisons = Vec::new();
    for scenario in scenarios {
        let script = compare::script(scenario).filter(|_| args.compare);
        let Some(script) = script else {
            rows.push(run(scenario, &channels, &fixtures, &http, &args).await);
            continue;
        };
        // With --addr, the baseline runs on that server's database.
        let db = match &mut db {
            Some(db) => &*db,
            none => none.insert(compare::server_database(account).await?),
        };
        let clients = fixtures
            .iter()
            .map(|f| compare::Vars {
                user_id: account,
                meeting_id: f
                    .meeting
                    .trim_start_matches("meetings/")
                    .parse()
                    .unwrap_or_default(),
            })
            .collect::<Vec<_>>();
        for round in 1..=args.rounds.max(1) {
            // Served in this process unless --addr: then clients and
            // server are not told apart.
            let apart = if args.addr.is_some() {
                compare::Clients::ThisProcess
            } else {
                compare::Clients::Mixed
            };
            let machine = compare::sample_machine(args.warmup, args.duration, apart);
            let row = run(scenario, &channels, &fixtures, &http, &args).await;
            let mut debrief = compare::Side::from(&row);
            machine.per_call(&mut debrief, args.duration).await;
            let machine = compare::sample_machine(args.warmup, args.duration, compare::Clients::WithChildren);
            let (baseline, mut without) =
                compare::baseline(db, script, &clients, args.warmup, args.duration).await?;
            machine.per_call(&mut without, args.duration).await;
            comparisons.push(compare::Comparison {
                scenario,
                baseline,
                round,
                concurrency: args.concurrency,
                debrief,
                without,
                ratio: row.calls_per_second / without.per_second.max(f64::MIN_POSITIVE),
            });
            rows.push(row);
        }
    }
    print_table(&addr, &rows);
    if !comparisons.is_empty() {
        compare::print(&comparisons);
    }
    let upload = if upload {
        let result = upload::run(args.uploads, args.upload_size).await?;
        println!("\nupload: {result:#?}");
        println!("{}", result.against_goals());
        Some(result)
    } else {
        None
    };

    let path = args.json.clone().unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        std::path::PathBuf::from(format!("target/bench/bench-{secs}.json"))
    });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let events = if events {
        let result = events::run(args.idle_streams, args.event_samples, args.memory_streams).await?;
        println!("\nevents: {result:#?}");
        Some(result)
    } else {
        None
    };
    let processing = if processing {
        let queue = processing::Queue {
            jobs: args.queue_jobs,
            claimers: args.queue_claimers.max(1),
            batch: args.queue_batch.max(1),
            owners: args.queue_owners.max(1),
        };
        let result = processing::run(args.mp3.as_deref(), queue).await?;
        println!("\nprocessing: {result:#?}");
        Some(result)
    } else {
        None
    };
    let export = if export {
        let (small, large) = (args.export_records[0], args.export_records[1]);
        let result = export::run(small, large).await?;
        println!("\nexport: {result:#?}");
        Some(result)
    } else {
        None
    };
    let report = serde_json::json!({
        "rows": rows, "comparisons": comparisons, "upload": upload, "events": events, "processing": processing, "export": export,
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
    println!("\nresults written to {}", path.display());
    if let Some(token) = shutdown {
        token.cancel();
    }
    Ok(())
}

async fn run(
    scenario: Scenario,
    channels: &[Channel],
    fixtures: &[Fixture],
    http: &Http,
    args: &Args,
) -> Row {
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|i| {
            let channel = channels[i % channels.len()].clone();
            let http = http.clone();
            let fixture = fixtures[i % fixtures.len()].clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                let mut first_error = None;
                loop {
                    let began = Instant::now();
                    if began >= end {
                        break;
                    }
                    let result = scenario.call(channel.clone(), &fixture, &http).await;
                    if began >= measure_from {
                        match result {
                            Ok(()) => latencies.push(began.elapsed().as_micros() as u64),
                            Err(status) => {
                                errors += 1;
                                first_error.get_or_insert_with(|| status.to_string());
                            }
                        }
                    }
                }
                (latencies, errors, first_error)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for worker in workers {
        if let Ok((mut l, e, first)) = worker.await {
            latencies.append(&mut l);
            errors += e;
            first_error = first_error.or(first);
        }
    }
    latencies.sort_unstable();
    let percentile = |p: f64| {
        if latencies.is_empty() {
            return 0;
        }
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index]
    };
    let seconds = args.duration.as_secs_f64();
    Row {
        scenario,
        rpc: scenario.rpc(),
        concurrency: args.concurrency,
        connections: channels.len(),
        seconds,
        calls: latencies.len() as u64,
        errors,
        calls_per_second: latencies.len() as f64 / seconds,
        p50_us: percentile(0.50),
        p95_us: percentile(0.95),
        p99_us: percentile(0.99),
        max_us: latencies.last().copied().unwrap_or_default(),
        first_error,
    }
}

fn print_table(addr: &str, rows: &[Row]) {
    println!("debrief-bench against {addr}\n");
    println!(
        "{:<52} {:>5} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "rpc", "conc", "calls", "errors", "calls/s", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    let ms = |us: u64| format!("{:.2}", us as f64 / 1000.0);
    for row in rows {
        println!(
            "{:<52} {:>5} {:>9} {:>7} {:>10.0} {:>9} {:>9} {:>9} {:>9}",
            row.rpc,
            row.concurrency,
            row.calls,
            row.errors,
            row.calls_per_second,
            ms(row.p50_us),
            ms(row.p95_us),
            ms(row.p99_us),
            ms(row.max_us)
        );
    }
    for row in rows.iter().filter(|row| row.errors > 0) {
        println!(
            "first error in {}: {}",
            row.rpc,
            row.first_error.as_deref().unwrap_or("?")
        );
    }
}
