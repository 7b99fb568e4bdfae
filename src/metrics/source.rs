//! A category's maps and masks read in chunks of whole images, as many times as a metric needs:
//! what the streamed metrics (`stream.rs` and the files it combines) compute from.
//!
//! Why a trait: a category can be larger than memory (KSDD2: 263 M pixels, 1 GB of f32 scores per
//! checkpoint). The engine spills such maps to disk and implements [`MapSource`] over its files,
//! so that this room does no file I/O of its own; [`SliceSource`] gives the same chunks from
//! slices in memory, which is how the tests compare the streamed metrics with the in-memory ones.
//!
//! A metric reads the source in *passes* (one pass = every image once, in order). Several metrics
//! share each pass: [`run_passes`] hands every chunk to every metric that asked for the pass, so
//! the number of passes over the data is the largest any one metric needs, not their sum.

use super::MetricsError;

/// A run of consecutive whole images of a category: their scores and their 0/1 masks, `h x w`
/// each, image after image.
#[derive(Debug, Clone, Copy)]
pub struct Chunk<'a> {
    /// Index of the chunk's first image in the category.
    pub first_image: usize,
    /// Number of images in the chunk.
    pub images: usize,
    pub scores: &'a [f32],
    pub masks: &'a [u8],
}

/// A category's maps and masks that can be read any number of times, in chunks of whole images.
pub trait MapSource {
    /// What reading can fail with (e.g. I/O); a metric's error found while reading becomes one.
    type Error: From<MetricsError>;
    /// `(images, height, width)` of the category.
    fn shape(&self) -> (usize, usize, usize);
    /// The most images one chunk holds: a metric's working memory per chunk is proportional to it.
    fn chunk_images(&self) -> usize;
    /// One pass: calls `visit` with every image, in order, in chunks of whole images. Stops at
    /// `visit`'s first error and returns it.
    fn pass(
        &mut self,
        visit: &mut dyn FnMut(Chunk<'_>) -> Result<(), MetricsError>,
    ) -> Result<(), Self::Error>;
}

/// A [`MapSource`] over slices in memory, `chunk_images` images a chunk.
#[derive(Debug, Clone, Copy)]
pub struct SliceSource<'a> {
    scores: &'a [f32],
    masks: &'a [u8],
    shape: (usize, usize, usize),
    chunk_images: usize,
}

impl<'a> SliceSource<'a> {
    /// `scores` f32 and `masks` u8 of `k` images `h x w`, read `chunk_images` (at least 1) at a
    /// time.
    pub fn new(
        scores: &'a [f32],
        masks: &'a [u8],
        (k, h, w): (usize, usize, usize),
        chunk_images: usize,
    ) -> Result<Self, MetricsError> {
        let n = k * h * w;
        for (what, got) in [("maps", scores.len()), ("masks", masks.len())] {
            if got != n {
                return Err(MetricsError::Length {
                    what,
                    got,
                    expected: n,
                    why: format!("k*h*w = {k}*{h}*{w}"),
                });
            }
        }
        Ok(Self {
            scores,
            masks,
            shape: (k, h, w),
            chunk_images: chunk_images.max(1),
        })
    }
}

impl MapSource for SliceSource<'_> {
    type Error = MetricsError;

    fn shape(&self) -> (usize, usize, usize) {
        self.shape
    }

    fn chunk_images(&self) -> usize {
        self.chunk_images
    }

    fn pass(
        &mut self,
        visit: &mut dyn FnMut(Chunk<'_>) -> Result<(), MetricsError>,
    ) -> Result<(), MetricsError> {
        let (k, h, w) = self.shape;
        let hw = h * w;
        let mut first = 0;
        while first < k {
            let images = self.chunk_images.min(k - first);
            let range = first * hw..(first + images) * hw;
            visit(Chunk {
                first_image: first,
                images,
                scores: &self.scores[range.clone()],
                masks: &self.masks[range],
            })?;
            first += images;
        }
        Ok(())
    }
}

