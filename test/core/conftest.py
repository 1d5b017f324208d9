import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """torch's thread pool stalls when the machine's cores are busy (measured: 2 threads ran a
    training step 20x slower than 1 on the shared 2-core CPU); one thread keeps core tests fast."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
