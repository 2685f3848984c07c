"""The CPU fast paths of the Decision Transformer compute what the plain formulas compute."""

import math

import pytest
import torch
import torch.nn.functional as F

from fh_rl.agents.decision_transformer import CausalSelfAttention, DecisionTransformer, dropout
from fh_rl.agents.encoders import NatureCNN, stack_frames


def test_nature_cnn_equals_the_plain_float_over_255_forward():
    torch.manual_seed(0)
    cnn = NatureCNN((4, 84, 84), 16)
    frames = torch.randint(0, 256, (2, 5 + 3, 84, 84), dtype=torch.uint8)
    stacked = stack_frames(frames, 5)  # a strided view, as in training
    plain = torch.tanh(cnn.proj(cnn.convs(stacked.reshape(-1, 4, 84, 84).float() / 255.0))).reshape(2, 5, 16)
    torch.testing.assert_close(cnn(stacked), plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cnn(stacked.contiguous()), plain, rtol=1e-5, atol=1e-6)
    # gradients reach the first convolution's own weights (the /255 is folded in, not stored)
    cnn(stacked).sum().backward()
    assert cnn.convs[0].weight.grad is not None and cnn.convs[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("padded", [False, True])
def test_written_out_attention_equals_sdpa(padded):
    torch.manual_seed(0)
    B, H, L, d = 2, 4, 9, 8
    q, k, v = (torch.randn(B, H, L, d) for _ in range(3))
    if padded:
        mask = DecisionTransformer._attention_mask(torch.tensor([[False, True, True], [True, True, True]]))
        assert mask is not None
    else:
        mask = torch.ones(L, L, dtype=torch.bool).tril()
    # dropout probability 0 through the same code path
    ours = CausalSelfAttention._attention_with_dropout(q, k, v, mask, 0.0)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), rtol=1e-5, atol=1e-6)


def test_cpu_dropout_zeroes_p_and_rescales():
    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = dropout(x, 0.25, True)
    zero = (y == 0).float().mean().item()
    assert zero == pytest.approx(0.25, abs=0.01)
    values = torch.unique(y).tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / 0.75)
    assert dropout(x, 0.25, False) is x and dropout(x, 0.0, True) is x


def test_training_attention_with_dropout_keeps_expectation():
    torch.manual_seed(0)
    attn = CausalSelfAttention(16, 2, 0.5, max_len=6).train()
    x = torch.randn(1, 6, 16)
    with torch.no_grad():
        mean = torch.stack([attn(x, None) for _ in range(4000)]).mean(0)
        attn.eval()
        expected = attn(x, None)
    # resid dropout and attention dropout are both unbiased: the mean output approaches the eval output
    assert (mean - expected).abs().max().item() < 0.05 * max(1.0, expected.abs().max().item())
    assert math.isfinite(mean.sum().item())
