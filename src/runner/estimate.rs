//! What a sweep will cost, before any work: per job the time of each stage on a CPU (this
//! machine's calibrated rates, else the build machine's: `engine::cost::calibration`) and on one
//! H200 (projected from FLOPs at each stage's dtype peak), its peak memory and what it leaves on
//! disk.
//! Jobs listed by several experiments count once; a training shared by several jobs, and the
//! prompt features of a class word, are counted where they are first computed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::backbone::{Precision, Spec};
use crate::data::synth::{self, Resolution};
use crate::data::{ListOptions, Registry, list_samples};
use crate::engine::assets::{backbone_spec, embedded_text_config};
use crate::engine::budget::available_at_start;
use crate::engine::cost::calibration::CpuRates;
use crate::engine::cost::{self, H200_NAME, Memory, Rates, Stage, StageDtypes, Work};
use crate::engine::plan::{Facts, JobPlan, Sizes};
use crate::engine::progress::clock;
use crate::experiment::schema::{Experiment, format_bytes};
use crate::experiment::{ExperimentDir, Job, LoadedExperiment, Sharing, TrainStore, jobs};
use crate::io::space::Space;
use crate::text::ClipTextConfig;

/// Images of one dataset as a job would read them.
#[derive(Debug, Clone)]
struct DatasetInfo {
    images: usize,
    words: BTreeSet<String>,
    mpix: f64,
    /// Images per category.
    per_category: Vec<usize>,
    /// Where the counts came from (`listed`, `planned twins`, `official counts`).
    source: &'static str,
}

fn dataset_info(exp: &Experiment, key: &str, repo_root: &Path) -> Result<DatasetInfo, String> {
    let reg_path = repo_root.join(&exp.data.registry);
    let reg = if reg_path.is_file() {
        Registry::load(&reg_path)
    } else {
        Registry::load_default()
    }
    .map_err(|e| e.to_string())?;
    let spec = reg.get(key).map_err(|e| e.to_string())?.clone();
    let syn = &exp.data.synthetic;
    let (reg, resolution) = match exp.data.root.resolve() {
        Ok(None) => (
            reg.with_fixed_root(repo_root.join(&syn.dir)),
            syn.resolution,
        ),
        Ok(Some(root)) => (reg.with_data_root(root), Resolution::Real),
        // No data root configured: the official counts below.
        Err(_) => (reg, Resolution::Real),
    };
    let size = |cat: &str| {
        let ci = spec
            .categories
            .iter()
            .position(|c| c.name == cat)
            .unwrap_or(0);
        let (w, h) = synth::image_size(key, ci, cat, resolution);
        (w * h) as f64 / 1e6
    };
    let twins_current = exp.data.root.is_embedded()
        && std::fs::read_to_string(repo_root.join(&syn.dir).join(".synth-complete")).ok()
            == Some(syn.options().stamp());
    if (!exp.data.root.is_embedded() || twins_current)
        && let Ok(samples) = list_samples(&reg, key, exp.protocol, &ListOptions::default())
    {
        let mut per_cat: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &samples {
            *per_cat.entry(&s.category).or_default() += 1;
        }
        return Ok(DatasetInfo {
            images: samples.len(),
            words: samples.iter().map(|s| s.class_word.clone()).collect(),
            mpix: samples.iter().map(|s| size(&s.category)).sum(),
            per_category: per_cat.into_values().collect(),
            source: "listed",
        });
    }
    // Not on disk (yet): the twins the generator would write, or the official counts.
    let counts: Vec<(String, usize)> = if exp.data.root.is_embedded() {
        let planned = synth::planned(&reg, Path::new("."), &syn.options());
        let ds = planned
            .into_iter()
            .find(|d| d.key == key)
            .ok_or("no such twin")?;
        ds.categories
            .into_iter()
            .map(|c| (c.name, c.normal + c.anomalous))
            .collect()
    } else {
        spec.categories
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    c.normal.unwrap_or(0) + c.anomalous.unwrap_or(0),
                )
            })
            .collect()
    };
    Ok(DatasetInfo {
        images: counts.iter().map(|(_, n)| n).sum(),
        // One word per category (the reference's path-derived word can merge them).
        words: counts.iter().map(|(c, _)| format!("{key}/{c}")).collect(),
        mpix: counts.iter().map(|(c, n)| size(c) * *n as f64).sum(),
        per_category: counts.iter().map(|(_, n)| *n).collect(),
        source: if exp.data.root.is_embedded() {
            "planned twins"
        } else {
            "official counts (data not found)"
        },
    })
}

