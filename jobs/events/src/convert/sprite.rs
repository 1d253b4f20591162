//! A MapLibre sprite sheet of an upload's icons (`NAME.<VERSION>.sprite.png` and
//! `.sprite.json`): the 32 px icons packed in rows of at most 1024 px, indexed by what the
//! placemarks' `icon` property holds (the KML's own href), so a style's
//! `"icon-image": ["get", "icon"]` draws them with no change to the features.

use std::io::{Cursor, Write};
use std::path::Path;

use etl_core::JobError;
use serde_json::{Map, Value, json};

use super::Artifact;
use super::files::{artifact, temp_err, temp_in};
use crate::icons::{ICON_HEIGHT, Icon};

/// Widest row of the sheet.
const SHEET_WIDTH: u32 = 1024;

/// The sheet and its index, or an error naming the icon that could not be placed.
pub fn sheet(icons: &[Icon]) -> Result<(Vec<u8>, Value), String> {
    let decoded: Vec<(&Icon, image::RgbaImage)> = icons
        .iter()
        .map(|i| {
            image::load_from_memory_with_format(&i.png, image::ImageFormat::Png)
                .map(|img| (i, img.to_rgba8()))
                .map_err(|e| format!("icon {}: {e}", i.href))
        })
        .collect::<Result<_, _>>()?;
    // Shelf packing: every icon is ICON_HEIGHT high.
    let mut places = Vec::with_capacity(decoded.len());
    let (mut x, mut y, mut width) = (0u32, 0u32, 1u32);
    for (_, img) in &decoded {
        let w = img.width().min(SHEET_WIDTH);
        if x + w > SHEET_WIDTH {
            x = 0;
            y += ICON_HEIGHT;
        }
        places.push((x, y));
        x += w;
        width = width.max(x);
    }
    let height = if decoded.is_empty() {
        1
    } else {
        y + ICON_HEIGHT
    };
    let mut out = image::RgbaImage::new(width, height);
    let mut index = Map::new();
    for ((icon, img), (x, y)) in decoded.iter().zip(&places) {
        image::imageops::overlay(&mut out, img, i64::from(*x), i64::from(*y));
        index.insert(
            icon.href.clone(),
            json!({"x": x, "y": y, "width": img.width(), "height": img.height(), "pixelRatio": 1}),
        );
    }
    let mut png = Vec::new();
    image::DynamicImage::ImageRgba8(out)
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| format!("writing the sprite sheet: {e}"))?;
    Ok((png, Value::Object(index)))
}

/// The sheet and its index as temporary outputs in `dir`.
pub fn artifacts(icons: &[Icon], dir: &Path) -> Result<(Artifact, Artifact), JobError> {
    let (png, index) = sheet(icons).map_err(JobError::internal)?;
    let write = |suffix: &str, bytes: &[u8]| -> Result<Artifact, JobError> {
        let file = temp_in(dir, suffix)?;
        let mut f = file.reopen().map_err(temp_err)?;
        f.write_all(bytes).map_err(temp_err)?;
        f.sync_all().map_err(temp_err)?;
        artifact(file)
    };
    let json = serde_json::to_vec(&index)
        .map_err(|e| JobError::internal(format!("the sprite index: {e}")))?;
    Ok((write(".sprite.png", &png)?, write(".sprite.json", &json)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn icon(href: &str, w: u32) -> Icon {
        let img = image::RgbaImage::from_pixel(w, ICON_HEIGHT, image::Rgba([1, 2, 3, 255]));
        let mut png = Vec::new();
        image::DynamicImage::ImageRgba8(img)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        Icon {
            href: href.into(),
            name: format!("{href}.png"),
            png,
        }
    }

    #[test]
    fn icons_are_packed_in_rows_and_indexed_by_href() {
        let icons: Vec<Icon> = (0..40)
            .map(|i| icon(&format!("files/{i}.png"), 32))
            .collect();
        let (png, index) = sheet(&icons).unwrap();
        let img = image::load_from_memory(&png).unwrap();
        // 32 icons of 32 px fill a 1024 px row; 8 go on the second.
        assert_eq!((img.width(), img.height()), (1024, 64));
        assert_eq!(
            index["files/0.png"],
            json!({"x": 0, "y": 0, "width": 32, "height": 32, "pixelRatio": 1})
        );
        assert_eq!(index["files/33.png"]["x"], 32);
        assert_eq!(index["files/33.png"]["y"], 32);
        assert_eq!(img.to_rgba8().get_pixel(40, 40).0, [1, 2, 3, 255]);
        assert_eq!(img.to_rgba8().get_pixel(1000, 40).0, [0, 0, 0, 0]);
        let bad = Icon {
            href: "x".into(),
            name: "x.png".into(),
            png: b"nope".to_vec(),
        };
        assert!(sheet(&[bad]).unwrap_err().contains("icon x"));
    }
}
