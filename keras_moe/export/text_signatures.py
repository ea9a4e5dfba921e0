"""Serving signatures for the text models: raw strings in, named outputs out.

- `MoETextClassifier`: `serving_default(text)` -> `probabilities [b, c]`, `class_ids [b]`,
  `labels [b]` (class names); `routing(text)`.
- `MoECausalLM`: `serving_default(text)` -> `next_token_logits [b, v]`, `next_token_ids [b]`,
  `next_tokens [b]` (the logits after the last prompt token; prompts longer than the context keep
  their last `sequence_length` tokens); `generate(text)` -> `generated_text [b]` (the model's
  compiled sampler, up to `sequence_length` tokens); `routing(text)`.
- `routing(text)`: `token_ids [b, s]`, `padding_mask [b, s]` and, per MoE layer,
  `<layer>_expert_ids [b, s, k]` and `<layer>_expert_weights [b, s, k]` (token-choice routers; for
  expert-choice and Soft MoE routers, the most probable expert, `k = 1`).

Tokenization runs in the graph with the model's keras-hub tokenizer (TensorFlow and TF Text ops).
Every text must be non-empty valid UTF-8; otherwise the call fails with `InvalidArgumentError`
naming the problem. Each text is cut to `64 * sequence_length` characters before tokenizing (its
beginning for the classifier, its end for the LM: `keras_moe.export.text_bounds`).
"""

import tensorflow as tf

from keras_moe.export.signatures import register_signatures
from keras_moe.export.text_bounds import cut_text
from keras_moe.export.tracing import serving_trace
from keras_moe.models import MoECausalLM, MoETextClassifier

TEXT_SPEC = tf.TensorSpec([None], tf.string, name="text")


