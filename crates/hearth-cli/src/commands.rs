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

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// A directory (zipped for you) or a .zip file.
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

pub fn deploy(c: &Client, a: DeployArgs) -> Result<()> {
    let zip = if a.source.is_dir() {
        zip_dir(&a.source)?
    } else {
        std::fs::read(&a.source).with_context(|| format!("cannot read {}", a.source.display()))?
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
            "Role": a.role.unwrap_or_else(|| "arn:aws:iam::000000000000:role/hearth".into()),
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
