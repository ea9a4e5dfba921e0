from keras_moe.metrics.routing_stats import RoutingStats
