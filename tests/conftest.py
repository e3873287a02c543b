"""Shared test set-up."""

import torch

# The tests run many tiny forward passes; on a shared 2-core machine intra-op threads
# only contend with each other (and with other processes), so one thread is fastest.
torch.set_num_threads(1)
