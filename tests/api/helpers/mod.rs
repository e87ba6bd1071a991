//! Test harness: a real server on a random loopback port with a fresh
//! database, built by the same `Application::build` as `main`.

pub mod clamd;
pub mod postgres;
pub mod s3;
pub mod smtp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Once, OnceLock};

use debrief::auth::mailer::RecordingMailer;
use debrief::db::Db;
use debrief::pb::v1 as pb;
use debrief::pb::v1::admin_service_client::AdminServiceClient;
use debrief::pb::v1::auth_service_client::AuthServiceClient;
use debrief::pb::v1::profile_service_client::ProfileServiceClient;
use debrief::pb::v1::usage_service_client::UsageServiceClient;
use debrief::{Application, Config};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

/// The origin the test servers allow for CORS.
pub const ALLOWED_ORIGIN: &str = "http://app.debrief.test";

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary data directory (the default setup).
    Sqlite,
    /// A fresh database on the test Postgres server.
    Postgres,
}

/// Runs each named `async fn(Backend)` as two tests, `<name>::sqlite` and
/// `<name>::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    )*};
}

/// A running server.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where `/metrics` is served when `DEBRIEF_METRICS_ADDR` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// An HTTP/2 channel to it.
    pub channel: Channel,
    /// The server's own database handle (its pool and role).
    pub db: Db,
    /// Every email the server sent.
    pub mailer: Arc<RecordingMailer>,
    /// The state the server's handlers share (for calling internals).
    pub state: debrief::AppState,
    vars: HashMap<String, String>,
    shutdown: CancellationToken,
    server: Option<JoinHandle<Result<(), debrief::server::ServerError>>>,
    _data_dir: tempfile::TempDir,
}

/// The environment a test server starts from.
pub async fn test_env(backend: Backend) -> (HashMap<String, String>, tempfile::TempDir) {
    let data_dir = tempfile::tempdir().expect("temporary data directory");
    let mut vars = HashMap::from([
        ("DEBRIEF_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        (
            "DEBRIEF_DATA_DIR".to_owned(),
            data_dir.path().display().to_string(),
        ),
        ("DEBRIEF_CORS_ORIGINS".to_owned(), ALLOWED_ORIGIN.to_owned()),
        ("DEBRIEF_SHUTDOWN_GRACE".to_owned(), "2s".to_owned()),
        // Tests sign in and call far more often than people do.
        ("DEBRIEF_AUTH_RATE_LIMIT".to_owned(), "10000".to_owned()),
        ("DEBRIEF_RATE_LIMIT_READS".to_owned(), "100000".to_owned()),
        ("DEBRIEF_RATE_LIMIT_WRITES".to_owned(), "100000".to_owned()),
        ("DEBRIEF_RATE_LIMIT_UPLOADS".to_owned(), "100000".to_owned()),
        // Uploaded meetings stay queued unless a test starts workers (the
        // processing tests do), so other tests see the states they set up.
        ("DEBRIEF_WORKERS".to_owned(), "0".to_owned()),
        ("DEBRIEF_JOB_POLL".to_owned(), "100ms".to_owned()),
    ]);
    if backend == Backend::Postgres {
        let database = postgres::fresh_database().await;
        vars.insert("DATABASE_URL".to_owned(), database.url);
        vars.insert("DATABASE_MIGRATION_URL".to_owned(), database.migration_url);
        vars.insert("DEBRIEF_JWT_SIGNING_KEY".to_owned(), signing_key().to_owned());
    }
    (vars, data_dir)
}

/// Starts a server with the test defaults.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Starts a server after letting the test change its environment.
pub async fn spawn_app_with(
    backend: Backend,
    configure: impl FnOnce(&mut HashMap<String, String>),
) -> TestApp {
    init_logging();
    let (mut vars, data_dir) = test_env(backend).await;
    configure(&mut vars);
    start(vars, data_dir).await
}

