//! One request bollard cannot make against podman: listing containers. Podman reports a state
//! `stopped` (a container that exited and awaits its auto-removal) that bollard's typed
//! `ContainerSummary` refuses, so the listing is read as plain JSON here.

use http_body_util::BodyExt;
use hyper::body::Bytes;

use crate::engine::Endpoint;
use crate::{Error, Result};

/// A labelled container: its id, creation time (Unix seconds) and labels.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Listed {
    pub id: String,
    pub created: i64,
    pub labels: std::collections::HashMap<String, String>,
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

/// Containers (running or not) with `label`, over whichever transport `endpoint` is.
pub(crate) async fn list_with_label(endpoint: &Endpoint, label: &str) -> Result<Vec<Listed>> {
    let failed = |reason: String| Error::Unreachable {
        socket: format!("{endpoint:?}"),
        reason: format!("listing containers: {reason}"),
    };
    let filters = format!("{{\"label\":[\"{label}\"]}}");
    let path = format!(
        "/containers/json?all=1&filters={}",
        percent_encode(&filters)
    );
    let request = hyper::Request::get(path)
        .header(hyper::header::ACCEPT, "application/json")
        .body(bollard::body_full(Bytes::new()))
        .map_err(|e| failed(e.to_string()))?;
    let response = endpoint.request(request).await.map_err(failed)?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| failed(e.to_string()))?
        .to_bytes();
    if !status.is_success() {
        return Err(failed(format!(
            "{status} {}",
            String::from_utf8_lossy(&body).trim()
        )));
    }
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| failed(e.to_string()))?;
    let items = value
        .as_array()
        .ok_or_else(|| failed("not a JSON array".into()))?;
    Ok(items
        .iter()
        .filter_map(|c| {
            let id = c.get("Id")?.as_str()?.to_string();
            let created = c.get("Created").and_then(|v| v.as_i64()).unwrap_or(0);
            let labels = c
                .get("Labels")
                .and_then(|l| l.as_object())
                .map(|l| {
                    l.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            Some(Listed {
                id,
                created,
                labels,
            })
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
