//! The parity-fixture contract (docs/fixtures.md), shared by every parity test.
//!
//! Fixtures live in `tests/fixtures/<kind>/<case>/` and, when `AVA_DINO_PARITY_DIR` is set, in
//! `$AVA_DINO_PARITY_DIR/<kind>/<case>/`. Every comparison prints one line
//! `parity <kind>/<case> <file> <tensor> max_abs=<x> rel=<y> tol=<t> ok|FAIL`; an optional field
//! that is absent prints `parity <kind>/<case> <file> <field> skipped (absent)` and a required one
//! `... <file> <field> missing (required: ...) FAIL`. A [`Report`] fails at the end if any line
//! failed or no comparison was made at all.

pub mod contract;

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use ava_dino::io::{HostTensor, TensorFile, TensorFileError};

/// Environment variable naming an extra fixture root.
pub const PARITY_DIR_ENV: &str = "AVA_DINO_PARITY_DIR";

/// Fixture root committed with the sources.
pub fn committed_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// One fixture case directory.
#[derive(Debug, Clone)]
pub struct Case {
    /// `<kind>/<case>`, prefixed with `AVA_DINO_PARITY_DIR:` for external cases.
    pub label: String,
    pub dir: PathBuf,
}

/// Every case directory of `kind`, committed ones first, each root sorted by name.
///
/// Panics when `AVA_DINO_PARITY_DIR` names something that is not a directory (a typo must not
/// pass as "no external cases").
pub fn cases(kind: &str) -> Vec<Case> {
    let mut out = cases_in(&committed_root().join(kind), kind, "");
    if let Some(extra) = std::env::var_os(PARITY_DIR_ENV).filter(|v| !v.is_empty()) {
        let root = PathBuf::from(extra);
        assert!(
            root.is_dir(),
            "{PARITY_DIR_ENV}={}: not a directory; point it at a fixture root holding <kind>/<case>/ \
             folders (docs/fixtures.md)",
            root.display()
        );
        let dir = root.join(kind);
        if !dir.is_dir() {
            println!(
                "parity {kind}: no {} (no external {kind} cases)",
                dir.display()
            );
        }
        out.extend(cases_in(&dir, kind, &format!("{PARITY_DIR_ENV}:")));
    }
    out
}

fn cases_in(dir: &Path, kind: &str, prefix: &str) -> Vec<Case> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|d| {
            let name = d.file_name().unwrap().to_string_lossy().into_owned();
            Case {
                label: format!("{prefix}{kind}/{name}"),
                dir: d,
            }
        })
        .collect()
}

/// Element family a fixture tensor must have. These are the families [`TensorFile`] reads:
/// f64, f16 and bf16 are read as f32; i32, i16, u16 and i8 as i64; bool as u8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    I64,
    U8,
}

impl Dtype {
    fn get<'f>(
        self,
        file: &'f TensorFile,
        name: &str,
        rank: usize,
    ) -> Result<&'f HostTensor, TensorFileError> {
        match self {
            Dtype::F32 => file.f32(name, rank),
            Dtype::I64 => file.i64(name, rank),
            Dtype::U8 => file.u8(name, rank),
        }
    }
}

/// `f32 [B,3,H,W]`: a tensor as docs/fixtures.md writes it.
fn describe(dtype: Dtype, dims: &[&str]) -> String {
    let t = match dtype {
        Dtype::F32 => "f32",
        Dtype::I64 => "i64",
        Dtype::U8 => "u8",
    };
    format!("{t} [{}]", dims.join(","))
}

/// The file name of a fixture file, for parity lines.
fn file_name(file: &TensorFile) -> String {
    file.path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Tolerances of one comparison; a bound that is `None` is not checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Largest allowed `max |got - want|`.
    pub max_abs: Option<f64>,
    /// Largest allowed `||got - want||_2 / ||want||_2`.
    pub rel: Option<f64>,
}

impl Tolerance {
    pub const fn abs_rel(max_abs: f64, rel: f64) -> Self {
        Self {
            max_abs: Some(max_abs),
            rel: Some(rel),
        }
    }
    pub const fn abs(max_abs: f64) -> Self {
        Self {
            max_abs: Some(max_abs),
            rel: None,
        }
    }
    pub const fn rel(rel: f64) -> Self {
        Self {
            max_abs: None,
            rel: Some(rel),
        }
    }
    fn describe(&self) -> String {
        match (self.max_abs, self.rel) {
            (Some(a), Some(r)) => format!("abs<={a:e},rel<={r:e}"),
            (Some(a), None) => format!("abs<={a:e}"),
            (None, Some(r)) => format!("rel<={r:e}"),
            (None, None) => "none".to_string(),
        }
    }
}

