"""rclpy glue: the node, message conversions, QoS profiles, TF broadcasting."""

WARNING_PERIOD_S = 5.0
"""A repeated warning (a skipped frame, a withheld TF, an ignored request) is logged at most this
often [s]; /diagnostics counts every one."""
