//! What a Function URL hands its function and makes of the answer, as pure
//! functions: the request as Lambda's payload format 2.0 event, the
//! function's result as an HTTP response, and CORS.

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};

/// An HTTP request to a Function URL, once routed to its config.
#[derive(Debug)]
pub struct UrlRequest<'a> {
    pub method: &'a str,
    /// The path below the URL, as received (percent-encoding kept); `/` at least.
    pub raw_path: &'a str,
    /// The query string as received, without `?`.
    pub raw_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub source_ip: &'a str,
    /// The URL id: `apiId` and `domainPrefix`.
    pub url_id: &'a str,
    /// `requestContext.accountId`: `anonymous` for `AuthType` `NONE`, the
    /// caller's account for `AWS_IAM`.
    pub account_id: &'a str,
    pub request_id: &'a str,
    pub now_ms: i64,
    /// `requestContext.authorizer` (`{"iam": …}` for `AWS_IAM`).
    pub authorizer: Option<Value>,
}

/// Headers as the event carries them: names lowercased, repeated headers
/// comma-joined, `cookie` left out (it goes to `cookies`).
fn event_headers(headers: &HeaderMap) -> Map<String, Value> {
    let mut out: Map<String, Value> = Map::new();
    for (name, value) in headers {
        if name == http::header::COOKIE {
            continue;
        }
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match out.get_mut(name.as_str()) {
            Some(Value::String(joined)) => {
                joined.push(',');
                joined.push_str(&v);
            }
            _ => {
                out.insert(name.as_str().to_owned(), Value::String(v));
            }
        }
    }
    out
}

/// Every cookie of every `Cookie` header, in order.
fn cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Decoded query parameters; a repeated name's values comma-joined.
fn query_parameters(raw_query: &str) -> Map<String, Value> {
    let mut out: Map<String, Value> = Map::new();
    for (k, v) in form_urlencoded::parse(raw_query.as_bytes()) {
        match out.get_mut(k.as_ref()) {
            Some(Value::String(joined)) => {
                joined.push(',');
                joined.push_str(&v);
            }
            _ => {
                out.insert(k.into_owned(), Value::String(v.into_owned()));
            }
        }
    }
    out
}

/// Whether a body of this content type travels as text (otherwise base64):
/// text, JSON, XML, JavaScript and form data, or no type at all when the
/// bytes are UTF-8.
pub fn is_text(content_type: Option<&str>, body: &[u8]) -> bool {
    if std::str::from_utf8(body).is_err() {
        return false;
    }
    let Some(ct) = content_type else {
        return true;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || essence.ends_with("/json")
        || essence.ends_with("+json")
        || essence.ends_with("/xml")
        || essence.ends_with("+xml")
        || essence == "application/javascript"
        || essence == "application/x-www-form-urlencoded"
}

/// `requestContext.time`: `12/Mar/2020:19:03:58 +0000`.
fn clf_time(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
    );
    t.format(&fmt).unwrap_or_default()
}

/// The payload format 2.0 event Lambda gives a function behind a URL.
pub fn event(req: &UrlRequest<'_>) -> Value {
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    let mut ev = Map::new();
    ev.insert("version".into(), json!("2.0"));
    ev.insert("routeKey".into(), json!("$default"));
    ev.insert("rawPath".into(), json!(req.raw_path));
    ev.insert("rawQueryString".into(), json!(req.raw_query));
    let cookies = cookies(req.headers);
    if !cookies.is_empty() {
        ev.insert("cookies".into(), json!(cookies));
    }
    ev.insert("headers".into(), Value::Object(event_headers(req.headers)));
    if !req.raw_query.is_empty() {
        ev.insert(
            "queryStringParameters".into(),
            Value::Object(query_parameters(req.raw_query)),
        );
    }
    let domain = header("host").unwrap_or("");
    let mut context = json!({
        "accountId": req.account_id,
        "apiId": req.url_id,
        "domainName": domain,
        "domainPrefix": req.url_id,
        "http": {
            "method": req.method,
            "path": req.raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": req.source_ip,
            "userAgent": header("user-agent").unwrap_or(""),
        },
        "requestId": req.request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": clf_time(req.now_ms),
        "timeEpoch": req.now_ms,
    });
    if let Some(a) = &req.authorizer {
        context["authorizer"] = a.clone();
    }
    ev.insert("requestContext".into(), context);
    let base64 = if req.body.is_empty() {
        false
    } else if is_text(header("content-type"), req.body) {
        ev.insert(
            "body".into(),
            json!(String::from_utf8_lossy(req.body).into_owned()),
        );
        false
    } else {
        ev.insert(
            "body".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(req.body)),
        );
        true
    };
    ev.insert("isBase64Encoded".into(), json!(base64));
    Value::Object(ev)
}

