"""Several processes of one run (``torchrun``, ``accelerate launch``, ``craft-bench run --num-processes N``).

Work is split so that the result does not depend on the number of processes: a list is cut into the pieces one
process would make (batches of images, chunks of scoring) and process r takes pieces r, r + N, r + 2N, ...; the
first process gathers what the others made and merges it in the list's order. So N processes write the same
images and the same results.json as one.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

from craft_bench.errors import UserError

T = TypeVar("T")
TIMEOUT_ENV = "CRAFT_BENCH_DIST_TIMEOUT"  # seconds a process may wait for the others (default 12 h: data building
# on the first process, e.g. a candidate pool on SDXL, can take hours while the others wait)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_state(device: str) -> Any:
    """accelerate's process state when launched on several processes, else None (one process)."""
    if world_size() <= 1:
        return None
    from accelerate import PartialState

    timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, 12 * 3600)))
    state = PartialState(cpu=not str(device).startswith("cuda"), timeout=timeout)
    if state.num_processes <= 1:
        raise UserError(
            f"launched on {os.environ['WORLD_SIZE']} processes but accelerate sees one; launch with torchrun "
            "(craft-bench run --num-processes N does) or accelerate launch"
        )
    return state


def process_device(device: str) -> str:
    """With several processes on GPUs, each process uses its own (``cuda:LOCAL_RANK``)."""
    if world_size() > 1 and device == "cuda":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


@dataclass(frozen=True)
class Shard:
    """This process's share of a run: process ``rank`` of ``world``."""

    rank: int
    world: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def mine(self, pieces: Sequence[T]) -> list[T]:
        return [p for i, p in enumerate(pieces) if i % self.world == self.rank]

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()

    def broadcast(self, obj: T) -> T:
        """The first process's ``obj``, on every process."""
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: T) -> list[T]:
        """Every process's ``obj``, in rank order, on every process."""
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out


def shard_from_env(device: str) -> Shard | None:
    state = process_state(device)
    return None if state is None else Shard(state.process_index, state.num_processes)
