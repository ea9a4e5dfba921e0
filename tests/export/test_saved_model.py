"""SavedModel export: TF Serving layout, atomic versions, raw-string signatures, parity, op contract."""

import glob
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_moe.export import export_saved_model, list_versions, next_version
from tests.export.tiny import CLASS_NAMES, tiny_classifier, tiny_lm

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="SavedModel export runs on TensorFlow")

TEXTS = ["the cat sat", "a dog ran far away from the mat", "x"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("saved_models"))
    models = {"classifier": tiny_classifier(), "lm": tiny_lm()}
    paths = {name: export_saved_model(model, root, name) for name, model in models.items()}
    return root, models, paths


def load(path):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    return tf.saved_model.load(path, tags=["serve"])


def test_versions_increase_and_nothing_half_written_stays(exported, tmp_path):
    root = str(tmp_path)
    model = tiny_classifier()
    assert export_saved_model(model, root, "m") == os.path.join(root, "m", "1")
    assert export_saved_model(model, root, "m") == os.path.join(root, "m", "2")
    assert list_versions(os.path.join(root, "m")) == [1, 2] and next_version(os.path.join(root, "m")) == 3
    assert sorted(os.listdir(os.path.join(root, "m"))) == ["1", "2"]  # no hidden staging folders left
    assert os.path.isfile(os.path.join(root, "m", "2", "saved_model.pb"))
    with pytest.raises(FileExistsError, match="Version 2"):
        export_saved_model(model, root, "m", version=2)


def test_failed_export_leaves_no_version(tmp_path):
    model = tiny_classifier()
    model.preprocessor = None
    with pytest.raises(ValueError, match="preprocessor"):
        export_saved_model(model, str(tmp_path), "m")
    assert os.listdir(tmp_path / "m") == []


@pytest.mark.parametrize("name", ["", "a/b", ".hidden", None])
def test_bad_model_names_are_refused(name, tmp_path):
    with pytest.raises(ValueError, match="model name"):
        export_saved_model(tiny_classifier(), str(tmp_path), name)


def test_serving_contract_tag_signatures_and_io(exported):
    from tensorflow.core.protobuf import saved_model_pb2

    _, _, paths = exported
    expected = {
        "classifier": ({"serving_default", "routing"}, {"probabilities", "class_ids", "labels"}),
        "lm": ({"serving_default", "generate", "routing"}, {"next_token_logits", "next_token_ids", "next_tokens"}),
    }
    for name, path in paths.items():
        proto = saved_model_pb2.SavedModel()
        with open(os.path.join(path, "saved_model.pb"), "rb") as handle:
            proto.ParseFromString(handle.read())
        (graph,) = proto.meta_graphs
        assert list(graph.meta_info_def.tags) == ["serve"]
        signatures, outputs = expected[name]
        assert set(graph.signature_def) - {"__saved_model_init_op"} == signatures
        default = graph.signature_def["serving_default"]
        assert default.method_name == "tensorflow/serving/predict"
        assert list(default.inputs) == ["text"] and default.inputs["text"].dtype == 7  # DT_STRING
        assert set(default.outputs) == outputs


OP_CHECK = r"""
import json, sys
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry
proto = saved_model_pb2.SavedModel()
proto.ParseFromString(open(sys.argv[1], "rb").read())
graph = proto.meta_graphs[0].graph_def
ops = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
ops -= {f.signature.name for f in graph.library.function}
core = {op for op in ops if op_def_registry.get(op) is not None}
import tensorflow_text
text = {op for op in ops - core if op_def_registry.get(op) is not None}
print(json.dumps({"core": sorted(core), "text": sorted(text), "unknown": sorted(ops - core - text)}))
"""


# TF Serving's images embed TF Text 2.12.1 (tensorflow/serving PR 4057), older than our 2.21. These
# ops were checked to be registered in the tensorflow-text 2.12.1 wheel's kernels (grep of its .so
# files); a new TF Text op in an export must be checked the same way before it joins this list.
TF_TEXT_OPS_IN_TF_SERVING = {"CaseFoldUTF8", "FastWordpieceTokenizeWithOffsets", "RegexSplitWithOffsets"}


@pytest.mark.parametrize("name", ["classifier", "lm"])
def test_only_tensorflow_core_and_tf_text_ops(exported, name):
    """TF Serving's standard build has TF core plus TF Text ops: nothing else, no Python callbacks."""
    path = os.path.join(exported[2][name], "saved_model.pb")
    result = subprocess.run([sys.executable, "-c", OP_CHECK, path], capture_output=True, text=True, timeout=120)
    ops = json.loads(result.stdout.strip().splitlines()[-1])
    assert ops["unknown"] == []
    assert not {"PyFunc", "EagerPyFunc", "PyFuncStateless"} & set(ops["core"])
    if name == "lm":
        assert ops["text"] == []  # byte tokenizer: TF core only
    else:
        assert ops["text"] and set(ops["text"]) <= TF_TEXT_OPS_IN_TF_SERVING  # WordPiece runs as TF Text ops


