//! Server options: `initializationOptions`, then `workspace/didChangeConfiguration` (under the key
//! `keel`, or at the top level), over a `--config FILE` (the same JSON), over environment defaults
//! (`KEEL_MODEL_ENDPOINT`, `KEEL_MODEL`, `KEEL_API_KEY_ENV`, `KEEL_STORE`, `KEEL_SANDBOX`, else
//! `DOCKER_HOST`, `KEEL_SANDBOX_IMAGE`). An ACP host has only the command line and the environment.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8741/v1";
pub const DEFAULT_MODEL: &str = "keel";

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub endpoint: Option<String>,
    pub model: String,
    /// The name of the environment variable holding the API key (never the key itself).
    pub api_key_env: Option<String>,
    pub store: PathBuf,
    /// `store_sync`: `"normal"` (the default: a commit survives the server being killed) or
    /// `"full"` (it also survives a power cut; an fsync per batch).
    pub store_sync: keel_trajectory::Durability,
    pub verify: Option<String>,
    /// The container engine `run` steps execute in (`unix:///…/docker.sock`, Podman's socket
    /// works; or a remote engine, `tcp://` with TLS from `DOCKER_TLS_VERIFY`/`DOCKER_CERT_PATH`, or
    /// `ssh://`, docs/sandbox.md); `None`: no sandbox, and `run` is never executed.
    pub sandbox: Option<String>,
    /// The image `run` steps execute in (e.g. `localhost/keel-python:<version>`, or a project's
    /// own toolchain image); `None`: the sandbox's busybox base image.
    pub sandbox_image: Option<String>,
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Steps of one episode, all kinds.
    pub max_steps: u32,
    /// Read-only steps (and automatic rejections) in a row before the episode stops.
    pub max_auto_steps: u32,
    pub request_timeout_secs: u64,
    /// How long an accepted edit is watched for an undo or a change.
    pub watch_secs: u64,
    /// Budget of the context sent with a task, in tokens (about 4 characters each).
    pub context_tokens: usize,
    /// Largest tool output passed back to the model, in bytes.
    pub max_observation_bytes: usize,
    /// Sampling temperature for proposals ("another" samples again at the same state).
    pub temperature: f64,
    /// Records kept in memory while the store cannot be written; at this many, no new episode
    /// starts (the user is told why) until the store takes them. Running episodes go on (each adds
    /// at most a few records per step, up to `max_steps`), and nothing kept is dropped.
    pub max_unwritten_records: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_steps: 24,
            max_auto_steps: 12,
            request_timeout_secs: 120,
            watch_secs: 300,
            context_tokens: 3000,
            max_observation_bytes: keel_agent::DEFAULT_OBSERVATION_BYTES,
            temperature: 0.7,
            max_unwritten_records: 10_000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Config {
            endpoint: Some(env("KEEL_MODEL_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())),
            model: env("KEEL_MODEL").unwrap_or_else(|| DEFAULT_MODEL.to_string()),
            api_key_env: env("KEEL_API_KEY_ENV"),
            store: keel_trajectory::default_path(),
            store_sync: keel_trajectory::Durability::default(),
            verify: None,
            sandbox: match env("KEEL_SANDBOX") {
                Some(s) => sandbox_setting(&s),
                None => env("DOCKER_HOST"),
            },
            sandbox_image: env("KEEL_SANDBOX_IMAGE"),
            limits: Limits::default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct Raw {
    #[serde(default)]
    model: Option<RawModel>,
    #[serde(default)]
    store: Option<String>,
    #[serde(default)]
    store_sync: Option<String>,
    #[serde(default)]
    verify: Option<String>,
    /// `"off"`, or the engine socket.
    #[serde(default)]
    sandbox: Option<String>,
    /// The image name; `""`: the base image.
    #[serde(default)]
    sandbox_image: Option<String>,
    #[serde(default)]
    limits: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
struct RawModel {
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    api_key_env: Option<String>,
}

impl Config {
    /// Applies options on top of `self`. Unknown keys are ignored; a malformed value is an error
    /// that names it, and leaves `self` unchanged. A relative `store` is refused: see
    /// [`Config::merged_at`].
    pub fn merged(&self, options: &Value) -> Result<Config, String> {
        self.merged_at(options, None)
    }

    /// [`Config::merged`], with a relative `store` resolved against `base` — the workspace root for
    /// a client's options (never keel-lsp's working directory, which the editor chose for its own
    /// reasons), the config file's directory for `--config`. Without a base it is an error that
    /// names it (`~/` is expanded first).
    pub fn merged_at(&self, options: &Value, base: Option<&std::path::Path>) -> Result<Config, String> {
        let v = match options.get("keel") {
            Some(inner) if inner.is_object() => inner,
            _ => options,
        };
        if v.is_null() {
            return Ok(self.clone());
        }
        let raw: Raw = serde_json::from_value(v.clone()).map_err(|e| format!("invalid Keel settings: {e}"))?;
        let mut c = self.clone();
        if let Some(m) = raw.model {
            if let Some(e) = m.endpoint {
                let e = e.trim().trim_end_matches('/').to_string();
                if !e.is_empty() && !(e.starts_with("http://") || e.starts_with("https://")) {
                    return Err(format!("invalid Keel settings: model.endpoint must be an http(s) URL, got `{e}`"));
                }
                c.endpoint = (!e.is_empty()).then_some(e);
            }
            if let Some(n) = m.name.filter(|n| !n.trim().is_empty()) {
                c.model = n;
            }
            if let Some(k) = m.api_key_env {
                c.api_key_env = (!k.trim().is_empty()).then_some(k);
            }
        }
        if let Some(s) = raw.store.filter(|s| !s.trim().is_empty()) {
            let p = expand_home(s.trim());
            c.store = match base {
                // A PostgreSQL URL is no path: never joined to the base.
                _ if p.is_absolute() || keel_trajectory::is_postgres_url(s.trim()) => p,
                Some(b) => b.join(p),
                None => {
                    return Err(format!(
                        "invalid Keel settings: store `{}` is a relative path and there is no workspace root to resolve it against; give an absolute path",
                        p.display()
                    ));
                }
            };
        }
        if let Some(sync) = raw.store_sync {
            c.store_sync = match sync.trim() {
                "" | "normal" => keel_trajectory::Durability::Normal,
                "full" => keel_trajectory::Durability::Full,
                other => return Err(format!("invalid Keel settings: store_sync must be \"normal\" or \"full\", got `{other}`")),
            };
        }
        if let Some(sb) = raw.sandbox {
            c.sandbox = sandbox_setting(&sb);
        }
        if let Some(image) = raw.sandbox_image {
            let image = image.trim();
            c.sandbox_image = (!image.is_empty()).then(|| image.to_string());
        }
        if raw.verify.is_some() {
            c.verify = raw.verify.filter(|s| !s.trim().is_empty());
        }
        if let Some(l) = raw.limits {
            let mut base = serde_json::to_value(LimitsSer(&c.limits)).unwrap_or(Value::Null);
            if let (Some(b), Some(o)) = (base.as_object_mut(), l.as_object()) {
                for (k, val) in o {
                    b.insert(k.clone(), val.clone());
                }
            }
            c.limits = serde_json::from_value(base).map_err(|e| format!("invalid Keel settings: limits: {e}"))?;
        }
        Ok(c)
    }

    /// The defaults with a settings file (`--config FILE`: the JSON of `initializationOptions`) on top.
    pub fn from_file(path: &std::path::Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("the config file {} is not JSON: {e}", path.display()))?;
        let dir = std::path::absolute(path).ok().and_then(|p| p.parent().map(std::path::Path::to_path_buf));
        Config::default().merged_at(&v, dir.as_deref()).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The API key, read from the named environment variable at call time.
    pub fn api_key(&self) -> Option<String> {
        self.api_key_env.as_ref().and_then(|k| std::env::var(k).ok()).filter(|k| !k.is_empty())
    }
}

struct LimitsSer<'a>(&'a Limits);

impl serde::Serialize for LimitsSer<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let l = self.0;
        let mut m = s.serialize_map(Some(8))?;
        m.serialize_entry("max_steps", &l.max_steps)?;
        m.serialize_entry("max_auto_steps", &l.max_auto_steps)?;
        m.serialize_entry("request_timeout_secs", &l.request_timeout_secs)?;
        m.serialize_entry("watch_secs", &l.watch_secs)?;
        m.serialize_entry("context_tokens", &l.context_tokens)?;
        m.serialize_entry("max_observation_bytes", &l.max_observation_bytes)?;
        m.serialize_entry("temperature", &l.temperature)?;
        m.serialize_entry("max_unwritten_records", &l.max_unwritten_records)?;
        m.end()
    }
}

/// `"off"`, `"none"` or empty: no sandbox; else the engine's socket.
fn sandbox_setting(s: &str) -> Option<String> {
    match s.trim() {
        "" | "off" | "none" => None,
        s => Some(s.to_string()),
    }
}

fn expand_home(s: &str) -> PathBuf {
    if let Some(rest) = s.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_merge_and_bad_values_are_named() {
        let c = Config::default();
        let m = c
            .merged(&json!({"keel": {"model": {"endpoint": "http://h:1/v1/", "name": "qwen"}, "store": "/tmp/k.db", "limits": {"max_steps": 3}}}))
            .unwrap();
        assert_eq!(m.endpoint.as_deref(), Some("http://h:1/v1"));
        assert_eq!(m.model, "qwen");
        assert_eq!(m.store, PathBuf::from("/tmp/k.db"));
        assert_eq!(m.limits.max_steps, 3);
        assert_eq!(m.limits.watch_secs, Limits::default().watch_secs);
        let e = c.merged(&json!({"limits": {"max_steps": "many"}})).unwrap_err();
        assert!(e.contains("limits"), "{e}");
        let e = c.merged(&json!({"model": {"endpoint": "ftp://x"}})).unwrap_err();
        assert!(e.contains("http"), "{e}");
        assert_eq!(c.merged(&Value::Null).unwrap(), c);
        assert_eq!(c.merged(&json!({"store_sync": "full"})).unwrap().store_sync, keel_trajectory::Durability::Full);
        let e = c.merged(&json!({"store_sync": "paranoid"})).unwrap_err();
        assert!(e.contains("store_sync"), "{e}");
    }

    #[test]
    fn a_config_file_is_the_json_of_the_options() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("keel.json");
        std::fs::write(&f, r#"{"model": {"endpoint": "http://h:2/v1", "api_key_env": "MY_KEY"}, "sandbox": "off", "store": "/tmp/x.db"}"#).unwrap();
        let c = Config::from_file(&f).unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("http://h:2/v1"));
        assert_eq!(c.api_key_env.as_deref(), Some("MY_KEY"));
        assert_eq!(c.sandbox, None);
        assert_eq!(c.store, PathBuf::from("/tmp/x.db"));
        std::fs::write(&f, "model = 1").unwrap();
        assert!(Config::from_file(&f).unwrap_err().contains("not JSON"));
        assert!(Config::from_file(&dir.path().join("missing.json")).unwrap_err().contains("cannot read"));
        assert_eq!(sandbox_setting(" off "), None);
        assert_eq!(sandbox_setting("unix:///run/podman.sock").as_deref(), Some("unix:///run/podman.sock"));
    }

    /// A relative `store` from a client lands in the workspace root, not in keel-lsp's working
    /// directory; with no root it is refused and the store stays as it was.
    #[test]
    fn a_relative_store_resolves_against_the_base_or_is_refused() {
        let c = Config::default();
        let root = std::path::Path::new("/home/u/project");
        let m = c.merged_at(&json!({"store": "data/keel.db"}), Some(root)).unwrap();
        assert_eq!(m.store, PathBuf::from("/home/u/project/data/keel.db"));
        assert_eq!(c.merged_at(&json!({"store": "/abs/k.db"}), Some(root)).unwrap().store, PathBuf::from("/abs/k.db"));
        let pg = "postgres://keel@127.0.0.1:5432/keel";
        assert_eq!(c.merged_at(&json!({"store": pg}), Some(root)).unwrap().store, PathBuf::from(pg));
        assert_eq!(c.merged(&json!({"store": pg})).unwrap().store, PathBuf::from(pg));
        let e = c.merged(&json!({"store": "keel.db", "model": {"name": "other"}})).unwrap_err();
        assert!(e.contains("`keel.db` is a relative path"), "{e}");
        // A config file's relative store is next to the file.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("keel.json");
        std::fs::write(&f, r#"{"store": "k.db"}"#).unwrap();
        assert_eq!(Config::from_file(&f).unwrap().store, dir.path().join("k.db"));
    }

    #[test]
    fn the_sandbox_image_is_an_option() {
        let c = Config { sandbox_image: None, ..Config::default() };
        let m = c.merged(&json!({"keel": {"sandbox_image": " localhost/keel-python:1 "}})).unwrap();
        assert_eq!(m.sandbox_image.as_deref(), Some("localhost/keel-python:1"));
        // Empty: back to the base image; absent: unchanged.
        assert_eq!(m.merged(&json!({"sandbox_image": ""})).unwrap().sandbox_image, None);
        assert_eq!(m.merged(&json!({"verify": "pytest"})).unwrap().sandbox_image, m.sandbox_image);
        let e = c.merged(&json!({"sandbox_image": 3})).unwrap_err();
        assert!(e.contains("sandbox_image") || e.contains("invalid type"), "{e}");
    }
}
