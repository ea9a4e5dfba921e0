"""`class_names` for classifier tasks: saved with the model, returned as labels by the SavedModel."""


class ClassNamesMixin:
    """`class_names`: None or `num_classes` non-empty strings (the task sets `num_classes` first)."""

    @property
    def class_names(self):
        return None if self._class_names is None else list(self._class_names)

    @class_names.setter
    def class_names(self, names):
        if names is not None:
            names = list(names)
            if len(names) != self.num_classes or not all(isinstance(n, str) and n for n in names):
                raise ValueError(
                    f"`class_names` must be {self.num_classes} non-empty strings (num_classes={self.num_classes}). "
                    f"Received: class_names={names}"
                )
        self._class_names = None if names is None else tuple(names)
