//! `protocol: reference | corrected`, one switch read by every room.
//!
//! - `reference` reproduces the authors' code bit for bit: class word from the path component,
//!   per-dataset mask thresholds, KSDD2 label = "has a GT file", Kvasir's seeded 150-image subset,
//!   masks paired by sorted order, the interleaving `cat([a0, a1], 1).view(B, E, 2)` of the adapted
//!   prompts, the per-category f32 min-max rescale before scoring.
//! - `corrected` does what the paper says where the code is arguably wrong: true class names, KSDD2
//!   label = mask not empty, all Kvasir images, masks paired by name, the two adapted prompts
//!   stacked as columns, raw scores.
//!
//! Every difference is one line in docs/DEVIATIONS.md.

use std::fmt;
use std::str::FromStr;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Reference,
    Corrected,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Reference => "reference",
            Protocol::Corrected => "corrected",
        }
    }
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [Protocol::Reference, Protocol::Corrected]
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown protocol `{s}` (use reference or corrected)"))
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
