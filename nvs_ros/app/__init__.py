"""ROS-free composition of core, io and runtime: offline reconstruction, where poses start,
registration of new frames, the live scene worker and saving. The CLI, the node, the benches and
the tests call this layer; none of them reaches past it into another caller."""
