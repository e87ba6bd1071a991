//! The layering of `docs/architecture.md`, checked against the code: every
//! `crate::…` path in `src/` (in `use` lines and inline) is an edge from the
//! module that writes it to the module it names. Infrastructure reads only
//! infrastructure, a domain reads infrastructure and the domains its row of
//! the table allows, nothing below the transports reads them, and the
//! domains form no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The rules as `docs/architecture.md` writes them.
#[derive(Debug, Default)]
struct Rules {
    top: BTreeSet<String>,
    infrastructure: BTreeSet<String>,
    /// Each domain and the domains it may read.
    domains: BTreeMap<String, BTreeSet<String>>,
}

/// The names in backticks in a table cell.
fn names(cell: &str) -> BTreeSet<String> {
    cell.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

fn rules() -> Rules {
    let doc =
        std::fs::read_to_string(Path::new(ROOT).join("docs/architecture.md")).expect("docs/architecture.md");
    let mut rules = Rules::default();
    let mut table = "";
    for line in doc.lines().map(str::trim) {
        let Some(row) = line.strip_prefix('|') else {
            table = "";
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        match cells.first().copied() {
            Some(header @ ("Layer" | "Domain")) => table = header,
            _ if cells.len() < 2 || cells[0].starts_with("---") => {}
            Some(layer) if table == "Layer" => match layer {
                "transports and wiring" => rules.top.extend(names(cells[1])),
                "infrastructure" => rules.infrastructure.extend(names(cells[1])),
                other => panic!("docs/architecture.md names an unknown layer `{other}`"),
            },
            Some(domain) if table == "Domain" => {
                let domain = names(domain).into_iter().next().expect("a domain in backticks");
                rules.domains.insert(domain, names(cells[1]));
            }
            _ => {}
        }
    }
    assert!(
        !rules.top.is_empty() && !rules.infrastructure.is_empty() && !rules.domains.is_empty(),
        "docs/architecture.md lost its tables: {rules:?}"
    );
    rules
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to; None for the crate
/// root and the binaries, which may read anything.
fn module_of(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "main.rs" | "bin" => None,
        file => Some(file.trim_end_matches(".rs").to_owned()),
    }
}

/// The top-level modules a file names through `crate::`.
fn references(source: &str) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.trim()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a::b, c};`: the names at the group's top level.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.insert(ident(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            found.insert(ident(&item));
        } else {
            found.insert(ident(rest));
        }
    }
    found.retain(|name| !name.is_empty());
    found
}

/// Module → (module it reads → files that do).
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn graph() -> Graph {
    let src = Path::new(ROOT).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src").to_path_buf();
        let Some(module) = module_of(&relative) else {
            continue;
        };
        let source = std::fs::read_to_string(&file).expect("readable source");
        let reads = graph.entry(module.clone()).or_default();
        for target in references(&source) {
            if target != module {
                reads
                    .entry(target)
                    .or_default()
                    .insert(relative.display().to_string());
            }
        }
    }
    graph
}

#[test]
fn every_module_is_placed_and_reads_only_what_its_layer_allows() {
    let rules = rules();
    let graph = graph();
    let mut broken = Vec::new();
    for (module, reads) in &graph {
        let empty = BTreeSet::new();
        let (all, domains) = if rules.top.contains(module) {
            (true, &empty)
        } else if rules.infrastructure.contains(module) {
            (false, &empty)
        } else if let Some(domains) = rules.domains.get(module) {
            (false, domains)
        } else {
            broken.push(format!(
                "`{module}` is in no layer: add it to a table of docs/architecture.md"
            ));
            continue;
        };
        for (target, files) in reads {
            if !(all || rules.infrastructure.contains(target) || domains.contains(target)) {
                let files: Vec<&str> = files.iter().map(String::as_str).collect();
                broken.push(format!(
                    "`{module}` may not read `{target}` ({})",
                    files.join(", ")
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "the code leaves the layering of docs/architecture.md:\n  {}",
        broken.join("\n  ")
    );
}

#[test]
fn domains_form_no_cycle() {
    let rules = rules();
    let graph = graph();
    let edges: BTreeMap<&str, Vec<&str>> = graph
        .iter()
        .filter(|(module, _)| rules.domains.contains_key(*module))
        .map(|(module, reads)| {
            let domains = reads
                .keys()
                .filter(|target| rules.domains.contains_key(*target))
                .map(String::as_str)
                .collect();
            (module.as_str(), domains)
        })
        .collect();

    /// Depth-first search; returns a cycle through `node` if one is found.
    fn visit<'a>(
        node: &'a str,
        edges: &BTreeMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(start) = path.iter().position(|n| *n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node);
            return Some(cycle);
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }

    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(cycle) = visit(node, &edges, &mut Vec::new(), &mut done) {
            panic!("domains import each other in a cycle: {}", cycle.join(" → "));
        }
    }
}

#[test]
fn references_are_read_from_use_lines_groups_and_paths() {
    let source = "use crate::db::Scoped;\nuse crate::{error::AppError, pb::v1 as pb};\n\
                  // crate::server is only mentioned here\nlet x = crate::events::publish(a);\n";
    let found: Vec<String> = references(source).into_iter().collect();
    assert_eq!(found, ["db", "error", "events", "pb"]);
}
