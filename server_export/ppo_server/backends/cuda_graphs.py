"""CUDA graphs for a torch module whose batch size varies from call to call.

A UNet step of a few images is a thousand small kernels whose launches cost more than their
arithmetic; a graph replay launches them all at once. A graph is captured the first time a shape
arrives, one per batch bucket: rows are padded up to the next listed size (batch rows never mix, so
padding changes no result) and larger batches run eagerly. The sizes are the model config's
``contract.CudaGraphParameters``.
"""

from __future__ import annotations

import bisect
import logging

logger = logging.getLogger(__name__)


def bucket_for(rows: int, batches: tuple[int, ...]) -> int | None:
    """The smallest listed batch size that holds ``rows`` (None: larger than all, run eagerly)."""
    index = bisect.bisect_left(batches, rows)
    return batches[index] if index < len(batches) else None


class GraphRunner:
    """Runs ``module`` through CUDA graphs captured per (bucket, input shapes), eagerly otherwise.

    Graphs share one memory pool; that is safe because replays run one at a time and each output
    is copied out before the next replay.
    """

    def __init__(self, module, batches: tuple[int, ...]) -> None:
        import torch

        self.module = module
        self.batches = batches
        self.graphs: dict[tuple, tuple] = {}
        self.pool = torch.cuda.graph_pool_handle()

    def _capture(self, key: tuple, like: list):
        import torch

        bucket = key[0]
        static = [torch.zeros((bucket, *t.shape[1:]), dtype=t.dtype, device=t.device) for t in like]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up runs off the capture stream, as capture requires
            for _ in range(2):
                self.module(*static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            output = self.module(*static)
        self.graphs[key] = (graph, static, output)
        logger.info("captured a CUDA graph for %s", key)
        return self.graphs[key]

    def __call__(self, *tensors):
        rows = tensors[0].shape[0]
        bucket = bucket_for(rows, self.batches)
        if bucket is None:
            return self.module(*tensors)
        key = (bucket, *((tuple(t.shape[1:]), t.dtype) for t in tensors))
        graph, static, output = self.graphs.get(key) or self._capture(key, list(tensors))
        for target, tensor in zip(static, tensors, strict=True):
            target[:rows].copy_(tensor)
        graph.replay()
        return output[:rows]
