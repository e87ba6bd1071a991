//! `--compare`: every scenario with a script in `sql/` runs alternately
//! through debrief and as the same statements without debrief — `pgbench`
//! on the same Postgres, or on SQLite a minimal loop over the same pools
//! (`Db::reading` / `Db::scoped`, raw statements) — and the ratio of the
//! two is printed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use debrief::db::{Db, Scope};
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, Value};
use serde::Serialize;
use uuid::Uuid;

use crate::script::{self, Script};
use crate::{Row, Scenario, UPDATED_TITLE};

/// The script of what debrief sends for one call of `scenario`, if written.
pub fn script(scenario: Scenario) -> Option<&'static str> {
    match scenario {
        Scenario::Profile => Some(include_str!("sql/get_profile.sql")),
        Scenario::GetMeeting => Some(include_str!("sql/get_meeting.sql")),
        Scenario::UpdateMeeting => Some(include_str!("sql/update_meeting.sql")),
        _ => None,
    }
}

/// What the variables of a script stand for, for one client: the values
/// debrief binds when the client makes its call.
#[derive(Debug, Clone)]
pub struct Vars {
    /// The benchmark account.
    pub user_id: Uuid,
    /// The client's own meeting.
    pub meeting_id: Uuid,
}

impl Vars {
    /// The value of variable `name`: as text (for pgbench) and as debrief
    /// binds it.
    fn value(&self, name: &str, now: DateTime<Utc>) -> anyhow::Result<(String, Value)> {
        Ok(match name {
            "user_id" => (self.user_id.to_string(), self.user_id.into()),
            "meeting_id" => (self.meeting_id.to_string(), self.meeting_id.into()),
            "role" => ("user".into(), "user".into()),
            "limit" => ("1".into(), Value::BigUnsigned(Some(1))),
            "title" => (UPDATED_TITLE.into(), UPDATED_TITLE.into()),
            "now" => (now.to_rfc3339(), now.into()),
            other => bail!("the script names an unknown variable :{other}"),
        })
    }
}

/// Throughput and latency of one side of a comparison.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Side {
    /// Calls (or transactions) a second.
    pub per_second: f64,
    /// Median latency.
    pub p50_us: u64,
    /// 99th percentile latency.
    pub p99_us: u64,
    /// The whole machine's processor time per call (server, database and
    /// clients together), and the share of it the hypervisor gave to
    /// others; None where /proc/stat is not there to read.
    pub machine: Option<Machine>,
}

impl From<&Row> for Side {
    fn from(row: &Row) -> Self {
        Self {
            per_second: row.calls_per_second,
            p50_us: row.p50_us,
            p99_us: row.p99_us,
            machine: None,
        }
    }
}

/// What the machine's processors did while one side was measured.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Machine {
    /// Processor time used (user, system and interrupts) per call.
    pub cpu_us_per_call: f64,
    /// Of it, the clients' (see [`Clients`]), when told apart.
    pub client_us_per_call: Option<f64>,
    /// Of the processors' time, the share taken by the hypervisor for
    /// other guests ("steal"): the machine was that much smaller.
    pub steal_percent: f64,
}

/// The counters of /proc/stat's first line, in clock ticks: busy and
/// stolen time and the total, with the number of processors.
struct Ticks {
    busy: u64,
    steal: u64,
    total: u64,
    processors: usize,
}

fn ticks() -> Option<Ticks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut lines = stat.lines();
    let all: Vec<u64> = lines
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let [user, nice, system, idle, iowait, irq, softirq, steal, ..] = all[..] else {
        return None;
    };
    let processors = lines
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    let busy = user + nice + system + irq + softirq;
    Some(Ticks {
        busy,
        steal,
        total: busy + idle + iowait + steal,
        processors,
    })
}

/// Whose processor time counts as the clients'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clients {
    /// Not told apart: the server runs in this process too.
    Mixed,
    /// This process: the benchmark's gRPC clients, or the SQLite loop.
    ThisProcess,
    /// This process and those it runs: pgbench.
    WithChildren,
}

/// Processor ticks of `clients`; None when not told apart.
fn client_ticks(clients: Clients) -> Option<u64> {
    if clients == Clients::Mixed {
        return None;
    }
    let of = |pid: &str| -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields from the third (after the command in parentheses): user
        // and system time are the 14th and 15th.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    };
    let mut ticks = of("self")?;
    if clients == Clients::WithChildren {
        for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            let pids = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            ticks += pids.split_whitespace().filter_map(of).sum::<u64>();
        }
    }
    Some(ticks)
}