def check_text(text):
    """Graph assertions: every string non-empty and valid UTF-8; the message names the bad items.

    Raises `InvalidArgumentError` (a client error in a server) at run time.
    """
    # Transcoding UTF-8 to UTF-8 changes a string exactly when it holds invalid bytes.
    transcoded = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
    empty = tf.equal(tf.strings.length(text), 0)
    invalid = tf.not_equal(transcoded, text)
    checks = [
        tf.debugging.Assert(
            tf.logical_not(tf.reduce_any(empty)),
            ["Every `text` must be a non-empty string; empty at batch index", tf.where(empty)[:, 0]],
        ),
        tf.debugging.Assert(
            tf.logical_not(tf.reduce_any(invalid)),
            ["Every `text` must be valid UTF-8; invalid bytes at batch index", tf.where(invalid)[:, 0]],
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(text)


def _preprocessor(model):
    preprocessor = getattr(model, "preprocessor", None)
    if preprocessor is None or getattr(preprocessor, "tokenizer", None) is None:
        raise ValueError(
            f"Exporting {type(model).__name__} for serving needs its preprocessor (with a tokenizer), so the "
            "SavedModel can take raw strings; received preprocessor=None. Attach one, e.g. "
            "`model.preprocessor = data.preprocessor()`."
        )
    if not preprocessor.built:
        preprocessor.build(None)
    return preprocessor


def tokenize_last(tokenizer, text, sequence_length):
    """`(token_ids [b, s], padding_mask [b, s], lengths [b])`, keeping each text's last `s` tokens."""
    tokens = tokenizer(cut_text(check_text(text), sequence_length, keep="last"))
    if not isinstance(tokens, tf.RaggedTensor):
        raise ValueError("The tokenizer must return ragged token ids (sequence_length=None) for serving.")
    tokens = tf.cast(tokens[:, -sequence_length:], tf.int32)
    lengths = tf.cast(tokens.row_lengths(), tf.int32)
    tf.debugging.assert_greater(lengths, 0, message="A `text` gave no tokens.")
    token_ids = tokens.to_tensor(default_value=0, shape=[None, sequence_length])
    return token_ids, tf.sequence_mask(lengths, sequence_length), lengths


def routing_outputs(model, inputs):
    """The `routing` signature's outputs for backbone inputs `{"token_ids", "padding_mask"}`."""
    decisions = {}
    with serving_trace(model, routing=decisions):
        model(inputs, training=False)
    shape = tf.shape(inputs["token_ids"])
    outputs = {"token_ids": inputs["token_ids"], "padding_mask": tf.cast(inputs["padding_mask"], tf.bool)}
    for name, result in decisions.items():
        if result.kind == "token_choice":
            ids, weights = result.expert_index, result.expert_weight
        else:
            weights, ids = tf.math.top_k(result.router_probs, k=1)
        k = tf.shape(ids)[-1]
        outputs[f"{name}_expert_ids"] = tf.reshape(tf.cast(ids, tf.int32), tf.concat([shape, [k]], 0))
        outputs[f"{name}_expert_weights"] = tf.reshape(tf.cast(weights, tf.float32), tf.concat([shape, [k]], 0))
    return outputs


@register_signatures(MoETextClassifier)
def classifier_signatures(model):
    preprocessor = _preprocessor(model)
    names = model.class_names or [str(i) for i in range(model.num_classes)]
    class_names = tf.constant(names)
    probabilities_out = model.activation == "softmax"

    def features(text):
        return preprocessor(cut_text(check_text(text), preprocessor.sequence_length, keep="first"))

    @tf.function(input_signature=[TEXT_SPEC])
    def serving_default(text):
        with serving_trace(model):
            scores = model(features(text), training=False)
        probabilities = tf.cast(scores if probabilities_out else tf.nn.softmax(scores, axis=-1), tf.float32)
        class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {"probabilities": probabilities, "class_ids": class_ids, "labels": tf.gather(class_names, class_ids)}

    @tf.function(input_signature=[TEXT_SPEC])
    def routing(text):
        return routing_outputs(model, features(text))

    return {"serving_default": serving_default, "routing": routing}


@register_signatures(MoECausalLM)
def causal_lm_signatures(model):
    preprocessor = _preprocessor(model)
    tokenizer, sequence_length = preprocessor.tokenizer, int(preprocessor.sequence_length)
    if model.sampler is None or isinstance(model.sampler, str):
        model.compile(sampler=model.sampler or "greedy")

    @tf.function(input_signature=[TEXT_SPEC])
    def serving_default(text):
        token_ids, padding_mask, lengths = tokenize_last(tokenizer, text, sequence_length)
        with serving_trace(model):
            logits = model({"token_ids": token_ids, "padding_mask": padding_mask}, training=False)
        last = tf.cast(tf.gather(logits, lengths - 1, batch_dims=1), tf.float32)
        ids = tf.argmax(last, axis=-1, output_type=tf.int32)
        return {"next_token_logits": last, "next_token_ids": ids, "next_tokens": tokenizer.detokenize(ids[:, None])}

    end_token_id = getattr(tokenizer, "end_token_id", None)
    stop_token_ids = None if end_token_id is None else (end_token_id,)  # keras-hub's "auto"
    special_ids = tf.constant(sorted(getattr(tokenizer, "special_token_ids", None) or []) or [-1], tf.int32)

    @tf.function(input_signature=[TEXT_SPEC])
    def generate(text):
        token_ids, padding_mask, _ = tokenize_last(tokenizer, text, sequence_length)
        with serving_trace(model):
            output = model.generate_step({"token_ids": token_ids, "padding_mask": padding_mask}, stop_token_ids=stop_token_ids)
        ids = tf.cast(output["token_ids"], tf.int32)
        # As keras-hub's generate_postprocess: drop padding and special tokens, then detokenize.
        is_special = tf.reduce_any(tf.equal(ids[:, :, None], special_ids), axis=-1)
        keep = tf.logical_and(tf.cast(output["padding_mask"], tf.bool), tf.logical_not(is_special))
        generated = tf.ragged.boolean_mask(ids, keep)
        return {"generated_text": tokenizer.detokenize(generated)}

    @tf.function(input_signature=[TEXT_SPEC])
    def routing(text):
        token_ids, padding_mask, _ = tokenize_last(tokenizer, text, sequence_length)
        return routing_outputs(model, {"token_ids": token_ids, "padding_mask": padding_mask})

    return {"serving_default": serving_default, "generate": generate, "routing": routing}
