"""Shared test set-up: an isolated ROS 2 environment for every pytest process.

The environment is set when pytest loads this file, before any test module imports rclpy,
and child processes started by tests inherit it:
- DDS discovery stays on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST),
- each pytest process gets its own ROS_DOMAIN_ID (1..100 from the PID) so parallel runs on
  one machine do not see each other's /tf; each pytest-xdist worker (scripts/test.sh runs two)
  one of its own above 100, derived from the run's,
- ROS logs go to a temporary folder, removed at exit,
- Fast DDS uses shared memory only (FASTDDS_BUILTIN_TRANSPORTS=SHM): no DDS traffic touches a
  network interface at all, not even loopback. Measured here with a reliable 640x480 rgb8 stream
  + /tf at 20 Hz, SHM, UDPv4, DEFAULT and LARGE_DATA all delivered 60/60 of both (tf median
  2-5 ms) and the cross-process tests pass under each, so the choice is for isolation.
Variables already set by the caller win (e.g. a CI job that picks its own domain).
"""

import atexit
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator

import pytest
import torch
from ring_scene import load_ring_views, train_ring_scene

from nvs_ros.core.image_set import ImageSet
from nvs_ros.core.scene import Scene


def _set_ros_environment() -> None:
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))  # 0 is everyone's default
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "SHM")
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", ...
    if worker:  # the workers inherit the run's domain: two nodes named nvs_node would meet there
        os.environ["ROS_DOMAIN_ID"] = str(101 + (int(os.environ["ROS_DOMAIN_ID"]) * 8 + int(worker[2:])) % 131)
    if "ROS_LOG_DIR" not in os.environ:
        log_dir = tempfile.mkdtemp(prefix="nvs_ros_test_ros_log_")
        os.environ["ROS_LOG_DIR"] = log_dir
        atexit.register(shutil.rmtree, log_dir, ignore_errors=True)


_set_ros_environment()


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """torch's thread pool stalls when the machine's cores are busy (measured: 2 threads ran a
    training step 20x slower than 1 on the shared 2-core CPU, and the suite runs two workers):
    one thread keeps the tests fast."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ring_views() -> ImageSet:
    return load_ring_views()


@pytest.fixture(scope="session")
def ring_scene(ring_views: ImageSet) -> Scene:
    """The tiny scene (test/ring_scene.py), trained once in each worker for every test file that
    uses it."""
    return train_ring_scene(ring_views)


@pytest.fixture
def rclpy_context() -> Iterator["rclpy.context.Context"]:  # noqa: F821 (rclpy imported lazily)
    """An initialised rclpy Context of its own, shut down after the test.

    Create nodes with `Node(name, context=rclpy_context)`; nothing leaks into the next test.
    """
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        context.try_shutdown()


@pytest.fixture
def spin_until() -> Callable[..., bool]:
    """`spin_until(executor_or_node, predicate, timeout_s) -> bool`.

    Spins (callbacks run in this thread) until `predicate()` is true or `timeout_s` passes;
    returns the predicate's last value, so tests assert on it with their own message.
    """
    return _spin_until


def _spin_until(executor_or_node, predicate: Callable[[], bool], timeout_s: float) -> bool:
    from rclpy.executors import Executor, SingleThreadedExecutor

    if isinstance(executor_or_node, Executor):
        return _spin_executor_until(executor_or_node, predicate, timeout_s)
    executor = SingleThreadedExecutor(context=executor_or_node.context)
    executor.add_node(executor_or_node)
    try:
        return _spin_executor_until(executor, predicate, timeout_s)
    finally:
        executor.remove_node(executor_or_node)
        executor.shutdown()


def _spin_executor_until(executor, predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return predicate()
        executor.spin_once(timeout_sec=min(remaining, 0.05))
    return True
