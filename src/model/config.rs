//! Method configuration: every dimension, the ablation variant and the protocol.

use serde::{Deserialize, Serialize};

/// The method and its ablations (Tables 2 and 3; definitions in docs/DEVIATIONS.md). One enum
/// for the model, the YAML sweep and the run directories' names.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// Dual adapters, text-guided routing, routing loss (the paper's method).
    #[default]
    Full,
    /// One (normal) branch per tap: `f + A(f)`, no routing, no routing loss.
    SingleAdapter,
    /// Dual adapters, routing by a learnable gate `Linear(D, 2)` per tap on the normalized CLS,
    /// no text in the routing, no routing loss.
    LearnableRouting,
    /// Dual adapters, text-guided routing, routing loss weight 0. `no_route_loss` is accepted as
    /// its older name (train-step fixtures use it).
    #[serde(alias = "no_route_loss")]
    TextRoutingNoLroute,
    /// The full method on the deepest tap only (the model is `Full` with one tap).
    LastLayer,
}

impl Variant {
    pub const ALL: [Variant; 5] = [
        Variant::Full,
        Variant::SingleAdapter,
        Variant::LearnableRouting,
        Variant::TextRoutingNoLroute,
        Variant::LastLayer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Full => "full",
            Variant::SingleAdapter => "single_adapter",
            Variant::LearnableRouting => "learnable_routing",
            Variant::TextRoutingNoLroute => "text_routing_no_lroute",
            Variant::LastLayer => "last_layer",
        }
    }

    /// Whether the model has an anomaly branch (and so routing weights).
    pub fn dual(self) -> bool {
        self != Variant::SingleAdapter
    }

    /// Whether the routing reads the text features (the reference's module layout).
    pub fn text_routed(self) -> bool {
        matches!(
            self,
            Variant::Full | Variant::TextRoutingNoLroute | Variant::LastLayer
        )
    }

    /// Whether the routing loss enters the total.
    pub fn uses_route_loss(self) -> bool {
        matches!(self, Variant::Full | Variant::LastLayer)
    }

    /// The backbone blocks this variant taps, given the experiment's: the deepest one alone for
    /// `last_layer` (block 23 of ViT-L/16), all of them otherwise.
    pub fn taps(self, taps: &[usize]) -> Vec<usize> {
        match (self, taps.iter().max()) {
            (Variant::LastLayer, Some(&last)) => vec![last],
            _ => taps.to_vec(),
        }
    }
}

impl std::str::FromStr for Variant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = if s == "no_route_loss" {
            "text_routing_no_lroute"
        } else {
            s
        };
        Variant::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Variant::ALL.iter().map(|v| v.name()).collect();
                format!("unknown variant `{s}`; use one of {}", names.join(", "))
            })
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

pub use crate::protocol::Protocol;

/// Weights of the four loss terms: `aware L_aware + seg L_seg + global L_global + route L_route`
/// (the YAML `loss` section).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossWeights {
    pub aware: f64,
    pub seg: f64,
    pub global: f64,
    pub route: f64,
}

impl Default for LossWeights {
    fn default() -> Self {
        Self {
            aware: 0.25,
            seg: 0.5,
            global: 0.25,
            route: 0.1,
        }
    }
}

/// Everything that shapes the trainable part of AVA-DINO. Defaults are the reference's full size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MethodConfig {
    /// Backbone feature width D (1024 for ViT-L).
    pub dim: usize,
    /// Visual adapter bottleneck b (reference 768, paper text 256).
    pub bottleneck: usize,
    /// Text feature width E (768 for CLIP ViT-L/14). The prompt adapters' hidden width is E too:
    /// their hidden output goes through `text_projection` (E -> D).
    pub text_dim: usize,
    /// Backbone blocks tapped, 0-based (informational for the engine; the model uses the count).
    pub taps: Vec<usize>,
    /// Routing temperature.
    pub tau: f64,
    /// Output map side S (maps are S x S).
    pub map_size: usize,
    pub variant: Variant,
    pub protocol: Protocol,
    pub loss_weights: LossWeights,
}

impl Default for MethodConfig {
    fn default() -> Self {
        Self {
            dim: 1024,
            bottleneck: 768,
            text_dim: 768,
            taps: vec![5, 11, 17, 23],
            tau: 0.1,
            map_size: 512,
            variant: Variant::Full,
            protocol: Protocol::Reference,
            loss_weights: LossWeights::default(),
        }
    }
}

/// A configuration that cannot build a model.
#[derive(Debug, thiserror::Error)]
#[error("method config: {0}")]
pub struct ConfigError(pub String);

impl MethodConfig {
    /// Number of taps L.
    pub fn n_taps(&self) -> usize {
        self.taps.len()
    }

    /// Weight of the routing loss in the total after the variant's switch.
    pub fn route_weight(&self) -> f64 {
        if self.variant.uses_route_loss() {
            self.loss_weights.route
        } else {
            0.0
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError(m.to_string()));
        if self.dim == 0 || self.bottleneck == 0 || self.text_dim == 0 {
            return bad("dim, bottleneck and text_dim must be positive");
        }
        if self.taps.is_empty() {
            return bad(
                "taps is empty: give at least one backbone block (e.g. [23] for last-layer-only)",
            );
        }
        if self.map_size < 2 {
            return bad("map_size must be at least 2 (align_corners=True upsampling)");
        }
        if self.tau.is_nan() || self.tau <= 0.0 {
            return bad("tau must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_style_config_parses_with_defaults() {
        let c: MethodConfig = serde_json::from_str(
            r#"{"variant": "learnable_routing", "taps": [23], "bottleneck": 256}"#,
        )
        .unwrap();
        assert_eq!(c.variant, Variant::LearnableRouting);
        assert_eq!(c.n_taps(), 1);
        assert_eq!(c.dim, 1024);
        assert_eq!(c.route_weight(), 0.0);
        assert_eq!(MethodConfig::default().route_weight(), 0.1);
        assert!(
            serde_json::from_str::<MethodConfig>(r#"{"bottlenek": 3}"#).is_err(),
            "typos are rejected"
        );
        assert!(
            MethodConfig {
                taps: vec![],
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        assert_eq!(
            "no_route_loss".parse::<Variant>().unwrap(),
            Variant::TextRoutingNoLroute
        );
        let old: Variant = serde_json::from_str(r#""no_route_loss""#).unwrap();
        assert_eq!(old, Variant::TextRoutingNoLroute);
        assert_eq!(Variant::LastLayer.taps(&[5, 23, 11]), vec![23]);
        assert!(Variant::LastLayer.uses_route_loss() && Variant::LastLayer.text_routed());
    }
}
