"""fmw (feature-map weighting): weighting layers, one CNN family, a probe that records what
every weighting layer did, safe checkpoints, and the tools the dashboard is built on."""

__version__ = "0.1.0"