/// Samples the machine over the window that opens `warmup` from now and
/// lasts `duration` (a side's measured window), telling `clients` apart;
/// the caller divides by the calls made in it with [`Sampled::per_call`].
pub fn sample_machine(warmup: Duration, duration: Duration, clients: Clients) -> Sampled {
    Sampled(tokio::spawn(async move {
        tokio::time::sleep(warmup).await;
        let (before, client_before, from) = (ticks()?, client_ticks(clients), Instant::now());
        tokio::time::sleep(duration).await;
        let (after, client_after) = (ticks()?, client_ticks(clients));
        let seconds = from.elapsed().as_secs_f64();
        // Ticks of all processors: a share of them is that share of each
        // processor's time over the window.
        let total = after.total.saturating_sub(before.total).max(1) as f64;
        let seconds_of =
            |a: u64, b: u64| b.saturating_sub(a) as f64 / total * after.processors as f64 * seconds;
        Some(Usage {
            busy_seconds: seconds_of(before.busy, after.busy),
            client_seconds: client_before.zip(client_after).map(|(a, b)| seconds_of(a, b)),
            steal_percent: 100.0 * after.steal.saturating_sub(before.steal) as f64 / total,
        })
    }))
}

/// Processor time over a window.
struct Usage {
    busy_seconds: f64,
    client_seconds: Option<f64>,
    steal_percent: f64,
}

/// A machine sample under way.
pub struct Sampled(tokio::task::JoinHandle<Option<Usage>>);

impl Sampled {
    /// The sample, per call of `side` measured over `duration`.
    pub async fn per_call(self, side: &mut Side, duration: Duration) {
        let calls = side.per_second * duration.as_secs_f64();
        if let Ok(Some(usage)) = self.0.await {
            side.machine = (calls > 0.0).then(|| Machine {
                cpu_us_per_call: usage.busy_seconds * 1e6 / calls,
                client_us_per_call: usage.client_seconds.map(|s| s * 1e6 / calls),
                steal_percent: usage.steal_percent,
            });
        }
    }
}

/// One round of a comparison.
#[derive(Debug, Serialize)]
pub struct Comparison {
    /// The scenario.
    pub scenario: Scenario,
    /// `pgbench` or `sqlite loop`.
    pub baseline: &'static str,
    /// Which round (they alternate: debrief, baseline, debrief…).
    pub round: usize,
    /// Clients on each side.
    pub concurrency: usize,
    /// Through debrief.
    pub debrief: Side,
    /// The same statements without it.
    pub without: Side,
    /// debrief ÷ baseline, in calls a second.
    pub ratio: f64,
}

/// The database of the server at `--addr`, for the baselines: the one
/// `DATABASE_URL` names, checked to hold `account` (which that server has
/// just signed up), so that both sides read the same rows.
pub async fn server_database(account: Uuid) -> anyhow::Result<Db> {
    let url = std::env::var("DATABASE_URL")
        .context("--compare with --addr needs DATABASE_URL: the database of the server at --addr")?;
    let db = Db::connect(&debrief::Config::from_vars([("DATABASE_URL".to_owned(), url)])?).await?;
    let scoped = db.read_as_service().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let not_there = || {
        format!(
            "DATABASE_URL must be the database of the server at --addr, which has the benchmark account {account}"
        )
    };
    let found = debrief::auth::entity::user::Entity::find_by_id(account)
        .one(scoped.txn())
        .await
        .with_context(not_there)?;
    anyhow::ensure!(found.is_some(), not_there());
    Ok(db)
}