/// One metric computed over passes of a [`MapSource`] (see [`run_passes`]).
pub(super) trait Passes {
    /// Whether this metric needs another pass.
    fn wants_pass(&self) -> bool;
    /// One chunk of the current pass (chunks come in image order and cover every image once).
    fn chunk(&mut self, chunk: &Chunk<'_>) -> Result<(), MetricsError>;
    /// The end of a pass: resolve what it gathered, plan the next one.
    fn end_pass(&mut self) -> Result<(), MetricsError>;
}

/// Runs passes over `source` until no metric of `metrics` wants another, handing each chunk to
/// the metrics that asked for the pass, in the order given (the first metric's error wins).
/// Checks that the source's chunks are whole images, in order, covering the category once.
/// Returns the number of passes made.
pub(super) fn run_passes<S: MapSource>(
    source: &mut S,
    metrics: &mut [&mut dyn Passes],
) -> Result<usize, S::Error> {
    let (k, h, w) = source.shape();
    let hw = h * w;
    let mut passes = 0;
    loop {
        let active: Vec<usize> = (0..metrics.len())
            .filter(|&i| metrics[i].wants_pass())
            .collect();
        if active.is_empty() {
            return Ok(passes);
        }
        let mut next = 0usize;
        source.pass(&mut |chunk| {
            let n = chunk.images * hw;
            if chunk.first_image != next || chunk.scores.len() != n || chunk.masks.len() != n {
                return Err(MetricsError::Length {
                    what: "map source chunk",
                    got: chunk.scores.len().max(chunk.masks.len()),
                    expected: n,
                    why: format!(
                        "a chunk of {} images of {h}x{w} starting at image {next} (it says {}), \
                         scores and masks alike",
                        chunk.images, chunk.first_image
                    ),
                });
            }
            next += chunk.images;
            for &i in &active {
                metrics[i].chunk(&chunk)?;
            }
            Ok(())
        })?;
        if next != k {
            return Err(MetricsError::Length {
                what: "map source pass",
                got: next,
                expected: k,
                why: "a pass visits every image of the category once".into(),
            }
            .into());
        }
        for &i in &active {
            metrics[i].end_pass()?;
        }
        passes += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the images it sees, for `passes` passes.
    struct Counter {
        passes: usize,
        seen: usize,
    }

    impl Passes for Counter {
        fn wants_pass(&self) -> bool {
            self.passes > 0
        }
        fn chunk(&mut self, chunk: &Chunk<'_>) -> Result<(), MetricsError> {
            self.seen += chunk.images;
            Ok(())
        }
        fn end_pass(&mut self) -> Result<(), MetricsError> {
            self.passes -= 1;
            Ok(())
        }
    }

    #[test]
    fn passes_are_shared_and_cover_every_image() {
        let scores = vec![0.5f32; 7 * 6];
        let masks = vec![0u8; 7 * 6];
        let mut source = SliceSource::new(&scores, &masks, (7, 2, 3), 3).unwrap();
        let (mut a, mut b) = (
            Counter { passes: 1, seen: 0 },
            Counter { passes: 3, seen: 0 },
        );
        assert_eq!(run_passes(&mut source, &mut [&mut a, &mut b]).unwrap(), 3);
        assert_eq!((a.seen, b.seen), (7, 21));
        assert!(SliceSource::new(&scores[1..], &masks, (7, 2, 3), 3).is_err());
    }

    /// A source whose chunks skip an image.
    struct Gappy;

    impl MapSource for Gappy {
        type Error = MetricsError;
        fn shape(&self) -> (usize, usize, usize) {
            (3, 1, 1)
        }
        fn chunk_images(&self) -> usize {
            1
        }
        fn pass(
            &mut self,
            visit: &mut dyn FnMut(Chunk<'_>) -> Result<(), MetricsError>,
        ) -> Result<(), MetricsError> {
            for first_image in [0, 2] {
                visit(Chunk {
                    first_image,
                    images: 1,
                    scores: &[0.0],
                    masks: &[0],
                })?;
            }
            Ok(())
        }
    }

    #[test]
    fn a_source_that_skips_images_is_an_error() {
        let mut c = Counter { passes: 1, seen: 0 };
        let err = run_passes(&mut Gappy, &mut [&mut c]).unwrap_err();
        assert!(err.to_string().contains("map source chunk"), "{err}");
    }
}
