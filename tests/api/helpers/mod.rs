//! Test harness: a real server on a random loopback port with a fresh
//! database, built by the same `Application::build` as `main`.

pub mod postgres;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Once;

use debrief::db::Db;
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
    /// An HTTP/2 channel to it.
    pub channel: Channel,
    /// The server's own database handle (its pool and role).
    pub db: Db,
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
    ]);
    if backend == Backend::Postgres {
        vars.insert("DATABASE_URL".to_owned(), postgres::fresh_database().await);
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
    let config = Config::from_vars(vars).expect("valid test configuration");
    let app = Application::build(config).await.expect("the server starts");
    let addr = app.local_addr();
    let db = app.state().db.clone();
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect_lazy();
    TestApp {
        addr,
        channel,
        db,
        shutdown,
        server: Some(server),
        _data_dir: data_dir,
    }
}

impl TestApp {
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