/// A server on a fresh database of `cluster`, a Postgres cluster a fault
/// test stops and starts; a call waits at most 2 s for a connection.
pub async fn spawn_app_on(cluster: &postgres::Cluster) -> TestApp {
    let database = cluster.app_database().await;
    spawn_app_with(Backend::Postgres, |vars| {
        vars.insert("DATABASE_URL".into(), database.url);
        vars.insert("DATABASE_MIGRATION_URL".into(), database.migration_url);
        vars.insert("DEBRIEF_DB_ACQUIRE_TIMEOUT".into(), "2s".into());
    })
    .await
}

async fn start(vars: HashMap<String, String>, data_dir: tempfile::TempDir) -> TestApp {
    let config = Config::from_vars(vars.clone()).expect("valid test configuration");
    let mailer = Arc::new(RecordingMailer::default());
    let app = Application::build_with_mailer(config, mailer.clone())
        .await
        .expect("the server starts");
    let addr = app.local_addr();
    let metrics_addr = app.metrics_addr();
    let db = app.state().shared.db.clone();
    let state = app.state().clone();
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect_lazy();
    TestApp {
        addr,
        metrics_addr,
        channel,
        db,
        mailer,
        state,
        vars,
        shutdown,
        server: Some(server),
        _data_dir: data_dir,
    }
}

impl TestApp {
    /// Another instance on the same database (Postgres), as a second
    /// replica behind a load balancer would be.
    pub async fn spawn_replica(&self) -> TestApp {
        self.spawn_replica_with(|_| {}).await
    }

    /// [`Self::spawn_replica`] with a changed environment.
    pub async fn spawn_replica_with(&self, configure: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
        let data_dir = tempfile::tempdir().expect("temporary data directory");
        let mut vars = self.vars.clone();
        vars.insert("DEBRIEF_DATA_DIR".into(), data_dir.path().display().to_string());
        configure(&mut vars);
        start(vars, data_dir).await
    }

    /// A connection as the owner of the schema (on Postgres the server's
    /// own role may not change it).
    pub async fn owner_db(&self) -> Db {
        let config = Config::from_vars(self.vars.clone()).expect("valid test configuration");
        Db::connect_as_owner(&config).await.expect("connect as the owner")
    }

    /// The environment the server started with.
    pub fn vars(&self) -> &HashMap<String, String> {
        &self.vars
    }

    /// The server's data directory (SQLite file, local objects).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self._data_dir.path().to_owned()
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A health client over gRPC.
    pub fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel.clone())
    }

    /// A UsageService client over gRPC.
    pub fn usage(&self) -> UsageServiceClient<Channel> {
        UsageServiceClient::new(self.channel.clone())
    }

    /// An AuthService client over gRPC.
    pub fn auth(&self) -> AuthServiceClient<Channel> {
        AuthServiceClient::new(self.channel.clone())
    }

    /// A ProfileService client over gRPC.
    pub fn profiles(&self) -> ProfileServiceClient<Channel> {
        ProfileServiceClient::new(self.channel.clone())
    }

    /// An AdminService client over gRPC.
    pub fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel.clone())
    }

    /// Signs up `<name>@example.com` with [`PASSWORD`].
    pub async fn sign_up(&self, name: &str) -> TestUser {
        sign_up_via(&self.channel, name).await
    }

    /// Signs in with email and password; a new session.
    pub async fn sign_in(&self, email: &str, password: &str) -> Result<pb::SessionTokens, tonic::Status> {
        self.auth()
            .sign_in(pb::SignInRequest {
                email: email.into(),
                password: password.into(),
            })
            .await
            .map(|r| r.into_inner().tokens.expect("tokens"))
    }

    /// The actions of the audit entries about `user_id`, oldest first.
    pub async fn audit_actions(&self, user_id: uuid::Uuid) -> Vec<String> {
        use debrief::audit::entity as audit;
        use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
        let scoped = self.db.as_service().await.expect("service scope");
        scoped
            .find::<audit::Entity>()
            .filter(audit::Column::SubjectUserId.eq(user_id))
            .order_by_asc(audit::Column::Id)
            .all(scoped.txn())
            .await
            .expect("audit entries")
            .into_iter()
            .map(|e| e.action)
            .collect()
    }

    /// Starts a graceful shutdown and waits for the server to stop.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server stops cleanly");
        }
    }

    /// Starts a graceful shutdown without waiting.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An HTTP/2 channel to the server at `addr` (`host:port`), connected.
