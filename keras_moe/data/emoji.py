"""Noto Color Emoji rendered with Pillow, each with its Unicode name and group: real paired image + text.

Source: Debian packages `fonts-noto-color-emoji` (the font) and `unicode-data` (`emoji-test.txt`,
names, groups and subgroups). Install: `apt-get install -y --no-install-recommends
fonts-noto-color-emoji unicode-data` and `pip install pillow`.

Items: every `fully-qualified` line of `emoji-test.txt` outside the `Component` group whose code
points hold no skin-tone modifier (U+1F3FB..U+1F3FF): 1,870 emoji in 9 groups with Debian 12's
Unicode 15.0 files. Each is drawn with the font at its bitmap size 109 (`embedded_color=True`),
cropped to its bounding box, centred on a transparent square and resized (Lanczos) to
`image_size` x `image_size` RGBA. Rendering all 1,870 takes about 1.2 s on one CPU core.

Split: `stratified_split` (the one fortunes uses), 80/20 per group, `seed=0`: 1,496 train and 374
validation items. Majority class (`Objects`) 0.193 on validation.

The task hands over raw RGBA images, names and its name tokenizer; the models' preprocessor
(`keras_moe.models.MultimodalClassifierPreprocessor`) turns them into model inputs.
"""

import collections
import os
import re

import keras_hub
import numpy as np
import tensorflow as tf

from keras_moe.data.text_classification import baselines, stratified_split
from keras_moe.data.tokenizers import train_word_piece_tokenizer
from keras_moe.utils.validation import check_positive_int

FONT_PATH = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
EMOJI_TEST_PATH = "/usr/share/unicode/emoji/emoji-test.txt"
INSTALL_COMMAND = "apt-get install -y --no-install-recommends fonts-noto-color-emoji unicode-data"
FONT_SIZE = 109  # the only size of Noto Color Emoji's bitmap strikes
SKIN_TONES = frozenset(range(0x1F3FB, 0x1F400))
EXCLUDED_GROUPS = ("Component",)
LINE = re.compile(r"^([0-9A-F ]+?)\s*;\s*([a-z-]+)\s*#\s*\S+\s+E\d+\.\d+\s+(.+)$")


