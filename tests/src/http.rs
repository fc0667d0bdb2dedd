//! A minimal HTTP client for the node's operations server and a chain host's RPC, over
//! loopback.

use std::time::Duration;

/// A minimal HTTP/1.1 request over loopback (`Connection: close`); returns the status
/// code and the body, or `None` if the connection was refused or reset.
pub fn http(addr: std::net::SocketAddr, method: &str, path: &str, bearer: Option<&str>) -> Option<(u16, String)> {
    http_with_body(addr, method, path, bearer, "")
}

/// [`http`] with a request body (JSON).
pub fn http_with_body(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &str,
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = bearer.map(|token| format!("Authorization: Bearer {token}\r\n")).unwrap_or_default();
    let content = if body.is_empty() { String::new() } else { "Content-Type: application/json\r\n".to_owned() };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}{content}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Some((status, body))
}

/// `GET path` of a JSON endpoint, parsed; panics (naming the path) on anything else.
pub fn get_json(addr: std::net::SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = http(addr, "GET", path, None).unwrap_or_else(|| panic!("GET {path}: no answer"));
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|err| panic!("GET {path}: {err}: {body}"))
}
