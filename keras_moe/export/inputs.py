"""Raw serving inputs, checked and tokenized in the graph with TensorFlow (and TF Text) ops only.

Every check fails at run time with `InvalidArgumentError` naming the input and the problem, which
a server answers as a client error.
"""

import tensorflow as tf

from keras_moe.export.text_bounds import cut_text

TEXT_SPEC = tf.TensorSpec([None], tf.string, name="text")


def check_strings(strings, input_name="text"):
    """Every string non-empty and valid UTF-8; the message names the input and the bad batch indices."""
    # Transcoding UTF-8 to UTF-8 changes a string exactly when it holds invalid bytes.
    transcoded = tf.strings.unicode_transcode(strings, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
    empty = tf.equal(tf.strings.length(strings), 0)
    invalid = tf.not_equal(transcoded, strings)
    checks = [
        tf.debugging.Assert(
            tf.logical_not(tf.reduce_any(empty)),
            [f"Every `{input_name}` entry must be a non-empty string; empty at batch index", tf.where(empty)[:, 0]],
        ),
        tf.debugging.Assert(
            tf.logical_not(tf.reduce_any(invalid)),
            [f"Every `{input_name}` entry must be valid UTF-8; invalid bytes at batch index", tf.where(invalid)[:, 0]],
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(strings)


def require_preprocessor(model, inputs="raw strings"):
    """The model's built preprocessor; a clear error when there is none."""
    preprocessor = getattr(model, "preprocessor", None)
    if preprocessor is None or getattr(preprocessor, "tokenizer", None) is None:
        raise ValueError(
            f"Exporting {type(model).__name__} for serving needs its preprocessor (with a tokenizer), so the "
            f"SavedModel can take {inputs}; received preprocessor=None. Attach one, e.g. "
            "`keras_moe.training.attach_preprocessor(model, data)`."
        )
    if not preprocessor.built:
        preprocessor.build(None)
    return preprocessor


def tokenize_last(tokenizer, text, sequence_length):
    """`(token_ids [b, s], padding_mask [b, s], lengths [b])`, keeping each text's last `s` tokens."""
    tokens = tokenizer(cut_text(check_strings(text), sequence_length, keep="last"))
    if not isinstance(tokens, tf.RaggedTensor):
        raise ValueError("The tokenizer must return ragged token ids (sequence_length=None) for serving.")
    tokens = tf.cast(tokens[:, -sequence_length:], tf.int32)
    lengths = tf.cast(tokens.row_lengths(), tf.int32)
    tf.debugging.assert_greater(lengths, 0, message="A `text` gave no tokens.")
    token_ids = tokens.to_tensor(default_value=0, shape=[None, sequence_length])
    return token_ids, tf.sequence_mask(lengths, sequence_length), lengths
