import pytest
import torch
from ring_scene import load_ring_views, train_ring_scene

from nvs_ros.core.image_set import ImageSet
from nvs_ros.core.scene import Scene


@pytest.fixture(autouse=True)
def one_torch_thread():
    """torch's thread pool stalls when the machine's cores are busy (measured: 2 threads ran a
    training step 20x slower than 1 on the shared 2-core CPU); one thread keeps core tests fast."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ring_views() -> ImageSet:
    return load_ring_views()


@pytest.fixture(scope="session")
def ring_scene(ring_views: ImageSet) -> Scene:
    """The tiny scene (test/ring_scene.py), trained once for every test file that uses it."""
    return train_ring_scene(ring_views)
