"""Zero-shot classification: prompt ensembling by hand, top-1 / top-5 on known scores, the report."""

from __future__ import annotations

import pytest
import torch

from mmcr.evaluation.zero_shot import class_embeddings, zero_shot_accuracy, zero_shot_report

WORDS = ["cat", "dog", "flag", "an", "emoji", "of", "icon"]


def bag_of_words(texts: list[str]) -> torch.Tensor:
    """A deterministic text 'tower': word counts over a small vocabulary, float64."""
    out = torch.zeros(len(texts), len(WORDS), dtype=torch.float64)
    for row, text in enumerate(texts):
        for word in text.replace(".", "").split():
            out[row, WORDS.index(word)] += 1
    return out


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def test_class_embeddings_average_the_normalised_prompts_and_normalise_again() -> None:
    templates = ["{}", "an emoji of {}."]
    classes = class_embeddings(["cat", "dog"], bag_of_words, templates)
    for index, name in enumerate(["cat", "dog"]):
        prompts = unit(bag_of_words([name, f"an emoji of {name}."]))
        expected = unit(prompts.mean(dim=0))
        torch.testing.assert_close(classes[index], expected, rtol=1e-12, atol=1e-15)
    # not the normalised sum of raw counts, which weighs the longer prompt more
    raw = unit(bag_of_words(["cat", "an emoji of cat."]).sum(dim=0))
    assert not torch.allclose(classes[0], raw)
    torch.testing.assert_close(classes.norm(dim=1), torch.ones(2, dtype=torch.float64))


def test_prompts_go_to_the_encoder_in_batches() -> None:
    calls: list[int] = []

    def counting(texts: list[str]) -> torch.Tensor:
        calls.append(len(texts))
        return bag_of_words(texts)

    class_embeddings(["cat", "dog", "flag"], counting, ["{}", "an icon of {}."], batch_size=4)
    assert calls == [4, 2]


def test_top1_and_top5_on_known_scores() -> None:
    # 6 classes along the axes; image i is closest to class i, then to class (i + 1) % 6
    classes = torch.eye(6)
    images = torch.stack([torch.eye(6)[i] * 1.0 + torch.eye(6)[(i + 1) % 6] * 0.5 for i in range(6)])
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    result = zero_shot_accuracy(images, labels, classes)
    assert result == {"top1": 1.0, "top5": 1.0, "num_classes": 6, "num_images": 6}
    # labels shifted by one: every true class is second -> top1 0, top2 1
    shifted = zero_shot_accuracy(images, (labels + 1) % 6, classes, ks=(1, 2, 5))
    assert (shifted["top1"], shifted["top2"], shifted["top5"]) == (0.0, 1.0, 1.0)
    # labels shifted by three: the true class scores 0 with three others -> never in the top 2
    far = zero_shot_accuracy(images, (labels + 3) % 6, classes, ks=(1, 2), chunk=4)
    assert (far["top1"], far["top2"]) == (0.0, 0.0)


def test_top_k_beyond_the_number_of_classes_is_none() -> None:
    result = zero_shot_accuracy(torch.eye(3), torch.tensor([0, 1, 2]), torch.eye(3))
    assert result["top1"] == 1.0 and result["top5"] is None


def test_the_report_has_one_entry_per_label_set_and_the_templates() -> None:
    images = bag_of_words(["cat", "dog dog cat", "flag", "flag"])
    labels = torch.tensor([0, 1, 2, 2])
    group = torch.tensor([0, 0, 1, 0])  # the last image is labelled against its content
    report = zero_shot_report(
        images,
        {"name": (labels, ["cat", "dog", "flag"]), "group": (group, ["cat", "flag"])},
        bag_of_words,
        templates=["{}", "an icon of {}."],
    )
    assert report["templates"] == ["{}", "an icon of {}."]
    assert report["name"]["top1"] == 1.0 and report["name"]["num_classes"] == 3
    assert report["group"]["top1"] == pytest.approx(0.75)


def test_bad_inputs_are_refused_with_a_sentence() -> None:
    with pytest.raises(ValueError, match="class 1 has no name"):
        class_embeddings(["cat", " "], bag_of_words)
    with pytest.raises(ValueError, match="must contain '\\{\\}' once"):
        class_embeddings(["cat"], bag_of_words, ["a photo"])
    with pytest.raises(ValueError, match=r"encode must return \(1, D\)"):
        class_embeddings(["cat"], lambda texts: torch.zeros(2, 3), ["{}"])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        zero_shot_accuracy(torch.eye(3), torch.tensor([0, 1, 3]), torch.eye(3))
    with pytest.raises(ValueError, match="must share D"):
        zero_shot_accuracy(torch.eye(3), torch.tensor([0, 1, 2]), torch.eye(4))
