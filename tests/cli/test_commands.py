"""`keras-moe evaluate`, `generate`, `export` and `params` on a tiny trained model."""

import json

import keras
import pytest

from keras_moe.training.config import compose_config
from keras_moe.cli.main import main
from keras_moe.training import train

TINY = ["model=moe_lm_tiny", "trainer=smoke", "data.sequence_length=16", "data.batch_size=4",
        "data.max_validation_windows=8", "trainer.sample_length=4"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    overrides = TINY + [f"output_dir={root}/run", f"export.root={root}/saved", "name=tiny_lm"]
    train(compose_config(overrides))
    return overrides, root


def last_line(capsys):
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_evaluate_reports_the_validation_loss(trained, capsys):
    overrides, _ = trained
    main(["evaluate", *overrides])
    result = json.loads(last_line(capsys))
    assert result["loss"] > 0 and "moe_0_load_max" in result


def test_generate_continues_the_prompt(trained, capsys):
    overrides, _ = trained
    main(["generate", "To be", *overrides, "trainer.sampler=greedy"])
    assert capsys.readouterr().out.startswith("To be")


def test_export_writes_the_next_version(trained, capsys):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("SavedModel export needs the TensorFlow backend")
    overrides, root = trained
    main(["export", *overrides])
    assert last_line(capsys).endswith("tiny_lm/2")  # train exported version 1
    assert (root / "saved" / "tiny_lm" / "2" / "saved_model.pb").is_file()
    assert not [p for p in (root / "saved" / "tiny_lm").iterdir() if p.name.startswith(".")]  # no staging left
    import numpy as np
    import tensorflow as tf

    served = tf.saved_model.load(str(root / "saved" / "tiny_lm" / "2")).signatures
    prompt = "To be, or"
    logits = served["serving_default"](text=tf.constant([prompt]))["next_token_logits"].numpy()[0]
    model = keras.models.load_model(root / "run" / "model.keras")
    ids = np.frombuffer(prompt.encode(), dtype=np.uint8).astype("int32")[None]
    expected = keras.ops.convert_to_numpy(model({"token_ids": ids, "padding_mask": np.ones_like(ids)}))[0, -1]
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    assert set(served) == {"serving_default", "generate", "routing"}


def test_commands_without_a_trained_model_say_what_to_run(tmp_path):
    with pytest.raises(SystemExit, match="keras-moe train"):
        main(["evaluate", *TINY, f"output_dir={tmp_path}/nothing"])


def test_unknown_command_lists_the_commands():
    with pytest.raises(SystemExit, match="train, evaluate, generate, params, export"):
        main(["fly"])
