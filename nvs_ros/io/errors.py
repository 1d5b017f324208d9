"""Errors raised by nvs_ros.io: the CLI reports them as one line and exits with 1."""

from nvs_ros.core.errors import NvsError


class NvsIOError(NvsError):
    """Base class for input/output errors."""


class DatasetError(NvsIOError):
    """A dataset or image folder cannot be read or is inconsistent."""


class OutputFolderError(NvsIOError):
    """An output folder is missing files, holds malformed ones, or cannot be written."""


class BagError(NvsIOError):
    """A ROS bag cannot be read or written, or holds no usable images (the message says why)."""


class SceneCheckpointError(NvsIOError):
    """A saved scene is missing, unreadable or from an incompatible version."""


class CameraModelError(NvsIOError):
    """A camera calibration (CameraInfo, camera.yaml) cannot describe the images' lens."""


class UncalibratedCameraError(CameraModelError):
    """A CameraInfo without a calibration (K[0] = 0): what a driver publishes with no calibration file."""