/// The HTTP response a function's result becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlResponse {
    pub status: StatusCode,
    /// In order; a name may repeat (`Set-Cookie`, `multiValueHeaders`).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl UrlResponse {
    /// Lambda's answer when the function failed or answered nonsense.
    pub fn bad_gateway() -> Self {
        Self {
            status: StatusCode::BAD_GATEWAY,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from_static(b"Internal Server Error"),
        }
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }
}

/// A header value as the function may give it: a string, or a number or
/// boolean written out.
fn header_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Valid JSON without the whitespace between its tokens, members in the
/// order the function wrote them (as Lambda sends a result back).
fn compact_json(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !b.is_ascii_whitespace() {
            in_string = b == b'"';
            out.push(b);
        }
    }
    out
}

/// What the function's result means, as Lambda reads it: an object with
/// `statusCode` describes the response (`headers`, `multiValueHeaders`,
/// `cookies` as `Set-Cookie`, `body`, `isBase64Encoded`); anything else is
/// a 200 whose `application/json` body is the result (a string's own text,
/// any other value as compact JSON). A description that cannot be a
/// response (a bad status, a body that is not base64) is a 502.
pub fn map_response(result: &[u8]) -> UrlResponse {
    let json_type = || ("content-type".to_owned(), "application/json".to_owned());
    let Ok(value) = serde_json::from_slice::<Value>(result) else {
        // Not JSON (a WebAssembly function's raw output): passed through.
        return UrlResponse {
            status: StatusCode::OK,
            headers: vec![json_type()],
            body: Bytes::copy_from_slice(result),
        };
    };
    let described = value.as_object().filter(|o| o.contains_key("statusCode"));
    let Some(obj) = described else {
        let body = match &value {
            Value::String(s) => Bytes::from(s.clone()),
            _ => Bytes::from(compact_json(result)),
        };
        return UrlResponse {
            status: StatusCode::OK,
            headers: vec![json_type()],
            body,
        };
    };
    let status = match &obj["statusCode"] {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }
    .and_then(|n| u16::try_from(n).ok())
    .and_then(|n| StatusCode::from_u16(n).ok());
    let Some(status) = status else {
        return UrlResponse::bad_gateway();
    };
    let mut resp = UrlResponse {
        status,
        headers: Vec::new(),
        body: Bytes::new(),
    };
    if let Some(h) = obj.get("headers").and_then(Value::as_object) {
        for (name, v) in h {
            if let Some(v) = header_value(v) {
                resp.headers.push((name.to_ascii_lowercase(), v));
            }
        }
    }
    if let Some(h) = obj.get("multiValueHeaders").and_then(Value::as_object) {
        for (name, values) in h {
            for v in values.as_array().into_iter().flatten() {
                if let Some(v) = header_value(v) {
                    resp.headers.push((name.to_ascii_lowercase(), v));
                }
            }
        }
    }
    for c in obj
        .get("cookies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(c) = c.as_str() {
            resp.headers.push(("set-cookie".into(), c.to_owned()));
        }
    }
    if !resp.has_header("content-type") {
        resp.headers.push(json_type());
    }
    let base64 = obj
        .get("isBase64Encoded")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    resp.body = match obj.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(s)) if base64 => {
            match base64::engine::general_purpose::STANDARD.decode(s.trim()) {
                Ok(b) => Bytes::from(b),
                Err(_) => return UrlResponse::bad_gateway(),
            }
        }
        Some(Value::String(s)) => Bytes::from(s.clone()),
        Some(other) => Bytes::from(other.to_string()),
    };
    resp
}

