"""Every `keras-moe` command as a user runs it: each in its own process, in a fresh folder, in the
README's order (train, evaluate, generate, export, serve, params). Each process imports keras-moe
anew, so a command that loads `model.keras` before keras-moe's classes are registered fails here."""

import json
import re

import keras
import pytest
import yaml

from tests.cli.runs import command, command_env, last_json, run_command, tiny_run

tensorflow_only = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="SavedModel export and serving need TensorFlow")
NOISE = re.compile(r"cuInit|oneDNN|absl|cuda|UserWarning|Warning:|WARNING", re.IGNORECASE)


@pytest.fixture(scope="module")
def run(tmp_path_factory, corpus):
    """`keras-moe train` of a tiny MoE LM in an empty folder, with the progress bar on."""
    folder = tmp_path_factory.mktemp("user")
    overrides = tiny_run(corpus, "trainer.steps_per_epoch=2")
    result = run_command("train", *overrides, "trainer.verbose=1", cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"folder": folder, "overrides": overrides, "result": result, "summary": last_json(result.stdout)}


def test_train_writes_its_run_folder_and_export_and_starts_quietly(run):
    folder, summary, result = run["folder"], run["summary"], run["result"]
    name = summary["name"]
    assert re.fullmatch(r"shakespeare_moe-[0-9a-f]{8}", name)  # the recipe's name + the overrides' hash
    assert summary["output_dir"] == f"outputs/{name}"
    for artefact in ("config.yaml", "model.keras", "metrics.json", "history.csv"):
        assert (folder / "outputs" / name / artefact).is_file()
    assert not (folder / "outputs" / name / "backup").exists()  # deleted once the model is saved
    assert not NOISE.search(result.stderr), result.stderr[-2000:]  # no TensorFlow start-up lines, no warnings
    bar = [line for line in result.stdout.splitlines() if "step - loss" in line]
    assert bar and not any("moe_0_" in line for line in bar)  # per-layer values stay out of the bar
    if keras.backend.backend() == "tensorflow":  # JAX's fit leaves sublayer metrics NaN: the bar leaves them out
        assert all("load_max" in line and "dropped" in line for line in bar)
    history = json.loads((folder / "outputs" / name / "metrics.json").read_text())["history"]
    assert "moe_0_entropy" in history and "moe_1_load_max" in history
    if keras.backend.backend() == "tensorflow":
        version = folder / "saved_models" / name / "1"
        assert summary["saved_model"] == str(version.relative_to(folder))
        asset = yaml.safe_load((version / "assets" / "keras_moe_config.yaml").read_text())
        assert asset["name"] == name and asset["model"]["backbone"]["num_experts"] == 4


def test_evaluate_finds_the_run_by_its_overrides(run):
    result = run_command("evaluate", *run["overrides"], cwd=run["folder"])
    assert result.returncode == 0, result.stderr[-3000:]
    scores = last_json(result.stdout)
    assert scores["loss"] == pytest.approx(run["summary"]["validation"]["loss"], rel=1e-5)
    assert "moe_0_load_max" in scores


def test_generate_continues_the_prompt(run):
    result = run_command("generate", "ROMEO.", *run["overrides"], "trainer.sampler=greedy", cwd=run["folder"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ROMEO.")
    assert len(result.stdout.rstrip("\n")) > len("ROMEO.")


@tensorflow_only
def test_export_writes_the_next_version_with_its_config(run):
    result = run_command("export", *run["overrides"], cwd=run["folder"])
    assert result.returncode == 0, result.stderr[-3000:]
    name = run["summary"]["name"]
    assert result.stdout.strip().endswith(f"saved_models/{name}/2")
    version = run["folder"] / "saved_models" / name / "2"
    assert (version / "saved_model.pb").is_file()
    assert yaml.safe_load((version / "assets" / "keras_moe_config.yaml").read_text())["name"] == name
    assert not [p for p in version.parent.iterdir() if p.name.startswith(".")]  # no staging left


@tensorflow_only
def test_serve_answers_a_prediction(run):
    import subprocess

    from tests.serving.helpers import call, free_port, wait_until

    name, port = run["summary"]["name"], free_port()
    process = subprocess.Popen(command("serve", f"saved_models/{name}", "--port", port, "--poll-seconds", "0.5"),
                               cwd=run["folder"], env=command_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}/v1/models/{name}"
    try:
        def ready():
            assert process.poll() is None, process.stdout.read()[-3000:]
            try:
                return call(base)[0] == 200
            except OSError:
                return False

        wait_until(ready, seconds=180, what="the server")
        status, body = call(base + ":predict", {"instances": ["To be, or"]})
        assert status == 200, body
        prediction = body["predictions"][0]
        assert len(prediction["next_token_logits"]) == 256 and 0 <= prediction["next_token_ids"] < 256
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_params_prints_mixtral_counts(run):
    result = run_command("params", "model=mixtral_8x7b", cwd=run["folder"])
    assert result.returncode == 0, result.stderr[-2000:]
    counts = last_json(result.stdout)
    assert counts["total"] == 46_702_792_704 and counts["active"] == 12_879_925_248


def test_commands_without_a_trained_model_say_what_to_run(tmp_path, corpus):
    result = run_command("evaluate", *tiny_run(corpus, "name=nothing"), cwd=tmp_path)
    assert result.returncode != 0
    assert "No trained model at outputs/nothing/model.keras" in result.stderr and "keras-moe train" in result.stderr


def test_unknown_command_lists_the_commands():
    from keras_moe.cli.main import main

    with pytest.raises(SystemExit, match="train, evaluate, generate, export, serve, params, upcycle, launch"):
        main(["fly"])
