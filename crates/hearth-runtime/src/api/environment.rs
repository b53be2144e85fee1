//! The environment a runtime process starts with, as AWS Lambda sets it
//! (recorded in `test_lambda_common.snapshot.json`, `test_introspection_invoke`).

use hearth_types::runtime::{ProvidedFlavour, Runtime};
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

/// `AWS_LAMBDA_RUNTIME_API` inside a sandbox: the Runtime API listener the
/// daemon binds in the sandbox's network namespace.
pub const SANDBOX_RUNTIME_API: &str = "127.0.0.1:9001";

/// How the sandbox came to be initialised (`AWS_LAMBDA_INITIALIZATION_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InitializationType {
    /// Started for an invocation, or from the general sub-pool.
    OnDemand,
    /// Prepared ahead for a dedicated, function-warm sub-pool.
    ProvisionedConcurrency,
}

impl InitializationType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnDemand => "on-demand",
            Self::ProvisionedConcurrency => "provisioned-concurrency",
        }
    }
}

/// What [`runtime_environment`] needs to know about one sandbox.
#[derive(Debug, Clone)]
pub struct RuntimeEnv<'a> {
    pub function_name: &'a str,
    /// `$LATEST` or a published version number.
    pub function_version: &'a str,
    pub memory_mb: u32,
    pub runtime: &'a Runtime,
    pub handler: &'a str,
    pub region: &'a str,
    pub initialization_type: InitializationType,
    /// `AWS_LAMBDA_RUNTIME_API`: [`SANDBOX_RUNTIME_API`] in a sandbox.
    pub runtime_api: &'a str,
    /// `AWS_LAMBDA_LOG_STREAM_NAME`, e.g. from [`log_stream_name`].
    pub log_stream_name: &'a str,
    /// The function's own variables (`Environment.Variables`).
    pub user_env: &'a BTreeMap<String, String>,
}

/// The complete environment of a runtime process (nothing is inherited from
/// the daemon), sorted by name.
///
/// Three layers, later ones winning:
/// 1. defaults the function may override, as AWS allows: `PATH`,
///    `LD_LIBRARY_PATH`, `LANG`, `TZ`, and `PYTHONPATH` (python) or
///    `NODE_PATH` (node);
/// 2. the function's variables;
/// 3. the variables Lambda reserves (`_HANDLER`, `AWS_REGION`,
///    `AWS_LAMBDA_*`, `LAMBDA_TASK_ROOT`, …). Validation already refuses
///    them in a function's configuration; they are set last so that they win
///    even if one slipped through.
///
/// Not set, on purpose: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN` (Hearth has no IAM, so there is no role to assume and
/// no credentials to hand out), the X-Ray variables (there is no daemon),
/// `_X_AMZN_TRACE_ID` (per invocation: the bootstraps set it from
/// `Lambda-Runtime-Trace-Id`), `PWD`/`SHLVL` (artefacts of AWS's shell
/// wrapper; the working directory is `/var/task` regardless) and
/// `PYTHONDONTWRITEBYTECODE` (it makes every fresh interpreter recompile the
/// handler; `/var/task` is read-only anyway and the bootstrap sets
/// `sys.dont_write_bytecode`). `AWS_EXECUTION_ENV` is absent for `provided*`
/// runtimes, as on AWS.
pub fn runtime_environment(i: &RuntimeEnv<'_>) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let set = |env: &mut BTreeMap<String, String>, k: &str, v: String| {
        env.insert(k.to_owned(), v);
    };

    let ld = if has_lang_dirs(i.runtime) {
        "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib"
    } else {
        "/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib"
    };
    set(&mut env, "PATH", default_path(i.runtime).to_owned());
    set(&mut env, "LD_LIBRARY_PATH", ld.to_owned());
    set(&mut env, "LANG", DEFAULT_LANG.to_owned());
    set(&mut env, "TZ", DEFAULT_TZ.to_owned());
    match i.runtime {
        Runtime::Python { .. } => set(&mut env, "PYTHONPATH", "/var/runtime".to_owned()),
        Runtime::Node { major } => set(
            &mut env,
            "NODE_PATH",
            format!(
                "/opt/nodejs/node{major}/node_modules:/opt/nodejs/node_modules:/var/runtime/node_modules:/var/runtime:/var/task"
            ),
        ),
        Runtime::Provided(_) => {}
    }

    for (k, v) in i.user_env {
        set(&mut env, k, v.clone());
    }

    set(&mut env, "AWS_LAMBDA_RUNTIME_API", i.runtime_api.to_owned());
    set(&mut env, "_HANDLER", i.handler.to_owned());
    set(&mut env, "LAMBDA_TASK_ROOT", "/var/task".to_owned());
    set(&mut env, "LAMBDA_RUNTIME_DIR", "/var/runtime".to_owned());
    if !matches!(i.runtime, Runtime::Provided(_)) {
        set(
            &mut env,
            "AWS_EXECUTION_ENV",
            format!("AWS_Lambda_{}", i.runtime),
        );
    }
    set(
        &mut env,
        "AWS_LAMBDA_FUNCTION_NAME",
        i.function_name.to_owned(),
    );
    set(
        &mut env,
        "AWS_LAMBDA_FUNCTION_VERSION",
        i.function_version.to_owned(),
    );
    set(
        &mut env,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        i.memory_mb.to_string(),
    );
    set(
        &mut env,
        "AWS_LAMBDA_LOG_GROUP_NAME",
        format!("/aws/lambda/{}", i.function_name),
    );
    set(
        &mut env,
        "AWS_LAMBDA_LOG_STREAM_NAME",
        i.log_stream_name.to_owned(),
    );
    set(
        &mut env,
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        i.initialization_type.as_str().to_owned(),
    );
    set(&mut env, "AWS_REGION", i.region.to_owned());
    set(&mut env, "AWS_DEFAULT_REGION", i.region.to_owned());

    env.into_iter().collect()
}

