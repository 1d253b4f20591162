//! Projection, clipping, tile scaling and simplification: specific cases and properties.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use etl_tiles::geom::{TileGeom, WorldGeom, clip, project, simplify, to_tile};
use etl_tiles::tile::{TileCoord, tile_bounds};
use geo_types::{Geometry, LineString, Point, Polygon};
use proptest::prelude::*;

const WORLD: i64 = 1 << 32;

/// Twice the signed area by the MVT formula (positive = exterior, clockwise with y down).
fn area2<T: Copy + Into<i64>>(ring: &[[T; 2]]) -> i128 {
    ring.windows(2)
        .map(|w| {
            let (x0, y0) = (i128::from(w[0][0].into()), i128::from(w[0][1].into()));
            let (x1, y1) = (i128::from(w[1][0].into()), i128::from(w[1][1].into()));
            x0 * y1 - x1 * y0
        })
        .sum()
}

fn square(x0: i64, y0: i64, x1: i64, y1: i64) -> Vec<[i64; 2]> {
    vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
}

/// The ring's vertex set, ignoring start point and direction.
fn vertex_set(ring: &[[i64; 2]]) -> std::collections::BTreeSet<[i64; 2]> {
    ring.iter().copied().collect()
}

#[test]
fn square_crossing_a_tile_corner() {
    let half = WORLD / 2;
    let tile = TileCoord { z: 1, x: 0, y: 0 };
    let bbox = tile_bounds(tile, 4096, 0);
    assert_eq!(bbox, [0, 0, half, half]);
    let g = WorldGeom::Polygons(vec![vec![square(
        half - 100,
        half - 100,
        half + 100,
        half + 100,
    )]]);
    let Some(WorldGeom::Polygons(p)) = clip(&g, bbox) else {
        panic!("square must survive")
    };
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].len(), 1);
    let ring = &p[0][0];
    assert_eq!(ring.first(), ring.last());
    assert_eq!(
        vertex_set(ring),
        vertex_set(&square(half - 100, half - 100, half, half))
    );
    // Each of the 4 tiles meeting at the corner gets its quarter.
    for (x, y) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
        let b = tile_bounds(TileCoord { z: 1, x, y }, 4096, 0);
        let Some(WorldGeom::Polygons(p)) = clip(&g, b) else {
            panic!("quarter in tile {x},{y}")
        };
        assert_eq!(area2(&p[0][0]).abs(), 2 * 100 * 100);
    }
}

#[test]
fn polygon_with_hole_clipped() {
    let g = WorldGeom::Polygons(vec![vec![
        square(0, 0, 1000, 1000),
        square(400, 400, 600, 600),
        square(100, 100, 200, 200),
    ]]);
    let Some(WorldGeom::Polygons(p)) = clip(&g, [500, 0, 2000, 2000]) else {
        panic!("polygon must survive")
    };
    assert_eq!(p.len(), 1);
    // The hole at 100..200 lies outside the box and is dropped; the other is cut in half.
    assert_eq!(p[0].len(), 2);
    assert_eq!(
        vertex_set(&p[0][0]),
        vertex_set(&square(500, 0, 1000, 1000))
    );
    assert_eq!(
        vertex_set(&p[0][1]),
        vertex_set(&square(500, 400, 600, 600))
    );
    // Clipping away the exterior drops the polygon, holes included.
    assert_eq!(clip(&g, [2000, 2000, 3000, 3000]), None);
}

#[test]
fn line_leaving_and_reentering() {
    let g = WorldGeom::Lines(vec![vec![[0, 5], [20, 5], [20, 8], [5, 8], [5, 9]]]);
    assert_eq!(
        clip(&g, [0, 0, 10, 10]),
        Some(WorldGeom::Lines(vec![
            vec![[0, 5], [10, 5]],
            vec![[10, 8], [5, 8], [5, 9]]
        ]))
    );
    // A line merely touching a corner leaves a single point, which is no line.
    let touch = WorldGeom::Lines(vec![vec![[-5, 5], [5, -5]]]);
    assert_eq!(clip(&touch, [0, 0, 10, 10]), None);
}

#[test]
fn points_use_the_half_open_box() {
    let g = WorldGeom::Points(vec![[0, 0], [10, 5], [9, 9], [-1, 3]]);
    assert_eq!(
        clip(&g, [0, 0, 10, 10]),
        Some(WorldGeom::Points(vec![[0, 0], [9, 9]]))
    );
}

