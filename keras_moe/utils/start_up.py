"""A quiet start for the `keras-moe` command on a machine without a GPU.

TensorFlow writes a few lines while it loads (oneDNN, CUDA stubs) before its C++ logging honours
`TF_CPP_MIN_LOG_LEVEL`, and later a `cuInit` error and other C++ log lines that the level does hide.
For the command line only (the `keras-moe` console script, `python -m keras_moe.cli.main`), and only
when the user has not chosen a level below 3, the level is set to 3 and the load-time lines are dropped.
Set `TF_CPP_MIN_LOG_LEVEL=0` to see all of them. Importing `keras_moe` as a library changes nothing.
`keras_moe/__init__.py` imports this module first; importing it runs `quiet_tensorflow_start_up()`.
"""

import contextlib
import os
import sys


def is_command_line():
    """True in the `keras-moe` console script and in `python -m keras_moe.cli.main`."""
    if sys.argv and os.path.basename(sys.argv[0]) == "keras-moe":
        return True
    argv = list(getattr(sys, "orig_argv", []))
    return any(flag == "-m" and module == "keras_moe.cli.main" for flag, module in zip(argv, argv[1:]))


@contextlib.contextmanager
def stderr_silenced():
    """File descriptor 2 points at /dev/null inside the block (C++ code writes there directly)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def quiet_tensorflow_start_up():
    """Loads TensorFlow quietly when this process is the `keras-moe` command (see the module docstring)."""
    if not is_command_line() or "tensorflow" in sys.modules:
        return
    if os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3").strip() != "3":
        return  # the user asked for TensorFlow's logs
    with stderr_silenced():
        import tensorflow  # noqa: F401


quiet_tensorflow_start_up()