/// Runs `script` without debrief for `warmup` + `duration` with one client
/// per entry of `clients`: pgbench on `DATABASE_URL` for Postgres, else a
/// loop over `db`'s pools.
pub async fn baseline(
    db: &Db,
    text: &str,
    clients: &[Vars],
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<(&'static str, Side)> {
    let script = script::parse(text).map_err(|e| anyhow::anyhow!(e))?;
    match db.backend() {
        DbBackend::Postgres => {
            let url = std::env::var("DATABASE_URL").context("pgbench needs DATABASE_URL")?;
            Ok((
                "pgbench",
                pgbench(&url, text, &script, clients, warmup, duration).await?,
            ))
        }
        _ => Ok((
            "sqlite loop",
            sqlite_loop(db, &script, clients, warmup, duration).await?,
        )),
    }
}

/// pgbench, one process per client (each with its own meeting), in
/// prepared mode as debrief's driver sends statements; latencies from its
/// per-transaction logs.
async fn pgbench(
    url: &str,
    text: &str,
    script: &Script,
    clients: &[Vars],
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Side> {
    let dir = tempfile::tempdir()?;
    let binary = pgbench_binary()?;
    let seconds = (warmup + duration).as_secs_f64().ceil() as u64;
    let now = Utc::now();
    // pgbench refuses an empty variable: an empty value is written into the
    // statement as '' instead.
    let mut names: Vec<&String> = script.statements.iter().flat_map(|s| &s.names).collect();
    names.sort_unstable();
    names.dedup();
    let mut text = text.to_owned();
    if let Some(vars) = clients.first() {
        for name in &names {
            if vars.value(name, now)?.0.is_empty() {
                text = text.replace(&format!(":{name}"), "''");
            }
        }
    }
    let file = dir.path().join("script.sql");
    std::fs::write(&file, text)?;
    let started = SystemTime::now();
    let mut children = Vec::new();
    for (i, vars) in clients.iter().enumerate() {
        let mut command = tokio::process::Command::new(&binary);
        command
            .args(["-n", "-M", "prepared", "-c", "1", "-j", "1", "-T"])
            .arg(seconds.to_string())
            .arg("--log")
            .arg(format!(
                "--log-prefix={}",
                dir.path().join(format!("client{i}")).display()
            ))
            .arg("-f")
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for name in &names {
            let value = vars.value(name, now)?.0;
            if !value.is_empty() {
                command.arg("-D").arg(format!("{name}={value}"));
            }
        }
        children.push(command.arg(url).spawn().context("starting pgbench")?);
    }
    for child in children {
        let output = child.wait_with_output().await?;
        if !output.status.success() {
            bail!("pgbench failed: {}", String::from_utf8_lossy(&output.stderr));
        }
    }
    let from = started.duration_since(UNIX_EPOCH)? + warmup;
    let until = from + duration;
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(dir.path())? {
        let path = entry?.path();
        if !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("client"))
        {
            continue;
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            // client_id transaction_no time_us script_no epoch_s epoch_us
            let fields: Vec<u64> = line.split_whitespace().filter_map(|f| f.parse().ok()).collect();
            let [_, _, latency, _, secs, micros] = fields[..] else {
                continue;
            };
            let ended = Duration::from_secs(secs) + Duration::from_micros(micros);
            if ended >= from && ended < until {
                latencies.push(latency);
            }
        }
    }
    Ok(side(latencies, duration))
}

/// The pgbench of `PGBENCH`, PATH or the newest Postgres under
/// /usr/lib/postgresql.
fn pgbench_binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("PGBENCH") {
        return Ok(path.into());
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("pgbench"))
        .find(|p| p.is_file());
    if let Some(path) = on_path {
        return Ok(path);
    }
    let mut installed: Vec<PathBuf> = std::fs::read_dir(Path::new("/usr/lib/postgresql"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/pgbench"))
        .filter(|p| p.is_file())
        .collect();
    installed.sort();
    installed
        .pop()
        .context("no pgbench: install Postgres's client tools or set PGBENCH")
}

/// The script's statements through debrief's own pools and transactions
/// (on SQLite: a deferred read on the reader pool, or `BEGIN IMMEDIATE`
/// on the writer), without anything else of debrief.
async fn sqlite_loop(
    db: &Db,
    script: &Script,
    clients: &[Vars],
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Side> {
    let measure_from = Instant::now() + warmup;
    let end = measure_from + duration;
    let tasks: Vec<_> = clients
        .iter()
        .cloned()
        .map(|vars| {
            let (db, script) = (db.clone(), script.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let began = Instant::now();
                    if began >= end {
                        return Ok::<_, anyhow::Error>(latencies);
                    }
                    transaction(&db, &script, &vars).await?;
                    if began >= measure_from {
                        latencies.push(began.elapsed().as_micros() as u64);
                    }
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(side(latencies, duration))
}

async fn transaction(db: &Db, script: &Script, vars: &Vars) -> anyhow::Result<()> {
    let failed = |e: debrief::error::AppError| anyhow::anyhow!("{e}");
    let scope = Scope::User(vars.user_id);
    let scoped = if script.commits {
        db.scoped(scope).await.map_err(failed)?
    } else {
        db.reading(scope).await.map_err(failed)?
    };
    let now = Utc::now();
    // The scope's settings are Postgres's alone.
    for statement in script
        .statements
        .iter()
        .filter(|s| !s.sql.starts_with("SELECT set_config"))
    {
        let values = statement
            .names
            .iter()
            .map(|name| vars.value(name, now).map(|(_, value)| value))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let statement =
            sea_orm::Statement::from_sql_and_values(DbBackend::Sqlite, statement.sqlite(), values);
        if statement.sql.starts_with("SELECT") {
            scoped.txn().query_all_raw(statement).await?;
        } else {
            scoped.txn().execute_raw(statement).await?;
        }
    }
    if script.commits {
        scoped.commit().await.map_err(failed)?;
    }
    Ok(())
}

fn side(mut latencies: Vec<u64>, duration: Duration) -> Side {
    latencies.sort_unstable();
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len().max(1)) - 1;
        latencies.get(index).copied().unwrap_or_default()
    };
    Side {
        per_second: latencies.len() as f64 / duration.as_secs_f64(),
        p50_us: percentile(0.50),
        p99_us: percentile(0.99),
        machine: None,
    }
}

/// Prints the rounds, then each scenario's mean ratio against its goal.
pub fn print(comparisons: &[Comparison]) {
    println!("\ncomparison: debrief ÷ the same statements without it");
    println!(
        "{:<58} {:>5} {:>10} {:>7} {:>11} {:>10} {:>7} {:>11} {:>6} {:>7}",
        "rpc (baseline)",
        "round",
        "debrief/s",
        "p99 ms",
        "cpu µs",
        "without/s",
        "p99 ms",
        "cpu µs",
        "steal",
        "ratio"
    );
    let ms = |us: u64| format!("{:.2}", us as f64 / 1000.0);
    let cpu = |side: &Side| {
        side.machine.map_or("-".into(), |m| {
            let clients = m
                .client_us_per_call
                .map_or(String::new(), |c| format!(" ({c:.0})"));
            format!("{:.0}{clients}", m.cpu_us_per_call)
        })
    };
    for c in comparisons {
        let steal = [c.debrief.machine, c.without.machine]
            .iter()
            .flatten()
            .map(|m| m.steal_percent)
            .fold(None, |worst: Option<f64>, s| Some(worst.map_or(s, |w| w.max(s))));
        println!(
            "{:<58} {:>5} {:>10.0} {:>7} {:>11} {:>10.0} {:>7} {:>11} {:>6} {:>6.2}×",
            format!("{} ({})", c.scenario.rpc(), c.baseline),
            c.round,
            c.debrief.per_second,
            ms(c.debrief.p99_us),
            cpu(&c.debrief),
            c.without.per_second,
            ms(c.without.p99_us),
            cpu(&c.without),
            steal.map_or("-".into(), |s| format!("{s:.0}%")),
            c.ratio
        );
    }
    println!(
        "(cpu µs: the whole machine's processor time per call — server, database and clients — \
         with the clients' in brackets when the server runs apart (--addr); steal: the larger share the hypervisor took on either side)"
    );
    let mut scenarios: Vec<Scenario> = comparisons.iter().map(|c| c.scenario).collect();
    scenarios.dedup();
    for scenario in scenarios {
        let of: Vec<&Comparison> = comparisons.iter().filter(|c| c.scenario == scenario).collect();
        let mean = of.iter().map(|c| c.ratio).sum::<f64>() / of.len() as f64;
        let worst_p99 = of.iter().map(|c| c.debrief.p99_us).max().unwrap_or_default();
        let mut line = format!(
            "{}: mean {mean:.2}× of {}, debrief's p99 at most {} ms",
            scenario.rpc(),
            of[0].baseline,
            ms(worst_p99)
        );
        // The goals are Postgres's; on SQLite the loop shows the headroom.
        if of[0].baseline == "pgbench" {
            let writes = script(scenario).is_some_and(|t| t.contains("\nCOMMIT;"));
            let goal = if writes { 0.7 } else { 0.6 };
            let met = if mean >= goal { "met" } else { "NOT met" };
            line.push_str(&format!(" (goal ≥ {goal}×: {met})"));
        }
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A thread of this process kept busy through the window shows in the
    /// clients' time, and that time within the machine's.
    #[tokio::test]
    async fn a_busy_thread_of_this_process_counts_as_the_clients_time() {
        let stop = Arc::new(AtomicBool::new(false));
        let spinning = stop.clone();
        let spinner = std::thread::spawn(move || {
            while !spinning.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        let window = Duration::from_millis(400);
        let mut side = Side {
            per_second: 10.0,
            p50_us: 0,
            p99_us: 0,
            machine: None,
        };
        sample_machine(Duration::ZERO, window, Clients::ThisProcess)
            .per_call(&mut side, window)
            .await;
        stop.store(true, Ordering::Relaxed);
        spinner.join().unwrap();

        let machine = side.machine.expect("a machine sample from /proc/stat");
        // Four calls in the window: the spinning thread's 0.4 s is about
        // 100,000 µs a call; the bound leaves room for a loaded machine.
        let clients = machine.client_us_per_call.expect("the clients' time");
        assert!(clients > 25_000.0, "{machine:?}");
        assert!(machine.cpu_us_per_call > clients * 0.8, "{machine:?}");
        assert!((0.0..=100.0).contains(&machine.steal_percent), "{machine:?}");
    }
}
