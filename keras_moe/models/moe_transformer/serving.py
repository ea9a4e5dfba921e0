"""Serving signatures for the text models: raw strings in, named outputs out.

- `MoETextClassifier`: `serving_default(text)` -> `probabilities [b, c]`, `class_ids [b]`,
  `labels [b]` (class names); `routing(text)`.
- `MoECausalLM`: `serving_default(text)` -> `next_token_logits [b, v]`, `next_token_ids [b]`,
  `next_tokens [b]` (the logits after the last prompt token; prompts longer than the context keep
  their last `sequence_length` tokens); `generate(text)` -> `generated_text [b]` (the model's
  compiled sampler, up to `sequence_length` tokens); `routing(text)`.
- `routing(text)`: `token_ids [b, s]`, `padding_mask [b, s]` and, per MoE layer,
  `<layer>_expert_ids [b, s, k]` and `<layer>_expert_weights [b, s, k]` (token-choice routers; for
  expert-choice and Soft MoE routers, the most probable expert, `k = 1`), read from the
  backbone's `call_with_routing`: the routing the model computes, not a re-computation.

Routing statistics are off while the functions are traced (`routing_statistics`), so a served
graph never writes a metric variable.

Tokenization runs in the graph with the model's keras-hub tokenizer (TensorFlow and TF Text ops).
Every text must be non-empty valid UTF-8; otherwise the call fails with `InvalidArgumentError`
naming the problem. Each text is cut to `64 * sequence_length` characters before tokenizing (its
beginning for the classifier, its end for the LM: `keras_moe.export.text_bounds`).
"""

import tensorflow as tf

from keras_moe.export import TEXT_SPEC, check_strings, register_signatures, require_preprocessor, routing_outputs, tokenize_last
from keras_moe.export.text_bounds import cut_text
from keras_moe.layers.search import routing_statistics
from keras_moe.models.moe_transformer.moe_causal_lm import MoECausalLM
from keras_moe.models.moe_transformer.moe_text_classifier import MoETextClassifier


def backbone_routing(model, inputs):
    """The `routing` outputs: the inputs and each MoE layer's decisions from `call_with_routing`."""
    with routing_statistics(model, enabled=False):
        _, routings = model.backbone.call_with_routing(inputs, training=False)
    outputs = {"token_ids": inputs["token_ids"], "padding_mask": tf.cast(inputs["padding_mask"], tf.bool)}
    outputs.update(routing_outputs(routings, tf.shape(inputs["token_ids"])))
    return outputs


@register_signatures(MoETextClassifier)
def classifier_signatures(model):
    preprocessor = require_preprocessor(model)
    names = model.class_names or [str(i) for i in range(model.num_classes)]
    class_names = tf.constant(names)
    probabilities_out = model.activation == "softmax"

    def features(text):
        return preprocessor(cut_text(check_strings(text), preprocessor.sequence_length, keep="first"))

    @tf.function(input_signature=[TEXT_SPEC])
    def serving_default(text):
        with routing_statistics(model, enabled=False):
            scores = model(features(text), training=False)
        probabilities = tf.cast(scores if probabilities_out else tf.nn.softmax(scores, axis=-1), tf.float32)
        class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {"probabilities": probabilities, "class_ids": class_ids, "labels": tf.gather(class_names, class_ids)}

    @tf.function(input_signature=[TEXT_SPEC])
    def routing(text):
        return backbone_routing(model, features(text))

    return {"serving_default": serving_default, "routing": routing}


@register_signatures(MoECausalLM)
def causal_lm_signatures(model, routing=True):
    """`serving_default`, `generate` and (with `routing`, for models whose backbone has
    `call_with_routing`) `routing`: the text signatures of any keras-hub-style CausalLM."""
    preprocessor = require_preprocessor(model)
    tokenizer, sequence_length = preprocessor.tokenizer, int(preprocessor.sequence_length)
    if model.sampler is None or isinstance(model.sampler, str):
        model.compile(sampler=model.sampler or "greedy")

    @tf.function(input_signature=[TEXT_SPEC])
    def serving_default(text):
        token_ids, padding_mask, lengths = tokenize_last(tokenizer, text, sequence_length)
        with routing_statistics(model, enabled=False):
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
        with routing_statistics(model, enabled=False):
            output = model.generate_step({"token_ids": token_ids, "padding_mask": padding_mask}, stop_token_ids=stop_token_ids)
        ids = tf.cast(output["token_ids"], tf.int32)
        # As keras-hub's generate_postprocess: drop padding and special tokens, then detokenize.
        is_special = tf.reduce_any(tf.equal(ids[:, :, None], special_ids), axis=-1)
        keep = tf.logical_and(tf.cast(output["padding_mask"], tf.bool), tf.logical_not(is_special))
        generated = tf.ragged.boolean_mask(ids, keep)
        return {"generated_text": tokenizer.detokenize(generated)}

    signatures = {"serving_default": serving_default, "generate": generate}
    if routing:

        @tf.function(input_signature=[TEXT_SPEC])
        def routing_signature(text):
            token_ids, padding_mask, _ = tokenize_last(tokenizer, text, sequence_length)
            return backbone_routing(model, {"token_ids": token_ids, "padding_mask": padding_mask})

        signatures["routing"] = routing_signature
    return signatures