/// Maximum absolute and relative L2 error of `got` against `want` (f64 accumulation).
/// When `want` is all zeros the relative error is the absolute L2 norm of the difference.
pub fn errors(got: &[f32], want: &[f32]) -> (f64, f64) {
    let mut max_abs = 0f64;
    let (mut diff2, mut want2) = (0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        let d = g as f64 - w as f64;
        // NaN must fail: f64::max would drop it.
        max_abs = if d.is_nan() || max_abs.is_nan() {
            f64::NAN
        } else {
            max_abs.max(d.abs())
        };
        diff2 += d * d;
        want2 += (w as f64) * (w as f64);
    }
    let rel = if want2 > 0.0 {
        (diff2 / want2).sqrt()
    } else {
        diff2.sqrt()
    };
    (max_abs, rel)
}

/// Collects parity lines for one kind and fails at the end if any failed.
#[derive(Debug)]
pub struct Report {
    kind: String,
    checked: usize,
    failures: Vec<String>,
    skipped: Vec<String>,
}

impl Report {
    pub fn new(kind: &str) -> Self {
        Self {
            kind: kind.to_string(),
            checked: 0,
            failures: Vec::new(),
            skipped: Vec::new(),
        }
    }

    fn record(&mut self, line: String, ok: bool) -> bool {
        println!("{line}");
        self.checked += 1;
        if !ok {
            self.failures.push(line);
        }
        ok
    }

    /// Compares two float tensors (shapes given for the message and a shape check).
    #[allow(clippy::too_many_arguments)]
    pub fn close(
        &mut self,
        case: &Case,
        file: &str,
        tensor: &str,
        got_shape: &[usize],
        got: &[f32],
        want_shape: &[usize],
        want: &[f32],
        tol: Tolerance,
    ) -> bool {
        if got_shape != want_shape || got.len() != want.len() {
            return self.record(
                format!(
                    "parity {} {file} {tensor} shape={got_shape:?} expected={want_shape:?} FAIL",
                    case.label
                ),
                false,
            );
        }
        let (max_abs, rel) = errors(got, want);
        let ok = tol.max_abs.is_none_or(|t| max_abs <= t) && tol.rel.is_none_or(|t| rel <= t);
        let verdict = if ok { "ok" } else { "FAIL" };
        self.record(
            format!(
                "parity {} {file} {tensor} max_abs={max_abs:.3e} rel={rel:.3e} tol={} {verdict}",
                case.label,
                tol.describe()
            ),
            ok,
        )
    }

    /// Requires exact equality (token ids, masks, labels).
    pub fn exact<T: PartialEq + Debug>(
        &mut self,
        case: &Case,
        file: &str,
        tensor: &str,
        got: &[T],
        want: &[T],
    ) -> bool {
        let mismatches =
            got.iter().zip(want).filter(|(g, w)| g != w).count() + got.len().abs_diff(want.len());
        let ok = mismatches == 0;
        let first = got.iter().zip(want).position(|(g, w)| g != w);
        let detail = match first {
            Some(i) => format!(" first_diff@{i}: got {:?} expected {:?}", got[i], want[i]),
            None if !ok => format!(" len {} vs {}", got.len(), want.len()),
            None => String::new(),
        };
        let verdict = if ok { "ok" } else { "FAIL" };
        self.record(
            format!(
                "parity {} {file} {tensor} mismatches={mismatches} tol=exact{detail} {verdict}",
                case.label
            ),
            ok,
        )
    }

    /// Records a scalar comparison (metrics) with an absolute tolerance.
    pub fn scalar(
        &mut self,
        case: &Case,
        file: &str,
        name: &str,
        got: f64,
        want: f64,
        tol: f64,
    ) -> bool {
        let err = (got - want).abs();
        let ok = err <= tol || (got.is_infinite() && got == want);
        let verdict = if ok { "ok" } else { "FAIL" };
        self.record(
            format!("parity {} {file} {name} got={got:.9} want={want:.9} max_abs={err:.3e} tol=abs<={tol:e} {verdict}", case.label),
            ok,
        )
    }

    /// Records a failure that is not a numeric comparison (a file that does not load...).
    pub fn fail(&mut self, case: &Case, file: &str, what: &str) {
        self.record(format!("parity {} {file} {what} FAIL", case.label), false);
    }

    /// Records an outcome that is not numeric but must hold (e.g. "undefined" matches `null`).
    pub fn check(&mut self, case: &Case, file: &str, what: &str, ok: bool) -> bool {
        let verdict = if ok { "ok" } else { "FAIL" };
        self.record(format!("parity {} {file} {what} {verdict}", case.label), ok)
    }

    /// Records an optional field that is absent: not a comparison, not a failure.
    pub fn skip(&mut self, case: &Case, file: &str, field: &str) {
        let line = format!("parity {} {file} {field} skipped (absent)", case.label);
        println!("{line}");
        self.skipped.push(line);
    }

    /// Records a required field that is absent: a failure naming the file, the field and what
    /// the contract wants there.
    pub fn missing(&mut self, case: &Case, file: &str, field: &str, what: &str) {
        self.fail(
            case,
            file,
            &format!("{field} missing (required: {what}; see docs/fixtures.md)"),
        );
    }

