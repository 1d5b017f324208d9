from glob import glob

from setuptools import find_packages, setup

PACKAGE = "nvs_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="nvs_ros developers",
    maintainer_email="dev@nvs-ros.local",
    description="Poses, point clouds and synthesized views from an unposed camera stream.",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "nvs_node = nvs_ros.ros.node:main",
            "nvs-ros = nvs_ros.cli:main",
        ],
    },
)
