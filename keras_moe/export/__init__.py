"""SavedModel export in TF Serving's layout; each model family registers its raw-input signatures."""

from keras_moe.export.inputs import TEXT_SPEC, check_strings, require_preprocessor, tokenize_last
from keras_moe.export.routing import routing_outputs
from keras_moe.export.saved_model import export_saved_model, list_versions, next_version, write_saved_model
from keras_moe.export.signatures import register_signatures, signatures_for
