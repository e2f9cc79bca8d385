"""Repository locations and the corpus resolver: ../shared/corpus, else data/corpus, else a clear stop."""
from __future__ import annotations

import argparse

import pytest

from scripts import paths
from scripts.evaluation import baselines, benchmark, collage, evaluate
from scripts.paths import CorpusMissing, corpus_dir, corpus_split, split_argument
from scripts.training import train


def make_corpus(folder, splits=("train", "val")):
    for split in splits:
        (folder / split).mkdir(parents=True)
    return folder


def test_locations_are_inside_the_repository_except_the_shared_corpus() -> None:
    for location in (paths.DATA_DIR, paths.CACHE_DIR, paths.RUNS_DIR, paths.IMAGES_DIR, paths.MODEL_STORE, paths.LOCAL_CORPUS):
        assert location.is_relative_to(paths.REPO)
    assert (paths.REPO / "scripts" / "paths.py").exists()
    # The folder beside the repository is tried first, the repository's own last.
    assert [candidate.is_relative_to(paths.REPO) for candidate in paths.CORPUS_CANDIDATES] == [False, True]


def test_the_first_complete_candidate_wins(tmp_path) -> None:
    shared, local = tmp_path / "shared", make_corpus(tmp_path / "local")
    assert corpus_dir([shared, local]) == local
    make_corpus(shared)
    assert corpus_dir([shared, local]) == shared
    assert corpus_split("val", [shared, local]) == shared / "val"


def test_a_folder_without_both_splits_is_not_a_corpus(tmp_path) -> None:
    half, whole = make_corpus(tmp_path / "half", ("train",)), make_corpus(tmp_path / "whole")
    assert corpus_dir([half, whole]) == whole


def test_no_corpus_names_the_rebuild_script_and_the_options(tmp_path) -> None:
    with pytest.raises(CorpusMissing) as missing:
        corpus_dir([tmp_path / "a", tmp_path / "b"])
    for words in ("python -m scripts.corpus.get", "--train-src", "--val-src", "--images", str(tmp_path / "a")):
        assert words in str(missing.value)


def test_a_partly_built_corpus_is_refused_until_finished(tmp_path) -> None:
    local = make_corpus(tmp_path / "local")
    (local / paths.INCOMPLETE_MARKER).touch()
    with pytest.raises(CorpusMissing, match="only partly built.*scripts.corpus.get --out"):
        corpus_dir([local])


def test_an_unknown_split_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="test"):
        corpus_split("test", [make_corpus(tmp_path / "c")])


def test_split_argument_prefers_the_given_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(paths, "CORPUS_CANDIDATES", (make_corpus(tmp_path / "c"),))
    parser = argparse.ArgumentParser()
    assert split_argument(parser, tmp_path / "mine", "train") == tmp_path / "mine"
    assert split_argument(parser, None, "train") == tmp_path / "c" / "train"


@pytest.mark.parametrize("tool, argv", [
    (train.main, ["--model", "model_unet", "--run-dir", "OUT"]),
    (evaluate.main, ["--methods", "noisy", "--out", "OUT"]),
    (collage.main, ["--out", "OUT/collage.png"]),
    (baselines.main, ["--tune"]),
    (benchmark.main, ["--quick", "--section", "serving"]),
], ids=["train", "evaluate", "collage", "baselines", "benchmark"])
def test_every_data_tool_stops_with_the_message_without_a_corpus(tool, argv, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(paths, "CORPUS_CANDIDATES", (tmp_path / "shared", tmp_path / "data"))
    with pytest.raises(SystemExit) as stop:
        tool([item.replace("OUT", str(tmp_path / "out")) for item in argv])
    assert stop.value.code == 2
    assert "python -m scripts.corpus.get" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
