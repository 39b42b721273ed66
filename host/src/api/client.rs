//! The client of a running job's REST API, for the commands that talk to it
//! (`weir savepoint trigger`, `weir stop`, …) and for `weir bench`: JSON in,
//! JSON out, over `ureq` (plain HTTP/1.1: the API listens on a local
//! address, so no TLS). Errors are one line that names the address.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Why a request to a job's REST API failed: one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientError(String);

/// Returns a [`ClientError`] made like `format!`.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err(ClientError(format!($($arg)*)))
    };
}

/// The REST address the commands use unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8081";

/// Sends one request; returns the status and the JSON body (null if empty).
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), ClientError> {
    let unreachable = |e: &dyn std::fmt::Display| {
        ClientError(format!("cannot reach the REST API of a job at `{addr}`: {e} (is the job running, with `[rest] addr` in its job file or `weir run --rest-addr`?)"))
    };
    if !addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
    {
        bail!("`{addr}` is not a HOST:PORT address, e.g. `{DEFAULT_ADDR}`");
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        // Loopback only: a proxy from the environment must not be used.
        .proxy(None)
        // Error answers carry a JSON body with the reason.
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build()
        .into();
    let url = format!("http://{addr}{path}");
    let result = match (method, body) {
        ("GET", _) => agent.get(&url).header("Accept", "application/json").call(),
        ("POST", body) => agent
            .post(&url)
            .header("Accept", "application/json")
            .content_type("application/json")
            .send(body.map(Value::to_string).unwrap_or_default()),
        ("DELETE", _) => agent
            .delete(&url)
            .header("Accept", "application/json")
            .call(),
        _ => bail!("unsupported method {method}"),
    };
    let mut response = result.map_err(|e| match e {
        ureq::Error::Io(e) => unreachable(&e),
        e @ (ureq::Error::ConnectionFailed
        | ureq::Error::HostNotFound
        | ureq::Error::Timeout(_)) => unreachable(&e),
        e => ClientError(format!("{method} {path} at `{addr}`: {e}")),
    })?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().map_err(|e| {
        ClientError(format!(
            "reading the answer of `{addr}` to {method} {path}: {e}"
        ))
    })?;
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).map_err(|e| {
            ClientError(format!(
                "the answer of `{addr}` to {method} {path} is not JSON: {e}"
            ))
        })?
    };
    Ok((status, value))
}

/// The error message of a JSON error body, or the body itself.
pub fn message(status: u16, body: &Value) -> String {
    match body.get("error").and_then(Value::as_str) {
        Some(m) => m.to_string(),
        None => format!("HTTP {status}: {body}"),
    }
}

/// The ID of the job served at `addr` (one job per process).
pub fn job_id(addr: &str) -> Result<String, ClientError> {
    let (status, body) = request(addr, "GET", "/jobs", None)?;
    if status != 200 {
        bail!("{}", message(status, &body));
    }
    body["jobs"][0]["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| ClientError(format!("`{addr}` serves no job")))
}

/// A directory as an absolute path, for a job whose working directory may differ.
pub fn absolute(dir: &Path) -> Result<String, ClientError> {
    Ok(std::path::absolute(dir)
        .map_err(|e| ClientError(format!("`{}`: {e}", dir.display())))?
        .display()
        .to_string())
}

/// Posts a savepoint request (`action` is `savepoints` or `stop`) and waits
/// until it completes; returns the savepoint's location.
pub fn savepoint_and_wait(
    addr: &str,
    action: &str,
    body: Value,
    timeout: Duration,
) -> Result<String, ClientError> {
    let job = job_id(addr)?;
    let (status, answer) = request(addr, "POST", &format!("/jobs/{job}/{action}"), Some(&body))?;
    if status != 202 {
        bail!("job `{job}` refused: {}", message(status, &answer));
    }
    let request_id = answer["request-id"]
        .as_str()
        .ok_or_else(|| ClientError(format!("`{addr}` answered without a request id: {answer}")))?
        .to_string();
    let deadline = Instant::now() + timeout;
    loop {
        let (status, s) = request(
            addr,
            "GET",
            &format!("/jobs/{job}/savepoints/{request_id}"),
            None,
        )?;
        if status != 200 {
            bail!("{}", message(status, &s));
        }
        match s["status"].as_str() {
            Some("COMPLETED") => {
                return s["location"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| {
                        ClientError(format!("a completed savepoint without a location: {s}"))
                    })
            }
            Some("FAILED") => bail!(
                "the savepoint of job `{job}` failed: {}",
                s["failure"].as_str().unwrap_or("no reason given")
            ),
            _ if Instant::now() > deadline => bail!(
                "the savepoint of job `{job}` (request {request_id}) did not complete within {timeout:?}; it may still complete: GET /jobs/{job}/savepoints/{request_id}"
            ),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}
