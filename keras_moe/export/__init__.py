"""SavedModel export in TF Serving's layout, with raw-input serving signatures per model type."""

from keras_moe.export.saved_model import export_saved_model, list_versions, next_version, write_saved_model
from keras_moe.export.signatures import register_signatures, signatures_for
