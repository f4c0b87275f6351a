"""Packing documents into rows (every token kept in order, masks and boundaries right) and seeded source mixing."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.lm.sequence_strategies import codes, layouts, texts
from wavefoundry.lm.packing import (
    Document,
    PackedRows,
    iter_packed_rows,
    mix_documents,
    next_token_targets,
    pack_documents,
    token_shares,
)
from wavefoundry.lm.prompts import s2st_document
from wavefoundry.lm.sequences import TokenLayout, text_document

SETTINGS = settings(max_examples=50, deadline=None)


@st.composite
def documents(draw) -> list[Document]:
    lengths = draw(st.lists(st.integers(1, 20), min_size=1, max_size=12))
    docs = []
    for i, n in enumerate(lengths):
        ids = torch.tensor(draw(st.lists(st.integers(0, 99), min_size=n, max_size=n)))
        mask = torch.tensor(draw(st.lists(st.booleans(), min_size=n, max_size=n))) if draw(st.booleans()) else None
        docs.append(Document(ids=ids, loss_mask=mask, kind=f"k{i % 3}"))
    return docs


@SETTINGS
@given(documents(), st.integers(1, 16), st.sampled_from([None, 7]))
def test_packing_keeps_every_token_in_order_with_its_mask_and_document(docs, seq_len, pad_id):
    total = sum(len(d.ids) for d in docs)
    kept = total if pad_id is not None else total - total % seq_len
    if kept == 0:
        with pytest.raises(ValueError, match="fewer than seq_len"):
            pack_documents(docs, seq_len=seq_len, pad_id=pad_id)
        return
    packed = pack_documents(docs, seq_len=seq_len, pad_id=pad_id)
    assert packed.ids.shape == (-(-kept // seq_len), seq_len) == packed.loss_mask.shape == packed.positions.shape
    real = packed.document_ids.view(-1) >= 0
    assert int(real.sum()) == kept and bool(real[:kept].all())  # padding only at the very end
    flat = {f: getattr(packed, f).view(-1)[:kept] for f in ("ids", "loss_mask", "document_ids", "positions")}
    assert flat["ids"].tolist() == torch.cat([d.ids for d in docs])[:kept].tolist()
    assert flat["loss_mask"].tolist() == torch.cat([d.mask() for d in docs])[:kept].tolist()
    assert flat["document_ids"].tolist() == [i for i, d in enumerate(docs) for _ in d.ids][:kept]
    assert flat["positions"].tolist() == [p for d in docs for p in range(len(d.ids))][:kept]
    assert packed.kinds == {i: docs[i].kind for i in flat["document_ids"].unique().tolist()}
    pad = packed.ids.view(-1)[kept:]
    assert pad.tolist() == [pad_id] * len(pad) and not packed.loss_mask.view(-1)[kept:].any()


def test_rows_stream_lazily_and_stack():
    docs = (Document(ids=torch.arange(5) + 10 * i) for i in itertools.count())  # endless
    rows = iter_packed_rows(docs, seq_len=4)
    first = [next(rows) for _ in range(3)]
    stacked = PackedRows.cat(first)
    assert stacked.ids.shape == (3, 4)
    assert stacked.ids.view(-1).tolist() == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14, 20, 21]
    assert stacked.document_ids[1].tolist() == [0, 1, 1, 1] and stacked.positions[2].tolist() == [3, 4, 0, 1]
    assert pack_documents(docs, seq_len=4, n_rows=2).ids.shape == (2, 4)


def test_next_token_targets_skip_document_starts_and_padding():
    second = Document(ids=torch.tensor([4, 5]), loss_mask=torch.tensor([True, False]))
    docs = [Document(ids=torch.tensor([1, 2, 3])), second]
    packed = pack_documents(docs, seq_len=6, pad_id=0)
    inputs, labels, mask = next_token_targets(packed)
    assert inputs.tolist() == [[1, 2, 3, 4, 5]] and labels.tolist() == [[2, 3, 4, 5, 0]]
    # 2 and 3 follow their document; 4 starts a new one; 5 is masked by its document; 0 is padding.
    assert mask.tolist() == [[True, True, False, False, False]]


@SETTINGS
@given(st.data())
def test_packed_s2st_examples_train_on_the_response_only(data):
    layout = data.draw(layouts())
    docs, prompts = [], []
    for _ in range(data.draw(st.integers(1, 4))):
        src, tgt = data.draw(codes(layout)), data.draw(codes(layout))
        ids, mask = s2st_document(
            layout, source_codes=src, source_text=data.draw(texts(layout)), target_text=data.draw(texts(layout)),
            target_codes=tgt,
        )  # fmt: skip
        docs.append(Document(ids=ids, loss_mask=mask, kind="s2st"))
        prompts.append(int((~mask).sum()))
    packed = pack_documents(docs, seq_len=data.draw(st.integers(2, 24)), pad_id=layout.text_end)
    on, real = packed.loss_mask, packed.document_ids >= 0
    in_response = packed.positions >= torch.tensor(prompts)[packed.document_ids.clamp(min=0)]
    assert torch.equal(on, in_response & real)  # on every response token of every document, nowhere else
    _, _, target_mask = next_token_targets(packed)
    assert not (target_mask & ~packed.loss_mask[:, 1:]).any()


def test_document_validation():
    with pytest.raises(ValueError, match="non-empty 1-D integer"):
        Document(ids=torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match="loss_mask must be bool"):
        Document(ids=torch.tensor([1, 2]), loss_mask=torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="seq_len must be >= 1"):
        next(iter_packed_rows([torch.tensor([1])], seq_len=0))


# --- mixing -----------------------------------------------------------------------------------------------------


def _source(kind: str, lo: int, hi: int, seed: int):
    """Endless documents of random length in [lo, hi]."""
    g = torch.Generator().manual_seed(seed)
    while True:
        n = int(torch.randint(lo, hi + 1, (1,), generator=g))
        yield Document(ids=torch.randint(0, 50, (n,), generator=g), kind=kind)


def _sources():
    return {"speech": _source("speech", 100, 300, 1), "text": _source("text", 10, 40, 2)}


def test_mix_realises_the_requested_token_ratio():
    weights = {"speech": 0.8, "text": 0.2}
    packed = pack_documents(mix_documents(_sources(), weights, seed=0), seq_len=512, n_rows=400)
    shares = token_shares(packed)
    assert abs(shares["speech"] - 0.8) < 0.02 and abs(shares["text"] - 0.2) < 0.02
    # Counting documents instead: speech documents are ~8x longer, so token shares are far from the weights.
    by_doc = list(itertools.islice(mix_documents(_sources(), weights, seed=0, unit="documents"), 4000))
    assert abs(sum(d.kind == "speech" for d in by_doc) / len(by_doc) - 0.8) < 0.02
    assert token_shares(pack_documents(by_doc, seq_len=512))["speech"] > 0.95


def test_mix_is_seeded_and_stops_at_an_exhausted_source():
    weights = {"speech": 0.5, "text": 0.5}

    def kinds(seed):
        return [d.kind for d in itertools.islice(mix_documents(_sources(), weights, seed=seed), 200)]

    assert kinds(3) == kinds(3) and kinds(3) != kinds(4)
    finite = {"a": [torch.tensor([1])] * 5, "b": _source("b", 1, 1, 0), "c": [torch.tensor([2])]}
    out = list(mix_documents(finite, {"a": 1.0, "b": 1.0, "c": 0.0}, seed=0))
    assert sum(d.kind == "a" for d in out) == 5 and all(d.kind in ("a", "b") for d in out)
    plain = text_document(TokenLayout(text_vocab_size=10, n_codebooks=1, codebook_size=4), [1, 2])
    assert next(mix_documents({"t": [plain]}, {"t": 1.0}, seed=0)).kind == "t"  # plain id tensors take the name


def test_mix_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown mix unit 'bytes'; valid: tokens, documents"):
        mix_documents(_sources(), {"speech": 1.0, "text": 1.0}, seed=0, unit="bytes")
    with pytest.raises(ValueError, match="weights name"):
        mix_documents(_sources(), {"speech": 1.0}, seed=0)
    with pytest.raises(ValueError, match="positive sum"):
        mix_documents(_sources(), {"speech": 0.0, "text": -1.0}, seed=0)
