//! Pieces every training loop shares: the learning-rate schedule, gradient clipping and the
//! non-finite guard, and the DPO objective itself.

use tch::{Kind, Tensor};

/// Linear warm-up to the peak rate, then linear or cosine decay towards zero (as transformers'
/// `get_linear_schedule_with_warmup` / `get_cosine_schedule_with_warmup`), except that no step of
/// the run has a rate of zero: transformers gives the first update a rate of 0, and in a run of one
/// optimizer step (the schedule's usual run on a handful of new pairs: `ceil(0.1 × 1)` = 1
/// warm-up step) that was the only update, so the candidate came out identical to the base.
/// Warm-up step `s` gets `peak·(s+1)/(w+1)`; the decay reaches zero one step after the last.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    pub peak: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
    pub cosine: bool,
}

impl LrSchedule {
    /// The rate for optimizer step `step` (0-based: the rate used by the `step+1`-th update).
    pub fn at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / (self.warmup_steps + 1) as f64;
        }
        let total = self.total_steps.max(1);
        let decay = total.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / decay as f64).clamp(0.0, 1.0);
        if self.cosine {
            self.peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        } else {
            self.peak * (1.0 - progress)
        }
    }
}

/// Clips the global L2 norm of the gradients of `params` to `max_norm` (when positive) and returns
/// the norm before clipping, as `torch.nn.utils.clip_grad_norm_` does.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> f64 {
    let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).filter(|g| g.defined()).collect();
    if grads.is_empty() {
        return 0.0;
    }
    let total = tch::no_grad(|| {
        let sq: Vec<Tensor> = grads.iter().map(|g| g.to_kind(Kind::Float).pow_tensor_scalar(2).sum(Kind::Float)).collect();
        Tensor::stack(&sq, 0).sum(Kind::Float).sqrt().double_value(&[])
    });
    if max_norm > 0.0 && total.is_finite() && total > max_norm {
        let scale = max_norm / (total + 1e-6);
        tch::no_grad(|| {
            for g in &grads {
                let _ = g.shallow_clone().g_mul_scalar_(scale);
            }
        });
    }
    total
}

/// The batch terms of sigmoid DPO, from summed completion log-probs of shape `(b,)`.
pub struct DpoTerms {
    /// Mean of `-log σ(β((π_c − ρ_c) − (π_r − ρ_r)))`; differentiable.
    pub loss: Tensor,
    /// `β(π_c − ρ_c)`, detached, `(b,)`.
    pub chosen_rewards: Tensor,
    /// `β(π_r − ρ_r)`, detached, `(b,)`.
    pub rejected_rewards: Tensor,
}

/// Sigmoid DPO (Rafailov et al.; TRL's `loss_type="sigmoid"` with no label smoothing).
pub fn dpo_loss(policy_chosen: &Tensor, policy_rejected: &Tensor, ref_chosen: &Tensor, ref_rejected: &Tensor, beta: f64) -> DpoTerms {
    let chosen_logratio = policy_chosen - ref_chosen;
    let rejected_logratio = policy_rejected - ref_rejected;
    let logits = (&chosen_logratio - &rejected_logratio) * beta;
    let loss = -logits.log_sigmoid().mean(Kind::Float);
    DpoTerms {
        loss,
        chosen_rewards: (chosen_logratio * beta).detach(),
        rejected_rewards: (rejected_logratio * beta).detach(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let s = LrSchedule { peak: 1e-3, warmup_steps: 10, total_steps: 110, cosine: false };
        assert!((s.at(0) - 1e-3 / 11.0).abs() < 1e-12);
        assert!((s.at(4) - 5e-3 / 11.0).abs() < 1e-12);
        assert!((s.at(10) - 1e-3).abs() < 1e-12);
        assert!((s.at(60) - 5e-4).abs() < 1e-12);
        assert!(s.at(110).abs() < 1e-12);
        let c = LrSchedule { cosine: true, ..s };
        assert!((c.at(60) - 5e-4).abs() < 1e-12);
        assert!(c.at(35) > s.at(35));
    }

    /// A short run (a few new pairs, one epoch) must still train: every step of the run has a
    /// positive rate. Before, a run of one step had one update at rate 0.
    #[test]
    fn every_step_of_a_short_run_has_a_positive_rate() {
        for total in 1..=25u64 {
            for warmup_ratio in [0.0, 0.1, 0.5, 1.0] {
                for cosine in [false, true] {
                    let warmup_steps = (total as f64 * warmup_ratio).ceil() as u64;
                    let s = LrSchedule { peak: 1e-3, warmup_steps, total_steps: total, cosine };
                    for step in 0..total {
                        let lr = s.at(step);
                        assert!(lr > 0.0 && lr <= 1e-3, "total {total} warm-up {warmup_steps} cosine {cosine}: step {step} has rate {lr}");
                    }
                }
            }
        }
    }

    #[test]
    fn dpo_loss_is_ln2_when_policy_equals_reference() {
        let lp = Tensor::from_slice(&[-3.0f32, -7.5, -1.25]);
        let t = dpo_loss(&lp, &(&lp - 1.0), &lp, &(&lp - 1.0), 0.1);
        assert!((t.loss.double_value(&[]) - std::f64::consts::LN_2).abs() < 1e-6);
        assert_eq!(t.chosen_rewards.abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    #[test]
    fn dpo_loss_matches_the_formula() {
        let pc = Tensor::from_slice(&[-2.0f32, -4.0]);
        let pr = Tensor::from_slice(&[-3.0f32, -1.0]);
        let rc = Tensor::from_slice(&[-2.5f32, -4.0]);
        let rr = Tensor::from_slice(&[-2.5f32, -2.0]);
        let beta = 0.5;
        let t = dpo_loss(&pc, &pr, &rc, &rr, beta);
        let z = |c: f64, r: f64| -(1.0 / (1.0 + (-(beta * (c - r))).exp())).ln();
        let want = (z(0.5, -0.5) + z(0.0, 1.0)) / 2.0;
        assert!((t.loss.double_value(&[]) - want).abs() < 1e-6, "{} vs {want}", t.loss.double_value(&[]));
        assert!((t.chosen_rewards.double_value(&[0]) - 0.25).abs() < 1e-6);
        assert!((t.rejected_rewards.double_value(&[1]) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let p = Tensor::from_slice(&[3.0f32, 4.0]).set_requires_grad(true);
        let loss = (&p * &p).sum(Kind::Float) * 0.5; // grad = p = (3, 4), norm 5
        loss.backward();
        let norm = clip_grad_norm(std::slice::from_ref(&p), 1.0);
        assert!((norm - 5.0).abs() < 1e-5);
        let g = p.grad();
        let after = (g.double_value(&[0]).powi(2) + g.double_value(&[1]).powi(2)).sqrt();
        assert!((after - 1.0).abs() < 1e-4, "{after}");
    }
}
