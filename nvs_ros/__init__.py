"""nvs_ros: camera poses, scene model and synthesized views from an unposed camera stream."""

__version__ = "0.1.0"
