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
        put_row(&mut ids, &mut mask, len as usize, r, s, vocab)?;
        for j in s.prompt.len().max(1)..s.prompt.len() + s.completion.len() {
            count[r * (len as usize - 1) + j - 1] = 1.0;
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

/// Puts sequence `r`'s tokens into row `r` (of width `len`) of the flat `ids` and `mask` buffers.
fn put_row(ids: &mut [i64], mask: &mut [i64], len: usize, r: usize, s: &Sequence, vocab: i64) -> Result<()> {
    for (j, &t) in s.prompt.iter().chain(&s.completion).enumerate() {
        if t as i64 >= vocab {
            return Err(ModelError::Invalid(format!("sequence {r} has token {t} outside the vocabulary ({vocab})")));
        }
        ids[r * len + j] = t as i64;
        mask[r * len + j] = 1;
    }
    Ok(())
}

/// The sum of log-softmax over the *scored* completion tokens of each sequence, `(n,)` f32:
/// [`completion_logps`] with a mask over each completion (`None`: every token), as SFT on packed
/// episodes needs (the tokens between two steps are context, not trained on). Only the scored
/// positions are projected to the vocabulary.
pub fn scored_completion_logps(model: &Transformer, seqs: &[Sequence], scored: &[Option<&[bool]>]) -> Result<Tensor> {
    if seqs.len() != scored.len() {
        return Err(ModelError::Invalid(format!("{} sequences but {} masks", seqs.len(), scored.len())));
    }
    let device = model.device();
    let n = seqs.len() as i64;
    let len = seqs.iter().map(|s| s.prompt.len() + s.completion.len()).max().unwrap_or(0) as i64;
    let vocab = model.cfg.vocab_size;
    let mut ids = vec![0i64; (n * len) as usize];
    let mut mask = vec![0i64; (n * len) as usize];
    // Flat (row, position) of each scored prediction: hidden[r, j] predicts ids[r, j + 1].
    let (mut at, mut rows, mut targets) = (Vec::new(), Vec::new(), Vec::new());
    for (r, (s, m)) in seqs.iter().zip(scored).enumerate() {
        if let Some(m) = m
            && m.len() != s.completion.len()
        {
            return Err(ModelError::Invalid(format!("sequence {r}: a mask of {} for a completion of {} tokens", m.len(), s.completion.len())));
        }
        put_row(&mut ids, &mut mask, len as usize, r, s, vocab)?;
        for (c, &t) in s.completion.iter().enumerate() {
            let j = s.prompt.len() + c;
            if j >= 1 && m.is_none_or(|m| m[c]) {
                at.push((r * len as usize + j - 1) as i64);
                rows.push(r as i64);
                targets.push(t as i64);
            }
        }
    }
    if at.is_empty() {
        return Ok(Tensor::zeros([n], (Kind::Float, device)));
    }
    let ids = Tensor::from_slice(&ids).view([n, len]).to_device(device);
    let mask = Tensor::from_slice(&mask).view([n, len]).to_device(device);
    let hidden = model.forward_hidden(&ids, &mask, None);
    let width = hidden.size()[2];
    let picked_hidden = hidden.reshape([n * len, width]).index_select(0, &Tensor::from_slice(&at).to_device(device));
    let logits = model.logits(&picked_hidden).to_kind(Kind::Float);
    let targets = Tensor::from_slice(&targets).to_device(device).unsqueeze(-1);
    let logp = logits.gather(-1, &targets, false).squeeze_dim(-1) - logits.logsumexp([-1i64].as_slice(), false);
    Ok(Tensor::zeros([n], (Kind::Float, device)).index_add(0, &Tensor::from_slice(&rows).to_device(device), &logp))
}

/// Summed completion log-probs of preference pairs, `(2n,)` f32: the `n` chosen completions, then
/// the `n` rejected ones, each pair's shared prompt run through the model once
/// ([`Transformer::forward_shared_prefix`]). The same values as [`completion_logps`] on the
/// `2n` sequences; it falls back to that when a pair's prompts differ or a prompt is empty.
pub fn pair_logps(model: &Transformer, pairs: &[(&Sequence, &Sequence)]) -> Result<Tensor> {
    let shareable = pairs.iter().all(|(c, r)| c.prompt == r.prompt && !c.prompt.is_empty());
    if !shareable || pairs.is_empty() {
        let seqs: Vec<Sequence> = pairs.iter().map(|(c, _)| (*c).clone()).chain(pairs.iter().map(|(_, r)| (*r).clone())).collect();
        return completion_logps(model, &seqs);
    }
    let vocab = model.cfg.vocab_size;
    let n = pairs.len() as i64;
    let tp = pairs.iter().map(|(c, _)| c.prompt.len()).max().unwrap_or(0) as i64;
    let completions: Vec<&Vec<u32>> = pairs.iter().map(|(c, _)| &c.completion).chain(pairs.iter().map(|(_, r)| &r.completion)).collect();
    let tc = completions.iter().map(|c| c.len()).max().unwrap_or(0).max(1) as i64;
    let check = |t: u32, what: &str, i: usize| -> Result<i64> {
        if t as i64 >= vocab {
            return Err(ModelError::Invalid(format!("{what} {i} has token {t} outside the vocabulary ({vocab})")));
        }
        Ok(t as i64)
    };
    let mut pids = vec![0i64; (n * tp) as usize];
    let mut pmask = vec![0i64; (n * tp) as usize];
    for (i, (c, _)) in pairs.iter().enumerate() {
        for (j, &t) in c.prompt.iter().enumerate() {
            pids[i * tp as usize + j] = check(t, "prompt", i)?;
            pmask[i * tp as usize + j] = 1;
        }
    }
    let r = 2 * n;
    let mut cids = vec![0i64; (r * tc) as usize];
    let mut cmask = vec![0i64; (r * tc) as usize];
    for (i, c) in completions.iter().enumerate() {
        for (j, &t) in c.iter().enumerate() {
            cids[i * tc as usize + j] = check(t, "completion", i)?;
            cmask[i * tc as usize + j] = 1;
        }
    }
    let device = model.device();
    let prompt_of: Vec<i64> = (0..r).map(|i| i % n).collect();
    let plast: Vec<i64> = pairs.iter().map(|(c, _)| c.prompt.len() as i64 - 1).collect();
    let t = |v: &[i64], rows: i64, cols: i64| Tensor::from_slice(v).view([rows, cols]).to_device(device);
    let (cids, cmask) = (t(&cids, r, tc), t(&cmask, r, tc));
    let prompt_of = Tensor::from_slice(&prompt_of).to_device(device);
    let (ph, ch) = model.forward_shared_prefix(&t(&pids, n, tp), &t(&pmask, n, tp), &cids, &cmask, &prompt_of);
    // Completion token 0 is predicted from its prompt's last position, token j from completion
    // position j - 1.
    let h = ph.size()[2];
    let last = ph.gather(1, &Tensor::from_slice(&plast).to_device(device).view([n, 1, 1]).expand([n, 1, h], false), false);
    let first = last.index_select(0, &prompt_of);
    let hidden = if tc > 1 { Tensor::cat(&[first, ch.narrow(1, 0, tc - 1)], 1) } else { first };
    let logits = model.logits(&hidden).to_kind(Kind::Float);
    let picked = logits.gather(-1, &cids.unsqueeze(-1), false).squeeze_dim(-1);
    let logp = picked - logits.logsumexp([-1i64].as_slice(), false);
    Ok((logp * cmask.to_kind(Kind::Float)).sum_dim_intlist([1i64].as_slice(), false, Kind::Float))
}