#[test]
fn world_edges() {
    // lon ±180 land on the two world edges.
    let line = Geometry::LineString(LineString::from(vec![(-180.0, 0.0), (180.0, 0.0)]));
    let Some(WorldGeom::Lines(l)) = project(&line) else {
        panic!("line projects")
    };
    assert_eq!(l[0][0][0], 0);
    assert!(l[0][1][0] >= WORLD - 1 && l[0][1][0] < WORLD);
    let y = l[0][0][1];
    assert_eq!(y, WORLD / 2);

    // A buffered tile at the west edge extends past x = 0; the geometry is cut at its own edge.
    let west = TileCoord { z: 2, x: 0, y: 1 };
    let b = tile_bounds(west, 4096, 64);
    assert!(b[0] < 0);
    let Some(WorldGeom::Lines(c)) = clip(&WorldGeom::Lines(l.clone()), b) else {
        panic!("west tile keeps the line")
    };
    assert_eq!(c[0][0], [0, y]);
    assert_eq!(c[0][1], [b[2], y]);
    let Some(TileGeom::Lines(t)) = to_tile(&WorldGeom::Lines(c), west, 4096) else {
        panic!("to_tile keeps the line")
    };
    // y = 2^31 is the bottom edge of row 1 at z2.
    assert_eq!(t[0][0], [0, 4096]);
    assert_eq!(t[0][1], [4096 + 64, 4096]);

    // The east tile's buffer reaches past 2^32.
    let east = TileCoord { z: 2, x: 3, y: 1 };
    let b = tile_bounds(east, 4096, 64);
    assert!(b[2] > WORLD);
    let Some(WorldGeom::Lines(c)) = clip(&WorldGeom::Lines(l), b) else {
        panic!("east tile keeps the line")
    };
    assert_eq!(c[0][0], [b[0], y]);
    assert!(c[0][1][0] >= WORLD - 1);

    // A whole-world polygon at z0 fills the tile exactly.
    let world = Geometry::Polygon(Polygon::new(
        LineString::from(vec![
            (-180.0, 85.06),
            (180.0, 85.06),
            (180.0, -85.06),
            (-180.0, -85.06),
        ]),
        vec![],
    ));
    let g = project(&world).unwrap();
    let z0 = TileCoord { z: 0, x: 0, y: 0 };
    let clipped = clip(&g, tile_bounds(z0, 4096, 0)).unwrap();
    let Some(TileGeom::Polygons(p)) = to_tile(&clipped, z0, 4096) else {
        panic!("world polygon")
    };
    let ring = &p[0][0];
    assert!(area2(ring) > 0, "exterior must be positive: {ring:?}");
    let set: std::collections::BTreeSet<[i32; 2]> = ring.iter().copied().collect();
    assert_eq!(
        set,
        [[0, 0], [4096, 0], [4096, 4096], [0, 4096]]
            .into_iter()
            .collect()
    );
}

#[test]
fn to_tile_fixes_winding_and_drops_degenerates() {
    let tile = TileCoord { z: 0, x: 0, y: 0 };
    let unit = WORLD / 4096;
    // Counter-clockwise on screen (negative) exterior, positive hole: both must be reversed.
    let ext: Vec<[i64; 2]> = square(0, 0, 100 * unit, 100 * unit)
        .into_iter()
        .rev()
        .collect();
    let hole = square(10 * unit, 10 * unit, 20 * unit, 20 * unit);
    // A sliver that rounds to a line vanishes.
    let sliver = vec![
        [50 * unit, 50 * unit],
        [60 * unit, 50 * unit],
        [60 * unit, 50 * unit + 3],
        [50 * unit, 50 * unit],
    ];
    let g = WorldGeom::Polygons(vec![vec![ext, hole, sliver.clone()], vec![sliver]]);
    let Some(TileGeom::Polygons(p)) = to_tile(&g, tile, 4096) else {
        panic!("polygon survives")
    };
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].len(), 2);
    assert!(area2(&p[0][0]) > 0);
    assert!(area2(&p[0][1]) < 0);
    let g = WorldGeom::Lines(vec![vec![[0, 0], [1, 1], [2, 2]]]);
    assert_eq!(to_tile(&g, tile, 4096), None);
}

#[test]
fn project_kinds() {
    assert_eq!(
        project(&Geometry::Point(Point::new(0.0, 0.0))),
        Some(WorldGeom::Points(vec![[WORLD / 2, WORLD / 2]]))
    );
    let empty = Geometry::LineString(LineString::new(vec![]));
    assert_eq!(project(&empty), None);
}

fn coord() -> impl Strategy<Value = i64> {
    prop_oneof![
        8 => -2000i64..2000,
        1 => any::<i64>(),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
    ]
}

fn pt() -> impl Strategy<Value = [i64; 2]> {
    [coord(), coord()]
}

fn bbox() -> impl Strategy<Value = [i64; 4]> {
    (coord(), coord(), 1i64..3000, 1i64..3000)
        .prop_map(|(x, y, w, h)| [x, y, x.saturating_add(w), y.saturating_add(h)])
}

