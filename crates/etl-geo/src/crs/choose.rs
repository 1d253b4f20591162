//! Which datum transformation each position goes through, as PROJ chooses it: a datum often has
//! several transformations to WGS 84, each for its own area (NAD27 has dozens, from Cuba to
//! Alaska). proj-core picks one for the whole CRS; PROJ (and so GDAL) picks, for each position,
//! the most accurate one whose area holds it. This does the latter among the transformations
//! that need no grid file and that EPSG has not deprecated (kept for history; some are
//! kilometres off, e.g. CH1903's EPSG:1508); a position outside all of their areas takes the
//! one proj-core picked (one transformation for the whole edge of a dataset, not a jump to "no
//! shift" as GDAL makes).

use std::sync::OnceLock;

use proj_core::{AreaOfUse, CrsDef, SelectionOptions, Transform};

use super::guarded;

/// The transformations of one CRS to WGS 84.
pub(super) struct Operations {
    /// For positions outside every area below.
    default: Transform,
    /// Most accurate first (then the smaller area), with the area each is for.
    by_area: Vec<(AreaOfUse, Transform)>,
    /// The inverses of `default` (first) and of `by_area` (in order), made on first use:
    /// reading never needs them, writing in this CRS (`--t-srs`) needs them for every position.
    inverses: OnceLock<Vec<Result<Transform, String>>>,
}

impl Operations {
    /// Built from what proj-core selected for the whole CRS (`selected`; for a definition
    /// with its own TOWGS84 that is the only transformation used).
    pub(super) fn new(
        source: &CrsDef,
        selected: Transform,
        own_shift: bool,
    ) -> Result<Operations, String> {
        let target = super::wgs84_def()?;
        if own_shift {
            return Ok(Operations {
                default: selected,
                by_area: Vec::new(),
                inverses: OnceLock::new(),
            });
        }
        let candidates =
            guarded(|| proj_core::registry::operation_candidates_between(source, &target))?;
        let mut usable: Vec<(f64, f64, AreaOfUse, Transform)> = Vec::new();
        for c in candidates.iter().filter(|c| !c.deprecated && !c.uses_grids) {
            let (Some(id), Some(area)) = (c.id, c.area_of_use.clone()) else {
                continue;
            };
            let options = SelectionOptions::new().with_operation(id);
            let Ok(t) = guarded(|| {
                Transform::from_crs_defs_with_selection_options(source, &target, options)
            }) else {
                continue;
            };
            let accuracy = c.accuracy.as_ref().map_or(f64::INFINITY, |a| a.meters);
            let size = span(area.west, area.east) * (area.north - area.south).abs();
            usable.push((accuracy, size, area, t));
        }
        usable.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let default = if selected.selected_operation().deprecated {
            // Never the deprecated one: the best current transformation for the whole CRS.
            match usable.first() {
                Some((_, _, _, t)) => t.clone(),
                None => {
                    return Err(format!(
                        "the only transformation to WGS 84 known for it ({}) is deprecated",
                        selected.selected_operation().name
                    ));
                }
            }
        } else {
            selected
        };
        // One transformation, or none with an area: nothing to choose per position.
        let by_area = if usable.len() > 1 {
            usable.into_iter().map(|(_, _, a, t)| (a, t)).collect()
        } else {
            Vec::new()
        };
        Ok(Operations {
            default,
            by_area,
            inverses: OnceLock::new(),
        })
    }

    /// The transformation a position goes through, given where it lands approximately: the
    /// best one whose area holds it, else the one whose area is nearest (not proj-core's own
    /// pick, which for NAD27 is Panama's: 50–100 m off along the US and Alaskan coasts).
    fn for_position(&self, lon: f64, lat: f64) -> &Transform {
        match self.position_index(lon, lat) {
            Some(i) => &self.by_area[i].1,
            None => &self.default,
        }
    }

    /// [`Self::for_position`] as an index into `by_area` (`None`: the default).
    fn position_index(&self, lon: f64, lat: f64) -> Option<usize> {
        let at = proj_core::Coord { x: lon, y: lat };
        if let Some(i) = self
            .by_area
            .iter()
            .position(|(area, _)| area.contains_point(at))
        {
            return Some(i);
        }
        self.by_area
            .iter()
            .enumerate()
            .map(|(i, (area, _))| (distance(area, lon, lat), i))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, i)| i)
    }

    /// One position (in the CRS's own axis order) to WGS 84 longitude/latitude.
    pub(super) fn convert(&self, input: (f64, f64)) -> proj_core::Result<(f64, f64)> {
        let first = self.default.convert(input)?;
        if self.by_area.is_empty() {
            return Ok(first);
        }
        // Every datum shift is metres to hundreds of metres: where the default puts the
        // position tells which area it is in.
        let chosen = self.for_position(first.0, first.1);
        // The same operation as the default (by id; the list holds its own copy): done.
        let same = std::ptr::eq(chosen, &self.default)
            || (chosen.selected_operation().id.is_some()
                && chosen.selected_operation().id == self.default.selected_operation().id);
        if same {
            Ok(first)
        } else {
            chosen.convert(input)
        }
    }

    /// WGS 84 longitude/latitude to a position in the CRS's own axis order, through the
    /// inverse of the transformation [`Self::convert`] would take for that position.
    pub(super) fn convert_inverse(&self, lon: f64, lat: f64) -> Result<(f64, f64), String> {
        let inverses = self.inverses.get_or_init(|| {
            std::iter::once(&self.default)
                .chain(self.by_area.iter().map(|(_, t)| t))
                .map(|t| guarded(|| t.inverse()))
                .collect()
        });
        let slot = self.position_index(lon, lat).map_or(0, |i| i + 1);
        match inverses.get(slot) {
            Some(Ok(t)) => t.convert((lon, lat)).map_err(|e| e.to_string()),
            Some(Err(e)) => Err(format!("no inverse: {e}")),
            None => Err("no inverse transformation".to_owned()),
        }
    }
}

/// Degrees of longitude from `west` east to `east` (an area across the antimeridian has
/// west > east).
fn span(west: f64, east: f64) -> f64 {
    if west <= east {
        east - west
    } else {
        360.0 - (west - east)
    }
}

/// How far (in degrees, near enough to rank) a position is from an area.
fn distance(area: &AreaOfUse, lon: f64, lat: f64) -> f64 {
    let wrap = |d: f64| {
        let d = d.rem_euclid(360.0);
        d.min(360.0 - d)
    };
    let inside_lon = if area.west <= area.east {
        (area.west..=area.east).contains(&lon)
    } else {
        lon >= area.west || lon <= area.east
    };
    let dx = if inside_lon {
        0.0
    } else {
        wrap(lon - area.west).min(wrap(lon - area.east))
    };
    let dy = if lat < area.south {
        area.south - lat
    } else if lat > area.north {
        lat - area.north
    } else {
        0.0
    };
    dx.hypot(dy)
}
