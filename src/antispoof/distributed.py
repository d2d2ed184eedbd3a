"""Training across processes with torchrun: the process group and the few collectives `train` needs.

`torchrun --nproc_per_node N -m antispoof.train --replicate r` sets RANK, WORLD_SIZE, LOCAL_RANK and
the rendezvous address in the environment; `World.from_env` joins the group (gloo on CPU, NCCL on
CUDA). Without torchrun the world is one process and every collective here is a no-op, so single-process
training runs exactly the code it ran before distributed training existed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from antispoof.errors import ParamError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def writer(self) -> bool:
        """Rank 0 alone writes checkpoints and outputs."""
        return self.rank == 0

    @staticmethod
    def from_env(device: str) -> "World":
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size <= 1:
            return World()
        if device == "cuda" and not torch.cuda.is_available():
            raise ParamError("runtime.device", "is 'cuda' but torch sees no CUDA device here; use 'cpu'")
        backend = "nccl" if device == "cuda" else "gloo"
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if device == "cuda":
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
        return World(rank, size, local_rank, backend)

    def device(self, name: str) -> torch.device:
        return torch.device("cuda", self.local_rank) if name == "cuda" and self.size > 1 else torch.device(name)

    # -- collectives (every rank must call them at the same point)
    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks, in float64."""
        if self.size == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t)
        return t.cpu().tolist()

    def gather(self, obj) -> list:
        """Every rank's `obj`, in rank order (on every rank)."""
        if self.size == 1:
            return [obj]
        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):
        """Rank 0's `obj` on every rank."""
        if self.size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def close(self) -> None:
        if self.size > 1 and dist.is_initialized():
            dist.destroy_process_group()

    def _comm_device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    def describe(self) -> str:
        if self.size == 1:
            return "world size 1"
        return f"world size {self.size} ({self.backend}), rank {self.rank}" + (" writes outputs" if self.writer else "")
