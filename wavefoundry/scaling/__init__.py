"""Scaling-law tools: FLOP accounting (flops), IsoFLOP sweeps (isoflop) into a table (table), Chinchilla fits (fit,
with a batched L-BFGS in lbfgs), compute plans (plan) and their published checks (published)."""
