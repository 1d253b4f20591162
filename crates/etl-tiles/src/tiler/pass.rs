//! One pass over the staged features: cut them in parallel, sort the fragments, assemble the
//! tiles batch by batch and write them (see the crate's `tiler` module for the stages).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use rayon::prelude::*;

use super::{EXTENT, TileReport, TilerError, assemble, cluster, codec, cut, sort, zoom};
use crate::archive::ArchiveWriter;

/// What a run made so far, over its passes.
pub(super) struct Run {
    pub(super) report: TileReport,
    /// Per layer: (min zoom, max zoom) of the tiles it appears in.
    pub(super) layer_zooms: Vec<Option<(u8, u8)>>,
    /// Per zoom: tiles that had to drop or coalesce features.
    pub(super) reduced_at: Vec<u64>,
    /// Zooms assembled again with a zoom-wide spacing.
    pub(super) zooms_respaced: u64,
    /// With a dropping strategy: the last zoom written and the features its tiles show, which
    /// the next zoom keeps (across passes: `--extend-zooms-if-still-dropping` adds zooms).
    pub(super) shown: Option<(u8, zoom::Protected)>,
    /// What clusters wrote: (layer, key index) → type, for `vector_layers`.
    pub(super) cluster_fields: std::collections::BTreeMap<(u32, usize), super::attrs::FieldType>,
}

/// What every pass of a run shares.
pub(super) struct PassCtx<'a> {
    pub(super) layers: &'a [String],
    pub(super) keys: &'a [String],
    pub(super) limits: &'a assemble::Limits,
    pub(super) memory: usize,
    pub(super) tmp_dir: Option<PathBuf>,
    pub(super) cancel: &'a (dyn Fn() -> bool + Sync),
    /// The written order of features within a tile's layers, resolved to key indices.
    pub(super) order: Vec<super::order::Resolved>,
    /// With `--cluster-distance`: the keys clusters write and the attributes they fold.
    pub(super) cluster: Option<cluster::ClusterSetup>,
    /// How finished tiles are stored.
    pub(super) output: super::output::Output,
    /// `--extend-zooms-if-still-dropping`: the deepest zoom of a pass may not be the last.
    pub(super) extend_zooms: bool,
}

/// Staged bytes read per chunk, at most and at least; each chunk is cut in parallel. Between
/// the two, a chunk is sized so that its fragments (all zooms) take about a quarter of the
/// memory budget, from the fragment bytes per staged byte seen so far.
const MAX_STAGE_CHUNK: usize = 1 << 20;
const MIN_STAGE_CHUNK: usize = 64 << 10;
/// Fragment bytes per batch of tiles assembled in parallel: a quarter of the memory budget,
/// within these.
const MAX_TILE_BATCH: usize = 8 << 20;
const MIN_TILE_BATCH: usize = 1 << 20;

/// The memory budget's floor (the sort's too).
const MIN_MEMORY: usize = 1 << 20;

/// What fragments in flight (cut, not yet sorted), one batch of tiles, and the archive writer's
/// dedup cache may each hold besides the sort's run: a quarter of the memory budget.
pub(super) fn quarter(memory: usize) -> usize {
    memory.max(MIN_MEMORY) / 4
}

/// Staged bytes to read next so that their fragments take about `in_flight` bytes, from the
/// `fragments` bytes that `staged` bytes made so far.
fn stage_chunk(in_flight: usize, staged: usize, fragments: usize) -> usize {
    if staged == 0 {
        return MIN_STAGE_CHUNK;
    }
    // No fragments yet (everything outside this shard, say): the quotient is infinite and the
    // cast saturates, so the chunk is the largest.
    ((in_flight as f64 * staged as f64 / fragments as f64) as usize)
        .clamp(MIN_STAGE_CHUNK, MAX_STAGE_CHUNK)
}

/// Fragment bytes per batch of tiles for a memory budget.
fn tile_batch_bytes(memory: usize) -> usize {
    quarter(memory).clamp(MIN_TILE_BATCH, MAX_TILE_BATCH)
}

