//! The SQL scripts of `--compare` (`sql/*.sql`): the statements debrief
//! sends to the database for one call, with `:name` where it binds a
//! parameter. `tests/api/bench_sql.rs` includes this file to check the
//! scripts against what the code really sends.

/// A parsed script: one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The statements between `BEGIN` and the end of the transaction.
    pub statements: Vec<Statement>,
    /// Whether the transaction commits (a write) or rolls back (a read).
    pub commits: bool,
}

/// One statement of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The SQL with `$1`, `$2`… for the parameters, in order.
    pub sql: String,
    /// The variable each parameter takes its value from, in order.
    pub names: Vec<String>,
}

impl Statement {
    /// The SQL with `?` for every parameter (SQLite).
    pub fn sqlite(&self) -> String {
        let mut sql = self.sql.clone();
        for n in (1..=self.names.len()).rev() {
            sql = sql.replace(&format!("${n}"), "?");
        }
        sql
    }
}

/// Parses `text`: `--` comment lines, then `BEGIN;`, statements each ending
/// with `;` at the end of a line, and `COMMIT;` or `ROLLBACK;`.
pub fn parse(text: &str) -> Result<Script, String> {
    let mut statements: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with("--") {
            continue;
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(line);
        if let Some(done) = current.strip_suffix(';') {
            statements.push(done.to_owned());
            current.clear();
        }
    }
    if !current.is_empty() {
        return Err(format!("a statement does not end with ';': {current}"));
    }
    if statements.first().map(String::as_str) != Some("BEGIN") {
        return Err("a script starts with BEGIN".into());
    }
    let commits = match statements.last().map(String::as_str) {
        Some("COMMIT") => true,
        Some("ROLLBACK") => false,
        _ => return Err("a script ends with COMMIT or ROLLBACK".into()),
    };
    let statements = statements[1..statements.len() - 1]
        .iter()
        .map(|sql| numbered(sql))
        .collect();
    Ok(Script { statements, commits })
}

/// `sql` with each `:name` replaced by `$1`, `$2`…, and the names.
fn numbered(sql: &str) -> Statement {
    let (mut out, mut names) = (String::new(), Vec::new());
    let mut rest = sql;
    while let Some(at) = rest.find(':') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if len == 0 {
            out.push(':');
        } else {
            names.push(after[..len].to_owned());
            out.push_str(&format!("${}", names.len()));
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    Statement { sql: out, names }
}
