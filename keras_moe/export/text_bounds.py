"""Cutting texts to a model's context before tokenization: a huge text costs what a short one does.

In every text signature, each text is cut to `MAX_CHARS_PER_TOKEN * sequence_length` characters
(`text_limit`) before it is tokenized: its beginning for the classifiers (their preprocessors keep
the first `sequence_length` tokens), its end for the causal LM (it keeps the last ones). The cut
counts UTF-8 characters, so it never splits one; texts are checked to be valid UTF-8 first.

With `MAX_CHARS_PER_TOKEN = 64` a context of 128 tokens reads at most 8,192 characters (32 KiB of
UTF-8) of each text; an 8 MB prompt is validated (a linear pass in C++) and cut, never tokenized.
The cut cannot change a result when every token is at least one character (byte-level tokenizers,
as the causal LM's: a token is a byte). With WordPiece, tokens are word pieces and whitespace is
dropped between them, so a result changes only if the kept tokens span more than 64 characters each
on average (long runs of whitespace or of words over 100 bytes, which become one unknown token).
"""

import tensorflow as tf

MAX_CHARS_PER_TOKEN = 64


def text_limit(sequence_length):
    """Characters of each text that a model with this context reads."""
    return MAX_CHARS_PER_TOKEN * int(sequence_length)


def cut_text(text, sequence_length, keep):
    """`text` (valid UTF-8 strings `[b]`) cut to `text_limit(sequence_length)` characters: `keep` "first" or "last"."""
    if keep not in ("first", "last"):
        raise ValueError(f'keep must be "first" or "last"; received keep={keep!r}.')
    limit = text_limit(sequence_length)
    length = tf.strings.length(text, unit="UTF8_CHAR")
    start = tf.zeros_like(length) if keep == "first" else tf.maximum(length - limit, 0)
    return tf.strings.substr(text, start, tf.fill(tf.shape(start), limit), unit="UTF8_CHAR")