pub async fn connect(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// Signs up `<name>@example.com` with [`PASSWORD`] through `channel`.
pub async fn sign_up_via(channel: &Channel, name: &str) -> TestUser {
    let email = format!("{name}@example.com");
    let response = AuthServiceClient::new(channel.clone())
        .sign_up(pb::SignUpRequest {
            email: email.clone(),
            password: PASSWORD.into(),
            display_name: name.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("sign up {email}: {e:?}"))
        .into_inner();
    let user = response.user.expect("user");
    TestUser {
        id: user.name.trim_start_matches("users/").parse().expect("user id"),
        email,
        tokens: response.tokens.expect("tokens"),
    }
}

/// The password test accounts use (strong enough for the estimator).
pub const PASSWORD: &str = "plum-orbit-Kettle-42";

/// An account made by [`TestApp::sign_up`].
#[derive(Debug, Clone)]
pub struct TestUser {
    /// The account id.
    pub id: uuid::Uuid,
    /// Its email.
    pub email: String,
    /// Its first session's tokens.
    pub tokens: pb::SessionTokens,
}

impl TestUser {
    /// A request carrying this user's access token.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        bearer(&self.tokens.access_token, message)
    }
}

/// A request with `authorization: Bearer <token>`.
pub fn bearer<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii header"),
    );
    request
}

/// One signing key for every Postgres test server of this process (SQLite
/// servers generate their own in their data directory).
pub fn signing_key() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| debrief::auth::keys::generate_pem().expect("a key"))
}

/// The google.rpc details of a status.
pub fn details(status: &tonic::Status) -> tonic_types::ErrorDetails {
    use tonic_types::StatusExt;
    status.get_error_details()
}

/// The paths of the `BadRequest` field violations of a status.
pub fn violation_fields(status: &tonic::Status) -> Vec<String> {
    details(status)
        .bad_request()
        .map(|bad| bad.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// Runs the shell command `cleanup` once this test process is gone, however
/// it ends: a small shell loop outlives us. Stops the servers the tests
/// start and removes their files.
pub fn when_this_process_exits(cleanup: &str) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {cleanup}",
        pid = std::process::id()
    );
    let _ = std::process::Command::new("sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

/// Logs to stderr when `TEST_LOG` is set.
fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let filter = std::env::var("TEST_LOG").unwrap_or_default();
            let filter = if filter.is_empty() {
                "info".to_owned()
            } else {
                filter
            };
            let config =
                Config::from_vars([("DEBRIEF_LOG".to_owned(), filter)]).expect("valid TEST_LOG filter");
            debrief::telemetry::init(&config);
        }
    });
}

/// The path of a script in `tests/js` that needs the Node package
/// `package`; panics naming what to run when the package is not installed.
pub fn js_script(script: &str, package: &str) -> std::path::PathBuf {
    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        js.join("node_modules").join(package).is_dir(),
        "the Node package {package} is not installed in tests/js: run tests/run, or `cd tests/js && npm ci`"
    );
    js.join(script)
}

/// A child process that is killed (SIGKILL) and reaped when dropped, so a
/// failing test leaves no process behind writing into removed directories.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the `debrief` binary with exactly these environment variables (plus
/// PATH) and returns it, started.
pub fn debrief_command(vars: &HashMap<String, String>) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_debrief"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(vars);
    command
}
