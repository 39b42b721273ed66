//! A small HTTP/1.1 client for the commands that talk to a running job's
//! REST API (`weir savepoint trigger`, `weir stop`): JSON in, JSON out, one
//! connection per request. Our own server is the only peer, so this is all
//! the HTTP it needs.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde_json::Value;

/// The REST address the commands use unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8081";

/// Sends one request; returns the status and the JSON body.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let unreachable = |e: &dyn std::fmt::Display| {
        anyhow!("cannot reach the REST API of a job at `{addr}`: {e} (is the job running, with `[rest] addr` in its job file or `weir run --rest-addr`?)")
    };
    let target = addr
        .to_socket_addrs()
        .map_err(|e| unreachable(&e))?
        .next()
        .ok_or_else(|| unreachable(&"the address resolves to nothing"))?;
    let mut stream =
        TcpStream::connect_timeout(&target, Duration::from_secs(5)).map_err(|e| unreachable(&e))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let payload = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        payload.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(payload.as_bytes())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer of `{addr}`"))?;
    parse_response(&raw).with_context(|| format!("the answer of `{addr}` to {method} {path}"))
}

fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, Value)> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("not an HTTP response"))?;
    let head = std::str::from_utf8(&raw[..split])?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP status line"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let mut body = raw[split + 4..].to_vec();
    if chunked {
        body = dechunk(&body)?;
    }
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).context("the body is not JSON")?
    };
    Ok((status, value))
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("bad chunked body"))?;
        let size = usize::from_str_radix(std::str::from_utf8(&data[..line_end])?.trim(), 16)?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            bail!("truncated chunked body");
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

/// The error message of a JSON error body, or the body itself.
fn message(status: u16, body: &Value) -> String {
    match body.get("error").and_then(Value::as_str) {
        Some(m) => m.to_string(),
        None => format!("HTTP {status}: {body}"),
    }
}

/// The ID of the job served at `addr` (one job per process).
pub fn job_id(addr: &str) -> anyhow::Result<String> {
    let (status, body) = request(addr, "GET", "/jobs", None)?;
    if status != 200 {
        bail!("{}", message(status, &body));
    }
    body["jobs"][0]["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("`{addr}` serves no job"))
}

/// A directory as an absolute path, for a job whose working directory may differ.
pub fn absolute(dir: &Path) -> anyhow::Result<String> {
    Ok(std::path::absolute(dir)
        .with_context(|| format!("`{}`", dir.display()))?
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
) -> anyhow::Result<String> {
    let job = job_id(addr)?;
    let (status, answer) = request(addr, "POST", &format!("/jobs/{job}/{action}"), Some(&body))?;
    if status != 202 {
        bail!("job `{job}` refused: {}", message(status, &answer));
    }
    let request_id = answer["request-id"]
        .as_str()
        .ok_or_else(|| anyhow!("`{addr}` answered without a request id: {answer}"))?
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
                    .ok_or_else(|| anyhow!("a completed savepoint without a location: {s}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_answers() {
        let (s, v) =
            parse_response(b"HTTP/1.1 202 Accepted\r\ncontent-length: 7\r\n\r\n{\"a\":1}").unwrap();
        assert_eq!((s, v["a"].as_i64()), (202, Some(1)));
        let (s, v) = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":2}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((s, v["a"].as_i64()), (200, Some(2)));
    }
}
