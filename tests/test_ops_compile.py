"""torch.compile(fullgraph=True) traces a small model through each fused op's Triton path
(torch.library custom ops with fake and autograd registrations), keeps the op in the graph, and
matches the uncompiled model in loss and parameter gradients.

One CASES entry per op: the kernel module it needs (the case skips until that module exists), a
model whose forward calls the op with kernels="triton", and its inputs. Kernel owners: add or
adjust your op's entry here.
"""
import importlib

import pytest
import torch
from torch import nn

from igm_fast.ops import adaln_modulate, gated_residual, mdff_highpass, similarity_kl

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
D = 32


class MDFFModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(D, D)

    def forward(self, z):
        return mdff_highpass(self.proj(z), 0.5, D ** -0.5, kernels="triton").square().mean()


class SimilarityKLModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(D, D)

    def forward(self, q_target, q_pred, keys):
        return similarity_kl(q_target, self.proj(q_pred), keys, 0.1, kernels="triton")


class AdaLNModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.modulation = nn.Linear(D, 3 * D)
        self.mlp = nn.Linear(D, D)

    def forward(self, x, c):
        shift, scale, gate = self.modulation(c).unsqueeze(1).chunk(3, dim=-1)
        h = adaln_modulate(x, shift, scale, kernels="triton")
        return gated_residual(x, gate, self.mlp(h), kernels="triton").square().mean()


CASES = [
    pytest.param("igm_fast.kernels.mdff", MDFFModel, lambda: (torch.randn(2, 7, D),), id="mdff_highpass"),
    pytest.param("igm_fast.kernels.similarity_kl", SimilarityKLModel,
                 lambda: (torch.randn(8, D), torch.randn(8, D), torch.randn(16, D)), id="similarity_kl"),
    pytest.param("igm_fast.kernels.adaln", AdaLNModel, lambda: (torch.randn(2, 7, D), torch.randn(2, D)),
                 id="adaln_modulate+gated_residual"),
]


def loss_and_grads(model, inputs):
    loss = model(*inputs)
    return loss.detach(), torch.autograd.grad(loss, list(model.parameters()))


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
@pytest.mark.parametrize("kernel_module, model_cls, make_inputs", CASES)
def test_compiled_model_matches_eager(kernel_module, model_cls, make_inputs, backend):
    try:
        importlib.import_module(kernel_module)
    except ModuleNotFoundError as e:
        if e.name != kernel_module:
            raise
        pytest.skip(f"{kernel_module} has not landed yet")
    model = model_cls().to(DEVICE)
    inputs = tuple(t.to(DEVICE) for t in make_inputs())
    expected = loss_and_grads(model, inputs)

    graph_ops = []

    def recording_backend(gm, example_inputs):
        graph_ops.extend(str(node.target) for node in gm.graph.nodes if node.op == "call_function")
        return torch._dynamo.lookup_backend(backend)(gm, example_inputs)

    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend=recording_backend)
    loss, grads = loss_and_grads(compiled, inputs)

    assert any(op.startswith("igm_fast.") for op in graph_ops), f"no igm_fast custom op in the graph: {graph_ops}"
    torch.testing.assert_close(loss, expected[0])
    for got, want in zip(grads, expected[1]):
        torch.testing.assert_close(got, want)
