"""Real offline datasets as tf.data pipelines: Shakespeare (language model), fortunes and emoji (classes).

Data hands over raw examples and tokenizers, never model preprocessors: `keras_moe.training`
builds a task model's preprocessor from `task.preprocessor_arguments()`.
"""

from keras_moe.data.emoji import EmojiClassification, load_emoji
from keras_moe.data.naive_bayes import MultinomialNaiveBayes
from keras_moe.data.shakespeare import DEFAULT_VALIDATION_WORKS, load_shakespeare_works, split_by_work
from keras_moe.data.tasks import FortunesClassification, ShakespeareLanguageModeling
from keras_moe.data.text_classification import TOPICAL_CATEGORIES, baselines, load_fortunes, stratified_split
from keras_moe.data.tokenizers import TOKENIZERS, make_tokenizer, tokenize_to_ids, train_word_piece_tokenizer
