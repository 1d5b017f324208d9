"""rclpy glue: the node, message conversions, QoS profiles, TF broadcasting."""
