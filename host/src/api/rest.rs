//! The REST API of a running job (axum), on the control plane's tokio
//! runtime. The job's name is its ID. Every error is JSON
//! `{"error": "..."}` with a fitting status. `openapi.yaml` at the
//! repository root describes these endpoints:
//!
//! | method | path | |
//! | --- | --- | --- |
//! | GET | `/jobs` | the job of this process |
//! | GET | `/jobs/{id}` | status, operators, throughput, last checkpoint, failed checkpoints |
//! | GET | `/jobs/{id}/checkpoints` | completed checkpoints |
//! | POST | `/jobs/{id}/savepoints` | `{"target-directory": …}` → `{"request-id": …}` |
//! | GET | `/jobs/{id}/savepoints` | every savepoint request |
//! | GET | `/jobs/{id}/savepoints/{request-id}` | `IN_PROGRESS`, `COMPLETED` (with `location`) or `FAILED` (with `failure`) |
//! | POST | `/jobs/{id}/stop` | `{"target-directory": …, "drain": bool}`: stop-with-savepoint → `{"request-id": …}` |
//! | POST | `/jobs/{id}/operators/{operator}/swap` | `{"wasm": PATH, "probation": "30s" or "N events", "max-dead-letter-share": 0.01}`: a live swap → `{"request-id": …}`, or 4xx with why it is refused |
//! | GET | `/jobs/{id}/swaps` | every swap |
//! | GET | `/jobs/{id}/swaps/{request-id}` | `IN_PROGRESS`, `PROBATION`, `COMPLETED` or `ROLLED_BACK` (with `reason`) |
//! | POST | `/jobs/{id}/operators/{operator}/shadow` | `{"wasm": …, "queue": n, "diff-file": …}`: start a shadow run → its status |
//! | GET | `/jobs/{id}/shadow` | the shadow run's status: state, counts, first differences |
//! | DELETE | `/jobs/{id}/shadow` | stop the shadow run → its final status |
//!
//! The two POSTs answer 429 when [`crate::engine::control::MAX_REQUESTS_IN_PROGRESS`]
//! savepoint requests are already in progress: the queue is bounded.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::api::views;
use crate::engine::control::JobControl;
use crate::engine::errors::{Refusal, RefusalKind};

type Shared = State<Arc<JobControl>>;

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

/// An error answer: a status and a message, sent as `{"error": message}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

fn check_job(control: &JobControl, id: &str) -> Result<(), ApiError> {
    if id == control.job {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no job `{id}`: this process runs job `{}`", control.job),
        ))
    }
}