    /// Records a required file that is absent.
    pub fn missing_file(&mut self, case: &Case, file: &str, what: &str) {
        self.fail(
            case,
            file,
            &format!("missing (required file: {what}; see docs/fixtures.md)"),
        );
    }

    /// Reads the safetensors file `name` of `case`, or records why it cannot (absent, unreadable).
    pub fn read_tensors(&mut self, case: &Case, name: &str, what: &str) -> Option<TensorFile> {
        let path = case.dir.join(name);
        if !path.is_file() {
            self.missing_file(case, name, what);
            return None;
        }
        TensorFile::read(&path)
            .map_err(|e| self.fail(case, name, &e.to_string()))
            .ok()
    }

    /// Reads the JSON object file `name` of `case`, or records why it cannot.
    pub fn read_json(&mut self, case: &Case, name: &str, what: &str) -> Option<serde_json::Value> {
        let path = case.dir.join(name);
        if !path.is_file() {
            self.missing_file(case, name, what);
            return None;
        }
        let parsed = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).map_err(|e| e.to_string()));
        match parsed {
            Ok(v) if v.is_object() => Some(v),
            Ok(_) => {
                self.fail(case, name, "is not a JSON object");
                None
            }
            Err(e) => {
                self.fail(case, name, &format!("unreadable: {e}"));
                None
            }
        }
    }

    /// The key `key` of a JSON object read by [`Report::read_json`]; a missing key is recorded as
    /// missing (`null` is present: it means "undefined" where the contract allows it).
    pub fn required_key<'v>(
        &mut self,
        case: &Case,
        file: &str,
        json: &'v serde_json::Value,
        key: &str,
        what: &str,
    ) -> Option<&'v serde_json::Value> {
        let v = json.get(key);
        if v.is_none() {
            self.missing(case, file, key, what);
        }
        v
    }

    /// A required tensor of `file` with the dtype family and rank of `dims`; when it is absent,
    /// or of another dtype or rank, one failure line names the file and the tensor.
    pub fn required<'f>(
        &mut self,
        case: &Case,
        file: &'f TensorFile,
        name: &str,
        dtype: Dtype,
        dims: &[&str],
    ) -> Option<&'f HostTensor> {
        self.tensor(case, file, name, dtype, dims, true)
    }

    /// An optional tensor: absent gives a `skipped (absent)` line; present, it must have the
    /// dtype family and rank of `dims` like a required one.
    pub fn optional<'f>(
        &mut self,
        case: &Case,
        file: &'f TensorFile,
        name: &str,
        dtype: Dtype,
        dims: &[&str],
    ) -> Option<&'f HostTensor> {
        self.tensor(case, file, name, dtype, dims, false)
    }

    fn tensor<'f>(
        &mut self,
        case: &Case,
        file: &'f TensorFile,
        name: &str,
        dtype: Dtype,
        dims: &[&str],
        required: bool,
    ) -> Option<&'f HostTensor> {
        let fname = file_name(file);
        if !file.contains(name) {
            if required {
                self.missing(case, &fname, name, &describe(dtype, dims));
            } else {
                self.skip(case, &fname, name);
            }
            return None;
        }
        dtype
            .get(file, name, dims.len())
            .map_err(|e| {
                let wanted = describe(dtype, dims);
                self.fail(case, &fname, &format!("{name}: {e} (wanted {wanted})"));
            })
            .ok()
    }

    /// Records a shape that disagrees with the case's other inputs; true when `got == want`.
    pub fn shape_is(
        &mut self,
        case: &Case,
        file: &str,
        name: &str,
        got: &[usize],
        want: &[usize],
    ) -> bool {
        if got != want {
            self.fail(
                case,
                file,
                &format!("{name} has shape {got:?}, the case's other inputs give {want:?}"),
            );
        }
        got == want
    }

    /// How many comparisons failed so far.
    pub fn failed(&self) -> usize {
        self.failures.len()
    }

    /// The failed lines so far.
    pub fn failures(&self) -> &[String] {
        &self.failures
    }

    /// The `skipped (absent)` lines so far.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// Panics with every failed line, or when nothing was compared at all.
    pub fn finish(self) {
        assert!(
            self.checked > 0,
            "parity {}: no comparison was made - are the fixtures present?",
            self.kind
        );
        assert!(
            self.failures.is_empty(),
            "parity {}: {} of {} comparisons failed:\n{}",
            self.kind,
            self.failures.len(),
            self.checked,
            self.failures.join("\n")
        );
        if self.skipped.is_empty() {
            println!("parity {}: {} comparisons ok", self.kind, self.checked);
        } else {
            println!(
                "parity {}: {} comparisons ok, {} optional fields skipped (absent)",
                self.kind,
                self.checked,
                self.skipped.len()
            );
        }
    }
}
