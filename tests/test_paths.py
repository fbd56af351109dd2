"""Atomic file and folder replacement, and checkpoint naming."""

import os

from workbench.paths import atomic_write_bytes, replace_dir, variant_of


def test_replace_dir_swaps_whole_folders_and_leaves_no_leftovers(tmp_path):
    target = tmp_path / "final"
    for version in ("one", "two"):
        tmp = tmp_path / f".tmp-{version}"
        tmp.mkdir()
        (tmp / "weights").write_text(version)
        replace_dir(tmp, target)
        assert (target / "weights").read_text() == version
        assert not tmp.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_atomic_write_bytes_gives_normal_permissions(tmp_path):
    path = atomic_write_bytes(tmp_path / "a.bin", b"x")
    assert path.read_bytes() == b"x"
    assert os.stat(path).st_mode & 0o044 == 0o044  # group/other readable under the usual umask


def test_variant_of_names_final_by_its_run():
    assert variant_of("results/checkpoints/pal/final") == "pal"
    assert variant_of("runs/lal") == "lal"
