"""Scaling-law tools: FLOP accounting (flops), IsoFLOP sweeps (isoflop), Chinchilla fits (fit), compute plans (plan)."""
