"""The frozen teacher compiled in place (``compile_frozen``): the same module object, type,
state-dict keys and outputs, compiled once. On CPU with Dynamo's ``eager`` backend (no C++
compiler needed); the trainer does it on CUDA only (``KdbenchTrainer.configure``)."""

from __future__ import annotations

import torch

from kdbench_plugins.nnunet_backbone.trainer import compile_frozen


def _teacher() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(4, 8, 3, padding=1), torch.nn.InstanceNorm3d(8),
                              torch.nn.LeakyReLU(), torch.nn.Conv3d(8, 3, 1)).eval()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net


def test_compiled_in_place_keeps_the_module_and_its_outputs():
    teacher, plain = _teacher(), _teacher()
    keys = list(teacher.state_dict())
    x = torch.randn(2, 4, 8, 8, 8)
    assert compile_frozen(teacher, backend="eager") is teacher
    assert type(teacher) is torch.nn.Sequential and list(teacher.state_dict()) == keys
    assert teacher._compiled_call_impl is not None
    with torch.inference_mode():
        assert torch.equal(teacher(x), plain(x))
    compiled = teacher._compiled_call_impl
    compile_frozen(teacher, backend="eager")  # already compiled: left alone
    assert teacher._compiled_call_impl is compiled
    wrapped = torch.compile(plain, backend="eager")
    assert compile_frozen(wrapped) is wrapped and wrapped._compiled_call_impl is None

