import torch

# Tiny models: one intra-op thread is fastest, and avoids oversubscribing shared CI cores.
torch.set_num_threads(1)
