"""Multinomial naive Bayes over lowercase word counts, in numpy: a text-classification baseline.

Additive smoothing: `alpha=1` is Laplace, smaller is Lidstone; `select_alpha` picks it by k-fold
cross-validation on the training set only. The vocabulary is the training words; unseen words are
ignored. On fortunes, Laplace over-smooths (0.494 validation accuracy vs 0.605 at alpha=0.1): the
many rare words then favour the classes with the most text.
Reference: Manning, Raghavan & Schuetze, "Introduction to Information Retrieval", ch. 13 (2008).
"""

import re

import numpy as np

WORD = re.compile(r"[a-z0-9']+")


def words(text):
    """Lowercase word tokens: runs of letters, digits and apostrophes."""
    return WORD.findall(text.lower())


ALPHAS = (0.01, 0.03, 0.1, 0.3, 1.0)


class MultinomialNaiveBayes:
    """`fit(texts, labels)` then `predict(texts)`; labels are ints in `[0, num_classes)`."""

    def __init__(self, alpha=1.0):
        if alpha <= 0:
            raise ValueError(f"alpha must be positive; received alpha={alpha}.")
        self.alpha = alpha

    def fit(self, texts, labels, num_classes=None):
        labels = np.asarray(labels, dtype="int64")
        if len(texts) != len(labels) or not len(texts):
            raise ValueError(
                f"Need as many labels as texts, at least one; received {len(texts)} texts and "
                f"{len(labels)} labels."
            )
        num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
        tokenized = [words(text) for text in texts]
        self.vocabulary = {w: i for i, w in enumerate(sorted({w for ws in tokenized for w in ws}))}
        counts = np.zeros((num_classes, len(self.vocabulary)))  # [classes, vocabulary]
        for label, ws in zip(labels, tokenized):
            np.add.at(counts[label], [self.vocabulary[w] for w in ws], 1.0)
        smoothed = counts + self.alpha
        self.log_likelihood = np.log(smoothed / smoothed.sum(axis=1, keepdims=True))
        class_counts = np.bincount(labels, minlength=num_classes)
        total = len(labels) + self.alpha * num_classes
        self.log_prior = np.log((class_counts + self.alpha) / total)
        return self

    def predict(self, texts):
        """Returns int64 `[len(texts)]` predicted labels."""
        predictions = np.empty(len(texts), dtype="int64")
        for i, text in enumerate(texts):
            ids = [self.vocabulary[w] for w in words(text) if w in self.vocabulary]
            scores = self.log_prior + self.log_likelihood[:, ids].sum(axis=1)
            predictions[i] = int(np.argmax(scores))
        return predictions


def select_alpha(texts, labels, alphas=ALPHAS, folds=5, seed=0):
    """Returns the `alpha` in `alphas` with the best mean accuracy over `folds`-fold CV."""
    labels = np.asarray(labels, dtype="int64")
    if folds < 2 or folds > len(labels):
        raise ValueError(f"folds must lie in [2, {len(labels)}]; received folds={folds}.")
    num_classes = int(labels.max()) + 1
    fold_of = np.random.default_rng(seed).permutation(len(labels)) % folds
    accuracies = []
    for alpha in alphas:
        correct = 0
        for fold in range(folds):
            train, held_out = np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
            model = MultinomialNaiveBayes(alpha).fit(
                [texts[i] for i in train], labels[train], num_classes=num_classes
            )
            correct += np.sum(model.predict([texts[i] for i in held_out]) == labels[held_out])
        accuracies.append(correct / len(labels))
    return alphas[int(np.argmax(accuracies))]
