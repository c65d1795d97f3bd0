import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def cxr_bundle():
    from medzoo.zoo import Bundle

    return Bundle("cxr14_densenet121_classification")
