//! AIP-134 update masks for resources whose fields are all top-level: which
//! paths an update may name, and which fields it changes.

use crate::error::{AppResult, Violations};

/// Checks that every path names one of `updatable` (or is `*`), reporting
/// each one that does not.
pub fn check(paths: &[String], updatable: &[&str]) -> AppResult<()> {
    let mut bad = Violations::default();
    for path in paths {
        if path != "*" && !updatable.contains(&path.as_str()) {
            bad.add(
                "update_mask",
                format!(
                    "`{path}` cannot be changed; the fields are {}",
                    updatable.join(", ")
                ),
            );
        }
    }
    bad.finish(|| Some(()))
}

/// The fields an update changes: those `paths` name, every one for `*`,
/// and without paths those the update sets to a non-default value (`set`,
/// in the order of `updatable`).
pub fn chosen<'a>(paths: &'a [String], updatable: &[&'a str], set: &[bool]) -> Vec<&'a str> {
    if paths.is_empty() {
        updatable
            .iter()
            .zip(set)
            .filter(|(_, set)| **set)
            .map(|(path, _)| *path)
            .collect()
    } else if paths.iter().any(|p| p == "*") {
        updatable.to_vec()
    } else {
        paths.iter().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_name_fields_all_or_what_is_set() {
        let updatable = ["title", "tags"];
        assert!(check(&["title".into()], &updatable).is_ok());
        assert!(check(&["owner".into()], &updatable).is_err());
        assert_eq!(chosen(&[], &updatable, &[false, true]), ["tags"]);
        assert_eq!(
            chosen(&["*".into()], &updatable, &[false, false]),
            ["title", "tags"]
        );
        assert_eq!(chosen(&["title".into()], &updatable, &[false, true]), ["title"]);
    }
}
