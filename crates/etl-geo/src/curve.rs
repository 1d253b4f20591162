//! Circular arcs (SQL/MM CircularString, and the arcs of CompoundCurve, CurvePolygon,
//! MultiCurve and MultiSurface) turned into straight segments, as GDAL does when a driver
//! without curves reads them.
//!
//! Each arc (three positions: start, a point on the arc, end) is cut at its middle position, so
//! every position the file gives is kept exactly, and each half is cut into equal steps of at
//! most [`STEP_DEGREES`] of the circle (GDAL's default `OGR_ARC_STEPSIZE`), computed in the
//! coordinates as stored (before any reprojection), as GDAL does. An arc whose three positions
//! are on one line is a straight line through them; one whose start and end are the same
//! position is the full circle through the middle one (counter-clockwise, as GDAL takes it).
//! The positions made for one geometry are bounded by [`MAX_POSITIONS`], so a small file cannot
//! ask for unbounded memory.

use geo_types::Coord;

/// The largest angle, in degrees, one straight segment spans of an arc.
pub(crate) const STEP_DEGREES: f64 = 4.0;

/// The most positions linearising one geometry may make (64 MiB of positions).
pub(crate) const MAX_POSITIONS: usize = 1 << 22;

/// Positions one geometry's arcs may still make.
#[derive(Debug)]
pub(crate) struct Budget(usize);

impl Default for Budget {
    fn default() -> Self {
        Budget(MAX_POSITIONS)
    }
}

impl Budget {
    fn spend(&mut self, n: usize) -> Result<(), String> {
        self.0 = self.0.checked_sub(n).ok_or_else(|| {
            format!("its curves would make more than {MAX_POSITIONS} positions as straight lines")
        })?;
        Ok(())
    }
}

/// Appends a CircularString's positions as straight segments to `out`. Its first position is
/// appended too unless `out` already ends there (a CompoundCurve's parts join).
pub(crate) fn circular_string(
    points: &[Coord<f64>],
    out: &mut Vec<Coord<f64>>,
    budget: &mut Budget,
) -> Result<(), String> {
    let Some(&first) = points.first() else {
        return Ok(());
    };
    if points.len() < 3 || points.len().is_multiple_of(2) {
        return Err(format!(
            "a CircularString needs 3, 5, 7… positions (arcs of three sharing their ends), not {}",
            points.len()
        ));
    }
    budget.spend(1)?;
    if out.last() != Some(&first) {
        out.push(first);
    }
    for arc in points.windows(3).step_by(2) {
        if let [p0, p1, p2] = arc {
            linearise(*p0, *p1, *p2, out, budget)?;
        }
    }
    Ok(())
}

/// Appends the arc `p0`–`p1`–`p2` after `p0` (which `out` already ends with).
fn linearise(
    p0: Coord<f64>,
    p1: Coord<f64>,
    p2: Coord<f64>,
    out: &mut Vec<Coord<f64>>,
    budget: &mut Budget,
) -> Result<(), String> {
    let finite = [p0, p1, p2]
        .iter()
        .all(|c| c.x.is_finite() && c.y.is_finite());
    if !finite || p0 == p1 || p1 == p2 {
        // Nothing to bend (validation judges non-finite positions).
        budget.spend(2)?;
        out.extend([p1, p2]);
        return Ok(());
    }
    let tau = std::f64::consts::TAU;
    if p0 == p2 {
        // A full circle whose diameter runs from p0 to p1.
        let centre = Coord {
            x: (p0.x + p1.x) / 2.0,
            y: (p0.y + p1.y) / 2.0,
        };
        let radius = ((p0.x - centre.x).powi(2) + (p0.y - centre.y).powi(2)).sqrt();
        let a0 = (p0.y - centre.y).atan2(p0.x - centre.x);
        steps(centre, radius, a0, tau / 2.0, p1, out, budget)?;
        return steps(centre, radius, a0 + tau / 2.0, tau / 2.0, p2, out, budget);
    }
    let cross = (p1.x - p0.x) * (p2.y - p0.y) - (p1.y - p0.y) * (p2.x - p0.x);
    let Some(centre) = circumcentre(p0, p1, p2) else {
        budget.spend(2)?;
        out.extend([p1, p2]);
        return Ok(());
    };
    let radius = ((p0.x - centre.x).powi(2) + (p0.y - centre.y).powi(2)).sqrt();
    let angle = |p: Coord<f64>| (p.y - centre.y).atan2(p.x - centre.x);
    let (a0, a1, a2) = (angle(p0), angle(p1), angle(p2));
    // The sweep from one angle to the next in the arc's direction.
    let sweep = |from: f64, to: f64| {
        if cross > 0.0 {
            (to - from).rem_euclid(tau)
        } else {
            -(from - to).rem_euclid(tau)
        }
    };
    steps(centre, radius, a0, sweep(a0, a1), p1, out, budget)?;
    steps(centre, radius, a1, sweep(a1, a2), p2, out, budget)
}

