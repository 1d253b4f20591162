//! Import manifests: how an archive name resolves to an immutable, versioned file.
//!
//! The import worker publishes `NAME.<VERSION>.pmtiles` (never changed once written) and then
//! swaps `NAME.json`, the one mutable object of the import, whose `outputs` name the file:
//! `{"version": "v20261206T221500Z-1a2b3c4d", "outputs": [{"kind": "pmtiles", "file":
//! "NAME.v20261206T221500Z-1a2b3c4d.pmtiles", …}, …]}`. The archive `NAME` is then that file.
//! Pure functions, so every decision about what a manifest may point at is unit-tested here.

use serde_json::Value;

use super::ARCHIVE_EXT;

/// Manifests are small; anything bigger is not one (and is not read whole into memory).
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// The extension of a manifest next to the outputs it names.
pub const MANIFEST_EXT: &str = ".json";

/// What a `NAME.json` says about archive `NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// A manifest with a `pmtiles` output: the archive is `file`, in the manifest's folder.
    Archive {
        file: String,
        /// The manifest's `version`, when it has one (for logs and `/health`).
        version: Option<String>,
        /// The base of its sprite sheet (`NAME.<VERSION>.sprite`, beside `.png` and `.json`),
        /// when it names both.
        sprite: Option<String>,
    },
    /// Some other JSON document, or a manifest of an import without tiles: not an archive.
    NotAnArchive,
    /// A manifest whose `pmtiles` output points somewhere it may not: ignored, not followed.
    Refused(String),
}

/// Whether `s` is an output version: `v` + `YYYYMMDD` + `T` + `HHMMSS` + `Z-` + 8 lowercase hex
/// digits (`^v[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$`).
pub fn is_version(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 26
        && b[0] == b'v'
        && digits(1..9)
        && b[9] == b'T'
        && digits(10..16)
        && b[16] == b'Z'
        && b[17] == b'-'
        && b[18..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// Whether an archive name is that of a versioned output (`X.<VERSION>`): such files are
/// reachable only through their manifest, never under their own name.
pub fn is_versioned_name(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(_, v)| is_version(v))
}

/// Whether `file` may be followed from the manifest of archive `name`: a plain file name in
/// the same folder (no `/`, `\`, NUL or other control characters, no `..`), `NAME.….pmtiles`.
pub fn check_file(name: &str, file: &str) -> Result<(), String> {
    if file.contains('/') || file.contains('\\') {
        return Err(format!("{file:?} is not a plain file name"));
    }
    if file.chars().any(char::is_control) || file.contains("..") || file.len() > 1024 {
        return Err(format!("{file:?} is not an acceptable file name"));
    }
    let inner = file
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|_| file.strip_suffix(ARCHIVE_EXT));
    if inner.is_none() {
        return Err(format!(
            "{file:?} does not start with \"{name}.\" and end with \"{ARCHIVE_EXT}\""
        ));
    }
    Ok(())
}

/// The base of the sprite sheet a manifest names: its `sprite.png` and `sprite.json` outputs,
/// plain file names starting `NAME.` that share one base. `None` for anything else.
fn sprite_of(name: &str, outputs: &[Value]) -> Option<String> {
    let file_of = |kind: &str| -> Option<&str> {
        let mut it = outputs
            .iter()
            .filter(|o| o.get("kind").and_then(Value::as_str) == Some(kind));
        let file = it.next()?.get("file")?.as_str()?;
        it.next().is_none().then_some(file)
    };
    let png = file_of("sprite.png")?.strip_suffix(".png")?;
    let json = file_of("sprite.json")?.strip_suffix(".json")?;
    let plain = |f: &str| {
        !f.contains(['/', '\\'])
            && !f.contains("..")
            && !f.chars().any(char::is_control)
            && f.len() <= 1024
            && f.strip_prefix(name).is_some_and(|r| r.starts_with('.'))
            && f.ends_with(".sprite")
    };
    (png == json && plain(png)).then(|| png.to_owned())
}