impl PassCtx<'_> {
    /// Cuts every staged feature for the zooms of `p`, sorts, assembles and writes the tiles.
    pub(super) fn pass<W: Write + Seek>(
        &self,
        stage: &mut File,
        p: &cut::CutParams,
        writer: &mut ArchiveWriter<W>,
        run: &mut Run,
    ) -> Result<(), TilerError> {
        let started = std::time::Instant::now();
        stage.seek(SeekFrom::Start(0))?;
        let mut sorter = sort::Sorter::new(self.memory, self.tmp_dir.clone());
        let mut buf: Vec<u8> = Vec::with_capacity(MAX_STAGE_CHUNK * 2);
        // One fragment buffer per 256 records of a chunk, reused from chunk to chunk.
        let mut pool: Vec<sort::FragBuf> = Vec::new();
        let in_flight = quarter(self.memory);
        let (mut staged_bytes, mut fragment_bytes) = (0usize, 0usize);
        let mut seq: u64 = 0;
        loop {
            if (self.cancel)() {
                return Err(TilerError::Cancelled);
            }
            let chunk = stage_chunk(in_flight, staged_bytes, fragment_bytes);
            let old = buf.len();
            buf.resize(old + chunk, 0);
            let n = read_full(stage, &mut buf[old..])?;
            buf.truncate(old + n);
            let (records, used) = codec::split_records(&buf);
            if records.is_empty() {
                if n == 0 {
                    if !buf.is_empty() {
                        return Err(TilerError::Damaged(seq));
                    }
                    break;
                }
                continue;
            }
            let base = seq;
            let parts = records.len().div_ceil(256);
            if pool.len() < parts {
                pool.resize_with(parts, sort::FragBuf::default);
            }
            let cut: Vec<Result<(), TilerError>> = pool[..parts]
                .par_iter_mut()
                .zip(records.par_chunks(256))
                .enumerate()
                .map(|(ci, (fb, chunk))| {
                    fb.clear();
                    for (j, body) in chunk.iter().enumerate() {
                        let s = base + (ci * 256 + j) as u64;
                        let f = codec::get_staged(body).map_err(|_| TilerError::Damaged(s))?;
                        cut::cut_feature(&f, p, fb);
                    }
                    Ok(())
                })
                .collect();
            seq += records.len() as u64;
            for (r, fb) in cut.into_iter().zip(&pool) {
                r?;
                fragment_bytes += fb.bytes();
                sorter.add(fb)?;
            }
            staged_bytes += used;
            buf.drain(..used);
        }
        drop(pool);
        run.report.fragments += sorter.fragments;
        let runs_before = sorter.spilled_bytes;
        let batch_bytes = tile_batch_bytes(self.memory);
        let mut stream = sorter.finish(batch_bytes)?;
        if let Some(c) = &self.cluster {
            stream.set_fold(cluster::Fold::new(c.clone()));
        }
        run.report.spilled_bytes += runs_before;
        run.report.cut_time += started.elapsed();
        let started = std::time::Instant::now();
        let ctx = assemble::AssembleCtx {
            layers: self.layers,
            keys: self.keys,
            extent: EXTENT,
            limits: self.limits,
            batch_bytes,
            order: &self.order,
            output: self.output,
            // With zooms added while the deepest still drops, no zoom is known to be the last
            // when it is made: every zoom is thinned alike.
            deepest: (!self.extend_zooms).then_some(p.max_zoom),
        };
        // With a dropping strategy, tiles are held per zoom so that the spacing one tile needs
        // applies to the whole zoom; without one there is nothing to apply.
        let mut stage = if self.limits.strategy() {
            Some(zoom::ZoomStage::new(self.tmp_dir.as_deref())?)
        } else {
            None
        };
        let mut batch = sort::TileBatch::default();
        while stream.next_batch(&mut batch)? {
            if (self.cancel)() {
                return Err(TilerError::Cancelled);
            }
            let done = assemble::assemble_batch(
                &batch,
                &ctx,
                &super::thin::Reduction::NONE,
                stage.is_some(),
                None,
            );
            let mut done = done.into_iter().collect::<Result<Vec<_>, _>>()?;
            if stage.is_none() {
                super::output::finish_all(&mut done, self.output)?;
            }
            for (mut a, t) in done.into_iter().zip(&batch.tiles) {
                match &mut stage {
                    Some(st) => st.push(
                        &a,
                        &batch,
                        t,
                        &mut zoom::Sink {
                            ctx: &ctx,
                            writer: &mut *writer,
                            run: &mut *run,
                            cancel: self.cancel,
                        },
                    )?,
                    None => zoom::write_tile(&mut a, self.output, writer, run)?,
                }
            }
        }
        if let Some(st) = &mut stage {
            st.finish(&mut zoom::Sink {
                ctx: &ctx,
                writer: &mut *writer,
                run: &mut *run,
                cancel: self.cancel,
            })?;
        }
        if let Some(f) = stream.take_fold() {
            let r = &mut run.report;
            r.clusters = r.clusters.saturating_add(f.stats.clusters);
            r.clustered_points = r.clustered_points.saturating_add(f.stats.absorbed);
            r.accumulate_truncated = r.accumulate_truncated.saturating_add(f.stats.truncated);
            for (k, t) in f.stats.fields {
                run.cluster_fields
                    .entry(k)
                    .and_modify(|e| *e = e.join(t))
                    .or_insert(t);
            }
        }
        run.report.assemble_time += started.elapsed();
        Ok(())
    }
}

