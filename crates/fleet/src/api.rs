//! The supervisor's local API: HTTP/1.1 with JSON bodies on a Unix socket
//! (`/run/plinth/plinth.sock`), one request per connection.
//!
//! | request | body | answer |
//! | --- | --- | --- |
//! | `GET /v1/daemon` | | `{"pid", "data_dir", "containers", "watched"}` |
//! | `GET /v1/containers` | | the `plinth ls` objects |
//! | `POST /v1/containers/start` | `{"names"}` | `{"results": [{"name", "pid"} or {"name", "error"}]}` |
//! | `POST /v1/containers/stop` | `{"names", "timeout_ms"}` | results |
//! | `POST /v1/containers/restart` | `{"names", "timeout_ms"}` | results |
//! | `POST /v1/containers/remove` | `{"names", "force"}` | results |
//!
//! A batch answers when every container in it is done. This module owns
//! the framing (with `httparse`) and the client; the supervisor owns what
//! the requests do.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::FleetError;

/// The largest request or answer read (a list of 10,000 containers fits).
const MAX_MESSAGE: usize = 64 << 20;

/// A batch of containers to act on.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct Batch {
    pub names: Vec<String>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub force: bool,
    /// `start`: a container that already runs is a success, not an error
    /// (what `apply` wants; `plinth start` says it already runs).
    #[serde(default)]
    pub ensure: bool,
}

/// What happened to one container of a batch.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct Outcome {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A parsed request.
#[derive(Debug)]
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

/// Parses a request from the bytes read so far: `Ok(None)` until it is
/// whole.
pub(crate) fn parse_request(buf: &[u8]) -> Result<Option<Request>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > 64 << 10 => {
            return Err("the request head is over 64 KiB".into())
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("not an HTTP request: {e}")),
    };
    let len = content_length(req.headers)?;
    if len > MAX_MESSAGE {
        return Err(format!("a body of {len} bytes is over the limit"));
    }
    if buf.len() < head + len {
        return Ok(None);
    }
    Ok(Some(Request {
        method: req.method.unwrap_or("").to_string(),
        path: req.path.unwrap_or("").to_string(),
        body: buf[head..head + len].to_vec(),
    }))
}

fn content_length(headers: &[httparse::Header<'_>]) -> Result<usize, String> {
    match headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        None => Ok(0),
        Some(h) => std::str::from_utf8(h.value)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| "a Content-Length that is not a number".to_string()),
    }
}

/// An answer with a JSON body.
pub(crate) fn response(status: u16, body: &Value) -> Vec<u8> {
    let text = serde_json::to_vec(body).expect("JSON serializes");
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        text.len()
    )
    .into_bytes();
    out.extend_from_slice(&text);
    out
}

/// A connection to the supervisor's socket.
#[derive(Clone, Debug)]
pub struct Client {
    socket: PathBuf,
    info: Value,
}

impl Client {
    /// The supervisor listening on `socket`, if one answers.
    pub fn connect(socket: &Path) -> Option<Client> {
        let mut c = Client {
            socket: socket.to_path_buf(),
            info: Value::Null,
        };
        c.info = c.call("GET", "/v1/daemon", None).ok()?;
        Some(c)
    }

    /// What the supervisor said of itself when it answered
    /// (`GET /v1/daemon`: `pid`, `data_dir`, ...).
    pub fn info(&self) -> &Value {
        &self.info
    }

    /// One request; the answer's JSON body, or the error it carries.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, FleetError> {
        let gone =
            |e: std::io::Error| FleetError::Daemon(format!("{}: {e}", self.socket.display()));
        let mut s = UnixStream::connect(&self.socket).map_err(gone)?;
        // A batch of a thousand starts takes a while; a supervisor that
        // stopped answering altogether is still found out.
        s.set_read_timeout(Some(Duration::from_secs(900)))
            .map_err(gone)?;
        let body = body.map(|b| serde_json::to_vec(b).expect("JSON serializes"));
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: plinth\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).map_err(gone)?;
        s.write_all(&body).map_err(gone)?;
        let mut buf = Vec::new();
        s.take(MAX_MESSAGE as u64 + (64 << 10))
            .read_to_end(&mut buf)
            .map_err(gone)?;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let head = match resp.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => n,
            _ => {
                return Err(FleetError::Daemon(format!(
                    "{}: the supervisor closed the connection without an answer (did it stop?)",
                    self.socket.display()
                )))
            }
        };
        let status = resp.code.unwrap_or(500);
        let len = content_length(resp.headers)
            .map_err(|e| FleetError::Daemon(format!("{}: {e}", self.socket.display())))?;
        if buf.len() < head + len {
            return Err(FleetError::Daemon(format!(
                "{}: the answer was cut short (did the supervisor stop?)",
                self.socket.display()
            )));
        }
        let value: Value = serde_json::from_slice(&buf[head..head + len]).map_err(|e| {
            FleetError::Daemon(format!(
                "{}: an answer that is not JSON: {e}",
                self.socket.display()
            ))
        })?;
        if status != 200 {
            let why = value["error"].as_str().unwrap_or("failed").to_string();
            return Err(FleetError::Daemon(why));
        }
        Ok(value)
    }

    /// A batch verb (`start`, `stop`, `restart`, `remove`).
    pub(crate) fn batch(&self, verb: &str, batch: &Batch) -> Result<Vec<Outcome>, FleetError> {
        let body = serde_json::to_value(batch).expect("a batch serializes");
        let v = self.call("POST", &format!("/v1/containers/{verb}"), Some(&body))?;
        serde_json::from_value(v["results"].clone()).map_err(|e| {
            FleetError::Daemon(format!(
                "{}: an answer without results: {e}",
                self.socket.display()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing() {
        let whole =
            b"POST /v1/containers/start HTTP/1.1\r\nContent-Length: 13\r\n\r\n{\"names\":[]}\n";
        assert!(parse_request(&whole[..20]).unwrap().is_none());
        assert!(parse_request(&whole[..whole.len() - 1]).unwrap().is_none());
        let r = parse_request(whole).unwrap().unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/v1/containers/start")
        );
        assert_eq!(r.body.len(), 13);
        assert!(parse_request(b"\x00\x01garbage\r\n\r\n").is_err());
        assert!(parse_request(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n").is_err());
        let resp = response(404, &serde_json::json!({"error": "x: no such container"}));
        assert!(resp.starts_with(b"HTTP/1.1 404 Not Found\r\n"));
    }
}
