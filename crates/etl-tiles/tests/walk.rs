//! The archive read path (`ArchiveIndex` over a `RangeReader`) with a fake reader that records
//! every request: how many reads an open and a cached tile lookup take, that no hostile length
//! reaches the reader, and that reader failures stay apart from corruption.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::future::Future;
use std::io::Cursor;

use bytes::Bytes;
use etl_tiles::archive::{
    Archive, ArchiveIndex, ArchiveMeta, ArchiveWriter, Compression, Entry, HEADER_LEN, Header,
    LastLeaf, MAX_DIRECTORY_BYTES, MAX_TILE_BYTES, NoCache, ROOT_SPACE, RangeReader, ReadError,
    encode_directory, now,
};

/// An archive in memory that records each read, and can claim to be longer than it is (reads
/// past the bytes held are zeros, built only up to 64 KiB: the walk must never ask for more).
struct Recorder {
    bytes: Vec<u8>,
    size: u64,
    reads: RefCell<Vec<(u64, u64)>>,
    /// Fail (as the source, not as corruption) from this read on.
    fail_from: Option<usize>,
}

#[derive(Debug, PartialEq)]
struct Unavailable;

impl Recorder {
    fn new(bytes: Vec<u8>) -> Self {
        let size = bytes.len() as u64;
        Recorder {
            bytes,
            size,
            reads: RefCell::new(Vec::new()),
            fail_from: None,
        }
    }

    fn reads(&self) -> usize {
        self.reads.borrow().len()
    }
}

impl RangeReader for Recorder {
    type Error = Unavailable;

    fn size(&self) -> u64 {
        self.size
    }

    fn read_range(
        &self,
        offset: u64,
        len: u64,
    ) -> impl Future<Output = Result<Bytes, Unavailable>> {
        self.reads.borrow_mut().push((offset, len));
        assert!(
            offset + len <= self.size && len <= 64 << 10,
            "asked for {len} bytes at {offset}"
        );
        let failing = self.fail_from.is_some_and(|f| self.reads() > f);
        // Bytes past those held (a claimed size) read as zeros.
        let held = self.bytes.get(offset as usize..).unwrap_or_default();
        let mut out = held[..held.len().min(len as usize)].to_vec();
        out.resize(len as usize, 0);
        std::future::ready(if failing {
            Err(Unavailable)
        } else {
            Ok(Bytes::from(out))
        })
    }
}

/// Driven like the synchronous reader drives the walk (the fake's reads are always ready).
fn run<T>(
    f: impl Future<Output = Result<T, ReadError<Unavailable>>>,
) -> Result<T, ReadError<Unavailable>> {
    now(f)
}

fn meta() -> ArchiveMeta {
    ArchiveMeta {
        min_zoom: 0,
        max_zoom: 14,
        bounds: [-180.0, -85.0, 180.0, 85.0],
        center: (0.0, 0.0, 0),
        metadata: serde_json::json!({"name": "walk", "vector_layers": []}),
    }
}

/// 20,000 tiles at irregular ids (they do not compress, so the root needs leaf directories),
/// each holding its own id as text.
fn leafy() -> (Vec<u8>, Vec<u64>) {
    let mut ids = Vec::new();
    let mut id = 1_000u64;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        id += 1 + state % 97;
        ids.push(id);
    }
    let mut w = ArchiveWriter::new(Cursor::new(Vec::new())).unwrap();
    for &id in &ids {
        w.add_tile(id, id.to_string().as_bytes()).unwrap();
    }
    (w.finish(&meta()).unwrap().into_inner(), ids)
}

#[test]
fn open_takes_two_reads_and_a_cached_lookup_one() {
    let (bytes, ids) = leafy();
    let h = Header::from_bytes(&bytes).unwrap();
    assert!(h.leaf_length > 0, "the test archive needs leaf directories");
    let r = Recorder::new(bytes.clone());
    let index = run(ArchiveIndex::open(&r)).unwrap();
    // The first 16 KiB (header and root), then the metadata.
    assert_eq!(
        *r.reads.borrow(),
        vec![(0, ROOT_SPACE), (h.metadata_offset, h.metadata_length)]
    );
    assert!(index.root().iter().all(Entry::is_leaf));

    let leaves = LastLeaf::default();
    let before = r.reads();
    let tile = run(index.tile(&r, &leaves, ids[0])).unwrap().unwrap();
    assert_eq!(&tile[..], ids[0].to_string().as_bytes());
    assert_eq!(r.reads() - before, 2, "a leaf, then the tile");

    // The next tile lies in the same leaf: only the tile is read.
    let before = r.reads();
    let tile = run(index.tile(&r, &leaves, ids[1])).unwrap().unwrap();
    assert_eq!(&tile[..], ids[1].to_string().as_bytes());
    assert_eq!(r.reads() - before, 1, "the leaf came from the cache");

    // A missing tile in a cached leaf takes no read at all.
    let before = r.reads();
    assert_eq!(run(index.tile(&r, &leaves, ids[1] + 1)).unwrap(), None);
    assert_eq!(r.reads() - before, 0);

    // Without a cache every lookup reads its leaf again.
    let before = r.reads();
    run(index.tile(&r, &NoCache, ids[2])).unwrap().unwrap();
    assert_eq!(r.reads() - before, 2);

    // A tile in the last leaf replaces the kept leaf; the whole archive agrees with the
    // synchronous reader over the same bytes.
    let last = *ids.last().unwrap();
    let before = r.reads();
    run(index.tile(&r, &leaves, last)).unwrap().unwrap();
    assert_eq!(r.reads() - before, 2);
    let mut sync = Archive::open(Cursor::new(&bytes)).unwrap();
    for &id in ids.iter().step_by(331) {
        let ours = run(index.tile(&r, &leaves, id)).unwrap().map(Vec::from);
        assert_eq!(ours, sync.get_tile_by_id(id).unwrap());
        assert_eq!(ours, Some(id.to_string().into_bytes()));
    }
    assert_eq!(run(index.tile(&r, &leaves, 3)).unwrap(), None);
}

