//! Parameterizations of the denoiser output and closed-form conversions between them.
//!
//! With `z_t = a x0 + b eps`, a prediction in any parameterization together with `z_t`
//! determines `(x0, eps)` by solving a 2x2 linear system:
//! - `eps`: `x0 = (z - b eps) / a`;
//! - `x0`: `eps = (z - a x0) / b`;
//! - `v = a eps - b x0`: `x0 = (a z - b v) / (a^2 + b^2)`, `eps = (b z + a v) / (a^2 + b^2)`;
//! - velocity `u = a' x0 + b' eps`: `x0 = (b' z - b u) / D`, `eps = (a u - a' z) / D` with
//!   `D = a b' - a' b`.

use crate::error::{Result, RuntimeError};
use crate::flows::{check_shapes, Flow};
use candle_core::Tensor;

/// What the denoiser predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parameterization {
    /// The velocity `u_t = dz_t/dt = a' x0 + b' eps` (sr name `velocity`, upstream `ut`).
    #[serde(alias = "ut")]
    Velocity,
    /// The noise `eps`.
    Eps,
    /// The clean data `x0`.
    #[serde(rename = "x0")]
    X0,
    /// `v = a eps - b x0`.
    V,
}

impl Parameterization {
    /// The sr name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Velocity => "velocity",
            Self::Eps => "eps",
            Self::X0 => "x0",
            Self::V => "v",
        }
    }
}

/// The clean data and noise `(x0, eps)` implied by `z_t` and a prediction at time `t`.
///
/// Exact division: at points where the system is singular (`a = 0` for `eps`, `b = 0` for
/// `x0`), the result is non-finite. Velocity needs a continuous flow.
pub fn solve(flow: &Flow, t: f64, z: f64, prediction: f64, from: Parameterization) -> Result<(f64, f64)> {
    let (a, b) = (flow.a(t), flow.b(t));
    Ok(match from {
        Parameterization::Eps => ((z - b * prediction) / a, prediction),
        Parameterization::X0 => (prediction, (z - a * prediction) / b),
        Parameterization::V => {
            let n = a * a + b * b;
            ((a * z - b * prediction) / n, (b * z + a * prediction) / n)
        }
        Parameterization::Velocity => {
            let (ap, bp) = (flow.a_prime(t)?, flow.b_prime(t)?);
            let d = flow.a_b_prime_minus_a_prime_b(t)?;
            if bp.is_infinite() {
                // D ~ a b' dominates: x0 = z / a, eps = 0 in the limit.
                (z / a, 0.0)
            } else {
                ((bp * z - b * prediction) / d, (a * prediction - ap * z) / d)
            }
        }
    })
}

/// Expresses `(x0, eps)` at time `t` in parameterization `to`.
pub fn compose(flow: &Flow, t: f64, x0: f64, eps: f64, to: Parameterization) -> Result<f64> {
    Ok(match to {
        Parameterization::Eps => eps,
        Parameterization::X0 => x0,
        Parameterization::V => flow.a(t) * eps - flow.b(t) * x0,
        Parameterization::Velocity => flow.a_prime(t)? * x0 + flow.b_prime(t)? * eps,
    })
}

/// Converts one prediction at time `t` with latent `z` from parameterization `from` to `to`.
pub fn convert(
    flow: &Flow,
    t: f64,
    z: f64,
    prediction: f64,
    from: Parameterization,
    to: Parameterization,
) -> Result<f64> {
    let velocity = from == Parameterization::Velocity || to == Parameterization::Velocity;
    if velocity && !flow.is_continuous() {
        return Err(RuntimeError::Unsupported("discrete diffusion has no velocity".into()));
    }
    if from == to {
        return Ok(prediction);
    }
    let (x0, eps) = solve(flow, t, z, prediction, from)?;
    compose(flow, t, x0, eps, to)
}

/// Converts predictions `[rows, features]` (row-major) with per-row times `t [rows]`.
pub fn convert_rows(
    flow: &Flow,
    t: &[f64],
    z: &[f64],
    prediction: &[f64],
    from: Parameterization,
    to: Parameterization,
) -> Result<Vec<f64>> {
    let features = row_features(t.len(), z.len())?;
    if prediction.len() != z.len() {
        return Err(RuntimeError::Shape(format!(
            "prediction has {} values, z_t {}",
            prediction.len(),
            z.len()
        )));
    }
    let mut out = Vec::with_capacity(z.len());
    for (i, (zi, pi)) in z.iter().zip(prediction).enumerate() {
        out.push(convert(flow, t[i / features], *zi, *pi, from, to)?);
    }
    Ok(out)
}

/// Features per row when `values` entries are laid out as `rows x features`.
pub(crate) fn row_features(rows: usize, values: usize) -> Result<usize> {
    if rows == 0 && values == 0 {
        return Ok(1);
    }
    if rows == 0 || !values.is_multiple_of(rows) || values == 0 {
        return Err(RuntimeError::Shape(format!("{values} values do not split into {rows} rows")));
    }
    Ok(values / rows)
}

