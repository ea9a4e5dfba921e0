"""Raw strings to `{"token_ids", "padding_mask"}` for `MoETextClassifier`."""

import keras
import keras_hub
from keras_hub.layers import StartEndPacker
from keras_hub.src.utils.tensor_utils import preprocessing_function

from keras_moe.utils.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_moe")
class MoETextClassifierPreprocessor(keras_hub.models.Preprocessor):
    """Tokenizes strings and pads/truncates them to `sequence_length` (keras-hub preprocessor).

    Padding uses id 0 at the end; no start/end tokens are added (the pooled classifier has no
    `[CLS]` position). The tokenizer (with its vocabulary) is saved with the model, so a reloaded
    `.keras` model and its SavedModel export take raw strings.

    Args:
        tokenizer: a keras-hub tokenizer, e.g. a `WordPieceTokenizer` from
            `keras_moe.data.tokenizers.train_word_piece_tokenizer`.
        sequence_length: int, tokens per text.

    Call: `x` strings `[b]` (and optional `y`, `sample_weight`) ->
    `({"token_ids": int32 [b, sequence_length], "padding_mask": bool [b, sequence_length]}, y, sample_weight)`.

    Example:
    ```python
    tokenizer = keras_hub.tokenizers.ByteTokenizer(lowercase=False)
    preprocessor = MoETextClassifierPreprocessor(tokenizer, sequence_length=8)
    assert tuple(preprocessor(["ab"])["token_ids"].shape) == (1, 8)
    ```
    """

    backbone_cls = None

    def __init__(self, tokenizer, sequence_length=64, **kwargs):
        super().__init__(**kwargs)
        self.tokenizer = tokenizer
        self.sequence_length = check_positive_int("sequence_length", sequence_length)
        self.packer = None

    def build(self, input_shape):
        self.packer = StartEndPacker(
            sequence_length=self.sequence_length, pad_value=0, return_padding_mask=True, dtype="int32"
        )
        self.built = True

    @preprocessing_function
    def call(self, x, y=None, sample_weight=None):
        token_ids, padding_mask = self.packer(self.tokenizer(x))
        x = {"token_ids": token_ids, "padding_mask": padding_mask}
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)

    def get_config(self):
        config = super().get_config()
        config.update({"sequence_length": self.sequence_length})
        return config
