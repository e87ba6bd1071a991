//! The `debrief` command line.

use anyhow::Context as _;

/// The allocator: under load glibc's malloc and free took about 8 % of the
/// server's processor time; with mimalloc reads are up to a fifth faster.
/// It keeps about 40 MiB more resident at idle (`MIMALLOC_PURGE_DELAY=0`
/// returns freed memory at once).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use debrief::auth::entity::user::Role;
use debrief::auth::keys;
use debrief::db::Db;
use debrief::{Application, Config, telemetry};

/// debrief: meeting intelligence backend (gRPC, gRPC-Web, HTTP/JSON).
///
/// Configuration comes from environment variables; see the README.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server on DEBRIEF_ADDR (migrates the database first), with
    /// DEBRIEF_WORKERS processing workers inside it.
    Serve {
        /// Run no processing worker in this process (run `debrief worker`
        /// elsewhere).
        #[arg(long)]
        no_worker: bool,
    },
    /// Run processing workers only (DEBRIEF_WORKERS at once, at least one),
    /// against the same database and storage as the servers.
    Worker,
    /// Manage the database schema.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Operator tasks.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Print the OpenAPI 3.1 document of the HTTP/JSON API (what
    /// `/openapi.json` serves).
    Openapi,
    /// Token signing keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Subcommand)]
enum AdminAction {
    /// Create an account with a role, e.g. the first admin. The password is
    /// read from DEBRIEF_ADMIN_PASSWORD, else from the first line of stdin.
    CreateUser {
        /// Email address of the account.
        #[arg(long)]
        email: String,
        /// Role: user, admin or service.
        #[arg(long, default_value = "user")]
        role: String,
        /// Name shown in the product.
        #[arg(long, default_value = "")]
        display_name: String,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Print a new Ed25519 private key (PKCS#8 PEM) for DEBRIEF_JWT_SIGNING_KEY.
    Generate,
    /// Read a private key PEM on stdin and print its public key PEM, for
    /// DEBRIEF_JWT_VERIFY_KEYS when rotating.
    Public,
}

#[derive(Subcommand)]
enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Revert the newest migrations.
    Down {
        /// How many to revert.
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied.
    Status,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::from_env()?;
    telemetry::init(&config);
    match cli.command {
        Command::Serve { no_worker } => {
            let mut config = config;
            if no_worker {
                config.processing.workers = 0;
            }
            serve(config).await
        }
        Command::Worker => worker(config).await,
        Command::Migrate { action } => migrate(config, action).await,
        Command::Admin { action } => admin(config, action).await,
        Command::Keys { action } => keys(action),
        Command::Openapi => {
            let document = debrief::edge::openapi_document()?;
            println!("{}", serde_json::to_string_pretty(&document)?);
            Ok(())
        }
    }
}

async fn admin(config: Config, action: AdminAction) -> anyhow::Result<()> {
    let AdminAction::CreateUser {
        email,
        role,
        display_name,
    } = action;
    let role = Role::parse(&role).context("--role must be user, admin or service")?;
    let password = match std::env::var("DEBRIEF_ADMIN_PASSWORD") {
        Ok(password) => password,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let db = Db::open(&config).await?;
    let user = debrief::admin::users::create_user(&db, &email, &password, role, &display_name)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "created users/{} ({}) with role {}",
        user.id,
        user.email,
        role.as_str()
    );
    Ok(())
}

fn keys(action: KeysAction) -> anyhow::Result<()> {
    match action {
        KeysAction::Generate => print!("{}", keys::generate_pem().context("generating a key")?),
        KeysAction::Public => {
            let private = std::io::read_to_string(std::io::stdin()).context("reading the key from stdin")?;
            print!("{}", keys::public_pem(&private)?);
        }
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    let shutdown = app.shutdown_token();
    tokio::spawn(async move {
        stop_signal().await;
        shutdown.cancel();
    });
    app.run_until_stopped().await?;
    Ok(())
}

async fn worker(config: Config) -> anyhow::Result<()> {
    let db = Db::open(&config).await?;
    let storage = debrief::storage::Storage::open(&config)?;
    let transcriber = debrief::processing::transcribe::from_config(&config.processing.transcriber);
    let slots = config.processing.workers.max(1);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let shared = debrief::shared::Shared {
        config: std::sync::Arc::new(config),
        db,
        storage,
        shutdown: shutdown.clone(),
        clock: Default::default(),
    };
    let pipeline = debrief::server::pipeline(&shared, transcriber);
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            stop_signal().await;
            shutdown.cancel();
        }
    });
    tracing::info!(slots, "debrief worker is processing meetings");
    debrief::processing::worker::run(pipeline, slots, shutdown).await;
    Ok(())
}

async fn migrate(config: Config, action: MigrateAction) -> anyhow::Result<()> {
    let db = Db::connect_as_owner(&config).await?;
    match action {
        MigrateAction::Up => {
            db.migrate().await.context("migrating up")?;
            // The serving role, when it is another one, may use what was made.
            if config.database_migration_url.is_some() && db.backend() == sea_orm::DbBackend::Postgres {
                let serving = Db::connect(&config).await?;
                db.grant_to(&serving.current_role().await?).await?;
            }
        }
        MigrateAction::Down { steps } => db.migrate_down(steps).await.context("migrating down")?,
        MigrateAction::Status => {
            for (name, applied) in db.migration_status().await? {
                println!("{}  {name}", if applied { "applied" } else { "pending" });
            }
        }
    }
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
