//! The CLI's HTTP client: every command talks to a running node over the
//! same signed HTTP API an AWS SDK uses, never to the store.

use anyhow::{bail, Context, Result};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use serde_json::Value;
use std::time::SystemTime;

/// Where the node is and who we are.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The node's URL.
    #[arg(
        long,
        env = "HEARTH_ENDPOINT",
        default_value = "http://127.0.0.1:9000",
        global = true
    )]
    pub endpoint: String,
    /// Access key id (default: the dev account's `test`).
    #[arg(
        long,
        env = "AWS_ACCESS_KEY_ID",
        default_value = "test",
        hide_env_values = true,
        global = true
    )]
    pub access_key_id: String,
    /// Secret access key (default: the dev account's `test`).
    #[arg(
        long,
        env = "AWS_SECRET_ACCESS_KEY",
        default_value = "test",
        hide_env_values = true,
        global = true
    )]
    pub secret_access_key: String,
    /// Region to sign for.
    #[arg(
        long,
        env = "AWS_DEFAULT_REGION",
        default_value = "us-east-1",
        global = true
    )]
    pub region: String,
}

#[derive(Debug)]
pub struct Client {
    args: ClientArgs,
    http: reqwest::blocking::Client,
}

impl Client {
    pub fn new(args: ClientArgs) -> Result<Self> {
        let http = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(300))
            .build()?;
        Ok(Self { args, http })
    }

    /// Sends a SigV4-signed request and returns its JSON body (`Null` when
    /// empty); a Lambda error becomes an `Err` whose text is the error type
    /// and message.
    pub fn call(&self, method: &str, path_and_query: &str, body: Option<&Value>) -> Result<Value> {
        let bytes = match body {
            Some(b) => serde_json::to_vec(b)?,
            None => Vec::new(),
        };
        let reply = self.send(method, path_and_query, bytes, &[])?;
        let text = String::from_utf8_lossy(&reply.body);
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text.into_owned()))
        })
    }

    /// Sends a SigV4-signed request with a raw body and extra headers; an
    /// HTTP error status becomes an `Err` naming Lambda's error type.
    pub fn send(
        &self,
        method: &str,
        path_and_query: &str,
        bytes: Vec<u8>,
        extra_headers: &[(&str, &str)],
    ) -> Result<RawReply> {
        self.send_to("lambda", method, path_and_query, bytes, extra_headers)
    }

    /// A query-protocol action of `service` (`sts`, `iam`) on `/`: its XML
    /// answer, or an `Err` carrying the error's XML.
    pub fn query(&self, service: &str, params: &[(&str, &str)]) -> Result<String> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let reply = self.send_to(
            service,
            "POST",
            "/",
            body.into_bytes(),
            &[(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )],
        )?;
        Ok(String::from_utf8_lossy(&reply.body).into_owned())
    }

    fn send_to(
        &self,
        service: &str,
        method: &str,
        path_and_query: &str,
        bytes: Vec<u8>,
        extra_headers: &[(&str, &str)],
    ) -> Result<RawReply> {
        let url = format!(
            "{}{}",
            self.args.endpoint.trim_end_matches('/'),
            path_and_query
        );
        let uri: http::Uri = url
            .parse()
            .with_context(|| format!("bad endpoint URL {url}"))?;
        let host = uri
            .authority()
            .map(|a| a.to_string())
            .context("the endpoint URL has no host")?;
        let mut headers = vec![("host".to_owned(), host)];
        let typed = extra_headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if !bytes.is_empty() && !typed {
            headers.push(("content-type".to_owned(), "application/json".to_owned()));
        }
        headers.extend(
            extra_headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let identity =
            Credentials::from_keys(&self.args.access_key_id, &self.args.secret_access_key, None)
                .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.args.region)
            .name(service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()?
            .into();
        let signable = SignableRequest::new(
            method,
            &url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(&bytes),
        )?;
        let (instructions, _) = sign(signable, &params)?.into_parts();
        let mut req = self.http.request(method.parse()?, &url).body(bytes);
        for (k, v) in &headers {
            if k != "host" {
                req = req.header(k, v);
            }
        }
        for (k, v) in instructions.headers() {
            req = req.header(k, v);
        }
        let resp = req
            .send()
            .with_context(|| format!("cannot reach the Hearth node at {}", self.args.endpoint))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes()?.to_vec();
        if status >= 400 {
            let error_type = headers
                .get("x-amzn-ErrorType")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("Error");
            let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let msg = parsed
                .get("message")
                .or_else(|| parsed.get("Message"))
                .and_then(Value::as_str)
                .map_or_else(
                    || String::from_utf8_lossy(&body).into_owned(),
                    str::to_owned,
                );
            bail!("{error_type} (HTTP {status}): {msg}");
        }
        Ok(RawReply { headers, body })
    }
}

/// A successful response as it came.
#[derive(Debug)]
pub struct RawReply {
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

/// Characters left as they are in a path segment: RFC 3986's unreserved set.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes one path segment (function names may be ARNs with `:`).
pub fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}