/// The centre of the circle through three positions, `None` when they are (nearly) on one line.
fn circumcentre(p0: Coord<f64>, p1: Coord<f64>, p2: Coord<f64>) -> Option<Coord<f64>> {
    // Relative to p0, for precision with large coordinates.
    let (bx, by) = (p1.x - p0.x, p1.y - p0.y);
    let (cx, cy) = (p2.x - p0.x, p2.y - p0.y);
    let d = 2.0 * (bx * cy - by * cx);
    let scale = (bx * bx + by * by).max(cx * cx + cy * cy);
    if d == 0.0 || !d.is_finite() || d.abs() <= scale * 1e-12 {
        return None;
    }
    let b2 = bx * bx + by * by;
    let c2 = cx * cx + cy * cy;
    let ux = (cy * b2 - by * c2) / d;
    let uy = (bx * c2 - cx * b2) / d;
    (ux.is_finite() && uy.is_finite()).then_some(Coord {
        x: p0.x + ux,
        y: p0.y + uy,
    })
}

/// Appends the positions from angle `from` over `sweep` radians, ending exactly at `end`.
fn steps(
    centre: Coord<f64>,
    radius: f64,
    from: f64,
    sweep: f64,
    end: Coord<f64>,
    out: &mut Vec<Coord<f64>>,
    budget: &mut Budget,
) -> Result<(), String> {
    let step = STEP_DEGREES.to_radians();
    // At most 90 steps per half arc: the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = ((sweep.abs() / step).ceil() as usize).clamp(1, 90);
    budget.spend(n)?;
    for i in 1..n {
        let a = from + sweep * (i as f64) / (n as f64);
        out.push(Coord {
            x: centre.x + radius * a.cos(),
            y: centre.y + radius * a.sin(),
        });
    }
    out.push(end);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use geo_types::coord;

    fn arc(points: &[Coord<f64>]) -> Vec<Coord<f64>> {
        let mut out = Vec::new();
        circular_string(points, &mut out, &mut Budget::default()).unwrap();
        out
    }

    fn on_circle(points: &[Coord<f64>], centre: Coord<f64>, radius: f64) {
        for p in points {
            let r = ((p.x - centre.x).powi(2) + (p.y - centre.y).powi(2)).sqrt();
            assert!((r - radius).abs() < 1e-9, "{p:?} is {r} from the centre");
        }
    }

    #[test]
    fn half_circle_keeps_its_positions_and_steps_at_most_4_degrees() {
        let given = [
            coord! {x: 1., y: 0.},
            coord! {x: 0., y: 1.},
            coord! {x: -1., y: 0.},
        ];
        let out = arc(&given);
        // 90° per half at 4° a step: 23 steps each.
        assert_eq!(out.len(), 1 + 23 + 23);
        assert_eq!(out[0], given[0]);
        assert_eq!(out[23], given[1]);
        assert_eq!(out[46], given[2]);
        on_circle(&out, coord! {x: 0., y: 0.}, 1.0);
        // Counter-clockwise through the top: every position has y >= 0.
        assert!(out.iter().all(|c| c.y >= -1e-12));
    }

    #[test]
    fn clockwise_arcs_go_the_other_way() {
        let out = arc(&[
            coord! {x: -1., y: 0.},
            coord! {x: 0., y: 1.},
            coord! {x: 1., y: 0.},
        ]);
        assert!(out.iter().all(|c| c.y >= -1e-12));
        let below = arc(&[
            coord! {x: -1., y: 0.},
            coord! {x: 0., y: -1.},
            coord! {x: 1., y: 0.},
        ]);
        assert!(below.iter().all(|c| c.y <= 1e-12));
    }

    #[test]
    fn full_circle_and_straight_arcs() {
        let full = arc(&[
            coord! {x: 2., y: 0.},
            coord! {x: 0., y: 0.},
            coord! {x: 2., y: 0.},
        ]);
        assert_eq!(full.len(), 1 + 45 + 45);
        on_circle(&full, coord! {x: 1., y: 0.}, 1.0);
        assert_eq!(full.first(), full.last());
        let straight = arc(&[
            coord! {x: 0., y: 0.},
            coord! {x: 1., y: 1.},
            coord! {x: 2., y: 2.},
        ]);
        assert_eq!(straight.len(), 3);
    }

    #[test]
    fn wrong_counts_and_budget() {
        let mut out = Vec::new();
        let two = [coord! {x: 0., y: 0.}, coord! {x: 1., y: 1.}];
        assert!(circular_string(&two, &mut out, &mut Budget::default()).is_err());
        let mut tiny = Budget(10);
        let half = [
            coord! {x: 1., y: 0.},
            coord! {x: 0., y: 1.},
            coord! {x: -1., y: 0.},
        ];
        let err = circular_string(&half, &mut out, &mut tiny).unwrap_err();
        assert!(err.contains("more than"), "{err}");
    }
}
