"""Suite-wide settings: one torch thread. The test models are tiny, so intra-op threads only add
synchronisation, and on a shared 2-core machine spinning threads slow everything else down."""

import torch

torch.set_num_threads(1)
