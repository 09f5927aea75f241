"""Each weighting kind in words for readers new to it: what its gate is, its formula, its paper,
and what "before", "gate" and "after" mean at one of its sites (the dashboard's and reports' text)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AFTER", "BEFORE", "KIND_DESCRIPTIONS", "KindDescription", "describe_kind"]

BEFORE = "the feature maps the block computed, one per channel, as they reach the weighting layer"
AFTER = "the maps multiplied by the gate: what the next block receives"


@dataclass(frozen=True)
class KindDescription:
    """One kind: a ``title``, its ``formula`` (x: the maps before, y: after), what its ``gate`` is,
    the ``paper`` it comes from (empty for none) with a link, and its gate ``stages``."""

    kind: str
    title: str
    formula: str
    gate: str
    paper: str = ""
    url: str = ""
    stages: tuple[str, ...] = ()
    short: str = ""  # the name papers use ("SE"), where it differs from the kind's

    @property
    def name(self) -> str:
        """The kind with its usual short name: "channel (SE)", "eca"."""
        return f"{self.kind} ({self.short})" if self.short and self.short.lower() != self.kind else self.kind


KIND_DESCRIPTIONS: dict[str, KindDescription] = {
    description.kind: description
    for description in (
        KindDescription(
            "none",
            "no weighting (the baseline)",
            "y = x",
            "there is none: after equals before. The same network without a weighting layer, to compare against.",
        ),
        KindDescription(
            "scale",
            "learned per-channel scale",
            "y = x * s    (s: one learned number per channel)",
            "one learned number per channel, the same for every image: it can damp or amplify a feature map "
            "but cannot react to what the image shows.",
            "Touvron et al. 2021, Going deeper with Image Transformers (LayerScale)",
            "https://arxiv.org/abs/2103.17239",
            ("channel",),
            "LayerScale",
        ),
        KindDescription(
            "spatial",
            "spatial attention",
            "y = x * sigmoid(conv1x1(x))",
            "one map of values between 0 and 1 over the positions, computed from all channels at each position "
            "and multiplied into every channel: it decides where the network looks.",
            "cf. the spatial squeeze-and-excitation of Roy et al. 2018, Concurrent Spatial and Channel "
            "Squeeze & Excitation",
            "https://arxiv.org/abs/1803.02579",
            ("spatial",),
        ),
        KindDescription(
            "channel",
            "squeeze-and-excitation (SE)",
            "y = x * sigmoid(W2 relu(W1 avgpool(x)))",
            "one value between 0 and 1 per channel, computed from the whole image (each channel's average, "
            "through a small bottleneck network): it decides which feature maps to keep, the same at every position.",
            "Hu et al. 2018, Squeeze-and-Excitation Networks",
            "https://arxiv.org/abs/1709.01507",
            ("channel",),
            "SE",
        ),
        KindDescription(
            "cbam",
            "CBAM: channel, then spatial attention",
            "x' = x * sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)));  y = x' * sigmoid(conv7x7([mean_c(x'); max_c(x')]))",
            "two gates in a row: a channel gate (which maps to keep, from each channel's average and maximum), "
            "then a spatial gate (where to look, from the mean and maximum over the channels at each position).",
            "Woo et al. 2018, CBAM: Convolutional Block Attention Module",
            "https://arxiv.org/abs/1807.06521",
            ("channel", "spatial"),
            "CBAM",
        ),
        KindDescription(
            "eca",
            "efficient channel attention (ECA)",
            "y = x * sigmoid(conv1d_k(avgpool(x)))",
            "one value between 0 and 1 per channel, as in SE, but each channel's gate comes from the averages of "
            "its k neighbouring channels through a 1-D convolution, with no bottleneck.",
            "Wang et al. 2020, ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks",
            "https://arxiv.org/abs/1910.03151",
            ("channel",),
            "ECA",
        ),
        KindDescription(
            "coord",
            "coordinate attention",
            "y = x * a_w * a_h,  a_h = sigmoid(F_h(z_h)), a_w = sigmoid(F_w(z_w)),  "
            "(z_h; z_w) = hswish(BN(conv1x1([avg_w(x); avg_h(x)])))",
            "two gates, each a value between 0 and 1 per channel and position along one axis: a_h per channel and "
            "row, a_w per channel and column, computed from the maps averaged along the other axis. Their product "
            "says, per channel, which rows and columns to keep: where a feature is, along each axis.",
            "Hou et al. 2021, Coordinate Attention for Efficient Mobile Network Design",
            "https://arxiv.org/abs/2103.02907",
            ("coord_w", "coord_h"),
            "CoordAtt",
        ),
        KindDescription(
            "simam",
            "SimAM: parameter-free attention",
            "y = x * sigmoid(e),  e = (x - mu_c)^2 / (4 (var_c + 1e-4)) + 0.5",
            "one value between 0.62 and 1 for every channel and position, with no learned parameters: activations "
            "that stand out from their channel's mean (mu_c, var_c) are kept, those close to it are damped.",
            "Yang et al. 2021, SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural Networks",
            "https://proceedings.mlr.press/v139/yang21o.html",
            ("full",),
            "SimAM",
        ),
    )
}


def describe_kind(kind: str, stages: tuple[str, ...] = ()) -> KindDescription:
    """The description of ``kind``; for a kind fmw has no words for, a generic one built from the
    gate ``stages`` the site applies ("channel", "spatial")."""
    if kind in KIND_DESCRIPTIONS:
        return KIND_DESCRIPTIONS[kind]
    parts = {"channel": "one value per channel", "spatial": "one map over the positions"}
    named = [parts[stage] for stage in stages if stage in parts] or ["a gate"]
    return KindDescription(
        kind,
        kind,
        "y = x * gate(x)",
        f"{' and '.join(named)}, multiplied into the maps.",
        stages=stages,
    )
