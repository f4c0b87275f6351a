"""Hypothesis strategies shared by the lm sequence tests: random token layouts, texts and codes."""

import torch
from hypothesis import strategies as st

from wavefoundry.lm.sequences import TokenLayout, Utterance


@st.composite
def layouts(draw, *, bos_eos: bool = True) -> TokenLayout:
    """Small random layouts: 1..4 codebooks, any non-empty selection, optional BOS/EOS (possibly equal)."""
    k = draw(st.integers(1, 4))
    selection = draw(st.one_of(st.none(), st.sets(st.integers(0, k - 1), min_size=1).map(lambda s: tuple(sorted(s)))))
    text_vocab = draw(st.integers(1, 40))
    maybe_text_id = st.one_of(st.none(), st.integers(0, text_vocab - 1)) if bos_eos else st.none()
    return TokenLayout(
        text_vocab_size=text_vocab,
        n_codebooks=k,
        codebook_size=draw(st.integers(1, 16)),
        codebooks=selection,
        bos_id=draw(maybe_text_id),
        eos_id=draw(maybe_text_id),
    )


def texts(layout: TokenLayout, max_size: int = 8) -> st.SearchStrategy[torch.Tensor]:
    """(L,) text ids, possibly empty; BOS/EOS ids included (they are ordinary text ids inside a text block)."""
    ids = st.lists(st.integers(0, layout.text_vocab_size - 1), max_size=max_size)
    return ids.map(lambda v: torch.tensor(v, dtype=torch.long))


@st.composite
def codes(draw, layout: TokenLayout, *, max_frames: int = 5, all_codebooks: bool | None = None) -> torch.Tensor:
    """(K, T) codes of every codec codebook or (K', T) of the selected ones (random when ``all_codebooks`` is None)."""
    full = draw(st.booleans()) if all_codebooks is None else all_codebooks
    k = layout.n_codebooks if full else layout.n_selected
    t = draw(st.integers(0, max_frames))
    flat = draw(st.lists(st.integers(0, layout.codebook_size - 1), min_size=k * t, max_size=k * t))
    return torch.tensor(flat, dtype=torch.long).view(k, t)


def selected(layout: TokenLayout, codes: torch.Tensor) -> torch.Tensor:
    """The (K', T) codes that a sequence keeps."""
    return codes[list(layout.selected)] if codes.shape[0] == layout.n_codebooks else codes


@st.composite
def utterances(draw, layout: TokenLayout, max_count: int = 3) -> list[Utterance]:
    n = draw(st.integers(1, max_count))
    return [Utterance(text=draw(texts(layout)), codes=draw(codes(layout))) for _ in range(n)]
