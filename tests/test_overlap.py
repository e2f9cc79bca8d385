"""The overlap measurement runs the served pipeline at each overlap and against whole-image inference."""
from __future__ import annotations

import pytest

from scripts.evaluation.overlap import main
from tests.networks import saved_random_networks
from tests.photos import photo_folder


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return saved_random_networks(tmp_path_factory.mktemp("weights"), width=4, depth=2)


def test_one_row_per_overlap_and_one_for_the_whole_image(weights, tmp_path, capsys) -> None:
    images = photo_folder(tmp_path / "val", ("coffee",))
    rows = main(["--images", str(images), "--models", "model_unet", "--overlaps", "0", "16", "--weights-dir", str(weights)])
    assert [row["overlap"] for row in rows] == [0, 16, "whole image"]
    tiled = {row["overlap"]: row for row in rows}
    assert tiled[16]["tiles_per_mp"] > tiled[0]["tiles_per_mp"] and tiled[16]["margin"] == 4
    assert all(row["psnr"] > 10 and row["seconds_per_mp"] > 0 for row in rows[:2])
    assert "| U-Net |" in capsys.readouterr().out