impl Run {
    pub(super) fn record(&mut self, a: &assemble::Assembled) {
        let r = &mut self.report;
        // A run tile stands for `run` tiles, each with what it dropped or coalesced.
        let each = |n: usize| (n as u64).saturating_mul(a.run);
        r.dropped = r.dropped.saturating_add(each(a.dropped));
        r.coalesced = r.coalesced.saturating_add(each(a.coalesced));
        if a.detail < super::assemble::FULL_DETAIL {
            r.tiles_detail_reduced = r.tiles_detail_reduced.saturating_add(a.run);
        }
        if a.dropped + a.coalesced > 0 {
            r.tiles_reduced = r.tiles_reduced.saturating_add(a.run);
            if let Some(c) = self.reduced_at.get_mut(usize::from(a.tile.z)) {
                *c = c.saturating_add(a.run);
            }
        }
        let Some(data) = &a.data else { return };
        r.tiles += a.run;
        r.tile_bytes = r
            .tile_bytes
            .saturating_add((data.len() as u64).saturating_mul(a.run));
        if r.largest.is_none_or(|(_, n)| data.len() > n) {
            r.largest = Some((a.tile, data.len()));
        }
        for &l in &a.layers {
            if let Some(z) = self.layer_zooms.get_mut(l as usize) {
                let t = a.tile.z;
                *z = Some(z.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))));
            }
        }
    }
}

/// Reads until `buf` is full or the file ends.
fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_chunks_keep_fragments_in_flight_to_their_share() {
        // Nothing staged yet: the smallest chunk.
        assert_eq!(stage_chunk(4 << 20, 0, 0), MIN_STAGE_CHUNK);
        // 14 fragment bytes per staged byte (lines cut for zooms 0-14).
        let c = stage_chunk(4 << 20, 1 << 20, 14 << 20);
        assert_eq!(c, (4 << 20) / 14);
        assert!(c * 14 <= 4 << 20);
        // Never below the floor however dense, never above the cap however sparse.
        assert_eq!(stage_chunk(4 << 20, 1 << 20, 1 << 40), MIN_STAGE_CHUNK);
        assert_eq!(stage_chunk(4 << 20, 1 << 20, 1), MAX_STAGE_CHUNK);
        assert_eq!(stage_chunk(4 << 20, 1 << 20, 0), MAX_STAGE_CHUNK);
    }

    #[test]
    fn shares_of_the_memory_budget() {
        assert_eq!(quarter(15 << 20), (15 << 20) / 4);
        assert_eq!(quarter(0), MIN_MEMORY / 4);
        assert_eq!(tile_batch_bytes(15 << 20), (15 << 20) / 4);
        assert_eq!(tile_batch_bytes(64 << 20), MAX_TILE_BATCH);
        assert_eq!(tile_batch_bytes(1), MIN_TILE_BATCH);
    }
}
