"""Datasets for the recipes: each object builds its train and validation `tf.data` pipelines.

Hydra instantiates these from `conf/data/*.yaml`; they can be used from Python just as well.
"""

import numpy as np
import tensorflow as tf

from keras_moe.data.shakespeare import DEFAULT_VALIDATION_WORKS, load_shakespeare_works, split_by_work
from keras_moe.data.text_classification import FORTUNES_ROOT, baselines, load_fortunes, stratified_split
from keras_moe.data.tokenizers import train_word_piece_tokenizer
from keras_moe.utils.validation import check_positive_int


def text_windows(text, length, stride):
    """Consecutive `length`-character windows of `text`, every `stride` characters."""
    return [text[i : i + length] for i in range(0, len(text) - length + 1, stride)]


class ShakespeareLanguageModeling:
    """Shakespeare split by work into raw-text windows for `MoECausalLM` (its preprocessor tokenizes).

    Each element is a string of `sequence_length + 1` characters: the causal-LM preprocessor packs
    it into `sequence_length` inputs and `sequence_length` next-character labels.

    Args:
        sequence_length: int, model context in characters (= bytes: the corpus is ASCII).
        batch_size: int.
        validation_works: work names held out for validation.
        root: optional directory of `*_gut.txt` files (default: the installed `shakespeare` package).
        stride: int or None, characters between window starts (default `sequence_length`).
        max_validation_windows: int or None, cap on validation windows (keeps evaluation short).
        seed: int, shuffling seed.
    """

    task = "causal_lm"

    def __init__(self, sequence_length=128, batch_size=32, validation_works=DEFAULT_VALIDATION_WORKS, root=None,
                 stride=None, max_validation_windows=None, seed=0):
        self.sequence_length = check_positive_int("sequence_length", sequence_length)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.stride = check_positive_int("stride", stride or sequence_length)
        self.seed = seed
        self.train_text, self.validation_text = split_by_work(load_shakespeare_works(root), tuple(validation_works))
        self.max_validation_windows = max_validation_windows

    def _dataset(self, text, shuffle, limit=None):
        windows = text_windows(text, self.sequence_length + 1, self.stride)
        if limit is not None:
            windows = windows[: check_positive_int("max_validation_windows", limit)]
        if len(windows) < self.batch_size:
            raise ValueError(
                f"The text gives {len(windows)} windows of {self.sequence_length + 1} characters, fewer than "
                f"batch_size={self.batch_size}."
            )
        dataset = tf.data.Dataset.from_tensor_slices(windows)
        if shuffle:
            dataset = dataset.shuffle(len(windows), seed=self.seed, reshuffle_each_iteration=True)
        return dataset.batch(self.batch_size, drop_remainder=True)

    def train_dataset(self):
        return self._dataset(self.train_text, shuffle=True).repeat()

    def validation_dataset(self):
        return self._dataset(self.validation_text, shuffle=False, limit=self.max_validation_windows)

    @property
    def prompts(self):
        return ["ROMEO.\n", "First Citizen.\n"]


class FortunesClassification:
    """Fortune cookies by topical category (Debian `fortunes`), WordPiece tokens trained on the train split.

    Elements: `(text string [b], label int32 [b])`; `preprocessor_arguments()` (the WordPiece
    tokenizer and the sequence length) is what a classifier's preprocessor needs to tokenize them
    (`keras_moe.training.attach_preprocessor`).

    Args:
        sequence_length: int, tokens per text (longer texts are truncated).
        batch_size: int.
        vocabulary_size: int, WordPiece vocabulary bound.
        root: fortunes directory (default `/usr/share/games/fortunes`).
        categories: category names or None for the 10 topical ones.
        validation_fraction: float, stratified.
        seed: int.
        num_classes: optional int, checked against the categories (the model config reads it).
    """

    task = "classification"

    def __init__(self, sequence_length=64, batch_size=32, vocabulary_size=4000, root=FORTUNES_ROOT, categories=None,
                 validation_fraction=0.2, seed=0, num_classes=None):
        self.sequence_length = check_positive_int("sequence_length", sequence_length)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.seed = seed
        texts, labels, self.class_names = load_fortunes(root, categories=categories)
        if num_classes is not None and num_classes != len(self.class_names):
            raise ValueError(
                f"`num_classes` must equal the number of categories ({len(self.class_names)}: {self.class_names}). "
                f"Received: num_classes={num_classes}"
            )
        self.train_texts, self.train_labels, self.validation_texts, self.validation_labels = stratified_split(
            texts, labels, validation_fraction=validation_fraction, seed=seed
        )
        self.tokenizer = train_word_piece_tokenizer(self.train_texts, vocabulary_size, lowercase=True)
        self.vocabulary_size = self.tokenizer.vocabulary_size()

    @property
    def num_classes(self):
        return len(self.class_names)

    def preprocessor_arguments(self):
        """What a classifier's preprocessor needs: this task's WordPiece tokenizer and sequence length."""
        return {"tokenizer": self.tokenizer, "sequence_length": self.sequence_length}

    def _dataset(self, texts, labels, shuffle):
        dataset = tf.data.Dataset.from_tensor_slices((list(texts), np.asarray(labels, dtype="int32")))
        if shuffle:
            dataset = dataset.shuffle(len(texts), seed=self.seed, reshuffle_each_iteration=True)
        return dataset.batch(self.batch_size)

    def train_dataset(self):
        return self._dataset(self.train_texts, self.train_labels, shuffle=True).repeat()

    def validation_dataset(self):
        return self._dataset(self.validation_texts, self.validation_labels, shuffle=False)

    def baselines(self):
        """Majority-class and naive Bayes validation accuracy (the numbers the model must beat)."""
        return baselines(self.train_texts, self.train_labels, self.validation_texts, np.asarray(self.validation_labels))
