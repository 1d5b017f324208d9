# Source me: the ROS 2 environment for running nvs_ros from the venv on one machine.
# Discovery stays on this host, logs go to a temporary folder, and each shell gets
# its own DDS domain so parallel runs (CI, tests, a demo) never hear each other.
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export ROS_LOG_DIR="${ROS_LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/nvs_ros_log.XXXXXX")}"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( ($$ % 100) + 1 ))}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
