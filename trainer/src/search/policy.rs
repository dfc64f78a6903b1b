//! Policies the search can sample from.
//!
//! [`EndpointPolicy`] asks any OpenAI-compatible chat endpoint (`keel-train serve`, vLLM, Ollama)
//! for `n` samples with a `seed`, with the tools schema, so the actions come as tool calls.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use keel_trajectory::{Message, ModelOutput, Prompt};
use serde_json::{Value, json};

use super::Policy;

pub struct EndpointPolicy {
    pub endpoint: String,
    pub model: String,
    pub temperature: f64,
    client: reqwest::blocking::Client,
    version: std::sync::Mutex<Option<String>>,
}

impl EndpointPolicy {
    pub fn new(endpoint: &str, model: &str, temperature: f64) -> Result<EndpointPolicy> {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(300)).build()?;
        Ok(EndpointPolicy { endpoint: endpoint.trim_end_matches('/').into(), model: model.into(), temperature, client, version: Default::default() })
    }
}

impl Policy for EndpointPolicy {
    fn sample(&self, prompt: &Prompt, k: usize, seed: u64) -> Result<Vec<ModelOutput>> {
        let body = json!({
            "model": self.model,
            "messages": prompt.messages,
            "tools": prompt.tools.as_ref(),
            "tool_choice": "auto",
            "temperature": self.temperature,
            "n": k,
            "seed": seed % (1u64 << 53),
        });
        let url = format!("{}/chat/completions", self.endpoint);
        let resp = self.client.post(&url).json(&body).send().with_context(|| format!("asking {url}"))?;
        let status = resp.status();
        let v: Value = resp.json().with_context(|| format!("reading the answer of {url}"))?;
        if !status.is_success() {
            bail!("{url} answered {status}: {v}");
        }
        if let Some(f) = v.get("system_fingerprint").and_then(Value::as_str).or_else(|| v.get("model").and_then(Value::as_str)) {
            *self.version.lock().unwrap() = Some(f.to_string());
        }
        let choices = v.get("choices").and_then(Value::as_array).context("no `choices` in the answer")?;
        choices
            .iter()
            .map(|c| {
                let m: Message = serde_json::from_value(c["message"].clone()).context("a choice without a message")?;
                Ok(ModelOutput { content: m.content, tool_calls: m.tool_calls })
            })
            .collect()
    }

    fn version(&self) -> Option<String> {
        self.version.lock().unwrap().clone()
    }
}

/// The policy model itself, in this process. It runs on its own engine thread (the one
/// `keel-train serve` uses), so samples asked for at once — the K alternatives of an expansion,
/// and the steps of rollouts and episodes running in parallel — run as one batch; each is a tool
/// call constrained to the tools' schema (so it always parses).
pub struct ModelPolicy {
    engine: crate::serve::engine::EngineHandle,
    pub temperature: f64,
    pub max_tokens: usize,
}

impl ModelPolicy {
    pub fn new(engine: crate::serve::tch_engine::TchEngine, temperature: f64, max_tokens: usize) -> ModelPolicy {
        let engine = crate::serve::engine::spawn(Box::new(engine), 16, std::time::Duration::from_millis(5));
        ModelPolicy { engine, temperature, max_tokens }
    }
}

impl Policy for ModelPolicy {
    fn sample(&self, prompt: &Prompt, k: usize, seed: u64) -> Result<Vec<ModelOutput>> {
        use crate::serve::engine::{GenRequest, ToolChoice};
        let calls = (0..k).map(|i| {
            let req = GenRequest {
                messages: prompt.messages.clone(),
                prompt: None,
                tools: prompt.tools.as_ref().clone(),
                tool_choice: ToolChoice::Required,
                temperature: self.temperature,
                top_p: 1.0,
                top_k: 0,
                max_tokens: self.max_tokens,
                stop: vec![],
                seed: Some(seed.wrapping_add(i as u64)),
            };
            self.engine.generate(req, None)
        });
        let outs = futures::executor::block_on(futures::future::join_all(calls));
        outs.into_iter().map(|(r, _)| r.map(|o| ModelOutput { content: (!o.content.is_empty()).then_some(o.content), tool_calls: o.tool_calls })).collect()
    }

    fn version(&self) -> Option<String> {
        Some(self.engine.version())
    }
}
