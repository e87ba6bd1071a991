//! A Postgres server for the tests: `TEST_DATABASE_URL` (or a `postgres://`
//! `DATABASE_URL`) when given, else one temporary cluster per test binary,
//! started from the local binaries. Each test gets a fresh database set up
//! as production is: owned by `debrief_owner`, which runs the migrations
//! (`DATABASE_MIGRATION_URL`), and served by `debrief_app`, which owns
//! nothing, is neither a superuser nor has BYPASSRLS, so Row Level Security
//! binds it and no statement it runs can turn it off.
//!
//! If no server can be had, the Postgres tests fail with the reason; they
//! are never skipped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sea_orm::{ConnectOptions, ConnectionTrait, Database};
use url::Url;

/// The role the application serves as.
pub const APP_ROLE: &str = "debrief_app";
/// The role that owns the schema and runs the migrations.
pub const OWNER_ROLE: &str = "debrief_owner";

/// A test database: the URLs of its two roles.
pub struct TestDatabase {
    /// `DATABASE_URL`: the serving role.
    pub url: String,
    /// `DATABASE_MIGRATION_URL`: the owner.
    pub migration_url: String,
}

struct Server {
    /// A superuser URL, for creating roles and databases.
    admin_url: Url,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

fn server() -> &'static Server {
    let server = SERVER.get_or_init(|| {
        let admin_url = match external_url() {
            Some(url) => url,
            None => start_cluster()?,
        };
        create_app_role(&admin_url)?;
        Ok(Server { admin_url })
    });
    match server {
        Ok(server) => server,
        Err(reason) => panic!("the Postgres tests need a Postgres server and could not get one: {reason}"),
    }
}

/// A superuser URL for the server: with the cluster started if needed.
pub fn admin_url() -> Url {
    tokio::task::block_in_place(|| server().admin_url.clone())
}

fn create_app_role(admin_url: &Url) -> Result<(), String> {
    for role in [APP_ROLE, OWNER_ROLE] {
        psql(
            admin_url,
            &format!(
                "DO $$ BEGIN
                   IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                     CREATE ROLE {role} LOGIN PASSWORD '{role}'
                       NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
                   END IF;
                 END $$;"
            ),
        )?;
    }
    Ok(())
}

/// A new, empty database owned by [`OWNER_ROLE`], and the URLs to connect
/// to it as each role.
pub async fn fresh_database() -> TestDatabase {
    database_on(admin_url()).await
}

async fn database_on(admin_url: Url) -> TestDatabase {
    let name = format!("debrief_test_{}", uuid::Uuid::new_v4().simple());
    let mut options = ConnectOptions::new(admin_url.as_str());
    options.max_connections(1).sqlx_logging(false);
    let admin = Database::connect(options)
        .await
        .expect("connect as the Postgres superuser");
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name} OWNER {OWNER_ROLE}"))
        .await
        .expect("create a test database");
    admin.close().await.expect("close the admin connection");

    let as_role = |role: &str| {
        let mut url = admin_url.clone();
        url.set_username(role).expect("set user");
        url.set_password(Some(role)).expect("set password");
        url.set_path(&name);
        url.to_string()
    };
    TestDatabase {
        url: as_role(APP_ROLE),
        migration_url: as_role(OWNER_ROLE),
    }
}

fn external_url() -> Option<Url> {
    ["TEST_DATABASE_URL", "DATABASE_URL"]
        .iter()
        .filter_map(|var| std::env::var(var).ok())
        .find(|url| url.starts_with("postgres://") || url.starts_with("postgresql://"))
        .and_then(|url| Url::parse(&url).ok())
}

fn start_cluster() -> Result<Url, String> {
    // Speed over durability: nothing here outlives the test process.
    Ok(Cluster::start(false)?.admin_url())
}

/// A temporary Postgres cluster of this test process, removed when the
/// process ends. The shared test server is one; fault tests start their own
/// to stop and restart it.
pub struct Cluster {
    bin: PathBuf,
    root: bool,
    data: PathBuf,
    log: PathBuf,
    options: String,
    port: u16,
}

impl Cluster {
    /// Creates and starts a cluster on a free loopback port. A `durable`
    /// one keeps every commit through a crash (fsync and synchronous
    /// commits), as fault tests that kill it need.
    pub fn start(durable: bool) -> Result<Self, String> {
        let bin = bin_dir()?;
        let root = is_root();
        let base = tempfile::Builder::new()
            .prefix("debrief-pg-")
            .tempdir_in("/tmp")
            .map_err(|e| format!("cannot make a directory for the cluster: {e}"))?
            .keep();
        let data = base.join("data");
        if root {
            run(Command::new("chown").args(["postgres:postgres"]).arg(&base))?;
        }
        run(as_postgres(root, &bin.join("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
                "-D",
            ])
            .arg(&data))?;
        let port = free_port()?;
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300",
            base.display()
        );
        if !durable {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let cluster = Self {
            log: base.join("log"),
            bin,
            root,
            data,
            options,
            port,
        };
        cluster.resume()?;
        watch_over(root, &cluster.bin, &base, &cluster.data);
        Ok(cluster)
    }

    /// A superuser URL.
    pub fn admin_url(&self) -> Url {
        Url::parse(&format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)).expect("a valid URL")
    }

    /// The server's log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Stops the server with `pg_ctl stop -m <mode>` (`fast`, `immediate`).
    pub fn stop(&self, mode: &str) -> Result<(), String> {
        run(as_postgres(self.root, &self.bin.join("pg_ctl"))
            .args(["-w", "-m", mode, "-D"])
            .arg(&self.data)
            .arg("stop"))
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn resume(&self) -> Result<(), String> {
        run(as_postgres(self.root, &self.bin.join("pg_ctl"))
            .args(["-w", "-t", "60", "-o", &self.options, "-l"])
            .arg(&self.log)
            .arg("-D")
            .arg(&self.data)
            .arg("start"))
    }

    /// Creates the two roles and a database, and returns its URLs.
    pub async fn app_database(&self) -> TestDatabase {
        create_app_role(&self.admin_url()).expect("create the application roles");
        database_on(self.admin_url()).await
    }
}

/// Stops the cluster and removes its files once this test process is gone.
fn watch_over(root: bool, bin: &Path, base: &Path, data: &Path) {
    let runuser = if root { "runuser -u postgres -- " } else { "" };
    super::when_this_process_exits(&format!(
        "{runuser}{pg_ctl} -D {data} -m immediate stop; rm -rf {base}",
        pg_ctl = bin.join("pg_ctl").display(),
        data = data.display(),
        base = base.display(),
    ));
}

fn bin_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| {
            format!("no Postgres binaries in /usr/lib/postgresql ({e}); set PG_BIN or TEST_DATABASE_URL")
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .ok_or_else(|| "no initdb under /usr/lib/postgresql/*/bin".into())
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Postgres refuses to run as root: as root, run its tools as `postgres`.
fn as_postgres(root: bool, program: &Path) -> Command {
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn psql(url: &Url, sql: &str) -> Result<(), String> {
    let psql = bin_dir()
        .map(|bin| bin.join("psql"))
        .ok()
        .filter(|p| p.exists())
        .unwrap_or_else(|| "psql".into());
    run(Command::new(psql).args(["-v", "ON_ERROR_STOP=1", "-q", url.as_str(), "-c", sql]))
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}
