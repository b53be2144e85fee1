//! Hearth's HTTP frontend: the Lambda control plane, Hearth's admin API
//! under `/hearth/v1/`, and SigV4 authentication.
//!
//! Handlers only parse requests into typed inputs, call the
//! [`hearth_store::Registry`] and [`hearth_store::CodeStore`], and render
//! Lambda's JSON; errors become HTTP in exactly one place ([`error`]).
//!
//! ```no_run
//! # async fn demo(state: hearth_api::AppState) {
//! let app = hearth_api::app(state);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9000").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # }
//! ```

pub mod admin;
pub mod aliases;
pub mod auth;
pub mod caller;
pub mod capacity;
pub mod concurrency;
pub mod cwlogs;
pub mod dead_letters;
pub mod error;
pub mod esm;
pub mod event_config;
pub mod functions;
pub mod iam;
pub mod invoke;
pub mod layers;
pub mod logs;
pub mod pools;
pub mod provisioned;
pub mod query;
pub mod request;
pub mod shapes;
pub mod sqs;
pub mod state;
pub mod sts;
pub mod tags;
pub mod urls;
pub mod usage;

pub use state::{ApiSettings, AppState, FunctionRoleCheck, Services};

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use hearth_types::{ErrorKind, LambdaError};

/// The whole HTTP surface of a node.
pub fn app(state: AppState) -> Router {
    use functions as f;
    let signed = Router::new()
        // The query protocol (STS; other services answer its error shape).
        .route("/", get(query::handle).post(query::handle))
        // SQS's query protocol, as some SDKs send it: to the queue's URL.
        .route("/{account}/{queue}", axum::routing::any(queue_url))
        // Lambda control plane.
        .route(
            "/2015-03-31/functions",
            get(f::list_functions).post(f::create_function),
        )
        .route(
            "/2015-03-31/functions/",
            get(f::list_functions).post(f::create_function),
        )
        .route(
            "/2015-03-31/functions/{name}",
            get(f::get_function).delete(f::delete_function),
        )
        .route(
            "/2015-03-31/functions/{name}/configuration",
            get(f::get_function_configuration).put(f::update_function_configuration),
        )
        .route(
            "/2015-03-31/functions/{name}/code",
            put(f::update_function_code),
        )
        .route("/2018-10-31/layers", get(layers::list_layers))
        .route(
            "/2018-10-31/layers/{name}/versions",
            get(layers::list_layer_versions).post(layers::publish_layer_version),
        )
        .route(
            "/2018-10-31/layers/{name}/versions/{number}",
            get(layers::get_layer_version).delete(layers::delete_layer_version),
        )
        .route(
            "/2018-10-31/layers/{name}/versions/{number}/policy",
            get(layers::get_layer_version_policy).post(layers::add_layer_version_permission),
        )
        .route(
            "/2018-10-31/layers/{name}/versions/{number}/policy/{sid}",
            axum::routing::delete(layers::remove_layer_version_permission),
        )
        .route(
            "/2017-03-31/tags/{arn}",
            get(tags::list_tags)
                .post(tags::tag_resource)
                .delete(tags::untag_resource),
        )
        .route(
            "/2015-03-31/functions/{name}/invocations",
            axum::routing::post(invoke::invoke),
        )
        .route(
            "/2019-09-25/functions/{name}/event-invoke-config",
            get(event_config::get_event_invoke_config)
                .put(event_config::put_event_invoke_config)
                .post(event_config::update_event_invoke_config)
                .delete(event_config::delete_event_invoke_config),
        )
        .route(
            "/2019-09-25/functions/{name}/event-invoke-config/list",
            get(event_config::list_event_invoke_configs),
        )
        .route(
            "/2015-03-31/event-source-mappings",
            get(esm::list).post(esm::create),
        )
        .route(
            "/2015-03-31/event-source-mappings/",
            get(esm::list).post(esm::create),
        )
        .route(
            "/2015-03-31/event-source-mappings/{uuid}",
            get(esm::get).put(esm::update).delete(esm::delete),
        )
        .route("/hearth/v1/functions/{name}/logs", get(logs::get_logs))
        .route(
            "/hearth/v1/functions/{name}/dead-letters",
            get(dead_letters::list_dead_letters),
        )
        .route(
            "/hearth/v1/functions/{name}/dead-letters/redrive",
            axum::routing::post(dead_letters::redrive),
        )
        .route("/hearth/v1/pools", get(pools::pools))
        .route("/hearth/v1/usage", get(usage::get_usage))
        .route(
            "/2015-03-31/functions/{name}/versions",
            get(f::list_versions).post(f::publish_version),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases",
            get(aliases::list_aliases).post(aliases::create_alias),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases/{alias}",
            get(aliases::get_alias)
                .put(aliases::update_alias)
                .delete(aliases::delete_alias),
        )
        .route(
            "/2017-10-31/functions/{name}/concurrency",
            put(concurrency::put_function_concurrency)
                .delete(concurrency::delete_function_concurrency),
        )
        .route(
            "/2019-09-30/functions/{name}/concurrency",
            get(concurrency::get_function_concurrency),
        )
        .route(
            "/2019-09-30/functions/{name}/provisioned-concurrency",
            get(provisioned::get_provisioned_concurrency)
                .put(provisioned::put_provisioned_concurrency)
                .delete(provisioned::delete_provisioned_concurrency),
        )
        .route(
            "/2021-10-31/functions/{name}/url",
            get(urls::get_function_url_config)
                .post(urls::create_function_url_config)
                .put(urls::update_function_url_config)
                .delete(urls::delete_function_url_config),
        )
        .route(
            "/2021-10-31/functions/{name}/urls",
            get(urls::list_function_url_configs),
        )
        .route(
            "/2016-08-19/account-settings",
            get(concurrency::get_account_settings),
        )
        .route(
            "/2016-08-19/account-settings/",
            get(concurrency::get_account_settings),
        )
        // Hearth's admin API.
        .route(
            "/hearth/v1/accounts",
            get(admin::list_accounts).post(admin::create_account),
        )
        .route(
            "/hearth/v1/accounts/{id}",
            axum::routing::delete(admin::delete_account),
        )
        .route(
            "/hearth/v1/accounts/{id}/capacity",
            get(capacity::get_capacity).put(capacity::put_capacity),
        )
        .route("/hearth/v1/runtimes", get(admin::list_runtimes))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            caller::authenticate,
        ));
    let open = Router::new()
        .route("/hearth/v1/health", get(admin::health))
        .route("/metrics", get(pools::metrics))
        .route("/hearth/v1/code/{account}/{sha}", get(f::download_code));
    Router::new()
        .merge(signed)
        .merge(open)
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(unknown_operation)
        // Bodies are bounded by the authentication layer (70 MB for a zip
        // upload in base64); axum's own 2 MB default would refuse them first.
        .layer(axum::extract::DefaultBodyLimit::max(
            hearth_types::limits::CONTROL_BODY_MAX_BYTES,
        ))
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