/// Parses a JSON body (an empty body is `{}`), naming what is wrong.
fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, ApiError> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(text)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("bad request body: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SavepointBody {
    #[serde(rename = "target-directory")]
    target_directory: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StopBody {
    #[serde(rename = "target-directory")]
    target_directory: Option<String>,
    #[serde(default)]
    drain: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SwapBody {
    wasm: String,
    probation: Option<String>,
    max_dead_letter_share: Option<f64>,
}

async fn swap(
    State(c): Shared,
    Path((id, operator)): Path<(String, String)>,
    bytes: Bytes,
) -> Response {
    if let Err(r) = check_job(&c, &id) {
        return r.into_response();
    }
    let b: SwapBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let probation = match b.probation.as_deref().map(str::parse) {
        None => crate::engine::upgrades::swap::Probation::Time(
            crate::engine::upgrades::swap::DEFAULT_PROBATION,
        ),
        Some(Ok(p)) => p,
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    let request = crate::engine::control::SwapRequest {
        operator,
        wasm: b.wasm.into(),
        probation,
        max_dead_letter_share: b
            .max_dead_letter_share
            .unwrap_or(crate::engine::upgrades::swap::DEFAULT_MAX_DEAD_LETTER_SHARE),
    };
    // Loading and compiling the component blocks: off the async workers.
    match tokio::task::spawn_blocking(move || c.request_swap(request)).await {
        Ok(result) => accepted(result),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn swaps(State(c): Shared, Path(id): Path<String>) -> Response {
    if let Err(r) = check_job(&c, &id) {
        return r.into_response();
    }
    Json(json!({ "swaps": c.swaps() })).into_response()
}

async fn swap_status(State(c): Shared, Path((id, request)): Path<(String, String)>) -> Response {
    if let Err(r) = check_job(&c, &id) {
        return r.into_response();
    }
    found("swap", &request, &id, c.swap(&request))
}

async fn jobs(State(c): Shared) -> Response {
    let status = c.status();
    Json(json!({ "jobs": [{ "id": status.job, "state": status.state }] })).into_response()
}

async fn job(State(c): Shared, Path(id): Path<String>) -> Response {
    if let Err(r) = check_job(&c, &id) {
        return r.into_response();
    }
    Json(views::job_status(&c)).into_response()
}

async fn checkpoints(State(c): Shared, Path(id): Path<String>) -> Response {
    if let Err(r) = check_job(&c, &id) {
        return r.into_response();
    }
    // sled reads may block briefly: off the async workers.
    let c2 = c.clone();
    match tokio::task::spawn_blocking(move || views::checkpoints(&c2)).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// A request's status, or 404 naming the `kind` of request it is not.
fn found<T: serde::Serialize>(kind: &str, request: &str, job: &str, status: Option<T>) -> Response {
    match status {
        Some(s) => Json(s).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no {kind} request `{request}` for job `{job}`"),
        ),
    }
}

/// The HTTP status of a refusal.
fn status_of(kind: RefusalKind) -> StatusCode {
    match kind {
        RefusalKind::Invalid => StatusCode::BAD_REQUEST,
        RefusalKind::NotFound => StatusCode::NOT_FOUND,
        RefusalKind::Conflict => StatusCode::CONFLICT,
        RefusalKind::Busy => StatusCode::TOO_MANY_REQUESTS,
        RefusalKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn accepted(result: Result<String, Refusal>) -> Response {
    match result {
        Ok(id) => (StatusCode::ACCEPTED, Json(json!({ "request-id": id }))).into_response(),
        Err(r) => error(status_of(r.kind), r.message),
    }
}

async fn trigger_savepoint(State(c): Shared, Path(id): Path<String>, bytes: Bytes) -> Response {
    if let Err(r) = check_job(&c, &id) {
        return r.into_response();
    }
    let b: SavepointBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    accepted(c.request_savepoint(b.target_directory.as_deref(), None))
}

async fn stop(State(c): Shared, Path(id): Path<String>, bytes: Bytes) -> Response {
    if let Err(r) = check_job(&c, &id) {
        return r.into_response();
    }
    let b: StopBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    accepted(c.request_savepoint(b.target_directory.as_deref(), Some(b.drain)))
}

async fn savepoints(State(c): Shared, Path(id): Path<String>) -> Response {
    if let Err(r) = check_job(&c, &id) {
        return r.into_response();
    }
    Json(json!({ "savepoints": c.savepoints() })).into_response()
}

async fn savepoint(State(c): Shared, Path((id, request)): Path<(String, String)>) -> Response {
    if let Err(r) = check_job(&c, &id) {
        return r.into_response();
    }
    found("savepoint", &request, &id, c.savepoint(&request))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShadowBody {
    wasm: String,
    queue: Option<usize>,
    #[serde(rename = "diff-file")]
    diff_file: Option<String>,
}

async fn start_shadow(
    State(c): Shared,
    Path((id, operator)): Path<(String, String)>,
    bytes: Bytes,
) -> Response {
    if let Err(r) = check_job(&c, &id) {
        return r.into_response();
    }
    let b: ShadowBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let request = crate::engine::upgrades::shadow::ShadowRequest {
        operator,
        wasm: b.wasm.into(),
        queue: b.queue,
        diff_file: b.diff_file.map(Into::into),
    };
    // Loading and compiling the candidate blocks: off the async workers.
    let c2 = c.clone();
    match tokio::task::spawn_blocking(move || c2.start_shadow(&request)).await {
        Ok(Ok(v)) => (StatusCode::ACCEPTED, Json(v)).into_response(),
        Ok(Err(r)) => error(status_of(r.kind), r.message),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

fn no_shadow(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("job `{id}` has no shadow run (start one with `weir shadow start`)"),
    )
}

async fn shadow_status(State(c): Shared, Path(id): Path<String>) -> Response {
    if let Err(r) = check_job(&c, &id) {
        return r.into_response();
    }
    match c.shadow.status() {
        Some(v) => Json(v).into_response(),
        None => no_shadow(&id),
    }
}

async fn stop_shadow(State(c): Shared, Path(id): Path<String>) -> Response {
    if let Err(r) = check_job(&c, &id) {
        return r.into_response();
    }
    match c.shadow.stop() {
        Some(v) => Json(v).into_response(),
        None => no_shadow(&id),
    }
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint (see openapi.yaml: /jobs, /jobs/{id}, /jobs/{id}/checkpoints, /jobs/{id}/savepoints, /jobs/{id}/stop, /jobs/{id}/operators/{operator}/swap, /jobs/{id}/swaps)",
    )
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint does not take that method (see openapi.yaml)",
    )
}

/// The routes, over `control`.
pub fn router(control: Arc<JobControl>) -> Router {
    Router::new()
        .route("/jobs", get(jobs))
        .route("/jobs/{id}", get(job))
        .route("/jobs/{id}/checkpoints", get(checkpoints))
        .route(
            "/jobs/{id}/savepoints",
            post(trigger_savepoint).get(savepoints),
        )
        .route("/jobs/{id}/savepoints/{request}", get(savepoint))
        .route("/jobs/{id}/stop", post(stop))
        .route("/jobs/{id}/operators/{operator}/swap", post(swap))
        .route("/jobs/{id}/swaps", get(swaps))
        .route("/jobs/{id}/swaps/{request}", get(swap_status))
        .route("/jobs/{id}/operators/{operator}/shadow", post(start_shadow))
        .route("/jobs/{id}/shadow", get(shadow_status).delete(stop_shadow))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(control)
}

/// [`serve`] as the engine takes it ([`crate::engine::runtime::ServeFn`]).
pub fn serve_boxed(
    addr: String,
    control: Arc<JobControl>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<SocketAddr, String>> + Send>> {
    Box::pin(async move { serve(&addr, control).await })
}

/// Listens on `addr` (`host:port`; port 0 picks a free one) and serves the
/// API in the background; returns the address it listens on.
pub async fn serve(addr: &str, control: Arc<JobControl>) -> Result<SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot serve the REST API on `{addr}`: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot serve the REST API on `{addr}`: {e}"))?;
    let app = router(control);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("the REST API stopped: {e}");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::SocketAddr;
    use std::path::Path;
    use std::sync::Arc;

    use crate::engine::control::JobControl;

    /// Every (path, methods) that `router()` serves. Update this list,
    /// `router()` and `openapi.yaml` (at the repository root) together.
    const ROUTES: &[(&str, &[&str])] = &[
        ("/jobs", &["get"]),
        ("/jobs/{id}", &["get"]),
        ("/jobs/{id}/checkpoints", &["get"]),
        ("/jobs/{id}/savepoints", &["get", "post"]),
        ("/jobs/{id}/savepoints/{request}", &["get"]),
        ("/jobs/{id}/stop", &["post"]),
        ("/jobs/{id}/operators/{operator}/swap", &["post"]),
        ("/jobs/{id}/swaps", &["get"]),
        ("/jobs/{id}/swaps/{request}", &["get"]),
        ("/jobs/{id}/operators/{operator}/shadow", &["post"]),
        ("/jobs/{id}/shadow", &["get", "delete"]),
    ];

    const OPENAPI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml");

    const HTTP_METHODS: &[&str] = &[
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    /// The (path, method) pairs under `paths:` in an OpenAPI YAML file: a
    /// path is a key indented two spaces, its operations keys indented four.
    fn documented(yaml: &str) -> BTreeSet<(String, String)> {
        let mut pairs = BTreeSet::new();
        let mut in_paths = false;
        let mut path: Option<String> = None;
        for line in yaml.lines() {
            let line = line.trim_end();
            if line.trim_start().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            if !line.starts_with(' ') {
                in_paths = line == "paths:";
                continue;
            }
            if !in_paths {
                continue;
            }
            if let Some(key) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
                if !key.starts_with(' ') {
                    let key = key.trim_matches(|c| c == '\'' || c == '"');
                    assert!(key.starts_with('/'), "a path in openapi.yaml: `{key}`");
                    path = Some(key.to_string());
                    continue;
                }
            }
            if let Some(key) = line.strip_prefix("    ").and_then(|l| l.strip_suffix(':')) {
                if HTTP_METHODS.contains(&key) {
                    let path = path.clone().expect("an operation under a path");
                    assert!(
                        pairs.insert((path.clone(), key.to_string())),
                        "{key} {path} is twice in openapi.yaml"
                    );
                }
            }
        }
        pairs
    }

    /// Sends `method path` to `addr`; returns the status and the body.
    fn send(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .proxy(None)
            .http_status_as_error(false)
            .build()
            .into();
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .body(())
            .expect("a request");
        let mut answer = agent
            .run(request)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = answer.status().as_u16();
        let body = answer.body_mut().read_to_string().expect("read");
        (status, body)
    }

    #[test]
    fn openapi_yaml_matches_the_router() {
        let expected: BTreeSet<(String, String)> = ROUTES
            .iter()
            .flat_map(|(path, methods)| methods.iter().map(|m| (path.to_string(), m.to_string())))
            .collect();
        let yaml = std::fs::read_to_string(OPENAPI)
            .unwrap_or_else(|e| panic!("cannot read `{OPENAPI}`: {e}"));
        let documented = documented(&yaml);
        let missing: Vec<_> = expected.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "routed but not in openapi.yaml: {missing:?}"
        );
        let extra: Vec<_> = documented.difference(&expected).collect();
        assert!(
            extra.is_empty(),
            "in openapi.yaml but not routed: {extra:?}"
        );

        // The hand-written list is the router's: each listed (path, method)
        // reaches a handler (not the fallback, not 405), and every other
        // method on a listed path is 405. A stdin job refuses savepoints
        // (409), so the POSTs change nothing.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let control = Arc::new(JobControl::new(
            "j",
            Vec::new(),
            Path::new("/"),
            None,
            false,
        ));
        let addr = runtime
            .block_on(super::serve("127.0.0.1:0", control))
            .expect("serve");
        for (path, methods) in ROUTES {
            let concrete = path
                .replace("{id}", "j")
                .replace("{request}", "r")
                .replace("{operator}", "op");
            for method in ["get", "post", "put", "delete", "patch"] {
                let (status, answer) = send(addr, &method.to_uppercase(), &concrete);
                if methods.contains(&method) {
                    assert!(
                        status != 405 && !answer.contains("no such endpoint"),
                        "{method} {path} is not routed: {answer}"
                    );
                } else {
                    assert_eq!(status, 405, "{method} {path} is routed: {answer}");
                }
            }
        }
        assert_eq!(send(addr, "GET", "/nowhere").0, 404);
    }
}
