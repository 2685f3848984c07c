"""fh_rl: offline RL agents with pluggable action heads (linear softmax vs the Fourier head)."""

__version__ = "0.1.0"