/// A URL's CORS settings, as configured.
pub use hearth_store::urls::Cors;

/// The `Access-Control-Allow-Origin` to send for `origin`, if the config
/// allows it: `*` when any origin is allowed (the origin itself when
/// credentials are allowed too, which browsers require), else the origin.
fn allowed_origin(cors: &Cors, origin: &str) -> Option<String> {
    let origins = cors.allow_origins.as_deref().unwrap_or(&[]);
    if origins.iter().any(|o| o == "*") {
        return Some(if cors.allow_credentials == Some(true) {
            origin.to_owned()
        } else {
            "*".to_owned()
        });
    }
    origins
        .iter()
        .any(|o| o.eq_ignore_ascii_case(origin))
        .then(|| origin.to_owned())
}

fn joined(list: Option<&Vec<String>>) -> Option<String> {
    list.filter(|l| !l.is_empty()).map(|l| l.join(","))
}

/// Whether this request is a CORS preflight Hearth answers itself: an
/// `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
pub fn is_preflight(method: &str, headers: &HeaderMap) -> bool {
    method == "OPTIONS"
        && headers.contains_key(http::header::ORIGIN)
        && headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The answer to a preflight: 200, with the CORS headers the config grants
/// this origin (none if it is not allowed).
pub fn preflight(cors: &Cors, headers: &HeaderMap) -> UrlResponse {
    let mut resp = UrlResponse {
        status: StatusCode::OK,
        headers: Vec::new(),
        body: Bytes::new(),
    };
    let origin = headers
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(allow) = allowed_origin(cors, origin) else {
        return resp;
    };
    let h = &mut resp.headers;
    h.push(("access-control-allow-origin".into(), allow));
    if let Some(m) = joined(cors.allow_methods.as_ref()) {
        h.push(("access-control-allow-methods".into(), m));
    }
    if let Some(a) = joined(cors.allow_headers.as_ref()) {
        h.push(("access-control-allow-headers".into(), a));
    }
    if let Some(e) = joined(cors.expose_headers.as_ref()) {
        h.push(("access-control-expose-headers".into(), e));
    }
    if let Some(age) = cors.max_age {
        h.push(("access-control-max-age".into(), age.to_string()));
    }
    if cors.allow_credentials == Some(true) {
        h.push(("access-control-allow-credentials".into(), "true".into()));
    }
    resp.headers.push(("vary".into(), "Origin".into()));
    resp
}

/// Applies the config's CORS to an actual response: the function's own
/// `Access-Control-*` headers give way to the config's, which are added
/// when the request's `Origin` is allowed.
pub fn apply_cors(cors: &Cors, request_headers: &HeaderMap, resp: &mut UrlResponse) {
    resp.headers
        .retain(|(n, _)| !n.to_ascii_lowercase().starts_with("access-control-"));
    let Some(origin) = request_headers
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    let Some(allow) = allowed_origin(cors, origin) else {
        return;
    };
    resp.headers
        .push(("access-control-allow-origin".into(), allow));
    if let Some(e) = joined(cors.expose_headers.as_ref()) {
        resp.headers
            .push(("access-control-expose-headers".into(), e));
    }
    if cors.allow_credentials == Some(true) {
        resp.headers
            .push(("access-control-allow-credentials".into(), "true".into()));
    }
    resp.headers.push(("vary".into(), "Origin".into()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn request<'a>(h: &'a HeaderMap, query: &'a str, body: &'a [u8]) -> UrlRequest<'a> {
        UrlRequest {
            method: "POST",
            raw_path: "/a/b%2Fc",
            raw_query: query,
            headers: h,
            body,
            source_ip: "10.0.0.1",
            url_id: "abcdefghijklmnopqrstuvwxyz012345",
            account_id: "anonymous",
            request_id: "rid",
            now_ms: 1_583_348_638_390,
            authorizer: None,
        }
    }

    #[test]
    fn the_event_is_payload_format_2() {
        let h = headers(&[
            (
                "host",
                "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws",
            ),
            ("X-Multi", "one"),
            ("x-multi", "two"),
            ("cookie", "a=1; b=2"),
            ("cookie", "c=3"),
            ("content-type", "application/json"),
            ("user-agent", "ua/1"),
        ]);
        let ev = event(&request(&h, "q=1&q=2&e=a%20b", br#"{"k":1}"#));
        assert_eq!(ev["version"], "2.0");
        assert_eq!(ev["routeKey"], "$default");
        assert_eq!(ev["rawPath"], "/a/b%2Fc");
        assert_eq!(ev["rawQueryString"], "q=1&q=2&e=a%20b");
        assert_eq!(ev["cookies"], json!(["a=1", "b=2", "c=3"]));
        assert_eq!(ev["headers"]["x-multi"], "one,two");
        assert!(ev["headers"].get("cookie").is_none());
        assert_eq!(ev["queryStringParameters"], json!({"q": "1,2", "e": "a b"}));
        assert_eq!(ev["body"], r#"{"k":1}"#);
        assert_eq!(ev["isBase64Encoded"], false);
        let c = &ev["requestContext"];
        assert_eq!(c["accountId"], "anonymous");
        assert_eq!(c["apiId"], "abcdefghijklmnopqrstuvwxyz012345");
        assert_eq!(c["domainPrefix"], "abcdefghijklmnopqrstuvwxyz012345");
        assert_eq!(
            c["domainName"],
            "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws"
        );
        assert_eq!(c["http"]["method"], "POST");
        assert_eq!(c["http"]["path"], "/a/b%2Fc");
        assert_eq!(c["http"]["sourceIp"], "10.0.0.1");
        assert_eq!(c["http"]["userAgent"], "ua/1");
        assert_eq!(c["requestId"], "rid");
        assert_eq!(c["stage"], "$default");
        assert_eq!(c["time"], "04/Mar/2020:19:03:58 +0000");
        assert_eq!(c["timeEpoch"], 1_583_348_638_390_i64);
        assert!(c.get("authorizer").is_none());
    }

    #[test]
    fn binary_bodies_are_base64_and_empty_ones_absent() {
        let h = headers(&[("content-type", "application/octet-stream")]);
        let ev = event(&request(&h, "", b"\x00\x01\xff"));
        assert_eq!(ev["body"], "AAH/");
        assert_eq!(ev["isBase64Encoded"], true);
        assert!(ev.get("queryStringParameters").is_none());
        assert!(ev.get("cookies").is_none());
        let ev = event(&request(&h, "", b""));
        assert!(ev.get("body").is_none());
        assert_eq!(ev["isBase64Encoded"], false);
        // Text types stay text, but not bytes that are not UTF-8.
        assert!(is_text(Some("text/plain; charset=utf-8"), b"hi"));
        assert!(is_text(Some("application/vnd.api+json"), b"{}"));
        assert!(!is_text(Some("text/plain"), b"\xff"));
        assert!(!is_text(Some("multipart/form-data; boundary=x"), b"x"));
        assert!(is_text(None, b"plain"));
    }

    #[test]
    fn results_without_status_code_are_json_200s() {
        for (result, body) in [
            (&br#"{"hello": "world"}"#[..], &br#"{"hello":"world"}"#[..]),
            (br#"["hello", 3, true]"#, br#"["hello",3,true]"#),
            (
                br#"{"z": "a b\" c", "a": [1, {"y": 2}]}"#,
                br#"{"z":"a b\" c","a":[1,{"y":2}]}"#,
            ),
            (br#""hello""#, b"hello"),
            (b"3.1", b"3.1"),
            (b"true", b"true"),
            (b"null", b"null"),
        ] {
            let r = map_response(result);
            assert_eq!(r.status, StatusCode::OK);
            assert_eq!(
                r.headers,
                vec![("content-type".into(), "application/json".into())]
            );
            assert_eq!(&r.body[..], body, "{}", String::from_utf8_lossy(result));
        }
    }

    #[test]
    fn status_code_objects_describe_the_response() {
        let r = map_response(
            br#"{"statusCode": "418", "headers": {"X-A": "1", "X-N": 2},
                 "multiValueHeaders": {"x-m": ["a", "b"]},
                 "cookies": ["s=1; Path=/", "t=2"], "body": "teapot"}"#,
        );
        assert_eq!(r.status.as_u16(), 418);
        assert_eq!(&r.body[..], b"teapot");
        let h: Vec<(&str, &str)> = r
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            h,
            vec![
                ("x-a", "1"),
                ("x-n", "2"),
                ("x-m", "a"),
                ("x-m", "b"),
                ("set-cookie", "s=1; Path=/"),
                ("set-cookie", "t=2"),
                ("content-type", "application/json"),
            ]
        );
        let r = map_response(
            br#"{"statusCode": 201, "headers": {"Content-Type": "image/png"},
                 "body": "AAH/", "isBase64Encoded": true}"#,
        );
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(&r.body[..], b"\x00\x01\xff");
        assert_eq!(r.headers, vec![("content-type".into(), "image/png".into())]);
        assert_eq!(map_response(br#"{"statusCode": 200}"#).body.len(), 0);
        assert_eq!(
            map_response(br#"{"statusCode": "x"}"#),
            UrlResponse::bad_gateway()
        );
        assert_eq!(
            map_response(br#"{"statusCode": 200, "body": "%%", "isBase64Encoded": true}"#),
            UrlResponse::bad_gateway()
        );
    }

    #[test]
    fn cors_preflights_and_actual_responses() {
        let cors = Cors {
            allow_origins: Some(vec!["https://a.example".into()]),
            allow_methods: Some(vec!["GET".into(), "POST".into()]),
            allow_headers: Some(vec!["x-custom".into()]),
            expose_headers: Some(vec!["x-out".into()]),
            max_age: Some(300),
            allow_credentials: Some(true),
        };
        let req = headers(&[
            ("origin", "https://a.example"),
            ("access-control-request-method", "POST"),
        ]);
        assert!(is_preflight("OPTIONS", &req));
        assert!(!is_preflight("GET", &req));
        let p = preflight(&cors, &req);
        let get = |r: &UrlResponse, n: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            get(&p, "access-control-allow-origin").as_deref(),
            Some("https://a.example")
        );
        assert_eq!(
            get(&p, "access-control-allow-methods").as_deref(),
            Some("GET,POST")
        );
        assert_eq!(get(&p, "access-control-max-age").as_deref(), Some("300"));
        assert_eq!(
            get(&p, "access-control-allow-credentials").as_deref(),
            Some("true")
        );
        // Another origin gets no grant.
        let other = headers(&[
            ("origin", "https://b.example"),
            ("access-control-request-method", "POST"),
        ]);
        assert_eq!(
            get(&preflight(&cors, &other), "access-control-allow-origin"),
            None
        );

        let mut r = map_response(
            br#"{"statusCode": 200, "headers": {"Access-Control-Allow-Origin": "*"}}"#,
        );
        apply_cors(&cors, &req, &mut r);
        assert_eq!(
            get(&r, "access-control-allow-origin").as_deref(),
            Some("https://a.example")
        );
        assert_eq!(
            get(&r, "access-control-expose-headers").as_deref(),
            Some("x-out")
        );
        let mut r = map_response(b"{}");
        apply_cors(&cors, &other, &mut r);
        assert_eq!(get(&r, "access-control-allow-origin"), None);
        let any = Cors {
            allow_origins: Some(vec!["*".into()]),
            ..Cors::default()
        };
        let mut r = map_response(b"{}");
        apply_cors(&any, &other, &mut r);
        assert_eq!(get(&r, "access-control-allow-origin").as_deref(), Some("*"));
    }
}
