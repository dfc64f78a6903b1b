//! Sequence log-probabilities of completions given prompts: what `score` prints and what DPO
//! optimises.

use tch::{Kind, Tensor};

use super::error::{ModelError, Result};
use super::transformer::Transformer;

/// One (prompt, completion) pair of token ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    pub prompt: Vec<u32>,
    pub completion: Vec<u32>,
}

/// The sum of log-softmax over each completion's tokens, `(n,)` f32.
///
/// The sequences are right-padded into one batch; logits are only computed from the first
/// completion position on. Runs with grad if the caller has grad enabled (LoRA parameters are the
/// only ones that require it), so DPO can backpropagate through it; wrap in `tch::no_grad` to score.
/// The first token of a completion with an empty prompt has nothing to be predicted from and is
/// left out (as in TRL).
pub fn completion_logps(model: &Transformer, seqs: &[Sequence]) -> Result<Tensor> {
    if seqs.is_empty() {
        return Ok(Tensor::zeros([0], (Kind::Float, model.device())));
    }
    let vocab = model.cfg.vocab_size;
    let n = seqs.len() as i64;
    let len = seqs.iter().map(|s| s.prompt.len() + s.completion.len()).max().unwrap_or(0) as i64;
    if len < 2 {
        return Ok(Tensor::zeros([n], (Kind::Float, model.device())));
    }
    let mut ids = vec![0i64; (n * len) as usize];
    let mut mask = vec![0i64; (n * len) as usize];
    // target[j] = ids[j + 1]; it counts when position j + 1 is a completion token.
    let mut count = vec![0f32; (n * (len - 1)) as usize];
    for (r, s) in seqs.iter().enumerate() {
        let base = r * len as usize;
        for (j, &t) in s.prompt.iter().chain(&s.completion).enumerate() {
            if t as i64 >= vocab {
                return Err(ModelError::Invalid(format!("sequence {r} has token {t} outside the vocabulary ({vocab})")));
            }
            ids[base + j] = t as i64;
            mask[base + j] = 1;
            if j >= s.prompt.len() && j >= 1 {
                count[r * (len as usize - 1) + j - 1] = 1.0;
            }
        }
    }
    let start = seqs.iter().map(|s| s.prompt.len().max(1) - 1).min().unwrap_or(0) as i64;
    let device = model.device();
    let ids = Tensor::from_slice(&ids).view([n, len]).to_device(device);
    let mask = Tensor::from_slice(&mask).view([n, len]).to_device(device);
    let count = Tensor::from_slice(&count).view([n, len - 1]).to_device(device).narrow(1, start, len - 1 - start);
    let hidden = model.forward_hidden(&ids, &mask, None);
    let logits = model.logits(&hidden.narrow(1, start, len - 1 - start)).to_kind(Kind::Float);
    let targets = ids.narrow(1, start + 1, len - 1 - start).unsqueeze(-1);
    let picked = logits.gather(-1, &targets, false).squeeze_dim(-1);
    let logp = picked - logits.logsumexp([-1i64].as_slice(), false);
    Ok((logp * count).sum_dim_intlist([1i64].as_slice(), false, Kind::Float))
}
