"""The objective comparison's plan and table with X-CLR: its runs, and the existing methods' unchanged."""

from __future__ import annotations

from pathlib import Path

from mmcr.experiments.compare_plan import LABELS, METHODS, OBJECTIVE_ARGS, CompareOptions, plan
from mmcr.experiments.compare_report import aggregate, render_table

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "fashion_mnist.toml"
SETS = {
    "dataset": "digits",
    "augment": "digits",
    "encoder_width": "4",
    "projector_hidden": "32",
    "projector_dim": "16",
    "batch_size": "64",
    "bf16": "false",
}


def options(tmp_path: Path, methods: list[str]) -> CompareOptions:
    return CompareOptions(
        config=str(CONFIG),
        sets=dict(SETS),
        methods=methods,
        seeds=[0],
        lrs=[1e-3, 3e-3],
        budget_epochs=0.1,
        search_steps=2,
        parallel=1,
        threads=1,
        probe_weight_decays=[1e-3],
        probe_max_iter=5,
        geometry_images=128,
        work_dir=str(tmp_path / "runs"),
        out=str(tmp_path / "out"),
    )


def test_xclr_is_a_method_with_two_views_and_the_class_name_graph(tmp_path: Path) -> None:
    assert METHODS["xclr"] == ("xclr", 2) and LABELS["xclr"] == "X-CLR"
    assert OBJECTIVE_ARGS == {"xclr": {"graph": "class-names"}}
    p = plan(options(tmp_path, ["xclr"]))
    assert [job.name for job in p.search] == ["xclr_lr0.001_s0_search", "xclr_lr0.003_s0_search"]
    for job in p.search:
        assert job.overrides["objective"] == "xclr" and job.overrides["num_views"] == 2
        assert job.overrides["objective_args"] == {"graph": "class-names"}
        cfg = job.run.cfg  # a valid recipe: the objective builds without the text model
        assert cfg.objective_kwargs() == {"graph": "class-names"}


def test_the_other_methods_plans_are_unchanged(tmp_path: Path) -> None:
    others = ["mmcr_k2", "simclr", "barlow_twins", "vicreg"]
    with_xclr = plan(options(tmp_path, [*others, "xclr"]))
    without = plan(options(tmp_path, others))
    before = {job.name: job.overrides for job in without.search}
    after = {job.name: job.overrides for job in with_xclr.search if job.method != "xclr"}
    assert after == before
    for job in without.search:
        if job.method != "mmcr_k2":  # the baselines take their defaults, as before
            assert job.overrides["objective_args"] == {} and job.overrides["lmbda"] == 0.0


def test_the_table_says_that_xclr_sees_label_names(tmp_path: Path) -> None:
    def table(methods: list[str]) -> tuple[str, dict[str, object]]:
        opts = options(tmp_path, methods)
        p = plan(opts)
        results = aggregate(p, opts, {}, {}, [], {}, [], 0.0)
        return render_table(results), results

    text, results = table(["simclr", "xclr"])
    assert "X-CLR uses label names, which the other objectives do not see" in text
    assert "class names' sentence embeddings" in text and '"a photo of a {}"' in text
    methods = results["methods"]
    assert isinstance(methods, dict)
    assert methods["xclr"]["objective_args"] == {"graph": "class-names"}
    assert "objective_args" not in methods["simclr"]  # the other rows are as before
    assert "label names" not in table(["simclr"])[0]
