//! The user's Slurm settings: the command line over the experiment's `slurm:` section, each
//! value checked before it is written on an `#SBATCH` line.

use super::SlurmError;
use crate::experiment::schema::SlurmConfig;

/// The default of `max_parallel`: at most this many array tasks at once.
pub const DEFAULT_MAX_PARALLEL: usize = 8;

/// The user's settings: the command line's (`cli`) over the experiment's (`yaml`), every value
/// checked and a bad one named with its origin (`--time` or `slurm.time`); `max_parallel` is
/// always set (its default [`DEFAULT_MAX_PARALLEL`]).
pub fn resolve(yaml: &SlurmConfig, cli: &SlurmConfig) -> Result<SlurmConfig, SlurmError> {
    type Check = fn(&str, &str) -> Result<(), SlurmError>;
    let text =
        |flag: &str, cli: &Option<String>, key: &str, yaml: &Option<String>, check: Check| {
            pick_text(flag, cli, key, yaml)
                .map(|(origin, v)| check(&origin, &v).map(|()| v))
                .transpose()
        };
    let cpus_per_task = cli
        .cpus_per_task
        .map(|n| ("--cpus-per-task", n))
        .or(yaml.cpus_per_task.map(|n| ("slurm.cpus_per_task", n)))
        .map(|(origin, n)| match n {
            0 => Err(invalid(origin, "0", "a task needs at least 1 CPU")),
            n => Ok(n),
        })
        .transpose()?;
    let yaml_extra = yaml.extra.iter().map(|e| ("slurm.extra", e));
    let cli_extra = cli.extra.iter().map(|e| ("--sbatch", e));
    let extra = yaml_extra
        .chain(cli_extra)
        .map(|(origin, e)| check_extra(origin, e).map(|()| e.clone()))
        .collect::<Result<_, _>>()?;
    Ok(SlurmConfig {
        partition: text(
            "--partition",
            &cli.partition,
            "slurm.partition",
            &yaml.partition,
            check_word,
        )?,
        account: text(
            "--account",
            &cli.account,
            "slurm.account",
            &yaml.account,
            check_word,
        )?,
        qos: text("--qos", &cli.qos, "slurm.qos", &yaml.qos, check_word)?,
        time: text("--time", &cli.time, "slurm.time", &yaml.time, check_time)?,
        cpus_per_task,
        mem: text("--mem", &cli.mem, "slurm.mem", &yaml.mem, check_mem)?,
        max_parallel: Some(
            cli.max_parallel
                .or(yaml.max_parallel)
                .unwrap_or(DEFAULT_MAX_PARALLEL),
        ),
        extra,
    })
}

/// Options both jobs share: where and under whose name they run, and the user's extra lines.
pub(super) fn shared_options(s: &SlurmConfig) -> Vec<String> {
    let named = [
        ("partition", &s.partition),
        ("account", &s.account),
        ("qos", &s.qos),
    ];
    named
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("--{k}={v}")))
        .chain(s.extra.iter().cloned())
        .collect()
}

/// The command line's value when given, else the YAML's, with its origin.
fn pick_text(
    flag: &str,
    cli: &Option<String>,
    key: &str,
    yaml: &Option<String>,
) -> Option<(String, String)> {
    match (cli, yaml) {
        (Some(v), _) => Some((flag.to_string(), v.clone())),
        (None, Some(v)) => Some((key.to_string(), v.clone())),
        (None, None) => None,
    }
}

fn invalid(origin: &str, value: &str, problem: &str) -> SlurmError {
    SlurmError::Invalid {
        origin: origin.to_string(),
        value: value.to_string(),
        problem: problem.to_string(),
    }
}

/// `Ok` when `ok`, else the value refused with `problem`.
fn require(ok: bool, origin: &str, value: &str, problem: &str) -> Result<(), SlurmError> {
    if ok {
        Ok(())
    } else {
        Err(invalid(origin, value, problem))
    }
}

/// A value written on an `#SBATCH` line: sbatch splits those lines at white space and strips
/// quotes, and a line break would end the line, so none of these may appear.
pub(super) fn check_word(origin: &str, value: &str) -> Result<(), SlurmError> {
    require(
        !value.is_empty(),
        origin,
        value,
        "is empty; leave it out to use the default",
    )?;
    let odd = |c: char| c.is_whitespace() || c.is_control() || c == '\'' || c == '"';
    require(
        !value.chars().any(odd),
        origin,
        value,
        "must be one word without spaces or quotes (it is written on an #SBATCH line)",
    )
}

/// One sbatch option per extra line, e.g. `--constraint=avx512`.
fn check_extra(origin: &str, value: &str) -> Result<(), SlurmError> {
    check_word(origin, value)?;
    require(
        value.starts_with('-'),
        origin,
        value,
        "must be one sbatch option such as --constraint=avx512 (without `#SBATCH`)",
    )
}

