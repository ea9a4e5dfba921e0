"""Fortunes loader, stratified split, padded datasets and baselines, on a three-category fixture."""

import os

import numpy as np
import pytest

from keras_moe.data.text_classification import (
    FORTUNES_ROOT,
    TOPICAL_CATEGORIES,
    baselines,
    load_fortunes,
    stratified_split,
)

WORDS = {"cats": "purr whiskers mouse", "dogs": "bark fetch bone", "space": "rocket orbit moon"}


def _items(category, count):
    words = WORDS[category].split()
    return [f"{words[i % 3]} {words[(i + 1) % 3]} number {i}" for i in range(count)]


@pytest.fixture
def fortunes_dir(tmp_path):
    counts = {"cats": 12, "dogs": 6, "space": 4}
    for category, count in counts.items():
        (tmp_path / category).write_text("%\n" + "\n%\n".join(_items(category, count)) + "\n%\n")
    (tmp_path / "cats.dat").write_bytes(b"\x00\x00\x00\x02binary index")
    os.symlink(tmp_path / "dogs", tmp_path / "dogs.u8")
    return tmp_path


def test_loads_every_category_and_skips_index_files(fortunes_dir):
    texts, labels, class_names = load_fortunes(fortunes_dir, categories="all")
    assert class_names == ["cats", "dogs", "space"]
    assert labels.dtype == np.int32 and np.bincount(labels).tolist() == [12, 6, 4]
    assert texts[0] == "purr whiskers number 0" and all("%" not in t for t in texts)


def test_length_filter_and_overstrike(fortunes_dir):
    (fortunes_dir / "cats").write_text("_\bu_\bn_\bd_\be_\br line\n%\nx\n%\n" + "y" * 50 + "\n")
    texts, labels, _ = load_fortunes(fortunes_dir, categories=["cats"], min_length=2, max_length=20)
    assert texts == ["under line"] and labels.tolist() == [0]


def test_missing_root_names_install_command(tmp_path):
    command = "apt-get install -y --no-install-recommends fortunes"
    with pytest.raises(FileNotFoundError, match=command):
        load_fortunes(tmp_path / "absent")


def test_unknown_categories_raise(fortunes_dir):
    with pytest.raises(ValueError, match="computers"):
        load_fortunes(fortunes_dir)  # the topical defaults are not in the fixture
    with pytest.raises(ValueError, match="cats.dat"):
        load_fortunes(fortunes_dir, categories=["cats.dat"])


def test_stratified_split_is_deterministic_disjoint_and_stratified(fortunes_dir):
    texts, labels, _ = load_fortunes(fortunes_dir, categories="all")
    split = stratified_split(texts, labels, validation_fraction=0.25, seed=1)
    train_texts, train_labels, val_texts, val_labels = split
    assert np.bincount(val_labels).tolist() == [3, 2, 1]  # round(0.25 * [12, 6, 4])
    assert not set(train_texts) & set(val_texts)
    assert sorted(train_texts + val_texts) == sorted(texts)
    again = stratified_split(texts, labels, validation_fraction=0.25, seed=1)
    assert again[0] == train_texts and again[2] == val_texts
    assert stratified_split(texts, labels, validation_fraction=0.25, seed=2)[2] != val_texts
    with pytest.raises(ValueError, match="validation_fraction"):
        stratified_split(texts, labels, validation_fraction=1.0)


def test_naive_bayes_beats_majority_on_separable_text(fortunes_dir):
    texts, labels, _ = load_fortunes(fortunes_dir, categories="all")
    scores = baselines(*stratified_split(texts, labels, validation_fraction=0.5))
    assert scores["majority"] == pytest.approx(6 / 11)  # "cats": 6 of 11 validation items
    assert scores["naive_bayes"] == 1.0


@pytest.mark.skipif(not os.path.isdir(FORTUNES_ROOT), reason="fortunes package not installed")
def test_real_topical_categories():
    texts, labels, class_names = load_fortunes()
    assert class_names == list(TOPICAL_CATEGORIES) and len(texts) == 5647
    assert np.bincount(labels).max() == 1051