fn world_ring() -> impl Strategy<Value = Vec<[i64; 2]>> {
    prop::collection::vec(pt(), 3..12).prop_map(|mut r| {
        r.push(r[0]);
        r
    })
}

fn world_geom() -> impl Strategy<Value = WorldGeom> {
    prop_oneof![
        prop::collection::vec(pt(), 1..10).prop_map(WorldGeom::Points),
        prop::collection::vec(prop::collection::vec(pt(), 2..12), 1..4).prop_map(WorldGeom::Lines),
        prop::collection::vec(prop::collection::vec(world_ring(), 1..4), 1..3)
            .prop_map(WorldGeom::Polygons),
    ]
}

fn inside_closed(p: [i64; 2], b: [i64; 4]) -> bool {
    p[0] >= b[0] && p[0] <= b[2] && p[1] >= b[1] && p[1] <= b[3]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn clipped_geometry_lies_inside(g in world_geom(), b in bbox()) {
        match clip(&g, b) {
            None => {}
            Some(WorldGeom::Points(p)) => {
                prop_assert!(!p.is_empty());
                for q in p {
                    prop_assert!(q[0] >= b[0] && q[0] < b[2] && q[1] >= b[1] && q[1] < b[3]);
                }
            }
            Some(WorldGeom::Lines(ls)) => {
                prop_assert!(!ls.is_empty());
                for l in ls {
                    prop_assert!(l.len() >= 2);
                    prop_assert!(l.iter().all(|&q| inside_closed(q, b)), "{l:?} outside {b:?}");
                }
            }
            Some(WorldGeom::Polygons(ps)) => {
                prop_assert!(!ps.is_empty());
                for p in ps {
                    for r in p {
                        prop_assert!(r.len() >= 4);
                        prop_assert_eq!(r.first(), r.last());
                        prop_assert!(area2(&r) != 0);
                        prop_assert!(r.iter().all(|&q| inside_closed(q, b)), "{r:?} outside {b:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn to_tile_winding_is_mvt(
        g in world_geom(),
        z in 0u8..=20,
        fx in 0.0f64..1.0,
        fy in 0.0f64..1.0,
    ) {
        let n = 1u32 << z;
        let tile = TileCoord { z, x: ((f64::from(n) * fx) as u32).min(n - 1), y: ((f64::from(n) * fy) as u32).min(n - 1) };
        if let Some(TileGeom::Polygons(ps)) = to_tile(&g, tile, 4096) {
            for p in ps {
                prop_assert!(area2(&p[0]) > 0);
                for (i, r) in p.iter().enumerate() {
                    prop_assert!(r.len() >= 4);
                    prop_assert_eq!(r.first(), r.last());
                    prop_assert_eq!(area2(r) > 0, i == 0);
                }
            }
        }
    }

    #[test]
    fn simplify_keeps_rings_valid(
        rings in prop::collection::vec(world_ring(), 1..4),
        tol in prop_oneof![Just(0.0), 0.0f64..50.0, Just(1e9)],
    ) {
        // Build a valid tile polygon via to_tile, small coordinates so that simplification bites.
        let tile = TileCoord { z: 20, x: 0, y: 0 };
        let g = WorldGeom::Polygons(vec![rings.into_iter().map(|r| r.into_iter().map(|[x, y]| [x.rem_euclid(8192), y.rem_euclid(8192)]).collect()).collect()]);
        let Some(t) = to_tile(&g, tile, 4096) else { return Ok(()) };
        match simplify(&t, tol) {
            None => prop_assert!(tol > 0.0),
            Some(TileGeom::Polygons(ps)) => {
                if tol == 0.0 {
                    prop_assert_eq!(&TileGeom::Polygons(ps.clone()), &t);
                }
                for p in ps {
                    for (i, r) in p.iter().enumerate() {
                        prop_assert!(r.len() >= 4);
                        prop_assert_eq!(r.first(), r.last());
                        prop_assert!(area2(r) != 0);
                        prop_assert_eq!(area2(r) > 0, i == 0);
                    }
                }
            }
            Some(other) => prop_assert!(false, "kind changed: {:?}", other),
        }
    }

    #[test]
    fn simplify_lines_keep_endpoints(
        line in prop::collection::vec([-5000i32..5000, -5000i32..5000], 2..40),
        tol in 0.0f64..100.0,
    ) {
        let mut l = line;
        l.dedup();
        prop_assume!(l.len() >= 2 && l.first() != l.last());
        let g = TileGeom::Lines(vec![l.clone()]);
        let Some(TileGeom::Lines(out)) = simplify(&g, tol) else {
            return Err(TestCaseError::fail("line vanished"));
        };
        prop_assert_eq!(out[0].first(), l.first());
        prop_assert_eq!(out[0].last(), l.last());
        prop_assert!(out[0].len() <= l.len());
    }
}
