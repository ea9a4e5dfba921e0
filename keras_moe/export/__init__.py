"""SavedModel export in TF Serving's layout, with raw-input serving signatures per model type."""

from keras_moe.export.saved_model import export_saved_model, next_version
from keras_moe.export.signatures import register_signatures, signatures_for