/// A header and root directory describing sections of a terabyte, in a file that holds only
/// them: the sizes are claimed by the reader, the bytes are never asked for.
fn claims(root: &[Entry], edit: impl FnOnce(&mut Header)) -> Recorder {
    let root = encode_directory(root);
    let written = ArchiveWriter::new(Cursor::new(Vec::new()))
        .unwrap()
        .finish(&meta())
        .unwrap()
        .into_inner();
    let mut h = Header::from_bytes(&written).unwrap();
    h.root_offset = HEADER_LEN as u64;
    h.root_length = root.len() as u64;
    h.metadata_offset = h.root_offset + h.root_length;
    h.metadata_length = 2;
    (h.leaf_offset, h.leaf_length) = (1 << 20, 1 << 40);
    (h.data_offset, h.data_length) = ((1 << 40) + (1 << 20), 1 << 40);
    h.internal_compression = Compression::None;
    edit(&mut h);
    let mut bytes = h.to_bytes().to_vec();
    bytes.extend_from_slice(&root);
    bytes.extend_from_slice(b"{}");
    let mut r = Recorder::new(bytes);
    r.size = 3 << 40;
    r
}

fn corrupt_message<T: std::fmt::Debug>(r: Result<T, ReadError<Unavailable>>) -> String {
    match r {
        Err(ReadError::Corrupt(e)) => e.to_string(),
        other => panic!("expected a corrupt archive, got {other:?}"),
    }
}

#[test]
fn hostile_lengths_never_reach_the_reader() {
    let tile = |length: u32| Entry {
        tile_id: 0,
        offset: 0,
        length,
        run_length: 1,
    };
    let leaf = |length: u32| Entry {
        tile_id: 0,
        offset: 0,
        length,
        run_length: 0,
    };

    // A root directory over the limit: refused after the first read.
    let r = claims(&[tile(10)], |h| h.root_length = MAX_DIRECTORY_BYTES + 1);
    let msg = corrupt_message(run(ArchiveIndex::open(&r)));
    assert!(msg.contains("root directory is 67108865 bytes"), "{msg}");
    assert_eq!(r.reads(), 1);

    // Metadata over the limit: likewise.
    let r = claims(&[tile(10)], |h| h.metadata_length = 1 << 30);
    let msg = corrupt_message(run(ArchiveIndex::open(&r)));
    assert!(msg.contains("corrupt metadata"), "{msg}");
    assert_eq!(r.reads(), 1);

    // A leaf of 4 GiB - 1 inside a terabyte leaf section, and a tile of the same size inside a
    // terabyte data section: both refused without a read.
    for (entry, want) in [
        (
            leaf(u32::MAX),
            format!("4294967295 bytes, over {MAX_DIRECTORY_BYTES}"),
        ),
        (
            tile(u32::MAX),
            format!("4294967295 bytes, over {MAX_TILE_BYTES}"),
        ),
    ] {
        let r = claims(&[entry], |_| {});
        let index = run(ArchiveIndex::open(&r)).unwrap();
        let before = r.reads();
        let msg = corrupt_message(run(index.tile(&r, &LastLeaf::default(), 0)));
        assert!(msg.contains(&want), "{msg}");
        assert_eq!(r.reads(), before, "nothing read for {entry:?}");
    }

    // A section that ends past the reader's size (here the claimed size is the real one).
    let mut r = claims(&[tile(10)], |_| {});
    r.size = r.bytes.len() as u64;
    let msg = corrupt_message(run(ArchiveIndex::open(&r)));
    assert!(msg.contains("ends beyond the file length"), "{msg}");
}

#[test]
fn reader_failures_are_not_corruption() {
    let (bytes, ids) = leafy();
    // The open's two reads succeed; the leaf read fails.
    let mut r = Recorder::new(bytes);
    r.fail_from = Some(2);
    let index = run(ArchiveIndex::open(&r)).unwrap();
    let leaves = LastLeaf::default();
    assert!(matches!(
        run(index.tile(&r, &leaves, ids[0])),
        Err(ReadError::Source(Unavailable))
    ));
    // A failed load is not kept: once the reader recovers, the leaf is read.
    r.fail_from = None;
    assert!(run(index.tile(&r, &leaves, ids[0])).unwrap().is_some());
    // The first read failing fails the open the same way.
    let mut r = Recorder::new(r.bytes);
    r.fail_from = Some(0);
    assert!(matches!(
        run(ArchiveIndex::open(&r)),
        Err(ReadError::Source(Unavailable))
    ));
}