/// Slurm's time formats: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`, or `UNLIMITED`.
fn check_time(origin: &str, value: &str) -> Result<(), SlurmError> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (days, rest) = match value.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, value),
    };
    let fields: Vec<&str> = rest.split(':').collect();
    let unlimited = ["unlimited", "infinite"].map(|w| value.eq_ignore_ascii_case(w));
    require(
        unlimited.contains(&true)
            || (days.is_none_or(digits) && fields.len() <= 3 && fields.iter().all(|f| digits(f))),
        origin,
        value,
        "is not a Slurm time limit; write minutes (90), HH:MM:SS (02:00:00) or D-HH:MM:SS (1-12:00:00)",
    )
}

/// Slurm's memory sizes: a whole number with an optional K, M (the default), G or T suffix.
fn check_mem(origin: &str, value: &str) -> Result<(), SlurmError> {
    let number = value.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    let suffix_len = value.len() - number.len();
    require(
        suffix_len <= 1 && !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()),
        origin,
        value,
        "is not a Slurm memory size; write a whole number with K, M, G or T (16G, 16000M)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_wins_over_yaml() {
        let yaml = SlurmConfig {
            partition: Some("from-yaml".into()),
            account: Some("yaml-account".into()),
            time: Some("30".into()),
            cpus_per_task: Some(3),
            max_parallel: Some(2),
            extra: vec!["--constraint=yaml".into()],
            ..SlurmConfig::default()
        };
        let cli = SlurmConfig {
            partition: Some("from-cli".into()),
            cpus_per_task: Some(5),
            extra: vec!["--constraint=cli".into()],
            ..SlurmConfig::default()
        };
        let s = resolve(&yaml, &cli).unwrap();
        assert_eq!(s.partition.as_deref(), Some("from-cli"));
        assert_eq!(s.account.as_deref(), Some("yaml-account"));
        assert_eq!(s.time.as_deref(), Some("30"));
        assert_eq!(s.cpus_per_task, Some(5));
        assert_eq!(s.max_parallel, Some(2));
        // Both extra lists, the command line's last (sbatch keeps the last of a repeated option).
        assert_eq!(s.extra, ["--constraint=yaml", "--constraint=cli"]);
        let only_yaml = resolve(&yaml, &SlurmConfig::default()).unwrap();
        assert_eq!(only_yaml.partition.as_deref(), Some("from-yaml"));
        assert_eq!(only_yaml.cpus_per_task, Some(3));
    }

    #[test]
    fn bad_settings_are_named_with_their_origin() {
        let err = |cli: SlurmConfig| resolve(&SlurmConfig::default(), &cli).unwrap_err();
        let msg = err(SlurmConfig {
            time: Some("2h".into()),
            ..SlurmConfig::default()
        })
        .to_string();
        assert!(msg.starts_with("--time `2h`: is not a Slurm time"), "{msg}");
        let msg = err(SlurmConfig {
            mem: Some("16GB".into()),
            ..SlurmConfig::default()
        })
        .to_string();
        assert!(msg.contains("--mem `16GB`") && msg.contains("16G"), "{msg}");
        let msg = err(SlurmConfig {
            partition: Some("gpu a100".into()),
            ..SlurmConfig::default()
        })
        .to_string();
        assert!(
            msg.contains("--partition `gpu a100`: must be one word"),
            "{msg}"
        );
        let msg = err(SlurmConfig {
            extra: vec!["#SBATCH --exclusive".into()],
            ..SlurmConfig::default()
        })
        .to_string();
        assert!(msg.contains("--sbatch"), "{msg}");
        let msg = err(SlurmConfig {
            extra: vec!["constraint=avx512".into()],
            ..SlurmConfig::default()
        })
        .to_string();
        assert!(msg.contains("one sbatch option"), "{msg}");
        let msg = err(SlurmConfig {
            cpus_per_task: Some(0),
            ..SlurmConfig::default()
        })
        .to_string();
        assert!(msg.contains("--cpus-per-task `0`"), "{msg}");
        let yaml = SlurmConfig {
            qos: Some("high\nnext".into()),
            ..SlurmConfig::default()
        };
        let msg = resolve(&yaml, &SlurmConfig::default())
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("slurm.qos `high\nnext`"), "{msg}");
    }

    #[test]
    fn slurm_time_and_memory_formats_are_checked() {
        for ok in [
            "90",
            "90:30",
            "02:00:00",
            "1-12",
            "1-12:30",
            "1-12:30:00",
            "0",
            "UNLIMITED",
        ] {
            assert!(check_time("t", ok).is_ok(), "{ok}");
        }
        for bad in ["", "2h", "1:2:3:4", "a-01:00:00", "1-", ":30", "01::00"] {
            assert!(check_time("t", bad).is_err(), "{bad}");
        }
        for ok in ["16G", "16000", "512M", "1T", "8g"] {
            assert!(check_mem("m", ok).is_ok(), "{ok}");
        }
        for bad in ["", "G", "16GB", "1.5G", "-1G"] {
            assert!(check_mem("m", bad).is_err(), "{bad}");
        }
    }
}
