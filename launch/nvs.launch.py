"""Launch nvs_node on a robot with a full ROS 2 install.

    ros2 launch nvs_ros nvs.launch.py
    ros2 launch nvs_ros nvs.launch.py image:=/cam/color/image_raw camera_info:=/cam/color/camera_info
    ros2 launch nvs_ros nvs.launch.py params_file:=/path/my.yaml use_sim_time:=true   # bag replay
    ros2 launch nvs_ros nvs.launch.py rviz:=true        # and RViz with config/nvs.rviz
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("nvs_ros")
    default_params = os.path.join(share, "config", "nvs.yaml")
    arguments = [
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="nvs_node parameters (YAML)"),
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="camera image topic to remap the input to"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info",
                              description="camera_info topic to remap the input to"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (true when replaying a bag)"),
        DeclareLaunchArgument("rviz", default_value="false",
                              description="also start RViz showing TF, cloud, path, frusta and views"),
    ]
    node = Node(
        package="nvs_ros",
        executable="nvs_node",
        name="nvs_node",
        output="screen",
        parameters=[LaunchConfiguration("params_file"),
                    {"use_sim_time": LaunchConfiguration("use_sim_time")}],
        remappings=[("/camera/image_raw", LaunchConfiguration("image")),
                    ("/camera/camera_info", LaunchConfiguration("camera_info"))],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", os.path.join(share, "config", "nvs.rviz")],
        parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription([*arguments, node, rviz])