/// One job's projection.
#[derive(Debug, Clone)]
pub struct JobEstimate {
    pub label: String,
    pub cpu: Vec<Stage>,
    pub gpu: Vec<Stage>,
    pub memory: Memory,
    /// `cache.memory_budget`, resolved (bytes).
    pub budget: u64,
    pub store: TrainStore,
    pub trains: bool,
    pub disk: Disk,
    /// Where its feature shards go (`cache.dir`, relative to the working directory).
    pub cache_dir: std::path::PathBuf,
}

/// What a job leaves on disk, bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Disk {
    /// Checkpoints its training keeps (`cost::checkpoint_kept_bytes`; 0 when shared and done
    /// earlier), under the runs directory.
    pub checkpoints: f64,
    /// Feature shards it writes (training and target sets not written earlier), under
    /// `cache.dir`.
    pub shards: f64,
    /// Spilled maps of its largest category while they are scored (removed after): the most it
    /// needs at once beyond what it keeps.
    pub spilled: f64,
}

impl Disk {
    /// What stays: checkpoints and shards.
    pub fn kept(&self) -> f64 {
        self.checkpoints + self.shards
    }
}

/// The projection of a set of experiments.
#[derive(Debug, Clone)]
pub struct Estimate {
    pub jobs: Vec<JobEstimate>,
    pub notes: Vec<String>,
    /// The CPU column's rates and where they come from.
    pub cpu_rates: CpuRates,
}

fn text_config(exp: &Experiment) -> ClipTextConfig {
    if exp.text.weights.is_embedded() {
        embedded_text_config(&exp.text.embedded)
    } else {
        ClipTextConfig::vitl14_336()
    }
}

/// Projects the cost of every job of `experiments` (see the module docs), the CPU column at
/// `cpu_rates`.
pub fn estimate(
    experiments: &[LoadedExperiment],
    repo_root: &Path,
    cpu_rates: &CpuRates,
) -> Result<Estimate, String> {
    let mut out = Estimate {
        jobs: Vec::new(),
        notes: Vec::new(),
        cpu_rates: cpu_rates.clone(),
    };
    let mut seen_runs = BTreeSet::new();
    let mut seen = Seen::default();
    let mut infos: BTreeMap<(String, String), DatasetInfo> = BTreeMap::new();
    let machine = Machine {
        available: available_at_start(),
        cpu: &cpu_rates.rates,
    };
    for loaded in experiments {
        let base = &loaded.experiment;
        let all = jobs(base);
        for job in &all {
            let job = job.clone();
            let sharing = Sharing::of(&all, base, &job);
            let dir = ExperimentDir::new(Path::new("runs"), base);
            if !seen_runs.insert(dir.run(&job).path) {
                continue;
            }
            let exp = job.run_config(base);
            let mut info = |key: &str| -> Result<DatasetInfo, String> {
                let k = (
                    serde_json::to_string(&exp.data).unwrap_or_default(),
                    key.to_string(),
                );
                if let Some(i) = infos.get(&k) {
                    return Ok(i.clone());
                }
                let i = dataset_info(&exp, key, repo_root)?;
                infos.insert(k, i.clone());
                Ok(i)
            };
            let (train, target) = (info(&job.train)?, info(&job.target)?);
            for i in [&train, &target] {
                let note = format!("counts: {}", i.source);
                if !out.notes.contains(&note) {
                    out.notes.push(note);
                }
            }
            out.jobs.push(job_estimate(
                &exp,
                &job,
                &dir,
                (&train, &target),
                &machine,
                sharing,
                &mut seen,
            )?);
        }
    }
    Ok(out)
}

/// What the machine that runs the jobs offers: memory available at the start (the `auto`
/// budget's base) and its CPU rates.
struct Machine<'a> {
    available: Option<u64>,
    cpu: &'a Rates,
}