def test_classifier_parity_with_keras(exported):
    _, models, paths = exported
    model = models["classifier"]
    outputs = load(paths["classifier"]).signatures["serving_default"](text=np.array(TEXTS))
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(model.predict(np.array(TEXTS), verbose=0)))
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(outputs["probabilities"].numpy().sum(-1), 1.0, atol=1e-5)
    ids = expected.argmax(-1)
    np.testing.assert_array_equal(outputs["class_ids"].numpy(), ids)
    assert [b.decode() for b in outputs["labels"].numpy()] == [CLASS_NAMES[i] for i in ids]


def test_causal_lm_next_token_and_generate_parity(exported):
    _, models, paths = exported
    model, signatures = models["lm"], load(paths["lm"]).signatures
    outputs = signatures["serving_default"](text=np.array(TEXTS))
    x, _, _ = model.preprocessor(np.array(TEXTS))
    # The preprocessor packs seq+1 for labels: inputs are the first `sequence_length` bytes.
    logits = keras.ops.convert_to_numpy(model(x))
    lengths = np.minimum([len(t.encode()) for t in TEXTS], 12)
    expected = logits[np.arange(len(TEXTS)), lengths - 1]
    np.testing.assert_allclose(outputs["next_token_logits"].numpy()[[0, 2]], expected[[0, 2]], atol=1e-5)
    np.testing.assert_array_equal(outputs["next_token_ids"].numpy()[[0, 2]], expected[[0, 2]].argmax(-1))  # the model's choice
    assert [t.decode() for t in outputs["next_tokens"].numpy()[[0, 2]]] == [chr(i) for i in expected[[0, 2]].argmax(-1)]
    texts = signatures["generate"](text=np.array(TEXTS[:1] + TEXTS[2:]))["generated_text"].numpy()
    generated = [t.decode("utf-8", "replace") for t in texts]
    assert generated == model.generate(TEXTS[:1] + TEXTS[2:], max_length=12)


def test_long_prompts_keep_their_last_tokens(exported):
    _, models, paths = exported
    signatures = load(paths["lm"]).signatures
    prompt = "a dog ran far away from the mat"
    tail = prompt[-12:]
    full = signatures["serving_default"](text=np.array([prompt]))["next_token_logits"].numpy()
    cut = signatures["serving_default"](text=np.array([tail]))["next_token_logits"].numpy()
    np.testing.assert_allclose(full, cut, atol=1e-6)


@pytest.mark.parametrize("name", ["classifier", "lm"])
def test_routing_signature(exported, name):
    _, models, paths = exported
    routing = load(paths[name]).signatures["routing"](text=np.array(TEXTS))
    mask = routing["padding_mask"].numpy()
    layers = sorted(k[: -len("_expert_ids")] for k in routing if k.endswith("_expert_ids"))
    assert layers and len(layers) == len(models[name].backbone.moe_layers)
    for layer in layers:
        ids, weights = routing[f"{layer}_expert_ids"].numpy(), routing[f"{layer}_expert_weights"].numpy()
        assert ids.shape == weights.shape == mask.shape + (2,)
        assert np.all(weights[~mask] == 0)  # padding is routed nowhere
        np.testing.assert_allclose(weights[mask].sum(-1), 1.0, atol=1e-5)  # normalized top-2
    # The served decisions are the model's own: its backbone's routing on the same token ids.
    model = models[name]
    inputs = {"token_ids": routing["token_ids"].numpy(), "padding_mask": mask.astype("int32")}
    _, expected = model.backbone.call_with_routing(inputs)
    assert sorted(expected) == layers
    for layer in layers:
        ids, weights = (keras.ops.convert_to_numpy(v).reshape(mask.shape + (2,)) for v in expected[layer].decisions())
        np.testing.assert_array_equal(routing[f"{layer}_expert_ids"].numpy()[mask], ids[mask])
        np.testing.assert_allclose(routing[f"{layer}_expert_weights"].numpy(), weights, atol=1e-6)


@pytest.mark.parametrize("name", ["classifier", "lm"])
@pytest.mark.parametrize("text, message", [(b"", "non-empty"), (b"\xff\xfe ok", "valid UTF-8")])
def test_bad_text_is_refused_in_the_graph(exported, name, text, message):
    import tensorflow as tf

    function = load(exported[2][name]).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        function(text=tf.constant([b"fine", text]))