/// A POST to a queue's URL (`/<account>/<name>`) is SQS's query protocol;
/// anything else on a two-segment path is no operation.
async fn queue_url(
    state: axum::extract::State<AppState>,
    caller: axum::Extension<caller::Caller>,
    service: Option<axum::Extension<query::Service>>,
    json: Option<axum::Extension<query::JsonService>>,
    req: Request,
) -> Response {
    if req.method() == axum::http::Method::POST && query::is_queue_path(req.uri().path()) {
        query::handle(state, caller, service, json, req).await
    } else {
        unknown_operation(req).await
    }
}

async fn unknown_operation(req: Request) -> Response {
    error::ApiError(LambdaError::new(
        ErrorKind::UnknownOperation,
        format!("No operation at {} {}", req.method(), req.uri().path()),
    ))
    .into_response()
}

async fn method_not_allowed(req: Request) -> Response {
    error::ApiError(LambdaError::new(
        ErrorKind::MethodNotAllowed,
        format!(
            "The operation at {} does not accept the method {}",
            req.uri().path(),
            req.method()
        ),
    ))
    .into_response()
}

/// Gives every response an `x-amzn-RequestId`, as Lambda does.
async fn request_id(req: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    let span =
        tracing::debug_span!("request", id = %id, method = %req.method(), path = %req.uri().path());
    let mut resp = tracing::Instrument::instrument(next.run(req), span).await;
    // The Invoke API answers with the invocation's own request id.
    if !resp.headers().contains_key("x-amzn-requestid") {
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert("x-amzn-RequestId", v);
        }
    }
    resp
}