/// What earlier jobs of the sweep leave behind for later ones.
#[derive(Default)]
struct Seen {
    /// Training directories already counted (a shared training runs once).
    trained: BTreeSet<std::path::PathBuf>,
    /// (text weights, class word) pairs already encoded.
    encoded: BTreeSet<(String, String)>,
    /// Feature-shard sets written to disk (backbone, data, precision, cache dir, dataset).
    shards: BTreeSet<String>,
}

fn job_estimate(
    exp: &Experiment,
    job: &Job,
    dir: &ExperimentDir,
    (train, target): (&DatasetInfo, &DatasetInfo),
    machine: &Machine,
    sharing: Sharing,
    seen: &mut Seen,
) -> Result<JobEstimate, String> {
    // Without the weights at hand, the paper's backbone.
    let backbone = backbone_spec(&exp.backbone)
        .unwrap_or_else(|_| Spec::paper())
        .shape();
    let text = text_config(exp);
    let method = job.method_config(exp, backbone.width, text.projection_dim);
    // What earlier jobs of the sweep leave: a training done, shards of a disk-stored training.
    let shard_key = |key: &str| {
        format!(
            "{}|{}|{:?}|{}|{}",
            serde_json::to_string(&exp.backbone).unwrap_or_default(),
            serde_json::to_string(&exp.data).unwrap_or_default(),
            exp.cache.dtype,
            exp.cache.dir.display(),
            key
        )
    };
    let facts = Facts {
        training_complete: !seen.trained.insert(dir.training(job).path),
        train_shards: seen.shards.contains(&shard_key(&job.train)),
        target_shards: seen.shards.contains(&shard_key(&job.target)),
    };
    let sizes = Sizes {
        backbone: &backbone,
        backbone_packed: cost::runs_cpu_kernels(exp.device, exp.backbone.dtype),
        text: &text,
        method: &method,
        train_images: train.images,
        target_images: target.images,
        largest_category: target.per_category.iter().copied().max().unwrap_or(0),
    };
    let plan = JobPlan::new(exp, &sizes, machine.available, sharing, facts);
    let disk = Disk {
        checkpoints: if plan.trains {
            cost::checkpoint_kept_bytes(&method, exp.train.epochs)
        } else {
            0.0
        },
        shards: plan.shards_written as f64,
        spilled: plan.spilled as f64,
    };
    if plan.write_train_shards {
        seen.shards.insert(shard_key(&job.train));
    }
    if plan.write_target_shards {
        seen.shards.insert(shard_key(&job.target));
    }
    let weights = format!("{:?}", exp.text);
    let mut words = 0;
    for w in train.words.iter().chain(&target.words) {
        if seen.encoded.insert((weights.clone(), w.clone())) {
            words += 1;
        }
    }
    let s2 = (exp.data.image_size * exp.data.image_size) as f64;
    // Decoding: once per backbone pass, plus once more for a recomputing store's mask pass.
    let decodes =
        plan.train_passes + usize::from(plan.store == TrainStore::Recompute && plan.trains);
    // The overlay maps run their few images per category through the backbone again, unless
    // the target's features are in shards (`engine::overlays`).
    let overlays = if plan.target_from_shards || plan.write_target_shards {
        0
    } else {
        let k = exp.eval.maps_per_category;
        target.per_category.iter().map(|&n| n.min(k)).sum()
    };
    let target_extracted = overlays
        + if plan.target_from_shards {
            0
        } else {
            target.images
        };
    let mpix_per_target = target.mpix / target.images.max(1) as f64;
    let work = Work {
        train_images: train.images * plan.train_passes,
        train_mpix: train.mpix * decodes as f64,
        train_image_steps: if plan.trains {
            train.images * exp.train.epochs
        } else {
            0
        },
        words,
        target_images: target.images,
        target_extracted,
        target_mpix: mpix_per_target * (target_extracted as f64),
        checkpoints: plan.checkpoints.len(),
        target_pixels: target.images as f64 * s2,
        checkpoint_bytes: if plan.trains {
            cost::checkpoint_bytes(&method, exp.train.epochs)
        } else {
            0.0
        },
    };
    let stages = |r: &Rates| cost::stages(&backbone, &text, &method, &work, r);
    Ok(JobEstimate {
        label: format!("{}-{}/{job}", exp.name, exp.profile),
        cpu: stages(machine.cpu),
        // Checkpoints go to a disk, not to the GPU: at the CPU column's (this machine's) rate.
        gpu: stages(&Rates {
            checkpoint_mb_per_s: machine.cpu.checkpoint_mb_per_s,
            ..cost::h200(&StageDtypes::new(exp.backbone.dtype))
        }),
        memory: plan.memory,
        budget: plan.budget.bytes,
        store: plan.store,
        trains: plan.trains,
        disk,
        cache_dir: exp.cache.dir.clone(),
    })
}

