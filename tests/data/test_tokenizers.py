"""Tokenizer factory: byte round trip, codepoint vocabulary, locally trained WordPiece."""

import numpy as np
import pytest

from keras_moe.data.tokenizers import (
    TOKENIZERS,
    make_tokenizer,
    tokenize_to_ids,
    train_word_piece_tokenizer,
)

ASCII = "To be, or not to be: that is the question.\n\tWhether 'tis NOBLER ~ 1603!"


def _as_str(detokenized):
    if isinstance(detokenized, bytes):
        return detokenized.decode("utf-8")
    if isinstance(detokenized, np.ndarray):
        return _as_str(detokenized.item())
    return str(detokenized)


def test_byte_round_trips_ascii_and_keeps_case():
    tokenizer = make_tokenizer("byte")
    ids = tokenize_to_ids(tokenizer, ASCII)
    assert ids.dtype == np.int32 and ids.shape == (len(ASCII),)
    np.testing.assert_array_equal(ids, [ord(c) for c in ASCII])
    assert _as_str(tokenizer.detokenize(ids)) == ASCII
    assert tokenizer.vocabulary_size() == 256


def test_byte_rejects_other_vocabulary_size():
    with pytest.raises(ValueError, match="vocabulary_size=100"):
        make_tokenizer("byte", vocabulary_size=100)


def test_codepoint_needs_and_applies_vocabulary_size():
    with pytest.raises(ValueError, match="vocabulary_size=None"):
        make_tokenizer("codepoint")
    tokenizer = make_tokenizer("codepoint", vocabulary_size=128)
    np.testing.assert_array_equal(tokenize_to_ids(tokenizer, "Aé"), [65, 127])


def test_word_piece_learns_frequent_words_with_pad_zero():
    texts = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog"] * 5
    tokenizer = train_word_piece_tokenizer(texts, vocabulary_size=60)
    vocabulary = tokenizer.get_vocabulary()
    assert vocabulary[0] == "[PAD]" and "[UNK]" in vocabulary
    assert {"the", "cat", "dog", "sat"} <= set(vocabulary)
    ids = tokenize_to_ids(tokenizer, "the cat sat")
    assert [vocabulary[i] for i in ids] == ["the", "cat", "sat"]


def test_make_tokenizer_word_piece_needs_texts():
    with pytest.raises(ValueError, match="texts=None"):
        make_tokenizer("word_piece", vocabulary_size=50)
    assert make_tokenizer("word_piece", texts=["a b c"] * 3, vocabulary_size=50) is not None


def test_unknown_name_lists_options():
    with pytest.raises(ValueError, match="sentence_piece") as error:
        make_tokenizer("sentence_piece")
    for name in TOKENIZERS:
        assert name in str(error.value)