def parse_emoji_test(path=EMOJI_TEST_PATH):
    """Returns a list of `{"emoji", "name", "group", "subgroup"}` dicts, in file order.

    Keeps fully-qualified emoji without skin-tone modifiers, outside the `Component` group.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No emoji list at {path!r}; install it with `{INSTALL_COMMAND}`.")
    items, group, subgroup = [], None, None
    with open(path, encoding="utf-8") as file:
        for line in file:
            line = line.rstrip("\n")
            if line.startswith("# group:"):
                group = line.split(":", 1)[1].strip()
            elif line.startswith("# subgroup:"):
                subgroup = line.split(":", 1)[1].strip()
            elif line and not line.startswith("#"):
                match = LINE.match(line)
                if not match or match.group(2) != "fully-qualified" or group in EXCLUDED_GROUPS:
                    continue
                codepoints = [int(c, 16) for c in match.group(1).split()]
                if SKIN_TONES.intersection(codepoints):
                    continue
                items.append({"emoji": "".join(map(chr, codepoints)), "name": match.group(3).strip(),
                              "group": group, "subgroup": subgroup})
    if not items:
        raise ValueError(f"No fully-qualified emoji found in {path!r}.")
    return items


def render_emoji(emoji, font, image_size):
    """One emoji as uint8 RGBA `[image_size, image_size, 4]`: drawn, cropped, centred, resized."""
    from PIL import Image, ImageDraw

    canvas = Image.new("RGBA", (FONT_SIZE * 4, FONT_SIZE * 2), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((FONT_SIZE // 2, FONT_SIZE // 4), emoji, font=font, embedded_color=True)
    box = canvas.getbbox()
    if box is None:
        return np.zeros((image_size, image_size, 4), "uint8")
    glyph = canvas.crop(box)
    side = max(glyph.size)
    square = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    square.paste(glyph, ((side - glyph.size[0]) // 2, (side - glyph.size[1]) // 2))
    return np.asarray(square.resize((image_size, image_size), Image.LANCZOS), dtype="uint8")


def load_emoji(image_size=32, font_path=FONT_PATH, emoji_test_path=EMOJI_TEST_PATH):
    """Returns `(images, names, groups, class_names)`.

    `images` uint8 `[n, image_size, image_size, 4]` (RGBA), `names` list of str (Unicode names,
    e.g. "grinning face"), `groups` int32 `[n]` indexing `class_names` (groups in file order).
    """
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 4:
        raise ValueError(f"`image_size` must be an int >= 4. Received: image_size={image_size!r}")
    if not os.path.isfile(font_path):
        raise FileNotFoundError(f"No emoji font at {font_path!r}; install it with `{INSTALL_COMMAND}`.")
    items = parse_emoji_test(emoji_test_path)
    class_names = list(dict.fromkeys(item["group"] for item in items))
    names = [item["name"] for item in items]
    groups = np.asarray([class_names.index(item["group"]) for item in items], dtype="int32")
    from PIL import ImageFont

    font = ImageFont.truetype(font_path, FONT_SIZE)
    images = np.stack([render_emoji(item["emoji"], font, image_size) for item in items])
    return images, names, groups, class_names


def split_emoji(images, names, groups, validation_fraction=0.2, seed=0):
    """Stratified by group: `(train, validation)`, each `(images, names, groups)`."""
    index = list(range(len(names)))
    train_index, _, validation_index, _ = stratified_split(index, groups, validation_fraction=validation_fraction, seed=seed)
    take = lambda ids: (images[ids], [names[i] for i in ids], groups[ids])  # noqa: E731
    return take(np.asarray(train_index)), take(np.asarray(validation_index))


def train_name_tokenizer(names, vocabulary_size, sequence_length=None):
    """A lowercase `WordPieceTokenizer` for emoji names: whole training words plus word pieces.

    `compute_word_piece_vocabulary` on 1,496 short names keeps few whole words (about 220
    entries, mostly pieces), which hurts a name classifier; so every word of the training names
    (most frequent first) is added to the trained pieces, up to `vocabulary_size` entries. Words
    never seen in training still split into pieces. Tokenizes in the TensorFlow graph.
    """
    base = list(train_word_piece_tokenizer(names, vocabulary_size, lowercase=True).get_vocabulary())
    counts = collections.Counter(w for name in names for w in re.findall(r"\w+|[^\w\s]", name.lower()))
    known = set(base)
    words = [w for w, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if w not in known]
    vocabulary = (base + words)[:vocabulary_size]
    return keras_hub.tokenizers.WordPieceTokenizer(vocabulary=vocabulary, lowercase=True, sequence_length=sequence_length,
                                                   oov_token="[UNK]")


class EmojiClassification:
    """Emoji group (9 classes) from the rendered image and the Unicode name: paired image + text.

    Elements: `({"images": uint8 [b, image_size, image_size, 4], "names": string [b]}, label int32 [b])`,
    raw inputs. `preprocessor_arguments()` (the name tokenizer, trained on the training names only,
    the sequence length and the image size) is what a model's preprocessor needs to turn them
    into model inputs (`keras_moe.training.attach_preprocessor`).

    Args:
        image_size: int, rendered (and model) image size.
        sequence_length: int, name tokens.
        batch_size: int.
        vocabulary_size: int, bound on the name vocabulary (see `train_name_tokenizer`).
        validation_fraction: float, stratified by group. seed: int (split and shuffling).
        font_path, emoji_test_path: the installed data files.
        num_classes: optional int, checked against the groups (the model config reads it).
    """

    task = "classification"

    def __init__(self, image_size=32, sequence_length=16, batch_size=32, vocabulary_size=2000, validation_fraction=0.2, seed=0,
                 font_path=FONT_PATH, emoji_test_path=EMOJI_TEST_PATH, num_classes=None):
        self.image_size = check_positive_int("image_size", image_size)
        self.sequence_length = check_positive_int("sequence_length", sequence_length)
        self.batch_size = check_positive_int("batch_size", batch_size)
        check_positive_int("vocabulary_size", vocabulary_size)
        self.seed = seed
        images, names, groups, self.class_names = load_emoji(image_size, font_path, emoji_test_path)
        if num_classes is not None and num_classes != len(self.class_names):
            raise ValueError(
                f"`num_classes` must equal the number of emoji groups ({len(self.class_names)}: {self.class_names}). "
                f"Received: num_classes={num_classes}"
            )
        self.train, self.validation = split_emoji(images, names, groups, validation_fraction, seed)
        self.tokenizer = train_name_tokenizer(self.train[1], vocabulary_size)
        self.vocabulary_size = vocabulary_size

    @property
    def num_classes(self):
        return len(self.class_names)

    def preprocessor_arguments(self):
        """What a model's preprocessor needs: the name tokenizer, the sequence length, the image size."""
        return {"tokenizer": self.tokenizer, "sequence_length": self.sequence_length, "image_size": self.image_size}

    def _dataset(self, split, shuffle):
        images, names, labels = split
        dataset = tf.data.Dataset.from_tensor_slices(({"images": images, "names": list(names)}, labels))
        if shuffle:
            dataset = dataset.shuffle(len(labels), seed=self.seed, reshuffle_each_iteration=True)
        return dataset.batch(self.batch_size)

    def train_dataset(self):
        return self._dataset(self.train, shuffle=True).repeat()

    def validation_dataset(self):
        return self._dataset(self.validation, shuffle=False)

    def baselines(self):
        """Validation accuracy of the majority class and of naive Bayes on the names."""
        return baselines(self.train[1], self.train[2], self.validation[1], self.validation[2])