impl Estimate {
    /// Total seconds on the CPU and on the GPU.
    pub fn totals(&self) -> (f64, f64) {
        let sum = |f: fn(&JobEstimate) -> &Vec<Stage>| {
            self.jobs
                .iter()
                .flat_map(|j| f(j).iter())
                .map(|s| s.seconds)
                .sum::<f64>()
        };
        (sum(|j| &j.cpu), sum(|j| &j.gpu))
    }

    /// The largest peak memory of any job.
    pub fn peak(&self) -> u64 {
        self.jobs.iter().map(|j| j.memory.peak()).max().unwrap_or(0)
    }

    /// What all jobs leave on disk (`spilled`: the largest of any job, as jobs run one at a
    /// time in a process).
    pub fn disk(&self) -> Disk {
        self.jobs.iter().fold(Disk::default(), |a, j| Disk {
            checkpoints: a.checkpoints + j.disk.checkpoints,
            shards: a.shards + j.disk.shards,
            spilled: a.spilled.max(j.disk.spilled),
        })
    }

    /// A warning when a disk that will take the sweep's files has less room free now than the
    /// sweep needs there: the checkpoints and, while a category is scored, spilled maps under
    /// `runs`; the feature shards under each job's `cache.dir` (both relative to `root`). Paths
    /// on one file system add up. `space` reads a path's file system
    /// ([`space_of`](crate::io::space::space_of) outside tests); one it cannot read is not
    /// judged.
    pub fn disk_warning(
        &self,
        root: &Path,
        runs: &Path,
        space: impl Fn(&Path) -> Option<Space>,
    ) -> Option<String> {
        // Per file system: its room, the bytes it must take, and which folders they go to.
        let mut disks: BTreeMap<u64, (u64, f64, Vec<String>)> = BTreeMap::new();
        let mut need = |dir: &Path, bytes: f64| {
            if bytes <= 0.0 {
                return;
            }
            let dir = root.join(dir);
            if let Some(sp) = space(&dir) {
                let d = disks.entry(sp.device).or_insert((sp.free, 0.0, Vec::new()));
                d.1 += bytes;
                let name = dir.display().to_string();
                if !d.2.contains(&name) {
                    d.2.push(name);
                }
            }
        };
        let total = self.disk();
        need(runs, total.checkpoints + total.spilled);
        for j in &self.jobs {
            need(&j.cache_dir, j.disk.shards);
        }
        let short: Vec<String> = disks
            .values()
            .filter(|(free, bytes, _)| *bytes > *free as f64)
            .map(|(free, bytes, dirs)| {
                format!(
                    "{} {} about {}, {} is free now",
                    dirs.join(" and "),
                    if dirs.len() > 1 { "need" } else { "needs" },
                    disk_bytes(*bytes),
                    format_bytes(*free)
                )
            })
            .collect();
        (!short.is_empty()).then(|| {
            format!(
                "warning: not enough disk: {}; choose another `--runs` or `cache.dir`, keep \
                 feature shards in f16 (`cache.dtype: f16` halves them) or the training \
                 features in memory (`cache.train: memory`), or free some space before starting",
                short.join("; ")
            )
        })
    }

