//! One request bollard cannot make against podman: listing containers. Podman reports a state
//! `stopped` (a container that exited and awaits its auto-removal) that bollard's typed
//! `ContainerSummary` refuses, so the listing is read as plain JSON here.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Error, Result};

/// A labelled container: its id and creation time (Unix seconds).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Listed {
    pub id: String,
    pub created: i64,
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn get(socket: &str, path: &str) -> std::io::Result<Vec<u8>> {
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: engine\r\nAccept: application/json\r\n\r\n");
    let mut response = Vec::new();
    if let Some(addr) = socket
        .strip_prefix("tcp://")
        .or_else(|| socket.strip_prefix("http://"))
    {
        let mut s = tokio::net::TcpStream::connect(addr.trim_end_matches('/')).await?;
        s.write_all(request.as_bytes()).await?;
        s.read_to_end(&mut response).await?;
    } else {
        let mut s = tokio::net::UnixStream::connect(socket.trim_start_matches("unix://")).await?;
        s.write_all(request.as_bytes()).await?;
        s.read_to_end(&mut response).await?;
    }
    Ok(response)
}

/// Containers (running or not) with `label`.
pub(crate) async fn list_with_label(socket: &str, label: &str) -> Result<Vec<Listed>> {
    let failed = |reason: String| Error::Unreachable {
        socket: socket.to_string(),
        reason,
    };
    let filters = format!("{{\"label\":[\"{label}\"]}}");
    let path = format!(
        "/containers/json?all=1&filters={}",
        percent_encode(&filters)
    );
    let response = get(socket, &path)
        .await
        .map_err(|e| failed(format!("listing containers: {e}")))?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| failed("listing containers: no HTTP header".into()))?;
    let head = String::from_utf8_lossy(&response[..split]);
    let body = &response[split + 4..];
    if !head.lines().next().is_some_and(|l| l.contains(" 200 ")) {
        return Err(failed(format!(
            "listing containers: {} {}",
            head.lines().next().unwrap_or(""),
            String::from_utf8_lossy(body).trim()
        )));
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| failed(format!("listing containers: {e}")))?;
    let items = value
        .as_array()
        .ok_or_else(|| failed("listing containers: not a JSON array".into()))?;
    Ok(items
        .iter()
        .filter_map(|c| {
            let id = c.get("Id")?.as_str()?.to_string();
            let created = c.get("Created").and_then(|v| v.as_i64()).unwrap_or(0);
            Some(Listed { id, created })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn filters_are_percent_encoded() {
        assert_eq!(
            super::percent_encode("{\"label\":[\"a=1\"]}"),
            "%7B%22label%22%3A%5B%22a%3D1%22%5D%7D"
        );
    }
}