def run_saved_model_cli(path, signature, texts, outdir, with_text_ops):
    expression = f"text={json.dumps(texts)}"
    args = ["run", "--dir", path, "--tag_set", "serve", "--signature_def", signature, "--input_exprs", expression,
            "--outdir", str(outdir), "--overwrite"]
    if with_text_ops:  # saved_model_cli with TF Text's ops registered, as TF Serving's build has them
        code = ("import sys, tensorflow_text; from tensorflow.python.tools import saved_model_cli; "
                "sys.argv = ['saved_model_cli'] + sys.argv[1:]; saved_model_cli.main()")
        command = [sys.executable, "-c", code] + args
    else:
        command = [os.path.join(os.path.dirname(sys.executable), "saved_model_cli")] + args
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return {os.path.basename(p)[:-4]: np.load(p, allow_pickle=True) for p in glob.glob(os.path.join(outdir, "*.npy"))}


def test_saved_model_cli_run_matches_keras(exported, tmp_path):
    _, models, paths = exported
    lm = run_saved_model_cli(paths["lm"], "serving_default", TEXTS[:2], tmp_path / "lm", with_text_ops=False)
    direct = load(paths["lm"]).signatures["serving_default"](text=np.array(TEXTS[:2]))
    np.testing.assert_allclose(lm["next_token_logits"], direct["next_token_logits"].numpy(), atol=1e-5)
    classifier = run_saved_model_cli(paths["classifier"], "serving_default", TEXTS, tmp_path / "cls", with_text_ops=True)
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(models["classifier"].predict(np.array(TEXTS), verbose=0)))
    np.testing.assert_allclose(classifier["probabilities"], expected, atol=1e-5)


# Issue 14, point 5: texts are cut to the context before tokenizing (keras_moe.export.text_bounds).
def test_classifier_reads_only_the_first_64_characters_per_token(exported):
    from keras_moe.export.text_bounds import text_limit

    function = load(exported[2]["classifier"]).signatures["serving_default"]
    limit = text_limit(8)  # the tiny classifier's sequence_length

    def probabilities(text):
        return function(text=np.array([text]))["probabilities"].numpy()

    head = "the cat"
    beyond = head + " " * (limit - len(head)) + " dog dog ran"  # the dogs start past the limit
    assert not np.allclose(probabilities(head), probabilities(head + " dog dog ran"), atol=1e-4)  # they would matter
    np.testing.assert_allclose(probabilities(beyond), probabilities(head), atol=1e-6)


def test_an_8_mb_prompt_is_not_tokenized_whole(exported):
    """The LM keeps its last 12 tokens either way; the cut makes an 8 MB prompt cost its UTF-8 check only."""
    import tensorflow as tf

    from keras_moe.export import check_strings as check_text

    _, models, paths = exported
    function = load(paths["lm"]).signatures["serving_default"]
    prompt = ("the cat sat on the mat. " * 350_000)[: 8 * 1024 * 1024]
    big = tf.constant([prompt])
    np.testing.assert_allclose(function(text=big)["next_token_logits"].numpy(),
                               function(text=tf.constant([prompt[-12:]]))["next_token_logits"].numpy(), atol=1e-6)
    tokenize = tf.function(lambda text: models["lm"].preprocessor.tokenizer(text))
    check = tf.function(check_text)

    def fastest(run):
        run()
        return min(_seconds(run) for _ in range(5))

    served, checked, tokenized = (fastest(lambda: function(text=big)), fastest(lambda: check(big)), fastest(lambda: tokenize(big)))
    assert served < checked + 0.5 * tokenized, (served, checked, tokenized)


def _seconds(run):
    import time

    start = time.perf_counter()
    run()
    return time.perf_counter() - start


@pytest.mark.parametrize("keep, expected", [("first", "é" * 640), ("last", "ü" * 640)])
def test_cut_text_counts_characters_and_keeps_utf8_whole(keep, expected):
    import tensorflow as tf

    from keras_moe.export.text_bounds import cut_text

    text = "é" * 700 + "ü" * 700  # two bytes per character
    cut = cut_text(tf.constant([text, "short"]), sequence_length=10, keep=keep).numpy()
    assert cut[0].decode("utf-8") == expected and cut[1] == b"short"


def test_cut_text_refuses_an_unknown_end():
    from keras_moe.export.text_bounds import cut_text

    with pytest.raises(ValueError, match='keep must be "first" or "last"; received keep=\'middle\''):
        cut_text(None, 8, keep="middle")
