"""Writes docs/api.md, the API reference, from the docstrings of keras-moe's public classes and functions.

    python docs/make_api.py            # rewrites docs/api.md
    python docs/make_api.py --check    # exit 1 if docs/api.md is not what the docstrings give

Public means exported by one of `MODULES` (their `__init__` imports); each object is listed once,
under the first of those modules that exports it, with the other names it has. `tests/docs` checks
that the committed file is up to date, so a changed docstring must come with `python docs/make_api.py`.
"""

import argparse
import importlib
import inspect
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "api.md"
MODULES = (
    "keras_moe.routing", "keras_moe.layers", "keras_moe.experts", "keras_moe.losses", "keras_moe.metrics",
    "keras_moe.models", "keras_moe.models.multimodal", "keras_moe.data", "keras_moe.export",
    "keras_moe.distribution", "keras_moe.training", "keras_moe",
)
KERAS_PLUMBING = {"call", "build", "get_config", "from_config", "compute_output_shape", "compute_output_spec",
                  "get_build_config", "build_from_config"}
SECTIONS = ("Args", "Call args", "Returns", "Raises", "Example", "Examples", "Fields", "Attributes")
ITEM_SECTIONS = ("Args", "Call args", "Raises", "Fields", "Attributes")
LITERALS = (type(None), bool, int, float, str)


def public_objects():
    """`{object: [public names]}` in documentation order (first module that exports it first)."""
    found = {}
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name, value in sorted(vars(module).items()):
            if name.startswith("_") or not (inspect.isclass(value) or inspect.isfunction(value)):
                continue
            if not getattr(value, "__module__", "").startswith("keras_moe"):
                continue
            found.setdefault(value, []).append(f"{module_name}.{name}")
    return found


def default_text(value):
    if isinstance(value, LITERALS) or (isinstance(value, (tuple, list)) and all(isinstance(v, LITERALS) for v in value)):
        return repr(value)
    return "..."  # objects whose repr holds a memory address would make the file differ on every run


def signature(obj, method=False):
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        parameters = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return "(...)"
    if (inspect.isclass(obj) or method) and parameters and parameters[0].name in ("self", "cls"):
        parameters = parameters[1:]
    parts = []
    for parameter in parameters:
        prefix = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}.get(parameter.kind, "")
        text = prefix + parameter.name
        if parameter.default is not inspect.Parameter.empty:
            text += "=" + default_text(parameter.default)
        parts.append(text)
    return "(" + ", ".join(parts) + ")"


def render_docstring(doc):
    """Google-style docstring -> Markdown: section titles in bold, `Args` items as a list, the rest as is."""
    lines, section, out = inspect.cleandoc(doc).splitlines(), None, []
    for line in lines:
        title = line.strip().rstrip(":")
        if line and not line.startswith(" ") and line.endswith(":") and title in SECTIONS:
            section = title
            out += ["", f"**{title}:**", ""]
            continue
        if section in ITEM_SECTIONS and line.startswith("    "):
            item = re.match(r" {4}(\S[^:]*?):\s(.*)", line)
            if item and not line.startswith("     "):
                out.append(f"- `{item.group(1)}`: {item.group(2)}")
            elif out and out[-1].startswith("- "):
                out[-1] += " " + line.strip()
            else:
                out.append(line.strip())
            continue
        if not line.strip():
            if section in ITEM_SECTIONS:
                section = None
            out.append("")
            continue
        out.append(line[4:] if section and line.startswith("    ") else line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def methods(cls):
    """Public methods and properties defined on `cls` itself that have a docstring (Keras plumbing left out)."""
    for name, value in sorted(vars(cls).items()):
        if name.startswith("_") or name in KERAS_PLUMBING:
            continue
        function = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
        if not (inspect.isfunction(function) and function.__doc__):
            continue
        yield name, (None if isinstance(value, property) else signature(function, method=True)), function.__doc__


def entry(obj, names):
    kind = "class" if inspect.isclass(obj) else "function"
    lines = [f"### `{names[0]}`", "", f"{kind} `{obj.__name__}{signature(obj)}`"]
    if len(names) > 1:
        lines += ["", "Also: " + ", ".join(f"`{n}`" for n in names[1:])]
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    lines += ["", render_docstring(doc) if doc else "(no docstring)"]
    if inspect.isclass(obj):
        for name, method_signature, method_doc in methods(obj):
            title = f"`{name}`" if method_signature is None else f"`{name}{method_signature}`"
            lines += ["", f"#### {title}", "", render_docstring(method_doc)]
    return "\n".join(lines)


def build():
    objects = public_objects()
    by_module = {}
    for obj, names in objects.items():
        by_module.setdefault(names[0].rsplit(".", 1)[0], []).append((obj, names))
    parts = ["# API reference", "",
             "Generated from the docstrings by `python docs/make_api.py`; do not edit by hand. Each object is",
             "listed under the module that exports it first; `Also` gives its other names.", ""]
    parts += [f"- [`{module}`](#{module.replace('.', '')})" for module in MODULES if module in by_module]
    for module in MODULES:
        if module not in by_module:
            continue
        summary = (importlib.import_module(module).__doc__ or "").strip().splitlines()
        parts += ["", f"## {module}", "", summary[0] if summary else ""]
        for obj, names in by_module[module]:
            parts += ["", entry(obj, names)]
    return "\n".join(parts).rstrip() + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is out of date")
    args = parser.parse_args(argv)
    text = build()
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is out of date: run `python docs/make_api.py`.", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    raise SystemExit(main())
