//! States and their hashes. The state before a step is its prompt (messages and tool schema); equal
//! prompts are the same state, in one episode or across episodes.

use serde_json::Value;

use crate::types::Prompt;

/// A stable hash of a prompt: blake3 over canonical JSON (object keys sorted), hex, 32 characters.
pub fn state_hash(prompt: &Prompt) -> String {
    let value = serde_json::to_value(prompt).unwrap_or(Value::Null);
    let mut buf = Vec::with_capacity(4096);
    write_canonical(&value, &mut buf);
    let hash = blake3::hash(&buf);
    hash.to_hex()[..32].to_string()
}

/// Whether a preference pair (TRL JSON with `meta.state_hash`) is held out of training at `share`:
/// by its state, so every pair at one state falls on the same side, run after run.
pub fn pair_held_out(pair: &Value, share: f64) -> bool {
    let key = pair.pointer("/meta/state_hash").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| pair["prompt"].to_string());
    let h = blake3::hash(key.as_bytes());
    let x = u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap_or([0; 8])) as f64 / u64::MAX as f64;
    x < share
}

/// JSON with object keys in sorted order, so equal values hash equally whatever map type made them.
pub fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                write_canonical(&m[k], out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(x, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Message;

    #[test]
    fn hash_is_stable_and_sensitive() {
        let p = Prompt { messages: vec![Message::system("s"), Message::user("u")], tools: crate::action::tools_schema() };
        assert_eq!(state_hash(&p), state_hash(&p.clone()));
        let mut q = p.clone();
        q.messages[1].content = Some("v".into());
        assert_ne!(state_hash(&p), state_hash(&q));
        let a: Value = serde_json::from_str(r#"{"b":1,"a":[1,{"d":2,"c":3}]}"#).unwrap();
        let mut buf = Vec::new();
        write_canonical(&a, &mut buf);
        assert_eq!(String::from_utf8(buf).unwrap(), r#"{"a":[1,{"c":3,"d":2}],"b":1}"#);
    }
}
