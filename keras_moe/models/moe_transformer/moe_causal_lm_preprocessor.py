"""Raw strings to `(token_ids, padding_mask)` and shifted labels for `MoECausalLM`."""

import keras
import keras_hub
from keras_hub.layers import StartEndPacker


@keras.saving.register_keras_serializable(package="keras_moe")
class MoECausalLMPreprocessor(keras_hub.models.CausalLMPreprocessor):
    """keras-hub's causal-LM preprocessing with a byte tokenizer by default.

    Strings in, `({"token_ids", "padding_mask"}, labels, sample_weight)` out for training, and
    the `generate_preprocess`/`generate_postprocess` pair that `MoECausalLM.generate` uses. Byte
    tokens have no start/end specials, so none are added unless the tokenizer has them.

    Args:
        tokenizer: a keras-hub tokenizer (default `keras_hub.tokenizers.ByteTokenizer(lowercase=False)`).
        sequence_length: int, packed length.
        add_start_token, add_end_token: bool (default: only when the tokenizer defines them).
    """

    backbone_cls = None

    def __init__(self, tokenizer=None, sequence_length=256, add_start_token=None, add_end_token=None, **kwargs):
        tokenizer = tokenizer or keras_hub.tokenizers.ByteTokenizer(lowercase=False)
        has_start = getattr(tokenizer, "start_token_id", None) is not None
        has_end = getattr(tokenizer, "end_token_id", None) is not None
        super().__init__(
            tokenizer=tokenizer,
            sequence_length=sequence_length,
            add_start_token=has_start if add_start_token is None else add_start_token,
            add_end_token=has_end if add_end_token is None else add_end_token,
            **kwargs,
        )

    def build(self, input_shape):
        # keras-hub's build reads `tokenizer.start_token_id`, which byte tokenizers do not define.
        self.packer = StartEndPacker(
            start_value=getattr(self.tokenizer, "start_token_id", None),
            end_value=getattr(self.tokenizer, "end_token_id", None),
            pad_value=getattr(self.tokenizer, "pad_token_id", None) or 0,
            sequence_length=self.sequence_length,
            return_padding_mask=True,
        )
        self.built = True
