"""Reusable network blocks that policies assemble: transformer, vision and language encoders, the target encoder,
the block-causal latent predictor, the flow-matching DiT action head and anti-collapse regularizers. Their configs
are in :mod:`vlajepa.nn.config`. Nothing here knows about a particular policy."""
