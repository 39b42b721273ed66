//! A job's REST API as the tests call it: one request ([`http`]), and a
//! savepoint request waited on until it has its answer
//! ([`savepoint_answer`]). The address comes from [`super::Process::rest_addr`].

use super::process::wait_until;

/// One HTTP request to the job's REST API: (status, JSON body).
pub fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("http://{addr}{path}");
    let mut response = match method {
        "GET" => agent.get(&url).call(),
        "POST" => agent.post(&url).content_type("application/json").send(body),
        other => panic!("no {other} in these tests"),
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    let body = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, body)
}

/// Polls savepoint request `id` of job `job` until it is no longer
/// IN_PROGRESS; returns its status (`COMPLETED`, `FAILED`, ...).
#[track_caller]
pub fn savepoint_answer(addr: &str, job: &str, id: &str) -> serde_json::Value {
    let path = format!("/jobs/{job}/savepoints/{id}");
    wait_until(|| {
        let (status, s) = http(addr, "GET", &path, "");
        assert_eq!(status, 200, "{s}");
        if s["status"] != "IN_PROGRESS" {
            return Ok(s);
        }
        Err(format!("savepoint request {id} got no answer: {s}"))
    })
}
