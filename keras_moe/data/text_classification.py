"""Fortune cookies by category: a real, offline text-classification task.

Source: the Debian package `fortunes` (`apt-get install -y --no-install-recommends fortunes`), one
file per category in `/usr/share/games/fortunes/<category>`, items separated by a line holding `%`;
`.dat` (strfile indices) and `.u8` (links) files are skipped. 43 categories, 15,217 items (DATA.md's
15,218 counts a bare `%` at the top of `tao`).

`TOPICAL_CATEGORIES` are the 10 largest categories that name a topic, i.e. leaving out the grab-bags
(`people`, `definitions`, `cookie`, `miscellaneous`, `zippy`, `knghtbrd`, `platitudes`, `fortunes`,
`wisdom`, `disclaimer`). They give 5,647 items, the count of the reference baseline in the
project's shared DATA.md, which does not list them (`computers`, the largest: 1,051 items = 0.186).

Baselines, 80/20 `stratified_split(seed=0)`, 4,518 train / 1,129 validation items: majority class
0.186; multinomial naive Bayes on lowercase words 0.605 (alpha 0.1 chosen by 5-fold CV on train;
Laplace alpha=1 gives 0.494). DATA.md's TF-IDF + logistic regression: 0.627. Measured with:
`python -c "from keras_moe.data import *; t, l, _ = load_fortunes();
print(baselines(*stratified_split(t, l)))"`
"""

import os
import re

import numpy as np

from keras_moe.data.naive_bayes import MultinomialNaiveBayes, select_alpha

FORTUNES_ROOT = "/usr/share/games/fortunes"
INSTALL_COMMAND = "apt-get install -y --no-install-recommends fortunes"
TOPICAL_CATEGORIES = (
    "art",
    "computers",
    "linux",
    "literature",
    "men-women",
    "perl",
    "politics",
    "science",
    "songs-poems",
    "work",
)
SKIPPED_SUFFIXES = (".dat", ".u8")
SEPARATOR = re.compile(r"^%[ \t]*$", re.MULTILINE)  # a line holding only "%"
OVERSTRIKE = re.compile(r".\x08")  # "_\bw": a character struck over with another (old underlining)


def load_fortunes(root=FORTUNES_ROOT, categories=None, min_length=1, max_length=None):
    """Returns `(texts, labels, class_names)`: list of str, int32 `[len(texts)]`, list of str.

    `categories=None` loads `TOPICAL_CATEGORIES`; `"all"` loads every category file in `root`
    (sorted); or pass names. `labels[i]` indexes `class_names`, which follow `categories`' order.
    Items are stripped, backspace overstriking is removed, and only items whose length in
    characters lies in `[min_length, max_length]` are kept (`max_length=None`: no upper bound).
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"No fortunes directory at {root!r}; install it with `{INSTALL_COMMAND}`."
        )
    available = sorted(
        name
        for name in os.listdir(root)
        if not name.endswith(SKIPPED_SUFFIXES) and os.path.isfile(os.path.join(root, name))
    )
    if categories is None:
        categories = TOPICAL_CATEGORIES
    elif categories == "all":
        categories = available
    categories = list(categories)
    missing = sorted(set(categories) - set(available))
    if missing or not categories:
        raise ValueError(
            f"Unknown fortune categories {missing or categories}; available: {available}."
        )
    if min_length < 0 or (max_length is not None and max_length < min_length):
        raise ValueError(
            f"Need 0 <= min_length <= max_length; received min_length={min_length}, "
            f"max_length={max_length}."
        )

    texts, labels = [], []
    for label, category in enumerate(categories):
        with open(os.path.join(root, category), "rb") as file:
            raw = file.read().decode("utf-8", errors="replace")
        for item in SEPARATOR.split(raw.replace("\r\n", "\n")):
            item = OVERSTRIKE.sub("", item).strip()
            if item and min_length <= len(item) and (max_length is None or len(item) <= max_length):
                texts.append(item)
                labels.append(label)
    return texts, np.asarray(labels, dtype="int32"), categories


def stratified_split(texts, labels, validation_fraction=0.2, seed=0):
    """Returns `(train_texts, train_labels, validation_texts, validation_labels)`.

    Each class sends `round(n * validation_fraction)` of its items, chosen with `seed`, to
    validation (at least one, and at least one left for training, when it has two or more). Items
    keep their original order on both sides.
    """
    labels = np.asarray(labels)
    if len(texts) != len(labels):
        raise ValueError(f"Received {len(texts)} texts but {len(labels)} labels.")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(
            f"validation_fraction must lie in (0, 1); received {validation_fraction}."
        )
    rng = np.random.default_rng(seed)
    validation = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = int(round(len(members) * validation_fraction))
        if len(members) >= 2:
            count = min(max(count, 1), len(members) - 1)
        validation.extend(rng.permutation(members)[:count])
    is_validation = np.zeros(len(labels), dtype=bool)
    is_validation[validation] = True
    train_index, validation_index = np.flatnonzero(~is_validation), np.flatnonzero(is_validation)
    return (
        [texts[i] for i in train_index],
        labels[train_index],
        [texts[i] for i in validation_index],
        labels[validation_index],
    )


def baselines(train_texts, train_labels, val_texts, val_labels):
    """Validation accuracy of two baselines: `{"majority", "naive_bayes", "naive_bayes_alpha"}`.

    `majority` always predicts the most frequent training label; `naive_bayes` is
    `MultinomialNaiveBayes` (lowercase word counts, vocabulary from train) with its smoothing
    `naive_bayes_alpha` chosen by 5-fold cross-validation on the training set (3-fold below 50
    items).
    """
    train_labels, val_labels = np.asarray(train_labels), np.asarray(val_labels)
    if not len(val_labels):
        raise ValueError("Need at least one validation item; received none.")
    num_classes = int(max(train_labels.max(), val_labels.max())) + 1
    majority = np.bincount(train_labels, minlength=num_classes).argmax()
    alpha = select_alpha(train_texts, train_labels, folds=5 if len(train_labels) >= 50 else 3)
    model = MultinomialNaiveBayes(alpha).fit(train_texts, train_labels, num_classes=num_classes)
    return {
        "majority": float(np.mean(val_labels == majority)),
        "naive_bayes": float(np.mean(model.predict(val_texts) == val_labels)),
        "naive_bayes_alpha": alpha,
    }
