"""What a call costs on a GPU at small sizes: its operations (each a kernel launch there), counted on any device.

    with count_operations() as counted:
        unet(sample, t, encoder_hidden_states=...)
    counted.total, counted.by_name

Counts the non-view aten operations that reach the dispatcher (a ``TorchDispatchMode``, below autograd and the
composite decompositions: what a device runs, not the Python calls), as PyTorch's own tests count them. Views
(``view``, ``permute``, ``transpose``, slicing) launch nothing and are left out.
"""

from __future__ import annotations

from collections import Counter

from torch.utils._python_dispatch import TorchDispatchMode


class OperationCounter(TorchDispatchMode):
    """``by_name``: ``Counter`` of operation names (``aten.mm``, ...); ``total``: their sum."""

    def __init__(self) -> None:
        super().__init__()
        self.by_name: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view:
            self.by_name[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.by_name.values())


def count_operations() -> OperationCounter:
    """``with count_operations() as counted:`` the operations of the block (see :class:`OperationCounter`)."""
    return OperationCounter()
