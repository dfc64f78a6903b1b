//! AdamW over the adapter's variables, with its state in the open so that a checkpoint can save it
//! and a resumed run continue it exactly.
//!
//! tch's `nn::Optimizer` keeps Adam's moments inside libtorch where they cannot be read back, so
//! this is PyTorch's single-tensor `adamw` (`torch/optim/adamw.py`, `foreach=False`), written out:
//! decoupled weight decay, bias-corrected moments, `eps` added after the square root.

use std::path::Path;

use anyhow::{Context, Result, bail};
use tch::{Device, Kind, Tensor};

use crate::model::{Weights, weights};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// transformers' `TrainingArguments` defaults (weight decay 0).
    fn default() -> Self {
        AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// AdamW on a fixed, named list of parameters.
pub struct AdamW {
    pub config: AdamWConfig,
    names: Vec<String>,
    params: Vec<Tensor>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    /// Updates done so far.
    pub steps: u64,
}

impl AdamW {
    /// `params` in a fixed order (sorted by name by the caller), all requiring grad.
    pub fn new(params: Vec<(String, Tensor)>, config: AdamWConfig) -> AdamW {
        let (names, params): (Vec<String>, Vec<Tensor>) = params.into_iter().unzip();
        let zeros = |p: &Tensor| Tensor::zeros_like(p).set_requires_grad(false);
        let exp_avg = params.iter().map(zeros).collect();
        let exp_avg_sq = params.iter().map(zeros).collect();
        AdamW { config, names, params, exp_avg, exp_avg_sq, steps: 0 }
    }

    pub fn params(&self) -> &[Tensor] {
        &self.params
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    /// One update with learning rate `lr` (parameters without a gradient are left alone).
    pub fn step(&mut self, lr: f64) {
        self.steps += 1;
        let c = self.config;
        let t = self.steps as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        tch::no_grad(|| {
            for ((p, m), v) in self.params.iter().zip(&self.exp_avg).zip(&self.exp_avg_sq) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let mut p = p.shallow_clone();
                let (mut m, mut v) = (m.shallow_clone(), v.shallow_clone());
                if c.weight_decay != 0.0 {
                    let _ = p.g_mul_scalar_(1.0 - lr * c.weight_decay);
                }
                let _ = m.lerp_(&g, 1.0 - c.beta1);
                let _ = v.g_mul_scalar_(c.beta2).addcmul_(&g, &g.g_mul_scalar(1.0 - c.beta2));
                let denom = v.sqrt() / bc2_sqrt + c.eps;
                let _ = p.g_sub_(&(m.g_div(&denom) * (lr / bc1)));
            }
        });
    }

    /// Writes the moments (safetensors, f32); the step count goes in the checkpoint's state.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors = Vec::with_capacity(self.names.len() * 2 + 1);
        for ((n, m), v) in self.names.iter().zip(&self.exp_avg).zip(&self.exp_avg_sq) {
            tensors.push((format!("{n}.exp_avg"), m.to_device(Device::Cpu)));
            tensors.push((format!("{n}.exp_avg_sq"), v.to_device(Device::Cpu)));
        }
        weights::save(path, &tensors).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Reads what [`AdamW::save`] wrote, checking it matches these parameters; `steps` is the
    /// number of updates the moments have seen.
    pub fn load(&mut self, path: &Path, steps: u64) -> Result<()> {
        let w = Weights::open_files(&[path.to_path_buf()]).with_context(|| format!("reading {}", path.display()))?;
        for ((n, (m, v)), p) in self.names.iter().zip(self.exp_avg.iter_mut().zip(self.exp_avg_sq.iter_mut())).zip(&self.params) {
            for (suffix, dst) in [("exp_avg", &mut *m), ("exp_avg_sq", &mut *v)] {
                let name = format!("{n}.{suffix}");
                match w.shape(&name) {
                    Some(s) if s == p.size().as_slice() => {}
                    Some(s) => bail!("{}: `{name}` has shape {s:?}, the adapter needs {:?}", path.display(), p.size()),
                    None => bail!("{}: missing `{name}`", path.display()),
                }
                let t = w.load(&name, Kind::Float, Device::Cpu)?;
                tch::no_grad(|| dst.copy_(&t));
            }
        }
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_pytorch_adamw_by_hand() {
        // Two updates of a scalar with grad 2*p from p = 1: computed with torch.optim.AdamW(lr=0.1,
        // weight_decay=0.01) the values are 0.899 and 0.79817…; recomputed here by the formula.
        let p = Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
        let mut opt = AdamW::new(vec![("p".into(), p.shallow_clone())], AdamWConfig { weight_decay: 0.01, ..Default::default() });
        for _ in 0..2 {
            opt.zero_grad();
            let loss = (&p * &p).sum(Kind::Float);
            loss.backward();
            opt.step(0.1);
        }
        // Step 1: p = 1*(1-0.001) - 0.1 * 1 = 0.899 (m̂/√v̂ = 1).
        // Step 2: g = 1.798; m = 0.9*0.2 + 0.1*1.798 = 0.3598... computed in f64 below.
        let (b1, b2, eps, lr, wd) = (0.9f64, 0.999f64, 1e-8, 0.1, 0.01);
        let mut x = 1.0f64;
        let (mut m, mut v) = (0.0, 0.0);
        for t in 1..=2 {
            let g = 2.0 * x;
            x *= 1.0 - lr * wd;
            m = b1 * m + (1.0 - b1) * g;
            v = b2 * v + (1.0 - b2) * g * g;
            let mh = m / (1.0 - b1.powi(t));
            let denom = v.sqrt() / (1.0 - b2.powi(t)).sqrt() + eps;
            x -= lr * mh / denom;
        }
        assert!((p.double_value(&[0]) - x).abs() < 1e-6, "{} vs {x}", p.double_value(&[0]));
    }

    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut opt = AdamW::new(vec![("p".into(), p.shallow_clone())], AdamWConfig::default());
        (&p * &p).sum(Kind::Float).backward();
        opt.step(0.01);
        opt.save(&dir.path().join("o.safetensors")).unwrap();
        let q = Tensor::from_slice(&[0.0f32, 0.0]).set_requires_grad(true);
        let mut opt2 = AdamW::new(vec![("p".into(), q)], AdamWConfig::default());
        opt2.load(&dir.path().join("o.safetensors"), 1).unwrap();
        assert_eq!(opt2.steps, 1);
        assert!(opt2.exp_avg[0].allclose(&opt.exp_avg[0], 0.0, 0.0, false));
        assert!(opt2.exp_avg_sq[0].allclose(&opt.exp_avg_sq[0], 0.0, 0.0, false));
    }
}
