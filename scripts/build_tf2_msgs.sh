#!/usr/bin/env bash
# Build tf2_msgs (TFMessage only; not published as a wheel) into a venv that already
# holds the ROS 2 Kilted runtime and generator wheels (requirements*.txt).
# The generated type hash equals upstream's, so RViz and tf2 tools interoperate.
#
# Usage: scripts/build_tf2_msgs.sh VENV_DIR
set -euo pipefail

VENV="$(realpath -m "${1:?usage: build_tf2_msgs.sh VENV_DIR}")"
PY="$VENV/bin/python"
EXPECTED_HASH="RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"

check_installed() {
  "$PY" - "$EXPECTED_HASH" <<'PYEOF'
import json, os, sys
from rclpy.serialization import deserialize_message, serialize_message
from geometry_msgs.msg import TransformStamped
from tf2_msgs.msg import TFMessage
msg = TFMessage(transforms=[TransformStamped(child_frame_id="c")])
assert deserialize_message(serialize_message(msg), TFMessage).transforms[0].child_frame_id == "c"
with open(os.path.join(sys.prefix, "share/tf2_msgs/msg/TFMessage.json")) as f:
    type_hash = json.load(f)["type_hashes"][0]
assert type_hash["hash_string"] == sys.argv[1], type_hash
print("tf2_msgs OK:", type_hash["type_name"], type_hash["hash_string"])
PYEOF
}

if check_installed >/dev/null 2>&1; then
  exit 0
fi
echo "[setup] building tf2_msgs into $VENV" >&2

INC="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
[ -f "$INC/Python.h" ] || { echo "no $INC/Python.h: apt-get install python3-dev" >&2; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tf2_msgs_build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
SRC="$WORK/src/tf2_msgs"
mkdir -p "$SRC/msg"
echo 'geometry_msgs/TransformStamped[] transforms' > "$SRC/msg/TFMessage.msg"
cat > "$SRC/package.xml" <<'XML'
<?xml version="1.0"?>
<package format="3">
  <name>tf2_msgs</name>
  <version>0.42.0</version>
  <description>Local build of tf2_msgs (TFMessage only) for ROS 2 from wheels.</description>
  <maintainer email="noreply@example.com">nvs_ros</maintainer>
  <license>BSD-3-Clause</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>geometry_msgs</depend>
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
XML
cat > "$SRC/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.20)
project(tf2_msgs)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
find_package(geometry_msgs REQUIRED)
rosidl_generate_interfaces(${PROJECT_NAME} "msg/TFMessage.msg" DEPENDENCIES geometry_msgs)
ament_export_dependencies(rosidl_default_runtime)
ament_package()
# The wheels were built in a manylinux container: their exported targets hard-code
# /opt/python/... include dirs. Point them at this interpreter's Python/NumPy headers.
find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module NumPy)
get_property(_imported DIRECTORY PROPERTY IMPORTED_TARGETS)
foreach(_t IN LISTS _imported)
  get_target_property(_inc ${_t} INTERFACE_INCLUDE_DIRECTORIES)
  if(_inc AND "${_inc}" MATCHES "/opt/python/")
    list(TRANSFORM _inc REPLACE "^/opt/python/[^/]+/include/python3\\.[0-9]+$" "${Python3_INCLUDE_DIRS}")
    list(TRANSFORM _inc REPLACE "^/opt/python/.*/numpy/_core/include$" "${Python3_NumPy_INCLUDE_DIRS}")
    set_target_properties(${_t} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_inc}")
  endif()
endforeach()
CMAKE

# Install into the venv prefix: libs -> $VENV/lib (on LD_LIBRARY_PATH through the
# ros-wheels bootstrapper), Python package -> site-packages, ament index -> $VENV/share.
run_step() {
  local name="$1"; shift
  "$@" > "$WORK/$name.log" 2>&1 || { tail -50 "$WORK/$name.log" >&2; exit 1; }
}
run_step configure cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
  -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY"
run_step build cmake --build "$WORK/build" -j"$(nproc)"
run_step install cmake --install "$WORK/build"
check_installed