impl Flow {
    /// The training target of `predict` for clean `x`, noise `eps` (`[B, V, F]`) and times
    /// `t` (`[B, V]`): velocity `a' x + b' eps`, `eps`, `x0` or `v = a eps - b x`.
    pub fn target(&self, predict: Parameterization, x: &Tensor, eps: &Tensor, t: &Tensor) -> Result<Tensor> {
        check_shapes(x, eps, t)?;
        match predict {
            Parameterization::Eps => Ok(eps.clone()),
            Parameterization::X0 => Ok(x.clone()),
            Parameterization::V => {
                let (a, b) = self.coefficient_tensors(t, x.dtype(), |ti| Ok((self.a(ti), self.b(ti))))?;
                Ok((eps.broadcast_mul(&a)? - x.broadcast_mul(&b)?)?)
            }
            Parameterization::Velocity => {
                let (ap, bp) = self.coefficient_tensors(t, x.dtype(), |ti| {
                    let bp = self.b_prime(ti)?;
                    // The velocity is unbounded where b' is infinite (linear_beta at t = 0);
                    // keep the training target finite there.
                    Ok((self.a_prime(ti)?, if bp.is_finite() { bp } else { 0.0 }))
                })?;
                Ok((x.broadcast_mul(&ap)? + eps.broadcast_mul(&bp)?)?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math_test_support::{assert_close, cases, close, flat, flow_for, load};

    const ALL: [Parameterization; 4] =
        [Parameterization::Eps, Parameterization::Velocity, Parameterization::X0, Parameterization::V];

    fn ref_name(p: Parameterization) -> &'static str {
        match p {
            Parameterization::Velocity => "ut",
            other => other.name(),
        }
    }

    #[test]
    fn conversions_match_closed_form_and_upstream() {
        let file = load("conditional_step.json");
        let mut upstream_wrong = Vec::new();
        for case in cases(&file, "conversion") {
            let name = case["flow"].as_str().unwrap_or_default();
            let flow = flow_for(name, &case["config"]);
            let t = flat(&case["t"]);
            let z = flat(&case["z_t"]);
            let pred = flat(&case["prediction"]);
            for from in ALL {
                for to in ALL {
                    let label = format!("{name} {} {}->{}", case["config"], from.name(), to.name());
                    let closed = &case["closed_form"][ref_name(from)][ref_name(to)];
                    let got = convert_rows(&flow, &t, &z, &pred, from, to);
                    if closed.is_null() {
                        // Only discrete diffusion lacks these: velocity is undefined there.
                        assert!(!flow.is_continuous(), "{label}: missing closed form");
                        assert!(got.is_err(), "{label}: diffusion must refuse velocity");
                        continue;
                    }
                    let got = got.unwrap();
                    if name == "continuous_cosine_logsnr" {
                        // The reference closed form uses upstream's derivatives, whose sign is wrong:
                        // with a', b' negated, velocity inputs and outputs flip sign.
                        let sign =
                            |p: Parameterization| if p == Parameterization::Velocity { -1.0 } else { 1.0 };
                        let flipped: Vec<f64> = pred.iter().map(|p| p * sign(from)).collect();
                        let alt: Vec<f64> = convert_rows(&flow, &t, &z, &flipped, from, to)
                            .unwrap()
                            .iter()
                            .map(|x| x * sign(to))
                            .collect();
                        assert_close(&label, &alt, &flat(closed), 1e-6, 1e-9);
                        let ap: Vec<f64> = t.iter().map(|&x| -flow.a_prime(x).unwrap()).collect();
                        assert_close(&label, &ap, &flat(&case["a_prime"]), 1e-6, 1e-9);
                    } else {
                        assert_close(&label, &got, &flat(closed), 1e-6, 1e-9);
                    }
                    let up = &case["upstream"][ref_name(from)][ref_name(to)];
                    if up.is_array() {
                        let up = flat(up);
                        if !got.iter().zip(&up).all(|(g, u)| close(*g, *u, 1e-6, 1e-9)) {
                            upstream_wrong.push(format!("{name}:{}->{}", from.name(), to.name()));
                        }
                    }
                }
            }
        }
        upstream_wrong.dedup();
        // Upstream conversions that disagree with the closed form: cosine's eps + z_t -> ut (sign
        // slip) and cosine_logsnr's velocity pairs (derivatives of the wrong sign); see
        // docs/DIFFERENCES.md.
        assert_eq!(
            upstream_wrong,
            [
                "cosine:eps->velocity",
                "continuous_cosine_logsnr:eps->velocity",
                "continuous_cosine_logsnr:velocity->x0"
            ]
        );
    }

    #[test]
    fn round_trips() {
        let flow = Flow::Cosine(crate::flows::CosineConfig { skew: 0.008 });
        for from in ALL {
            for to in ALL {
                let y = convert(&flow, 0.4, 0.3, -1.2, from, to).unwrap();
                let back = convert(&flow, 0.4, 0.3, y, to, from).unwrap();
                assert!((back + 1.2).abs() < 1e-12, "{from:?}->{to:?}");
            }
        }
        assert!(convert_rows(&flow, &[0.1, 0.2], &[1.0; 3], &[1.0; 3], ALL[0], ALL[1]).is_err());
    }
}
