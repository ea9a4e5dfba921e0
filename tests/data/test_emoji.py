"""Emoji data: parsing, rendering and the split (image preparation: tests/models/multimodal/test_preprocessor.py).

Tests that need the installed font and emoji list skip without them (CI installs them:
`apt-get install -y --no-install-recommends fonts-noto-color-emoji unicode-data`).
"""

import os

import numpy as np
import pytest

from keras_moe.data.emoji import EMOJI_TEST_PATH, FONT_PATH, INSTALL_COMMAND, parse_emoji_test, split_emoji

needs_data = pytest.mark.skipif(not (os.path.isfile(FONT_PATH) and os.path.isfile(EMOJI_TEST_PATH)),
                                reason=f"emoji font or list missing; install with `{INSTALL_COMMAND}`")

FIXTURE = """# group: Smileys & Emotion
# subgroup: face-smiling
1F600                                                  ; fully-qualified     # 😀 E1.0 grinning face
263A FE0F                                              ; fully-qualified     # ☺️ E0.6 smiling face
263A                                                   ; unqualified         # ☺ E0.6 smiling face
# group: People & Body
# subgroup: hand-fingers-open
1F44B                                                  ; fully-qualified     # 👋 E0.6 waving hand
1F44B 1F3FB                                            ; fully-qualified     # 👋🏻 E1.0 waving hand: light skin tone
# group: Component
1F3FB                                                  ; component           # 🏻 E1.0 light skin tone
1F9B0                                                  ; fully-qualified     # 🦰 E11.0 red hair
"""


def test_parser_keeps_fully_qualified_emoji_without_skin_tones_or_components(tmp_path):
    path = tmp_path / "emoji-test.txt"
    path.write_text(FIXTURE, encoding="utf-8")
    items = parse_emoji_test(str(path))
    assert [(i["name"], i["group"]) for i in items] == [
        ("grinning face", "Smileys & Emotion"), ("smiling face", "Smileys & Emotion"), ("waving hand", "People & Body")]
    assert items[1]["emoji"] == "\u263a\ufe0f" and items[0]["subgroup"] == "face-smiling"


def test_missing_files_name_the_install_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="fonts-noto-color-emoji"):
        parse_emoji_test(str(tmp_path / "nope.txt"))


def test_split_is_stratified_and_disjoint():
    groups = np.repeat(np.arange(3), [10, 20, 30]).astype("int32")
    images = np.arange(60)[:, None]
    names = [f"item {i}" for i in range(60)]
    (train_images, _, train_groups), (val_images, _, val_groups) = split_emoji(images, names, groups)
    assert np.bincount(val_groups).tolist() == [2, 4, 6]
    assert not set(train_images.ravel()) & set(val_images.ravel()) and len(train_groups) == 48


@needs_data
def test_real_data_has_1870_emoji_in_9_groups_and_a_fixed_split():
    from keras_moe.data import EmojiClassification

    data = EmojiClassification(image_size=16, batch_size=8)
    assert data.num_classes == 9 and len(data.train[1]) + len(data.validation[1]) == 1870
    assert len(data.validation[1]) == 375 and data.train[0].shape[1:] == (16, 16, 4)
    again = EmojiClassification(image_size=16, batch_size=8)
    assert again.validation[1] == data.validation[1]  # fixed split
    x, y = next(iter(data.validation_dataset()))
    assert x["images"].dtype == "uint8" and x["names"].shape == (8,) and y.shape == (8,)
    from keras_moe.models import MultimodalClassifierPreprocessor

    features = MultimodalClassifierPreprocessor(**data.preprocessor_arguments())(x)
    assert features["images"].shape == (8, 16, 16, 3) and features["token_ids"].shape == (8, 16)
    assert 0.19 < data.baselines()["majority"] < 0.2
