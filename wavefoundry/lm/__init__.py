"""Discrete audio language models: token layout and sequences, decoder, generation."""
