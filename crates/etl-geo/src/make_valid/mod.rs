//! `--make-valid`: polygons that break the OGC rules (self-intersections, rings crossing or
//! sharing edges, holes outside their shell, overlapping parts) are rebuilt; valid ones are left
//! exactly as they are.
//!
//! The rebuild is i_overlay's overlay (robust integer arithmetic on a grid scaled to the
//! shape's own extent, so positions move by at most about 1e-9 of its size): each polygon's
//! rings under the even-odd rule (a bow-tie becomes two triangles, a hole outside its shell
//! becomes an area of its own — what GEOS's MakeValid "linework" method does), then the parts of
//! a multipolygon under the non-zero rule (overlapping parts are merged). Collinear vertices
//! are kept, and the output is OGC-valid (no self-touching rings). A polygon with no area left
//! (all its rings collapsed) cannot be repaired: that is an error for the caller to reject.

mod check;

use geo_types::{Coord, Geometry, LineString, MultiPolygon, Polygon};
use i_overlay::core::fill_rule::FillRule;
use i_overlay::core::solver::Solver;
use i_overlay::float::overlay::OverlayOptions;
use i_overlay::float::simplify::SimplifyShape;

/// Deepest geometry collection nesting repaired (readers stop far earlier).
const MAX_DEPTH: usize = 64;

type Shape = Vec<Vec<[f64; 2]>>;

/// What [`make_valid`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to repair: the geometry is unchanged.
    Valid,
    /// Some polygon was rebuilt.
    Repaired,
}

/// Repairs the invalid polygons of `geometry` in place; an error (one line) when a polygon has
/// no area left to keep.
pub fn make_valid(geometry: &mut Geometry<f64>) -> Result<Outcome, String> {
    repair_at(geometry, 0)
}

fn repair_at(geometry: &mut Geometry<f64>, depth: usize) -> Result<Outcome, String> {
    match geometry {
        Geometry::Polygon(p) => {
            if judge(std::slice::from_ref(p))? == Outcome::Valid {
                return Ok(Outcome::Valid);
            }
            let mut parts = rebuild(std::slice::from_ref(p))?;
            recheck(&parts)?;
            *geometry = if parts.len() == 1 {
                Geometry::Polygon(parts.remove(0))
            } else {
                Geometry::MultiPolygon(MultiPolygon(parts))
            };
            Ok(Outcome::Repaired)
        }
        Geometry::MultiPolygon(mp) => {
            if judge(&mp.0)? == Outcome::Valid {
                return Ok(Outcome::Valid);
            }
            let parts = rebuild(&mp.0)?;
            recheck(&parts)?;
            mp.0 = parts;
            Ok(Outcome::Repaired)
        }
        Geometry::GeometryCollection(gc) => {
            if depth >= MAX_DEPTH {
                return Err(format!(
                    "geometry collections nested deeper than {MAX_DEPTH}"
                ));
            }
            let mut result = Outcome::Valid;
            for g in &mut gc.0 {
                if repair_at(g, depth + 1)? == Outcome::Repaired {
                    result = Outcome::Repaired;
                }
            }
            Ok(result)
        }
        _ => Ok(Outcome::Valid),
    }
}

/// Whether the polygons need a rebuild; an error for ones too tangled to rebuild.
fn judge(polygons: &[Polygon<f64>]) -> Result<Outcome, String> {
    match check::verdict(polygons) {
        check::Verdict::Valid => Ok(Outcome::Valid),
        check::Verdict::Invalid => Ok(Outcome::Repaired),
        check::Verdict::TooComplex => Err(
            "the polygon is too tangled to repair (over 100,000 crossing edges, or too many to check)"
                .to_owned(),
        ),
    }
}

/// The rebuilt polygons pass the same check the input failed, or the feature is rejected:
/// `--make-valid` does not hand on a geometry the check finds invalid. Output too large for
/// the check's work budget is kept unchecked (the overlay's OGC output is valid by
/// construction); the check's exact-zero orientation tests may flag a near-touch the overlay
/// left, and such a feature is then rejected rather than written doubtful.
fn recheck(parts: &[Polygon<f64>]) -> Result<(), String> {
    match check::verdict(parts) {
        check::Verdict::Valid | check::Verdict::TooComplex => Ok(()),
        check::Verdict::Invalid => {
            Err("the polygon could not be rebuilt as a valid one (the repaired rings still cross or touch)".to_owned())
        }
    }
}

fn options(ogc: bool) -> OverlayOptions<f64> {
    OverlayOptions {
        preserve_input_collinear: true,
        preserve_output_collinear: true,
        ogc,
        ..OverlayOptions::default()
    }
}

/// The overlay of `shapes` under `rule`. i_overlay 4.5 can fail an internal assertion in its
/// OGC extraction on some inputs (found by the `make_valid` fuzz target): that panic is caught
/// and the overlay is run again without the OGC step (rings may then touch themselves at a
/// point, and [`recheck`] rejects such output); a second failure is an error for the caller to
/// reject, never a panic.
fn overlay<R>(shapes: &R, rule: FillRule) -> Result<Vec<Shape>, String>
where
    R: SimplifyShape<[f64; 2], f64> + ?Sized,
{
    let run = |ogc: bool| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            shapes.simplify_shape_custom(rule, options(ogc), Solver::default())
        }))
    };
    run(true).or_else(|_| run(false)).map_err(|_| {
        "the polygon could not be rebuilt (the overlay library failed on it)".to_owned()
    })
}

/// A ring as an i_overlay contour: open (no repeated closing position).
fn contour(ring: &LineString<f64>) -> Vec<[f64; 2]> {
    let mut points: Vec<[f64; 2]> = ring.0.iter().map(|c| [c.x, c.y]).collect();
    if points.len() > 1 && points.first() == points.last() {
        points.pop();
    }
    points
}

fn ring(contour: &[[f64; 2]]) -> LineString<f64> {
    let mut coords: Vec<Coord<f64>> = contour.iter().map(|&[x, y]| Coord { x, y }).collect();
    if let Some(&first) = coords.first() {
        coords.push(first);
    }
    LineString(coords)
}

/// The valid polygons covering what `polygons` cover (each under even-odd, the parts together
/// under non-zero).
fn rebuild(polygons: &[Polygon<f64>]) -> Result<Vec<Polygon<f64>>, String> {
    let mut shapes: Vec<Shape> = Vec::new();
    for p in polygons {
        let rings: Shape = std::iter::once(p.exterior())
            .chain(p.interiors())
            .map(contour)
            .filter(|c| c.len() >= 3)
            .collect();
        if rings.is_empty() {
            continue;
        }
        shapes.extend(overlay(&rings, FillRule::EvenOdd)?);
    }
    if polygons.len() > 1 && shapes.len() > 1 {
        shapes = overlay(&shapes, FillRule::NonZero)?;
    }
    let out: Vec<Polygon<f64>> = shapes
        .iter()
        .filter_map(|shape| {
            let (outer, holes) = shape.split_first()?;
            (outer.len() >= 3).then(|| {
                Polygon::new(
                    ring(outer),
                    holes
                        .iter()
                        .filter(|h| h.len() >= 3)
                        .map(|h| ring(h))
                        .collect(),
                )
            })
        })
        .collect();
    if out.is_empty() {
        return Err("the polygon has no area left once repaired (its rings collapse)".to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