/// `LANG` unless the function sets its own.
pub(crate) const DEFAULT_LANG: &str = "en_US.UTF-8";
/// `TZ` unless the function sets its own.
pub(crate) const DEFAULT_TZ: &str = ":UTC";

/// AWS's al2 images (`provided`, `provided.al2`) have no /var/lang.
fn has_lang_dirs(runtime: &Runtime) -> bool {
    !matches!(
        runtime,
        Runtime::Provided(ProvidedFlavour::Plain | ProvidedFlavour::Al2)
    )
}

/// `PATH` unless the function sets its own.
pub(crate) fn default_path(runtime: &Runtime) -> &'static str {
    if has_lang_dirs(runtime) {
        "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin"
    } else {
        "/usr/local/bin:/usr/bin/:/bin:/opt/bin"
    }
}

/// A log stream name as Lambda makes them: `2024/01/31/[$LATEST]` followed by
/// 32 random hex digits, dated (UTC) `now`.
pub fn log_stream_name(function_version: &str, now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
    format!(
        "{y:04}/{m:02}/{d:02}/[{function_version}]{:032x}",
        random_u128(now)
    )
}

/// Unpredictable enough to keep stream names apart (not a secret): SipHash
/// with the process's random keys over the time and a counter.
fn random_u128(now: SystemTime) -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let half = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(nanos);
        h.write_u64(n);
        h.write_u64(salt);
        h.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    // `d` is 1..=31 and `m` 1..=12 by construction.
    (y + i64::from(m <= 2), m as u32, d as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn inputs<'a>(runtime: &'a Runtime, vars: &'a BTreeMap<String, String>) -> RuntimeEnv<'a> {
        RuntimeEnv {
            function_name: "hello",
            function_version: "$LATEST",
            memory_mb: 256,
            runtime,
            handler: "app.handler",
            region: "eu-west-1",
            initialization_type: InitializationType::OnDemand,
            runtime_api: SANDBOX_RUNTIME_API,
            log_stream_name: "2024/01/31/[$LATEST]0123456789abcdef0123456789abcdef",
            user_env: vars,
        }
    }

    #[test]
    fn python_environment_matches_aws() {
        let rt = Runtime::parse("python3.12").unwrap();
        let vars = BTreeMap::from([
            ("TEST_KEY".to_owned(), "TEST_VAL".to_owned()),
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
            ("AWS_REGION".to_owned(), "sneaky".to_owned()),
        ]);
        let env: BTreeMap<_, _> = runtime_environment(&inputs(&rt, &vars))
            .into_iter()
            .collect();
        let get = |k: &str| env.get(k).map(String::as_str);
        assert_eq!(get("AWS_LAMBDA_RUNTIME_API"), Some("127.0.0.1:9001"));
        assert_eq!(get("_HANDLER"), Some("app.handler"));
        assert_eq!(get("LAMBDA_TASK_ROOT"), Some("/var/task"));
        assert_eq!(get("LAMBDA_RUNTIME_DIR"), Some("/var/runtime"));
        assert_eq!(get("AWS_EXECUTION_ENV"), Some("AWS_Lambda_python3.12"));
        assert_eq!(get("AWS_LAMBDA_FUNCTION_NAME"), Some("hello"));
        assert_eq!(get("AWS_LAMBDA_FUNCTION_VERSION"), Some("$LATEST"));
        assert_eq!(get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), Some("256"));
        assert_eq!(get("AWS_LAMBDA_LOG_GROUP_NAME"), Some("/aws/lambda/hello"));
        assert_eq!(get("AWS_LAMBDA_INITIALIZATION_TYPE"), Some("on-demand"));
        assert_eq!(get("AWS_REGION"), Some("eu-west-1"));
        assert_eq!(get("AWS_DEFAULT_REGION"), Some("eu-west-1"));
        assert_eq!(get("TZ"), Some(":UTC"));
        assert_eq!(get("LANG"), Some("C.UTF-8"));
        assert_eq!(get("TEST_KEY"), Some("TEST_VAL"));
        assert_eq!(get("PYTHONPATH"), Some("/var/runtime"));
        assert_eq!(
            get("PATH"),
            Some("/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin")
        );
        assert_eq!(
            get("LD_LIBRARY_PATH"),
            Some("/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib")
        );
        for absent in [
            "NODE_PATH",
            "PYTHONDONTWRITEBYTECODE",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ] {
            assert_eq!(get(absent), None, "{absent}");
        }
    }

    #[test]
    fn node_and_provided_environments() {
        let vars = BTreeMap::new();
        let rt = Runtime::parse("nodejs20.x").unwrap();
        let env: BTreeMap<_, _> = runtime_environment(&inputs(&rt, &vars))
            .into_iter()
            .collect();
        assert_eq!(
            env["NODE_PATH"],
            "/opt/nodejs/node20/node_modules:/opt/nodejs/node_modules:/var/runtime/node_modules:/var/runtime:/var/task"
        );
        assert_eq!(env["AWS_EXECUTION_ENV"], "AWS_Lambda_nodejs20.x");
        assert!(!env.contains_key("PYTHONPATH"));

        let rt = Runtime::parse("provided.al2").unwrap();
        let env: BTreeMap<_, _> = runtime_environment(&inputs(&rt, &vars))
            .into_iter()
            .collect();
        assert!(!env.contains_key("AWS_EXECUTION_ENV"));
        assert_eq!(env["PATH"], "/usr/local/bin:/usr/bin/:/bin:/opt/bin");
        assert_eq!(env["_HANDLER"], "app.handler");
        let rt = Runtime::parse("provided.al2023").unwrap();
        let env: BTreeMap<_, _> = runtime_environment(&inputs(&rt, &vars))
            .into_iter()
            .collect();
        assert!(env["PATH"].starts_with("/var/lang/bin:"));
    }

    #[test]
    fn log_stream_names_are_dated_and_unique() {
        let t = UNIX_EPOCH + Duration::from_secs(1_706_745_599); // 2024-01-31T23:59:59Z
        let a = log_stream_name("$LATEST", t);
        let b = log_stream_name("$LATEST", t);
        assert!(a.starts_with("2024/01/31/[$LATEST]"), "{a}");
        assert_eq!(a.len(), "2024/01/31/[$LATEST]".len() + 32);
        assert_ne!(a, b);
        assert!(log_stream_name("7", UNIX_EPOCH).starts_with("1970/01/01/[7]"));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
