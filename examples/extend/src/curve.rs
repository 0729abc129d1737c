//! The spiral every sample lies on: an Archimedean spiral of [`TURNS`] turns whose radius grows from
//! [`R_MIN`] to 1, so that it fills the square [-1, 1]².

use std::f64::consts::TAU;

/// Number of turns of the spiral.
pub const TURNS: f64 = 1.5;
/// Radius at the start of the spiral (its end has radius 1).
pub const R_MIN: f64 = 0.2;

/// The point at position `u` ∈ [0, 1] along the spiral.
pub fn point(u: f64) -> (f64, f64) {
    let angle = TAU * TURNS * u;
    let r = R_MIN + (1.0 - R_MIN) * u;
    (r * angle.cos(), r * angle.sin())
}

/// `n` points evenly spaced in `u` along the spiral (a polyline that follows it closely for large `n`).
pub fn polyline(n: usize) -> Vec<(f64, f64)> {
    (0..n).map(|i| point(i as f64 / (n - 1).max(1) as f64)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spiral_runs_from_the_inner_radius_to_the_unit_circle() {
        let (x, y) = point(0.0);
        assert!((x - R_MIN).abs() < 1e-12 && y.abs() < 1e-12);
        let (x, y) = point(1.0);
        assert!(((x * x + y * y).sqrt() - 1.0).abs() < 1e-12);
        assert_eq!(polyline(5).len(), 5);
    }
}
