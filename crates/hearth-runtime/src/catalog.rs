//! The runtime catalog: Lambda runtime → host interpreter.
//!
//! Rules are matched most specific first: an exact runtime name
//! (`python3.12`), then a prefix pattern ending in `*` (`python3.*`,
//! `nodejs*`). An interpreter given as a bare name is looked up on `PATH`
//! once, when the catalog is built.

use hearth_types::runtime::{Runtime, RuntimeFamily};
use hearth_types::LambdaError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One mapping rule and what it resolved to on this host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CatalogEntry {
    /// `python3.*`, `nodejs*`, `python3.12`, `provided*` …
    pub runtime: String,
    /// What the rule names (a path or a bare command).
    pub interpreter: String,
    /// The absolute path found, if the interpreter exists and is executable.
    pub resolved: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct RuntimeCatalog {
    /// Rules by pattern; `provided*` has no interpreter.
    rules: BTreeMap<String, CatalogEntry>,
}

/// The built-in rules: Debian's Python (the pyenv shim on PATH starts 4–10×
/// slower) and whatever `node` is on PATH.
pub fn default_rules() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("python3.*".to_owned(), "/usr/bin/python3".to_owned()),
        ("nodejs*".to_owned(), "node".to_owned()),
    ])
}

impl RuntimeCatalog {
    /// Builds the catalog from the default rules overlaid with `overrides`
    /// (from the config file), resolving each interpreter now.
    pub fn new(overrides: &BTreeMap<String, String>, path_env: Option<&str>) -> Self {
        let mut raw = default_rules();
        raw.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        let rules = raw
            .into_iter()
            .map(|(runtime, interpreter)| {
                let resolved = resolve(&interpreter, path_env);
                (
                    runtime.clone(),
                    CatalogEntry {
                        runtime,
                        interpreter,
                        resolved,
                    },
                )
            })
            .collect();
        Self { rules }
    }

    /// The rule that applies to `runtime`, most specific first.
    fn rule_for(&self, runtime: &Runtime) -> Option<&CatalogEntry> {
        let name = runtime.to_string();
        if let Some(e) = self.rules.get(&name) {
            return Some(e);
        }
        self.rules
            .iter()
            .filter(|(pat, _)| pat.ends_with('*') && name.starts_with(&pat[..pat.len() - 1]))
            .max_by_key(|(pat, _)| pat.len())
            .map(|(_, e)| e)
    }

    /// The interpreter that runs `runtime`, or Lambda's error saying why it
    /// cannot run here. `provided*` needs none and yields `Ok(None)`.
    pub fn interpreter(&self, runtime: &Runtime) -> Result<Option<PathBuf>, LambdaError> {
        if runtime.family() == RuntimeFamily::Provided {
            return Ok(None);
        }
        match self.rule_for(runtime) {
            Some(CatalogEntry {
                resolved: Some(p), ..
            }) => Ok(Some(p.clone())),
            Some(e) => Err(LambdaError::invalid(format!(
                "Runtime {runtime} is not available on this Hearth node: its interpreter '{}' (rule '{}') was not found or is not executable. Install it or map the runtime to another interpreter in the [runtimes] section of the config file.",
                e.interpreter, e.runtime
            ))),
            None => Err(LambdaError::invalid(format!(
                "Runtime {runtime} is not available on this Hearth node: no rule in the [runtimes] section of the config file maps it to an interpreter."
            ))),
        }
    }

    /// Every rule, for `hearth runtimes`, plus the `provided*` family.
    pub fn entries(&self) -> Vec<CatalogEntry> {
        let mut v: Vec<CatalogEntry> = self.rules.values().cloned().collect();
        v.push(CatalogEntry {
            runtime: "provided*".to_owned(),
            interpreter: "the function's own bootstrap".to_owned(),
            resolved: None,
        });
        v
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn resolve(interpreter: &str, path_env: Option<&str>) -> Option<PathBuf> {
    if interpreter.contains('/') {
        let p = PathBuf::from(interpreter);
        return is_executable(&p).then_some(p);
    }
    path_env?
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(interpreter))
        .find(|p| is_executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn specific_rules_win_and_missing_interpreters_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let py = dir.path().join("py");
        std::fs::write(&py, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&py, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut o = BTreeMap::new();
        o.insert("python3.*".to_owned(), py.display().to_string());
        o.insert("python3.12".to_owned(), "/nonexistent/python".to_owned());
        o.insert("nodejs*".to_owned(), "mynode".to_owned());
        let c = RuntimeCatalog::new(&o, Some(dir.path().to_str().unwrap()));
        let r = |s: &str| Runtime::parse(s).unwrap();
        assert_eq!(c.interpreter(&r("python3.11")).unwrap(), Some(py.clone()));
        let e = c.interpreter(&r("python3.12")).unwrap_err();
        assert!(e.message.contains("/nonexistent/python"), "{}", e.message);
        assert!(c.interpreter(&r("nodejs20.x")).is_err());
        assert_eq!(c.interpreter(&r("provided.al2023")).unwrap(), None);
        let node = dir.path().join("mynode");
        std::fs::copy(&py, &node).unwrap();
        let c = RuntimeCatalog::new(&o, Some(dir.path().to_str().unwrap()));
        assert_eq!(c.interpreter(&r("nodejs22.x")).unwrap(), Some(node));
        assert_eq!(c.entries().len(), 4);
    }
}