/// Reads `NAME.json` (the bytes of the manifest of archive `name`).
pub fn parse(name: &str, bytes: &[u8]) -> Manifest {
    let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(bytes) else {
        return Manifest::NotAnArchive;
    };
    let Some(Value::Array(outputs)) = doc.get("outputs") else {
        return Manifest::NotAnArchive;
    };
    let version = doc.get("version").and_then(Value::as_str);
    if let Some(v) = version
        && !is_version(v)
    {
        return Manifest::Refused(format!(
            "its version {v:?} is not vYYYYMMDDTHHMMSSZ-xxxxxxxx"
        ));
    }
    let mut tiles = outputs
        .iter()
        .filter(|o| o.get("kind").and_then(Value::as_str) == Some("pmtiles"));
    let Some(output) = tiles.next() else {
        return Manifest::NotAnArchive;
    };
    if tiles.next().is_some() {
        return Manifest::Refused("it names more than one pmtiles output".into());
    }
    let Some(file) = output.get("file").and_then(Value::as_str) else {
        return Manifest::Refused("its pmtiles output has no \"file\"".into());
    };
    match check_file(name, file) {
        Ok(()) => Manifest::Archive {
            file: file.to_string(),
            version: version.map(str::to_string),
            sprite: sprite_of(name, outputs),
        },
        Err(why) => Manifest::Refused(format!("its pmtiles output {why}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    const V: &str = "v20261206T221500Z-1a2b3c4d";

    fn manifest(file: Value) -> Vec<u8> {
        json!({
            "version": V,
            "outputs": [
                {"kind": "geojsonl", "file": format!("roads.{V}.geojsonl"), "bytes": 1},
                {"kind": "pmtiles", "file": file, "bytes": 2, "sha256": "00"},
            ],
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn sprites_beside_the_archive() {
        let m = |png: &str, json: &str| {
            json!({"version": V, "outputs": [
                {"kind": "pmtiles", "file": format!("roads.{V}.pmtiles")},
                {"kind": "sprite.png", "file": png},
                {"kind": "sprite.json", "file": json},
            ]})
            .to_string()
            .into_bytes()
        };
        let sprite = |bytes: &[u8]| match parse("roads", bytes) {
            Manifest::Archive { sprite, .. } => sprite,
            other => panic!("{other:?}"),
        };
        let base = format!("roads.{V}.sprite");
        assert_eq!(
            sprite(&m(&format!("{base}.png"), &format!("{base}.json"))),
            Some(base.clone())
        );
        assert_eq!(
            sprite(&m(&format!("{base}.png"), "roads.other.sprite.json")),
            None
        );
        assert_eq!(sprite(&m("../x.sprite.png", "../x.sprite.json")), None);
        assert_eq!(
            sprite(&m("other.v.sprite.png", "other.v.sprite.json")),
            None
        );
        assert_eq!(sprite(&manifest(json!(format!("roads.{V}.pmtiles")))), None);
    }

    #[test]
    fn versions() {
        assert!(is_version(V));
        for bad in [
            "",
            "v20261206T221500Z-1a2b3c4",
            "v20261206T221500Z-1a2b3c4dd",
            "v20261206T221500Z-1A2B3C4D",
            "x20261206T221500Z-1a2b3c4d",
            "v2026120xT221500Z-1a2b3c4d",
            "v20261206t221500Z-1a2b3c4d",
            "v20261206T221500Z_1a2b3c4d",
            "v20261206T221500Z-1a2b3c4g",
        ] {
            assert!(!is_version(bad), "{bad:?}");
        }
        assert!(is_versioned_name(&format!("roads.{V}")));
        assert!(is_versioned_name(&format!("a.b.{V}")));
        assert!(!is_versioned_name("roads"));
        assert!(!is_versioned_name(V), "a bare version is not NAME.VERSION");
        assert!(!is_versioned_name("roads.v1"));
    }

    #[test]
    fn follows_a_file_of_its_own_name() {
        let file = format!("roads.{V}.pmtiles");
        assert_eq!(
            parse("roads", &manifest(json!(file))),
            Manifest::Archive {
                sprite: None,
                file,
                version: Some(V.into())
            }
        );
        // A plain NAME.pmtiles named by the manifest is also its own.
        assert!(matches!(
            parse("roads", &manifest(json!("roads.pmtiles"))),
            Manifest::Archive { .. }
        ));
    }

    #[test]
    fn refuses_anything_outside() {
        for bad in [
            json!("../x.pmtiles"),
            json!("other.pmtiles"),
            json!("/etc/passwd"),
            json!(format!("../roads.{V}.pmtiles")),
            json!(format!("sub/roads.{V}.pmtiles")),
            json!(format!("roads.{V}.pmtiles/..")),
            json!(format!("roads\\{V}.pmtiles")),
            json!(format!("roads.{V}\u{0}.pmtiles")),
            json!(format!("roads..{V}.pmtiles")),
            json!(format!("roadsx.{V}.pmtiles")),
            json!(format!("roads.{V}.geojsonl")),
            json!("roads.json"),
            json!(".."),
            json!(""),
            json!(42),
        ] {
            assert!(
                matches!(parse("roads", &manifest(bad.clone())), Manifest::Refused(_)),
                "{bad}"
            );
        }
        let two = json!({"outputs": [
            {"kind": "pmtiles", "file": "roads.a.pmtiles"},
            {"kind": "pmtiles", "file": "roads.b.pmtiles"},
        ]});
        assert!(matches!(
            parse("roads", two.to_string().as_bytes()),
            Manifest::Refused(_)
        ));
        let bad_version = json!({"version": "1", "outputs": [
            {"kind": "pmtiles", "file": "roads.1.pmtiles"},
        ]});
        assert!(matches!(
            parse("roads", bad_version.to_string().as_bytes()),
            Manifest::Refused(_)
        ));
    }

    #[test]
    fn other_json_is_not_an_archive() {
        for doc in [
            "not json",
            "[]",
            "{}",
            r#"{"outputs": "x"}"#,
            r#"{"outputs": [{"kind": "geojsonl", "file": "roads.x.geojsonl"}]}"#,
            r#"{"type": "FeatureCollection", "features": []}"#,
        ] {
            assert_eq!(
                parse("roads", doc.as_bytes()),
                Manifest::NotAnArchive,
                "{doc}"
            );
        }
    }

    proptest::proptest! {
        // Whatever a manifest names, what is followed stays a plain NAME.….pmtiles file.
        #[test]
        fn followed_files_stay_inside(file in ".{0,40}") {
            if let Manifest::Archive { file: f, .. } = parse("roads", &manifest(json!(file))) {
                proptest::prop_assert!(!f.contains('/') && !f.contains('\\') && !f.contains(".."));
                proptest::prop_assert!(f.starts_with("roads.") && f.ends_with(ARCHIVE_EXT));
            }
        }
    }
}
