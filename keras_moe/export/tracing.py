"""Tracing Keras models into serving graphs: no metric updates, and optional routing capture."""

import contextlib

from keras_moe.layers.search import moe_layers


@contextlib.contextmanager
def serving_trace(model, routing=None):
    """While tracing serving functions: MoE layers record no routing statistics (a served graph
    must not write metric variables), and when `routing` is a dict, each MoE layer's
    `RoutingResult` is stored in it under the layer's name.
    """
    patched = []
    try:
        for layer in moe_layers(model):
            stats = layer.routing_stats
            stats.update_state = lambda *args, **kwargs: None
            patched.append((stats, "update_state"))
            if routing is not None:
                router = layer.router
                original = router.call

                def recording(*args, _original=original, _name=layer.name, **kwargs):
                    result = _original(*args, **kwargs)
                    routing[_name] = result
                    return result

                router.call = recording
                patched.append((router, "call"))
        yield
    finally:
        for owner, attribute in patched:
            owner.__dict__.pop(attribute, None)
