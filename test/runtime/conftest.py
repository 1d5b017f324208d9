import pytest
import torch
from ring_scene import load_ring_views, train_ring_scene

from nvs_ros.core.image_set import ImageSet
from nvs_ros.core.scene import Scene


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread, as test/core (the shared 2-core CPU stalls a larger pool)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ring_views() -> ImageSet:
    return load_ring_views()


@pytest.fixture(scope="session")
def ring_scene(ring_views: ImageSet) -> Scene:
    """The tiny trained scene of test/ring_scene.py (trained once per session, ~30 s)."""
    return train_ring_scene(ring_views)
