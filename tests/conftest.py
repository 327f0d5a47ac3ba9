"""One torch thread for every test: on a small shared machine extra threads only contend. RimPPO's
``torch.compile`` of the RIM loop is off (each test's shapes would compile anew); the tests that check
the compiled path turn it on themselves."""

import os

import pytest
import torch

os.environ.setdefault("RIMS_RL_COMPILE", "0")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
