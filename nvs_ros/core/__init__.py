"""The method: cameras, radiance field, pose-distribution encoder, diffusion, metrics.

Imports torch and numpy only: no ROS, no file formats, no printing.
"""
