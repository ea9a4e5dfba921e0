"""Tiny task models with raw-string preprocessors, for export and serving tests."""

import keras

from keras_moe.models import (
    MoECausalLM,
    MoECausalLMPreprocessor,
    MoETextClassifier,
    MoETextClassifierPreprocessor,
    MoETransformerBackbone,
)

CORPUS = ["the cat sat on the mat", "a dog ran far away", "the dog sat", "a cat ran"] * 4
CLASS_NAMES = ["cats", "dogs", "other"]


def tiny_classifier(seed=0, router="top_k"):
    from keras_moe.data.tokenizers import train_word_piece_tokenizer

    keras.utils.set_random_seed(seed)
    tokenizer = train_word_piece_tokenizer(CORPUS, 60, lowercase=True)
    backbone = MoETransformerBackbone(
        vocabulary_size=60, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16, num_experts=4,
        router=router, causal=False, max_sequence_length=8, position_embedding="learned",
    )
    return MoETextClassifier(backbone, num_classes=3, class_names=CLASS_NAMES,
                             preprocessor=MoETextClassifierPreprocessor(tokenizer, sequence_length=8))


def tiny_lm(seed=0, dispatch="dropless"):
    keras.utils.set_random_seed(seed)
    backbone = MoETransformerBackbone(
        vocabulary_size=256, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=16, num_experts=4,
        dispatch=dispatch,
    )
    model = MoECausalLM(backbone, MoECausalLMPreprocessor(sequence_length=12))
    model.compile(sampler="greedy")
    return model