    /// A Markdown report: per job and stage, then totals, the dominant stage and the notes.
    pub fn render(&self) -> String {
        let mut s = format!(
            "| job | stage | TFLOP | {} | 1x H200 (projected) |\n|---|---|---:|---:|---:|\n",
            self.cpu_rates.column()
        );
        let mut by_stage: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        for j in &self.jobs {
            for (c, g) in j.cpu.iter().zip(&j.gpu) {
                let e = by_stage.entry(c.name).or_default();
                e.0 += c.seconds;
                e.1 += g.seconds;
                if c.seconds > 0.0 {
                    s.push_str(&format!(
                        "| {} | {} | {:.2} | {} | {} |\n",
                        j.label,
                        c.name,
                        c.flops / 1e12,
                        clock(c.seconds),
                        clock(g.seconds)
                    ));
                }
            }
            s.push_str(&format!(
                "| {} | peak memory | | {} = {} fixed + {} activations + {} data (activations + data budget {}; {} training store{}) | |\n",
                j.label,
                format_bytes(j.memory.peak()),
                format_bytes(j.memory.fixed),
                format_bytes(j.memory.activations),
                format_bytes(j.memory.data),
                format_bytes(j.budget),
                match j.store {
                    TrainStore::Memory => "memory",
                    TrainStore::Disk => "disk",
                    TrainStore::Recompute => "recompute",
                    TrainStore::Auto => "auto",
                },
                if j.trains { "" } else { ", training shared" }
            ));
            let d = &j.disk;
            if d.kept() + d.spilled > 0.0 {
                s.push_str(&format!(
                    "| {} | disk | | {} = {} checkpoints + {} feature shards{} | |\n",
                    j.label,
                    disk_bytes(d.kept()),
                    disk_bytes(d.checkpoints),
                    disk_bytes(d.shards),
                    spilled_note(d.spilled)
                ));
            }
        }
        let (cpu, gpu) = self.totals();
        s.push_str("\n| stage | CPU | 1x H200 |\n|---|---:|---:|\n");
        for (name, (c, g)) in &by_stage {
            s.push_str(&format!("| {name} | {} | {} |\n", clock(*c), clock(*g)));
        }
        s.push_str(&format!(
            "| **total** | **{}** | **{}** |\n",
            clock(cpu),
            clock(gpu)
        ));
        if let Some((name, (c, _))) = by_stage.iter().max_by(|a, b| a.1.0.total_cmp(&b.1.0)) {
            s.push_str(&format!(
                "\n{} jobs; dominant stage on the CPU: {name} ({:.0} % of the time); largest job peak memory {}.\n",
                self.jobs.len(),
                100.0 * c / cpu.max(1e-12),
                format_bytes(self.peak())
            ));
        }
        let d = self.disk();
        s.push_str(&format!(
            "Disk: {} kept ({} of checkpoints under the runs directory, {} of feature shards \
             under `cache.dir`){}.\n",
            disk_bytes(d.kept()),
            disk_bytes(d.checkpoints),
            disk_bytes(d.shards),
            spilled_note(d.spilled)
        ));
        if let Some(free) = available_at_start()
            && self.peak() > free
        {
            // The fixed part (weights, a backbone batch, a training batch's activations) does
            // not shrink with the budget: say which knobs do before an hour of work is lost.
            s.push_str(&format!(
                "- warning: the largest job needs about {}, more than the {} available now; lower \
                 `train.batch_size` (a training batch's activations), `train.extract_batch_size` \
                 or `cache.memory_budget`, or run on a larger machine.\n",
                format_bytes(self.peak()),
                format_bytes(free)
            ));
        }
        for n in &self.notes {
            s.push_str(&format!("- {n}\n"));
        }
        s.push_str(&format!("- {}.\n", self.cpu_rates.describe()));
        s.push_str(&format!(
            "- GPU: {H200_NAME}: f32 at {:.0} TFLOP/s, bf16/f16 at {:.0}; checkpoints written at \
             the CPU column's {:.0} MB/s (docs/scale.md).\n",
            cost::h200_peak_tflops(Precision::F32),
            cost::h200_peak_tflops(Precision::Bf16),
            self.cpu_rates.rates.checkpoint_mb_per_s,
        ));
        s
    }
}

fn disk_bytes(bytes: f64) -> String {
    format_bytes(bytes.round() as u64)
}

/// The spilled maps' clause of a disk line (empty when nothing spills).
fn spilled_note(spilled: f64) -> String {
    if spilled > 0.0 {
        format!(
            ", and up to {} more at once while a category's spilled maps are scored (removed \
             after)",
            disk_bytes(spilled)
        )
    } else {
        String::new()
    }
}
