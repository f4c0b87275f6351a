"""Diffusion for text-to-audio: schedules, v-objective, preconditioning, guidance, samplers and the DiT."""
