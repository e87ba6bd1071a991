//! A `debrief serve` child process on a temporary SQLite data directory,
//! with an admin account, for scenarios that measure the server alone; and
//! the account helpers every scenario uses.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use debrief::pb::v1 as pb;
use debrief::pb::v1::auth_service_client::AuthServiceClient;
use tonic::transport::Channel;

const ADMIN: &str = "bench-admin@example.com";
/// The password of every benchmark account.
pub const PASSWORD: &str = "bench-Marker-violet-2026";

/// A running server process.
pub struct ChildServer {
    process: tokio::process::Child,
    /// Its process id.
    pub pid: u32,
    /// `http://127.0.0.1:port`.
    pub url: String,
    /// An access token of its admin.
    pub admin_token: String,
    _dir: tempfile::TempDir,
}

/// A request with a bearer token.
pub fn bearer<T>(token: &str, message: T) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(request)
}

/// Signs up an account through `channel`; returns its user name
/// (`users/{id}`) and access token.
pub async fn sign_up(channel: Channel, email: &str) -> anyhow::Result<(String, String)> {
    let signed_up = AuthServiceClient::new(channel)
        .sign_up(pb::SignUpRequest {
            email: email.into(),
            password: PASSWORD.into(),
            display_name: "Bench".into(),
        })
        .await?
        .into_inner();
    Ok((
        signed_up.user.context("user")?.name,
        signed_up.tokens.context("tokens")?.access_token,
    ))
}

/// Creates a meeting of `token`'s account; returns its name.
pub async fn new_meeting(channel: Channel, token: &str) -> anyhow::Result<String> {
    Ok(
        debrief::pb::v1::meeting_service_client::MeetingServiceClient::new(channel)
            .create_meeting(bearer(
                token,
                pb::CreateMeetingRequest {
                    meeting: Some(pb::Meeting {
                        title: "Weekly engineering sync".into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
            )?)
            .await?
            .into_inner()
            .meeting
            .context("meeting")?
            .name,
    )
}

/// Gives `user` (`users/{id}`) practice sessions without a limit, through
/// an admin made with the server's database handle.
pub async fn unlimited_practice(db: &debrief::db::Db, channel: Channel, user: &str) -> anyhow::Result<()> {
    let email = format!("bench-admin-{}@example.com", uuid::Uuid::now_v7());
    debrief::admin::users::create_user(db, &email, PASSWORD, debrief::caller::Role::Admin, "Bench admin")
        .await
        .map_err(|e| anyhow::anyhow!("creating the benchmark admin: {e}"))?;
    let admin = AuthServiceClient::new(channel.clone())
        .sign_in(pb::SignInRequest {
            email,
            password: PASSWORD.into(),
        })
        .await?
        .into_inner()
        .tokens
        .context("tokens")?
        .access_token;
    debrief::pb::v1::usage_service_client::UsageServiceClient::new(channel)
        .set_user_plan(bearer(
            &admin,
            pb::SetUserPlanRequest {
                user: user.into(),
                plan: "plans/pro".into(),
                limit_overrides: vec![pb::PlanLimit {
                    category: pb::UsageCategory::PracticeSessions as i32,
                    limit: i64::from(i32::MAX),
                    ..Default::default()
                }],
                reason: "benchmark".into(),
            },
        )?)
        .await?;
    Ok(())
}

/// A memory figure of `/proc/{pid}/status` in MiB (0 when unreadable).
fn status_mib(pid: u32, name: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The resident memory of process `pid` now, in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:")
}

/// Makes the account of `email` an admin, straight in the database (the
/// in-process server re-reads roles with its session checks).
pub async fn make_admin(db: &debrief::db::Db, email: &str) -> anyhow::Result<()> {
    use debrief::auth::entity::user;
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, QueryFilter};
    let scoped = db.as_service().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    scoped
        .update_many::<user::Entity>()
        .col_expr(user::Column::Role, Expr::value(user::Role::Admin))
        .filter(user::Column::Email.eq(email))
        .exec()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    scoped.commit().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

impl ChildServer {
    /// Starts the `debrief` binary built beside this one, with `env` added.
    pub async fn start(env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?.with_file_name("debrief");
        if !exe.exists() {
            bail!(
                "{} is missing: build it with `cargo build --release`",
                exe.display()
            );
        }
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let command = || {
            let mut command = tokio::process::Command::new(&exe);
            command
                .env("DEBRIEF_DATA_DIR", dir.path())
                .env("DEBRIEF_ADDR", format!("127.0.0.1:{port}"))
                .env("DEBRIEF_LOG", "warn")
                .env("DEBRIEF_AUTH_RATE_LIMIT", "100000")
                .env("DEBRIEF_RATE_LIMIT_READS", "100000000")
                .env("DEBRIEF_RATE_LIMIT_WRITES", "100000000")
                .env("DEBRIEF_RATE_LIMIT_UPLOADS", "100000000")
                .envs(env.iter().copied());
            command
        };
        let created = command()
            .args(["admin", "create-user", "--email", ADMIN, "--role", "admin"])
            .env("DEBRIEF_ADMIN_PASSWORD", PASSWORD)
            .output()
            .await?;
        if !created.status.success() {
            bail!("creating the admin: {}", String::from_utf8_lossy(&created.stderr));
        }
        let process = command()
            .arg("serve")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let pid = process.id().context("server pid")?;
        let url = format!("http://127.0.0.1:{port}");
        let mut auth = AuthServiceClient::new(Channel::from_shared(url.clone())?.connect_lazy());
        let deadline = Instant::now() + Duration::from_secs(60);
        let admin_token = loop {
            let signed_in = auth
                .sign_in(pb::SignInRequest {
                    email: ADMIN.into(),
                    password: PASSWORD.into(),
                })
                .await;
            match signed_in {
                Ok(response) => break response.into_inner().tokens.context("tokens")?.access_token,
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => bail!("the server did not start: {e}"),
            }
        };
        Ok(Self {
            process,
            pid,
            url,
            admin_token,
            _dir: dir,
        })
    }

    /// A new connection to it.
    pub async fn connect(&self) -> anyhow::Result<Channel> {
        Ok(Channel::from_shared(self.url.clone())?.connect().await?)
    }

    /// Signs up an account; returns its user name and access token.
    pub async fn sign_up(&self, email: &str) -> anyhow::Result<(String, String)> {
        sign_up(self.connect().await?, email).await
    }

    /// Resident memory now and at its peak, in MiB (Linux).
    pub fn memory_mib(&self) -> (f64, f64) {
        (status_mib(self.pid, "VmRSS:"), status_mib(self.pid, "VmHWM:"))
    }

    /// Stops it.
    pub async fn stop(mut self) {
        let _ = self.process.kill().await;
    }
}
