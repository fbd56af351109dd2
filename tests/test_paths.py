"""Atomic file and folder replacement, and checkpoint naming."""

import os

import pytest

from workbench.common.paths import atomic_write_bytes, replace_dir, variant_of


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


def test_repo_root_walks_up_to_the_checkout(tmp_path, monkeypatch):
    import workbench.common.paths as paths
    from workbench.common.paths import repo_root

    here = repo_root()
    assert (here / "pyproject.toml").is_file() and (here / "workbench" / "common" / "paths.py").is_file()
    assert repo_root(here / "notebooks") == here  # where Jupyter starts a notebook's kernel
    monkeypatch.chdir(here / "workbench" / "analysis")
    assert repo_root() == here
    # a nested start inside another checkout finds that checkout, not this one
    other = tmp_path / "other"
    (other / "workbench").mkdir(parents=True)
    (other / "workbench" / "__init__.py").write_text("")
    (other / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (other / "a" / "b").mkdir(parents=True)
    assert repo_root(other / "a" / "b") == other.resolve()
    # outside any checkout: the checkout the package was imported from
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "pyproject.toml").write_text("")  # a pyproject alone is not a workbench checkout
    assert repo_root(tmp_path / "elsewhere") == here
    # and neither: a clear error
    monkeypatch.setattr(paths, "PACKAGE_CHECKOUT", tmp_path / "site-packages")  # a non-editable install
    with pytest.raises(FileNotFoundError, match="no pal-workbench checkout"):
        repo_root(tmp_path / "elsewhere")
